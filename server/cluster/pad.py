"""A pad socket in a front end: the session lives on one render worker, reached over Ray.

`WorkerLink` is the session's hop: placed on the least loaded worker at the first frame wanted
after the corners are set, sticky after. Latest wins end to end: one move in flight to the worker
(a newer move replaces an unsent one), one frame in the worker's outbox, one in the socket's.
If the worker dies, the client gets an error naming it, and the next move places the session on
a surviving worker.
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from typing import Any

from ray.serve.handle import DeploymentHandle, DeploymentResponseGenerator
from starlette.websockets import WebSocket

from sdxl_breeder import protocol as p
from sdxl_breeder.cluster.remote import reason
from sdxl_breeder.cluster.routing import WORKER_KEYWORD
from sdxl_breeder.cluster.worker import Want
from sdxl_breeder.engine.loop import Outbox
from sdxl_breeder.web.ws import PadSocket

log = logging.getLogger("sdxl_breeder.cluster")

PLACE_TIMEOUT_S = 60.0  # a session not placed by then gets an error (all workers full or down)


def _error(message: str) -> str:
    return json.dumps(p.error_message(p.ErrorCode.RENDER_FAILED, message))


class WorkerLink:
    def __init__(self, render: DeploymentHandle, outbox: Outbox) -> None:
        self.key = uuid.uuid4().hex
        self.render = render
        self.outbox = outbox
        self.worker: str | None = None
        self._stream: DeploymentResponseGenerator | None = None
        self._reader: asyncio.Task[None] | None = None
        self._pending: Want | None = None
        self._wake = asyncio.Event()
        self._mover = asyncio.create_task(self._move_forever())

    def want(self, want: Want) -> None:
        """The session's newest wanted frame; it replaces one not yet sent to the worker."""
        self._pending = want
        self._wake.set()

    async def close(self) -> None:
        self._mover.cancel()
        self._drop()

    async def _move_forever(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            want, self._pending = self._pending, None
            if want is None:
                continue
            if self.worker is None and not await self._place():
                continue
            worker = self.worker
            try:
                kwargs: dict[str, Any] = {WORKER_KEYWORD: worker}
                here = await self.render.move.remote(self.key, want, **kwargs)
            except Exception as e:  # noqa: BLE001 — the worker died under the move: the stream tells
                log.info("move for session %s on worker %s failed: %s", self.key, worker, reason(e))
                continue
            if not here and self.worker == worker:
                self._lost(worker, "the session is not on it")

    async def _place(self) -> bool:
        """Open the session's stream on the least loaded worker; its first item names the worker."""
        stream = self.render.options(stream=True).session.remote(self.key)
        try:
            worker = await asyncio.wait_for(stream.__anext__(), PLACE_TIMEOUT_S)
        except Exception as e:  # noqa: BLE001 — told to the client; the next move tries again
            stream.cancel()
            self.outbox.put(_error(f"no render worker took this pad ({reason(e)}); move again to retry"))
            return False
        self.worker, self._stream = worker, stream
        self._reader = asyncio.create_task(self._read(worker, stream))
        return True

    async def _read(self, worker: str, stream: DeploymentResponseGenerator) -> None:
        try:
            async for item in stream:
                self.outbox.put(item)
            why = "it ended the session"
        except asyncio.CancelledError:
            raise
        except Exception as e:  # noqa: BLE001 — the worker's process died or became unreachable
            why = reason(e)
        if self.worker == worker:
            self._lost(worker, why)

    def _lost(self, worker: str, why: str) -> None:
        log.warning("pad session %s lost render worker %s: %s", self.key, worker, why)
        self._drop()
        self.outbox.put(_error(f"render worker {worker} stopped ({why}); the next move continues on another worker"))

    def _drop(self) -> None:
        if self._reader is not None and self._reader is not asyncio.current_task():
            self._reader.cancel()
        if self._stream is not None:
            self._stream.cancel()
        self.worker, self._stream, self._reader = None, None, None


class ClusterPad(PadSocket):
    """PadSocket's protocol handling, with frames from a render worker instead of a local loop.
    `breeder` is the front end's ClusterBreeder."""

    def __init__(self, ws: WebSocket, breeder: Any) -> None:
        # Not PadSocket.__init__: that makes a session of a local render loop.
        self._start(ws, breeder)
        self.outbox = Outbox(on_replace=breeder.metrics.dropped.inc)
        self.link: WorkerLink | None = None

    async def evolve(self, msg: p.EvolveMsg) -> None:
        raise p.ProtocolError(p.ErrorCode.BAD_VALUE, "evolve is not available on a cluster yet; run `sdxl-breeder serve` without --ray")

    async def select(self, msg: p.SelectMsg) -> None:
        raise p.ProtocolError(p.ErrorCode.UNKNOWN_BROOD, "no broods on a cluster: evolve is not available with --ray yet")

    def _want_frame(self) -> None:
        s = self.state
        if s.scene is not None and self.link is not None:
            self.link.want(Want(s.scene, s.x, s.y, s.seq, s.settings))  # type: ignore[arg-type]

    async def sender(self) -> None:
        while True:
            data = await self.outbox.get()  # already a frame message or an error's JSON text
            async with self._send_lock:
                if isinstance(data, bytes):
                    await self.ws.send_bytes(data)
                else:
                    await self.ws.send_text(data)

    async def run(self) -> None:
        # PadSocket.run, with the session on a worker instead of the local render loop.
        self.link = WorkerLink(self.breeder.render_workers, self.outbox)
        self.breeder.metrics.sessions.inc()
        try:
            await self.converse()
        finally:
            self.breeder.metrics.sessions.dec()
            await self.link.close()
