"""The render loop's front door: sessions that submit wanted frames and await their results.

Three stages, split as vLLM splits its engine:

    Session.submit(job) → Scheduler (scheduler.py: newest job per session, the waiting line,
    batches of one size) → Executor (executor.py: the render thread, `renderer.render`) →
    OutputProcessor (output.py: JPEG on a worker pool) → the session's one-slot outbox →
    `await Session.next()`

The web side sees only this module: `RenderLoop`, `Session`, the typed results (`FrameOutput`,
`RenderedFrame`, `RenderFailure`) and `encode_image`; the wire format stays on the web side.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import itertools
from typing import Callable, Iterator, TypeVar

import numpy as np

from sdxl_breeder.engine.executor import Executor, LoopStopped, RenderedFrame, RenderFailure
from sdxl_breeder.engine.metrics import Metrics
from sdxl_breeder.engine.output import FrameOutput, Outbox, Output, OutputProcessor, encode_image
from sdxl_breeder.engine.scheduler import FrameJob, Scheduler
from sdxl_breeder.engine.trace import Tracer, Tracers
from sdxl_breeder.model.renderer import Renderer

__all__ = [
    "FrameJob", "FrameOutput", "LoopStopped", "Outbox", "RenderFailure", "RenderLoop", "RenderedFrame", "Session",
    "encode_image",
]

T = TypeVar("T")


class Session:
    """One client of the loop: a pad, or a one-shot render. Open it with `RenderLoop.open_session`."""

    def __init__(self, session_id: int, executor: Executor, output: OutputProcessor, outbox: Outbox, one_shot: bool) -> None:
        self._executor = executor
        self._output = output
        self._outbox = outbox
        self.id = session_id
        self.one_shot = one_shot
        self.closed = False

    def submit(self, job: FrameJob) -> None:
        """Want `job`'s frame; it replaces a wanted frame not yet rendered (latest wins).
        Raises `LoopStopped` if the loop has died."""
        if not self.closed:
            self._executor.submit(self.id, job)

    def submit_all(self, jobs: list[FrameJob]) -> None:
        """Want every one of `jobs`, in order (a backlog session: a brood's children). They
        render in one batch on an idle loop, over several beside busy pads."""
        if not self.closed:
            self._executor.submit_all(self.id, jobs)

    async def next(self) -> Output:
        """The newest result: a `FrameOutput` (pads; one-shots get the `RenderedFrame`) or a
        `RenderFailure`. Results not taken in time are replaced by newer ones."""
        return await self._outbox.get()

    def sent(self, output: FrameOutput) -> None:
        """Tell the loop the client has the frame: it measures the frame's latency."""
        self._output.sent(output)

    def close(self) -> None:
        """Leave: a wanted frame not yet rendered is dropped, results still coming are discarded."""
        if not self.closed:
            self.closed = True
            self._executor.remove(self.id)
            self._output.unregister(self.id)

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class RenderLoop:
    """The scheduler, the render thread and the output stage of one renderer."""

    def __init__(self, renderer: Renderer, *, max_batch: int = 8, jpeg_workers: int | None = None) -> None:
        self.renderer = renderer
        self.max_batch = max_batch
        self.metrics = Metrics()
        self._tracers = Tracers()
        self._output = OutputProcessor(self.metrics, self._tracers, jpeg_workers)
        self._executor = Executor(renderer, Scheduler(max_batch), self._output.process, self.metrics, self._tracers)
        self._ids = itertools.count(1)

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        self._executor.start()

    def stop(self) -> None:
        self._executor.stop()
        self._output.shutdown()

    @property
    def error(self) -> BaseException | None:
        """Why the loop died, if it did."""
        return self._executor.error

    def session_count(self) -> int:
        """Open pad sessions (one-shot renders not counted)."""
        return self._executor.pad_count()

    @contextlib.contextmanager
    def traced(self, tracer: Tracer) -> Iterator[None]:
        """Within the block, call `tracer` with a `trace.Span` for every stage a frame passes."""
        remove = self._tracers.add(tracer)
        try:
            yield
        finally:
            remove()

    # ------------------------------------------------------------------ sessions
    def open_session(self, *, one_shot: bool = False) -> Session:
        """A new session whose results are read on the running event loop. A pad's frames come
        JPEG-encoded; a `one_shot` session (a REST render, a video's frame) gets the uint8 array
        and is not counted as a pad."""
        session_id = next(self._ids)
        outbox = Outbox(on_replace=None if one_shot else self.metrics.dropped.inc)
        self._output.register(session_id, asyncio.get_running_loop(), outbox, jpeg=not one_shot)
        self._executor.add(session_id, one_shot=one_shot)
        return Session(session_id, self._executor, self._output, outbox, one_shot)

    def open_backlog(self, peer: Session | None = None) -> Session:
        """A session for `Session.submit_all` (a brood): every result comes, JPEG-encoded, none
        replaces another; not counted as a pad. `peer` is the pad that asked for it: while the
        backlog renders, it keeps no slot free from it."""
        session_id = next(self._ids)
        outbox = Outbox(every=True)
        self._output.register(session_id, asyncio.get_running_loop(), outbox, jpeg=True)
        self._executor.add(session_id, one_shot=True, peer=peer.id if peer is not None else None)
        return Session(session_id, self._executor, self._output, outbox, True)

    async def render_once(self, job: FrameJob) -> np.ndarray:
        """One frame through the loop (REST renders, walk videos): it shares batches with live
        pads. Raises `RuntimeError` with the reason if it cannot be rendered."""
        with self.open_session(one_shot=True) as session:
            session.submit(job)
            result = await session.next()
        if isinstance(result, RenderFailure):
            raise RuntimeError(result.message)
        assert isinstance(result, RenderedFrame)
        return result.frame

    # ------------------------------------------------------------------ calls
    def call(self, fn: Callable[[], T]) -> concurrent.futures.Future[T]:
        """Run `fn` on the render thread (which owns the model) between batches."""
        return self._executor.call(fn)

    async def run(self, fn: Callable[[], T]) -> T:
        return await asyncio.wrap_future(self.call(fn))
