"""Sessions and the batched, latest-wins render loop.

One thread owns the renderer (and so the model). Each session keeps only its newest wanted frame
(`pending`); each loop iteration takes up to `max_batch` sessions with something pending,
round-robin from where the last batch stopped so none starves, renders them as one batch, hands
the images to a JPEG thread pool and goes on. Finished frames land in the session's one-frame
outbox (a newer frame replaces an unsent one). Nothing queues without bound: a client that stops
reading costs one pending state and one frame.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import io
import itertools
import logging
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable, TypeVar

import numpy as np
from PIL import Image
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from sdxl_breeder.protocol import FrameHeader, encode_frame
from sdxl_breeder.model.renderer import FrameRequest, Renderer
from sdxl_breeder.model.scene import Scene
from sdxl_breeder.spec import FrameSettings

log = logging.getLogger("sdxl_breeder.engine")
COALESCE_MAX_S = 0.005  # longest wait for more sessions to join a batch
T = TypeVar("T")


@dataclass(frozen=True)
class FrameJob:
    """A wanted frame: the scene, where on the pad, and with which settings."""

    scene: Scene
    x: float
    y: float
    seq: int
    settings: FrameSettings
    received: float = field(default_factory=time.perf_counter)


def encode_image(frame: np.ndarray, fmt: str = "jpeg", quality: int = 80) -> bytes:
    buf = io.BytesIO()
    if fmt == "png":
        Image.fromarray(frame).save(buf, format="PNG")
    else:
        Image.fromarray(frame).save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


class Outbox:
    """One slot, newest wins; the socket's sender task waits on it."""

    def __init__(self, on_replace: Callable[[], None] | None = None) -> None:
        self._item: Any = None
        self._event = asyncio.Event()
        self._on_replace = on_replace

    def put(self, item: Any) -> None:
        if self._item is not None and self._on_replace is not None:
            self._on_replace()
        self._item = item
        self._event.set()

    async def get(self) -> Any:
        while self._item is None:
            self._event.clear()
            await self._event.wait()
        item, self._item = self._item, None
        return item


class Session:
    """A client of the render loop. `deliver` is called on a worker thread with each frame."""

    _ids = itertools.count(1)

    def __init__(
        self,
        deliver: Callable[[FrameJob, np.ndarray | None, int, float, str | None], None],
        *,
        one_shot: bool = False,
    ) -> None:
        self.id = next(self._ids)
        self.deliver = deliver
        self.one_shot = one_shot  # a REST render or video frame, not a pad: not counted as a session
        self.pending: FrameJob | None = None
        self.closed = False


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.frames = Counter("breeder_frames", "Frames rendered", registry=r)
        self.skipped = Counter("breeder_skipped_states", "Pad states replaced before they were rendered", registry=r)
        self.dropped = Counter("breeder_dropped_frames", "Frames replaced by a newer one before the socket took them", registry=r)
        self.failures = Counter("breeder_render_failures", "Batches whose render raised", registry=r)
        self.batch = Histogram("breeder_batch_size", "Frames per render batch", buckets=(1, 2, 3, 4, 6, 8, 12, 16, 32), registry=r)
        self.render = Histogram(
            "breeder_render_seconds", "Render time of one batch",
            buckets=(0.005, 0.01, 0.02, 0.04, 0.08, 0.15, 0.3, 0.6, 1.2, 2.5, 5, 10), registry=r,
        )
        self.e2e = Histogram(
            "breeder_frame_latency_seconds", "From a move's arrival to its frame being sent",
            buckets=(0.01, 0.02, 0.04, 0.08, 0.15, 0.3, 0.6, 1.2, 2.5, 5, 10, 30), registry=r,
        )
        self.sessions = Gauge("breeder_sessions", "Open websocket sessions", registry=r)


