"""The asyncio scripting client, `BreederClient`: one pad session, its requests and the replies routed back.

`SyncBreederClient` (blocking, for notebooks) is in sync.py; both are exported by `sdxl_breeder.client`.
Needs only the protocol package, websockets, PIL and the standard library.

Replies carry no request id: JSON replies are matched to requests by order (the server answers one socket's
requests in the order they were sent), frames to moves by `seq`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
from collections import deque
from typing import Any, AsyncIterator, Awaitable, Sequence, TypeVar

from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

from sdxl_breeder.client.connection import DEFAULT_URL, normalize_url, open_session, redact
from sdxl_breeder.client.values import Brood, BreederConnectionError, BreederError, Frame
from sdxl_breeder.protocol import CORNER_NAMES, ProtocolError

__all__ = ["DEFAULT_URL", "Brood", "BreederClient", "BreederConnectionError", "BreederError", "Frame",
           "normalize_url", "redact"]

log = logging.getLogger("sdxl_breeder.client")
T = TypeVar("T")


class BreederClient:
    """Async client for one pad session: `async with BreederClient(url) as c: ...`."""

    def __init__(self, url: str = DEFAULT_URL, *, token: str | None = None, timeout: float = 60.0) -> None:
        self.url = normalize_url(url)
        self.shown_url = redact(self.url)
        self.token = token  # sent as "Authorization: Bearer", so it stays out of URLs and logs
        self.timeout = timeout
        self.hello: dict[str, Any] = {}
        self.corners: list[dict[str, Any]] | None = None  # the last corners reply
        self.current_settings: dict[str, Any] = {}  # the last settings reply
        self.orphan_errors: list[BreederError] = []  # errors no request was waiting for
        self.frames_received = 0
        self._ws: ClientConnection | None = None
        self._reader: asyncio.Task[None] | None = None
        self._requests: deque[tuple[str, asyncio.Future[dict[str, Any]]]] = deque()  # (reply type, future)
        self._moves: list[tuple[int, asyncio.Future[Frame]]] = []  # (seq, future) of moves awaiting a frame
        self._seq = 0
        self._latest: Frame | None = None
        self._frame_event: asyncio.Event | None = None
        self._error: BaseException | None = None  # set once the connection is gone
        self._closing = False
        self._corners_sent = False
        self._broods: dict[str, tuple[int, list[Frame], asyncio.Future[list[Frame]]]] = {}  # id -> (count, frames, done)

    async def __aenter__(self) -> BreederClient:
        return await self.connect()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def connect(self) -> BreederClient:
        """Open the socket and read the server's hello; BreederConnectionError says why not."""
        if self._ws is not None:
            raise RuntimeError("this client is already connected")
        ws, hello = await open_session(self.url, self.token, self.timeout)
        self.hello, self._ws, self._frame_event = hello, ws, asyncio.Event()
        self._reader = asyncio.create_task(self._read(), name="breeder-client-reader")
        return self

    async def close(self) -> None:
        """Close the socket; anything still waiting gets BreederConnectionError."""
        self._closing = True
        if self._ws is not None:
            await self._ws.close()
        if self._reader is not None:
            await self._reader
        self._fail_all(BreederConnectionError(f"the client for {self.shown_url} was closed"))

    # ------------------------------------------------------------------ reading
    async def _read(self) -> None:
        """The one reader: frames wake move waiters, JSON answers the oldest matching request."""
        assert self._ws is not None
        try:
            async for data in self._ws:
                if isinstance(data, bytes):
                    self._on_frame(data)
                else:
                    self._on_json(data)
            error = BreederConnectionError(f"server at {self.shown_url} closed the connection "
                                           f"(code {self._ws.close_code}: {self._ws.close_reason or 'no reason'})")
        except ConnectionClosed as e:
            error = BreederConnectionError(f"lost the connection to {self.shown_url}: {e}")
        except Exception as e:  # noqa: BLE001 — a reader bug must reach the waiters, not vanish
            log.exception("client reader failed")
            error = BreederConnectionError(f"client reader failed: {type(e).__name__}: {e}")
        self._fail_all(BreederConnectionError(f"the client for {self.shown_url} was closed") if self._closing else error)

    def _on_frame(self, data: bytes) -> None:
        try:
            frame = Frame.decode(data)
        except ProtocolError as e:
            log.warning("ignoring a garbled frame: %s", e.message)
            return
        if frame.brood is not None:  # a brood's child answers the evolve, not a move
            self._on_child(frame)
            return
        # JPEG encoding runs on a pool, so an older move's frame may arrive after a newer one
        if self._latest is None or frame.seq >= self._latest.seq:
            self._latest = frame
        self.frames_received += 1
        for seq, fut in self._moves:
            if seq <= frame.seq and not fut.done():  # a frame for seq S: every move up to S was handled
                fut.set_result(frame)
        self._moves = [(seq, fut) for seq, fut in self._moves if not fut.done()]
        self._wake()

    def _on_child(self, frame: Frame) -> None:
        brood = frame.brood or ""
        entry = self._broods.get(brood)
        if entry is None:
            log.debug("ignoring a frame of brood %s", brood)
            return
        count, frames, done = entry
        frames.append(frame)
        if len(frames) >= count:
            del self._broods[brood]
            if not done.done():
                done.set_result(sorted(frames, key=lambda f: f.child or 0))

    def _on_json(self, text: str) -> None:
        try:
            msg = json.loads(text)
        except ValueError:
            log.warning("ignoring a message that is not JSON: %.80r", text)
            return
        kind = msg.get("type") if isinstance(msg, dict) else None
        if kind == "error":
            error = BreederError(str(msg.get("code")), str(msg.get("message")))
            if error.code == "render_failed" and msg.get("in_reply_to") == "evolve" and self._broods:
                done = self._broods.pop(next(iter(self._broods)))[2]  # broods draw one after another
                if not done.done():
                    done.set_exception(error)
                return
            self._on_error(error)
            return
        if kind == "brood" and isinstance(msg.get("brood"), str):  # its frames follow: collect them from now on
            loop = asyncio.get_running_loop()
            self._broods[msg["brood"]] = (int(msg.get("count") or 0), [], loop.create_future())
        for i, (reply, fut) in enumerate(self._requests):
            if reply == kind:
                del self._requests[i]
                if not fut.done():  # a request that timed out still consumes its reply
                    fut.set_result(msg)
                return
        log.debug("ignoring an unrequested %r message", kind)

    def _on_error(self, error: BreederError) -> None:
        # render failures come from the render loop after the move was accepted; any other error
        # answers the oldest waiting request (moves the server would reject are never sent)
        if error.code != "render_failed" and self._requests:
            fut = self._requests.popleft()[1]
            if not fut.done():
                fut.set_exception(error)
            return
        pending = [fut for _, fut in self._moves if not fut.done()]
        self._moves = []
        for fut in pending:
            fut.set_exception(error)
        if not pending:
            log.warning("server error: %s", error)
            self.orphan_errors.append(error)
            self._wake()

    def _fail_all(self, error: BaseException) -> None:
        self._error = self._error or error
        futures = [fut for _, fut in self._requests] + [fut for _, fut in self._moves]
        futures += [done for _, _, done in self._broods.values()]
        self._requests.clear()
        self._moves = []
        self._broods.clear()
        for fut in futures:
            if not fut.done():
                fut.set_exception(error)
        self._wake()

    def _wake(self) -> None:
        if self._frame_event is not None:
            self._frame_event.set()
            self._frame_event = asyncio.Event()

    # ------------------------------------------------------------------ sending
    def _check_open(self) -> ClientConnection:
        if self._error is not None:
            raise self._error
        if self._ws is None:
            raise RuntimeError("not connected: use `async with BreederClient(...)` or `await client.connect()`")
        return self._ws

    async def _wait(self, fut: Awaitable[T], what: str) -> T:
        try:
            return await asyncio.wait_for(fut, self.timeout)
        except TimeoutError:
            raise TimeoutError(f"no {what} from {self.shown_url} within {self.timeout:g} s") from None

    async def _request(self, msg: dict[str, Any], reply: str) -> dict[str, Any]:
        ws = self._check_open()
        fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._requests.append((reply, fut))  # before sending: the reply may come back at once
        await ws.send(json.dumps(msg, allow_nan=False))
        return await self._wait(fut, f"{reply} reply to {msg['type']}")

    async def _send_move(self, x: float, y: float, fut: asyncio.Future[Frame] | None = None) -> int:
        """Send the next move, checked here first: a move's error could not be told apart from the
        error of a request sent after it, so moves the server would reject are never sent."""
        ws = self._check_open()
        for name, v in (("x", x), ("y", y)):
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or not 0 <= v <= 1:
                raise ValueError(f"{name} must be a number within [0, 1], got {v!r}")
        if not self._corners_sent:
            raise BreederError("no_corners", "send a corners message before moving (set_corners)")
        self._seq += 1
        if fut is not None:
            self._moves.append((self._seq, fut))
        await ws.send(json.dumps({"type": "move", "x": float(x), "y": float(y), "seq": self._seq}))
        return self._seq

    # ------------------------------------------------------------------ the API
    async def set_corners(self, corners: Sequence[str | dict[str, str]], template: str | None = None) -> list[dict[str, Any]]:
        """Set the corners TL, TR, BL, BR: a prompt string, {"prompt": p} or {"genome": id} each.

        Returns the server's corners, [{"genome": id, "prompt": str | None}] x4. The server then
        renders a frame at the current position; it becomes `latest_frame()`."""
        if isinstance(corners, (str, bytes)) or len(corners) != len(CORNER_NAMES):
            raise ValueError(f"set_corners needs {len(CORNER_NAMES)} corners ({', '.join(CORNER_NAMES)})")
        msg = {"type": "corners", "template": template,
               "corners": [{"prompt": c} if isinstance(c, str) else dict(c) for c in corners]}
        self._corners_sent = True  # moves sent from now on are handled after these corners
        try:
            reply = await self._request(msg, "corners")
        except BreederError:
            self._corners_sent = self.corners is not None  # the server keeps its old corners
            raise
        self.corners = list(reply["corners"])
        return list(self.corners)

    async def settings(self, **fields: Any) -> dict[str, Any]:
        """Change any of width, height, seed, blend, quality, corner_seeds (None clears them);
        returns the full settings after the change."""
        if not fields:
            raise ValueError("settings needs at least one of: width, height, seed, blend, quality, corner_seeds")
        reply = await self._request({"type": "settings", **fields}, "settings")
        self.current_settings = {k: v for k, v in reply.items() if k != "type"}
        return dict(self.current_settings)

    async def move(self, x: float, y: float) -> Frame:
        """Move the cursor and wait for the frame rendered for this move."""
        fut: asyncio.Future[Frame] = asyncio.get_running_loop().create_future()
        seq = await self._send_move(x, y, fut)
        return await self._wait(fut, f"frame for move {seq}")

    async def move_nowait(self, x: float, y: float) -> int:
        """Move without waiting; returns the seq. The server renders only the newest position,
        so quick successive moves may share one frame."""
        return await self._send_move(x, y)

    async def breed(self, a: str, b: str, *, seed: int | None = None, mutation: float = 0.0) -> dict[str, Any]:
        """Breed a child of genome ids `a` and `b` (seed None: random); returns its metadata."""
        msg = {"type": "breed", "parents": [a, b], "seed": seed, "mutation": mutation}
        return dict((await self._request(msg, "genome"))["genome"])

    async def evolve(self, parents: Sequence[str], count: int = 9, *, mutation: float = 0.2,
                     seed: int | None = None) -> Brood:
        """Breed a brood of `count` children from 1–4 parents (genome ids, or "cursor" for the blend
        at this session's position) and wait for every child's frame. Nothing is stored until
        `select`. The same parents, seed, count, mutation and settings give the same children."""
        if isinstance(parents, str):
            raise ValueError('parents must be a list of genome ids or "cursor", e.g. [a, b]')
        msg = {"type": "evolve", "parents": list(parents), "count": count, "mutation": mutation, "seed": seed}
        reply = await self._request(msg, "brood")
        entry = self._broods.get(reply["brood"])
        frames = await self._wait(entry[2], f"frames of brood {reply['brood']}") if entry else []
        return Brood(reply["brood"], reply["generation"], reply["seed"], list(reply["parents"]),
                     reply.get("mutation", mutation), frames)

    async def select(self, brood: str | Brood, children: Sequence[int]) -> list[dict[str, Any]]:
        """Keep children of a brood (0-based indices) as genomes; returns them, in the order given."""
        brood_id = brood.id if isinstance(brood, Brood) else brood
        ws = self._check_open()
        loop = asyncio.get_running_loop()
        futures: list[asyncio.Future[dict[str, Any]]] = [loop.create_future() for _ in children]
        self._requests.extend(("genome", fut) for fut in futures)  # one genome reply per child
        await ws.send(json.dumps({"type": "select", "brood": brood_id, "children": list(children)}))
        try:
            return [dict((await self._wait(fut, "genome reply to select"))["genome"]) for fut in futures]
        finally:  # after an error (sent before any genome) the other replies will never come
            pending = {id(f) for f in futures if not f.done()}
            self._requests = deque((r, f) for r, f in self._requests if id(f) not in pending)

    async def keep(self, prompt: str | None = None) -> dict[str, Any]:
        """Save the blend at the current position as a genome (optional label); returns it."""
        return dict((await self._request({"type": "keep", "prompt": prompt}, "genome"))["genome"])

    async def record_start(self) -> None:
        """Start recording this session's moves (the server sends no reply)."""
        await self._check_open().send(json.dumps({"type": "record", "action": "start"}))

    async def record_stop(self) -> dict[str, Any]:
        """Stop and save the walk: {"type": "walk", "walk": id, "points": n, "seconds": s}."""
        return await self._request({"type": "record", "action": "stop"}, "walk")

    def latest_frame(self) -> Frame | None:
        """The newest frame received (highest seq), or None before the first."""
        return self._latest

    async def frame_after(self, count: int) -> tuple[Frame, int]:
        """The newest frame once more than `count` frames have arrived, and the new count."""
        while self.frames_received <= count:
            if self.orphan_errors:
                raise self.orphan_errors.pop(0)
            self._check_open()
            assert self._frame_event is not None
            await self._wait(self._frame_event.wait(), "frame")
        assert self._latest is not None  # frames_received > count >= 0
        return self._latest, self.frames_received

    async def next_frame(self) -> Frame:
        """Wait for the next frame to arrive (from a move, settings or corners)."""
        return (await self.frame_after(self.frames_received))[0]

    def frames(self) -> AsyncIterator[Frame]:
        """Yield the newest frame each time frames arrive after this call; a slow consumer skips
        frames, as the server does. Ends only with an error, e.g. BreederConnectionError on close."""
        return self._frames(self.frames_received)  # counted now, not at the first `anext`

    async def _frames(self, seen: int) -> AsyncIterator[Frame]:
        while True:
            frame, seen = await self.frame_after(seen)
            yield frame

