"""`SyncBreederClient`: the scripting client's API, blocking, for notebooks and plain scripts."""

from __future__ import annotations

import asyncio
import functools
import threading
from typing import Any, Callable, Coroutine, Iterator, TypeVar

from sdxl_breeder.client.aio import BreederClient
from sdxl_breeder.client.connection import DEFAULT_URL
from sdxl_breeder.client.values import Frame

T = TypeVar("T")


def _blocking(name: str) -> Callable[..., Any]:
    """A SyncBreederClient method that runs BreederClient.<name> on the background loop."""
    @functools.wraps(getattr(BreederClient, name))
    def call(self: SyncBreederClient, *args: Any, **kwargs: Any) -> Any:
        return self._run(getattr(self.client, name)(*args, **kwargs))
    return call


class SyncBreederClient:
    """BreederClient's API, blocking: an event loop runs in a background thread. For notebooks:

        with SyncBreederClient("ws://127.0.0.1:8000/ws") as c:
            c.set_corners(["a cat", "a dog", "a fox", "an owl"])
            c.move(0.5, 0.5).image
    """

    def __init__(self, url: str = DEFAULT_URL, *, token: str | None = None, timeout: float = 60.0) -> None:
        self.client = BreederClient(url, token=token, timeout=timeout)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="breeder-client-loop", daemon=True)
        self._thread.start()

    def _run(self, coro: Coroutine[Any, Any, T]) -> T:
        if self._loop.is_closed():
            coro.close()
            raise RuntimeError("this client is closed")
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result()

    def __enter__(self) -> SyncBreederClient:
        return self.connect()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def connect(self) -> SyncBreederClient:
        try:
            self._run(self.client.connect())
        except BaseException:
            self.close()
            raise
        return self

    def close(self) -> None:
        """Close the socket and stop the background loop (safe to call twice)."""
        if self._loop.is_closed():
            return
        try:
            self._run(self.client.close())
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join()
            self._loop.close()

    @property
    def hello(self) -> dict[str, Any]:
        return self.client.hello

    def latest_frame(self) -> Frame | None:
        return self.client.latest_frame()

    def frames(self) -> Iterator[Frame]:
        """Yield the newest frame each time frames arrive after this call (see BreederClient.frames)."""
        return self._frames(self.client.frames_received)  # counted now, not at the first `next`

    def _frames(self, seen: int) -> Iterator[Frame]:
        while True:
            frame, seen = self._run(self.client.frame_after(seen))
            yield frame

    set_corners = _blocking("set_corners")
    settings = _blocking("settings")
    move = _blocking("move")
    move_nowait = _blocking("move_nowait")
    breed = _blocking("breed")
    keep = _blocking("keep")
    evolve = _blocking("evolve")
    select = _blocking("select")
    record_start = _blocking("record_start")
    record_stop = _blocking("record_stop")
    next_frame = _blocking("next_frame")