class RenderLoop:
    def __init__(self, renderer: Renderer, *, max_batch: int = 8, jpeg_workers: int = 2) -> None:
        if max_batch < 1:
            raise ValueError("max_batch must be at least 1")
        self.renderer = renderer
        self.max_batch = max_batch
        self.metrics = Metrics()
        self._cond = threading.Condition()
        self._sessions: deque[Session] = deque()
        self._calls: deque[tuple[Callable[[], Any], concurrent.futures.Future[Any]]] = deque()
        self._stopping = False
        self._thread: threading.Thread | None = None
        self.jpeg_pool = concurrent.futures.ThreadPoolExecutor(max_workers=jpeg_workers, thread_name_prefix="jpeg")
        self.error: BaseException | None = None
        self._last_render_s = 0.0

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
        self.jpeg_pool.shutdown(wait=False, cancel_futures=True)
        for fn, fut in self._calls:
            fut.cancel()

    # ------------------------------------------------------------------ sessions
    def open(self, session: Session) -> Session:
        with self._cond:
            self._sessions.append(session)
        self.metrics.sessions.set(self.session_count())
        return session

    def close(self, session: Session) -> None:
        with self._cond:
            session.closed = True
            session.pending = None
            try:
                self._sessions.remove(session)
            except ValueError:
                pass
        self.metrics.sessions.set(self.session_count())

    def session_count(self) -> int:
        return sum(1 for s in self._sessions if not s.one_shot)

    def submit(self, session: Session, job: FrameJob) -> None:
        """Latest wins: a job replaces any not-yet-rendered job of the same session."""
        if self.error is not None:
            raise RuntimeError(f"the render loop has stopped: {self.error}")
        with self._cond:
            if session.closed:
                return
            if session.pending is not None:
                self.metrics.skipped.inc()
            session.pending = job
            self._cond.notify()

    def call(self, fn: Callable[[], T]) -> concurrent.futures.Future[T]:
        """Run `fn` on the render thread (which owns the model) between batches."""
        fut: concurrent.futures.Future[T] = concurrent.futures.Future()
        if self.error is not None:
            fut.set_exception(RuntimeError(f"the render loop has stopped: {self.error}"))
            return fut
        with self._cond:
            self._calls.append((fn, fut))
            self._cond.notify()
        return fut

    async def run(self, fn: Callable[[], T]) -> T:
        return await asyncio.wrap_future(self.call(fn))

    async def render_once(self, job: FrameJob) -> np.ndarray:
        """One frame through the loop (REST renders, walk videos): it shares batches with live pads."""
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[np.ndarray] = loop.create_future()

        def deliver(job: FrameJob, frame: np.ndarray | None, batch: int, ms: float, error: str | None) -> None:
            def settle() -> None:
                if fut.done():
                    return
                if error is not None:
                    fut.set_exception(RuntimeError(error))
                else:
                    fut.set_result(frame)

            loop.call_soon_threadsafe(settle)

        session = Session(deliver, one_shot=True)
        self.open(session)
        try:
            self.submit(session, job)
            return await fut
        finally:
            self.close(session)

    # ------------------------------------------------------------------ the loop
    def _take(self) -> tuple[list[tuple[Session, FrameJob]], list[tuple[Callable[[], Any], concurrent.futures.Future[Any]]]]:
        """Under the lock: the calls waiting, and a batch of one size, round-robin."""
        calls = list(self._calls)
        self._calls.clear()
        batch: list[tuple[Session, FrameJob]] = []
        size: tuple[int, int] | None = None
        n = len(self._sessions)
        served = 0
        for i in range(n):
            s = self._sessions[i]
            job = s.pending
            if job is None:
                continue
            job_size = (job.settings.width, job.settings.height)
            if size is None:
                size = job_size
            if job_size != size:
                continue  # another size renders in a later batch; it keeps its turn
            batch.append((s, job))
            s.pending = None
            served = i + 1
            if len(batch) >= self.max_batch:
                break
        # Round-robin: the sessions just served go to the back of the line.
        self._sessions.rotate(-served)
        return batch, calls

    def _run(self) -> None:
        try:
            while True:
                with self._cond:
                    while not self._stopping and not self._calls and not any(s.pending for s in self._sessions):
                        self._cond.wait()
                    if self._stopping:
                        return
                    self._coalesce()
                    batch, calls = self._take()
                for fn, fut in calls:
                    if fut.set_running_or_notify_cancel():
                        try:
                            fut.set_result(fn())
                        except BaseException as e:  # noqa: BLE001 — handed to the caller
                            fut.set_exception(e)
                if batch:
                    self._render(batch)
        except BaseException as e:  # pragma: no cover — a bug; tell every waiting client
            log.exception("render loop died")
            self.error = e
            with self._cond:
                sessions = list(self._sessions)
            for s in sessions:
                if s.pending is not None:
                    s.deliver(s.pending, None, 0, 0.0, f"the render loop stopped: {e}")

    def _coalesce(self) -> None:
        """Under the lock: wait briefly for more sessions to join this batch.

        Clients that each wait for their frame before moving again reply a few milliseconds
        apart; rendering at the first move would split them into two alternating half batches.
        The wait is a tenth of the last render, at most COALESCE_MAX_S, and only while fewer
        sessions are pending than could share the batch."""
        window = min(COALESCE_MAX_S, 0.1 * self._last_render_s)
        if window <= 0:
            return
        target = min(self.max_batch, len(self._sessions))
        deadline = time.perf_counter() + window
        while not self._calls and not self._stopping:
            if sum(1 for s in self._sessions if s.pending is not None) >= target:
                return
            remaining = deadline - time.perf_counter()
            if remaining <= 0:
                return
            self._cond.wait(remaining)

    def _render(self, batch: list[tuple[Session, FrameJob]]) -> None:
        start = time.perf_counter()
        try:
            frames = self.renderer.render([FrameRequest(job.scene, job.x, job.y, job.settings) for _, job in batch])
        except Exception as e:  # noqa: BLE001 — one bad batch must not stop the loop
            log.exception("render failed for a batch of %d", len(batch))
            self.metrics.failures.inc()
            for s, job in batch:
                s.deliver(job, None, len(batch), 0.0, f"render failed: {type(e).__name__}: {e}")
            return
        ms = (time.perf_counter() - start) * 1000
        self._last_render_s = ms / 1000
        self.metrics.frames.inc(len(batch))
        self.metrics.batch.observe(len(batch))
        self.metrics.render.observe(ms / 1000)
        for (s, job), frame in zip(batch, frames):
            if not s.closed:
                s.deliver(job, frame, len(batch), ms, None)


def frame_message(job: FrameJob, frame: np.ndarray, batch: int, render_ms: float) -> bytes:
    """JPEG-encode a frame and wrap it in the binary frame format (runs on a JPEG worker)."""
    header = FrameHeader(
        seq=job.seq, x=job.x, y=job.y, seed=job.settings.seed,
        width=job.settings.width, height=job.settings.height,
        render_ms=round(render_ms, 2), batch=batch,
    )
    return encode_frame(header, encode_image(frame, "jpeg", job.settings.quality))
