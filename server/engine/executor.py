"""The render thread: it owns the renderer, renders the scheduler's batches and hands back typed results.

One thread owns the renderer (and so the model, its CUDA graphs and compiled code). It sleeps until
a session wants a frame or a `call` is queued, runs the calls, then renders the scheduler's next
batch with `renderer.render` and passes one result per frame — a `RenderedFrame` or a
`RenderFailure` — to the output stage. A batch that raises fails its frames and the loop goes on;
if the loop itself dies, every session still waiting gets a `RenderFailure` and later requests
are refused with `LoopStopped`.
"""

from __future__ import annotations

import concurrent.futures
import logging
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Any, Callable, TypeVar, Union

import numpy as np

from sdxl_breeder.engine.metrics import Metrics
from sdxl_breeder.engine.scheduler import FrameJob, Scheduled, Scheduler
from sdxl_breeder.engine.trace import Tracers
from sdxl_breeder.model.renderer import FrameRequest, Renderer

log = logging.getLogger("sdxl_breeder.engine")
T = TypeVar("T")


class LoopStopped(RuntimeError):
    """The render loop died (a bug) or was stopped: it takes no more work."""


@dataclass(frozen=True)
class RenderedFrame:
    """A frame as the renderer made it: uint8, height × width × 3."""

    session_id: int
    job: FrameJob
    frame: np.ndarray
    batch: int  # frames in the batch it was rendered in
    render_ms: float  # the whole batch's render time


@dataclass(frozen=True)
class RenderFailure:
    """A wanted frame that will not come: the reason, for the client."""

    session_id: int
    job: FrameJob
    message: str


RenderResult = Union[RenderedFrame, RenderFailure]
Sink = Callable[[list[RenderResult]], None]
_Call = tuple[Callable[[], Any], "concurrent.futures.Future[Any]"]


class Executor:
    """The render thread and what it shares with the event loop: the scheduler (under a lock) and
    the queue of calls. `sink` gets each batch's results, on the render thread."""

    def __init__(self, renderer: Renderer, scheduler: Scheduler, sink: Sink, metrics: Metrics, tracers: Tracers) -> None:
        self.renderer = renderer
        self.scheduler = scheduler
        self._sink = sink
        self._metrics = metrics
        self._tracers = tracers
        self._cond = threading.Condition()
        self._calls: deque[_Call] = deque()
        self._stopping = False
        self._thread: threading.Thread | None = None
        self.error: BaseException | None = None

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="render-loop", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout=30)
        with self._cond:
            calls = list(self._calls)
            self._calls.clear()
        for _, fut in calls:
            fut.cancel()

    # ------------------------------------------------------------------ from any thread
    def add(self, session_id: int, *, one_shot: bool, peer: int | None = None) -> None:
        with self._cond:
            self.scheduler.add(session_id, one_shot=one_shot, peer=peer)
            self._metrics.sessions.set(self.scheduler.pad_count)

    def remove(self, session_id: int) -> None:
        with self._cond:
            self.scheduler.remove(session_id)
            self._metrics.sessions.set(self.scheduler.pad_count)

    def pad_count(self) -> int:
        with self._cond:
            return self.scheduler.pad_count

    def submit(self, session_id: int, job: FrameJob) -> None:
        """Latest wins: `job` replaces the session's not-yet-rendered one."""
        with self._cond:
            if self.error is not None:
                raise LoopStopped(f"the render loop has stopped: {self.error}")
            if self.scheduler.submit(session_id, job):
                self._metrics.skipped.inc()
            self._cond.notify()

    def submit_all(self, session_id: int, jobs: list[FrameJob]) -> None:
        """Every job renders, in order (a brood's children)."""
        with self._cond:
            if self.error is not None:
                raise LoopStopped(f"the render loop has stopped: {self.error}")
            self.scheduler.submit_all(session_id, jobs)
            self._cond.notify()

    def call(self, fn: Callable[[], T]) -> concurrent.futures.Future[T]:
        """Run `fn` on the render thread (which owns the model) between batches."""
        fut: concurrent.futures.Future[T] = concurrent.futures.Future()
        with self._cond:
            if self.error is not None:
                fut.set_exception(LoopStopped(f"the render loop has stopped: {self.error}"))
                return fut
            self._calls.append((fn, fut))
            self._cond.notify()
        return fut

    # ------------------------------------------------------------------ the render thread
    def _run(self) -> None:
        batch: list[Scheduled] = []
        try:
            while True:
                work = self._next()
                if work is None:
                    return
                calls, batch = work
                for fn, fut in calls:
                    if fut.set_running_or_notify_cancel():
                        try:
                            fut.set_result(fn())
                        except BaseException as e:  # noqa: BLE001 — handed to the caller
                            fut.set_exception(e)
                if batch:
                    self._render(batch)
                batch = []
        except BaseException as e:  # a bug: tell every waiting client
            log.exception("render loop died")
            self._die(e, batch)

    def _next(self) -> tuple[list[_Call], list[Scheduled]] | None:
        """Wait for work: the queued calls and the next batch (None: stop)."""
        with self._cond:
            while not self._stopping:
                if self._calls:
                    break  # calls don't wait for a batch to gather
                wait = self.scheduler.wait_s(time.perf_counter())
                if wait == 0:
                    break
                self._cond.wait(wait)  # None: until notified
            else:
                return None
            calls = list(self._calls)
            self._calls.clear()
            return calls, self.scheduler.schedule(time.perf_counter())

    def _render(self, batch: list[Scheduled]) -> None:
        jobs = tuple(item.job for item in batch)
        start = time.perf_counter()
        if self._tracers.active:
            for job in jobs:
                self._tracers.emit("queue", job.received, start, (job,))
        try:
            frames = self.renderer.render([FrameRequest(job.scene, job.x, job.y, job.settings) for job in jobs])
        except Exception as e:  # noqa: BLE001 — one bad batch must not stop the loop
            log.exception("render failed for a batch of %d", len(batch))
            self._metrics.failures.inc()
            message = f"render failed: {type(e).__name__}: {e}"
            self._sink([RenderFailure(item.session_id, item.job, message) for item in batch])
            return
        end = time.perf_counter()
        seconds = end - start
        with self._cond:
            self.scheduler.rendered(seconds)
        self._metrics.frames.inc(len(batch))
        self._metrics.batch.observe(len(batch))
        self._metrics.render.observe(seconds)
        self._tracers.emit("render", start, end, jobs)
        ms = seconds * 1000
        self._sink([RenderedFrame(item.session_id, item.job, frame, len(batch), ms) for item, frame in zip(batch, frames)])

    def _die(self, error: BaseException, in_flight: list[Scheduled]) -> None:
        with self._cond:
            self.error = error
            waiting = in_flight + self.scheduler.drain()
            calls = list(self._calls)
            self._calls.clear()
        for _, fut in calls:
            if fut.set_running_or_notify_cancel():
                fut.set_exception(LoopStopped(f"the render loop has stopped: {error}"))
        message = f"the render loop stopped: {error}"
        try:
            self._sink([RenderFailure(item.session_id, item.job, message) for item in waiting])
        except Exception:  # noqa: BLE001 — nothing more can be done from here
            log.exception("could not tell the waiting sessions that the render loop stopped")
