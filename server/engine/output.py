"""The output stage: rendered uint8 frames → JPEG on a worker pool → each session's one-slot outbox.

The render thread hands every batch's results here and goes straight back to rendering. A pad's
frame is JPEG-encoded on a small thread pool and becomes a `FrameOutput`; a one-shot session (a
REST render, a video's frame) gets the `RenderedFrame` itself; a `RenderFailure` goes as it is.
Each lands in the session's `Outbox` on the session's event loop: one slot, the newest result
replaces an unsent one, so a client that stops reading costs one frame, never a queue.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import io
import logging
import os
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Any, Callable, Union

import numpy as np
from PIL import Image

from sdxl_breeder.engine.executor import RenderedFrame, RenderFailure, RenderResult
from sdxl_breeder.engine.metrics import Metrics
from sdxl_breeder.engine.scheduler import FrameJob
from sdxl_breeder.engine.trace import Tracers

log = logging.getLogger("sdxl_breeder.engine")


def jpeg_pil(frame: np.ndarray, quality: int) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(frame).save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def jpeg_simplejpeg(frame: np.ndarray, quality: int) -> bytes:
    import simplejpeg

    # 4:2:0 chroma, as PIL does by default: the same size of file for the same quality.
    return simplejpeg.encode_jpeg(np.ascontiguousarray(frame), quality=quality, colorspace="RGB", colorsubsampling="420")


def _available_encoders() -> dict[str, Callable[[np.ndarray, int], bytes]]:
    encoders: dict[str, Callable[[np.ndarray, int], bytes]] = {"pil": jpeg_pil}
    try:
        import simplejpeg  # noqa: F401
    except ImportError:
        return encoders
    return {"simplejpeg": jpeg_simplejpeg, **encoders}


# Both release the GIL while they encode. simplejpeg (libjpeg-turbo, straight from the array) is
# the faster of the two where installed (docs/benchmarks.md, "JPEG"); PIL is the fall-back.
JPEG_ENCODERS = _available_encoders()
encode_jpeg = next(iter(JPEG_ENCODERS.values()))


def default_jpeg_workers(cpus: int | None = None) -> int:
    """JPEG threads for this machine: half its CPUs (the other half feed the GPU and the
    sockets), at least 2, at most 8."""
    return max(2, min(8, (cpus or os.cpu_count() or 2) // 2))


def encode_image(frame: np.ndarray, fmt: str = "jpeg", quality: int = 80) -> bytes:
    if fmt == "png":
        buf = io.BytesIO()
        Image.fromarray(frame).save(buf, format="PNG")
        return buf.getvalue()
    return encode_jpeg(frame, quality)


@dataclass(frozen=True)
class FrameOutput:
    """A pad's frame, ready to send: the job it answers, how it was rendered, and its JPEG."""

    session_id: int
    job: FrameJob
    batch: int
    render_ms: float
    jpeg: bytes
    ready: float  # time.perf_counter() when the JPEG was done


Output = Union[FrameOutput, RenderedFrame, RenderFailure]


class Outbox:
    """One slot, newest wins; put and read on one event loop (the output stage puts through
    `call_soon_threadsafe`). With `every`, results queue instead: a backlog session wants each one."""

    def __init__(self, on_replace: Callable[[], None] | None = None, *, every: bool = False) -> None:
        self._item: Any = None
        self._queue: deque[Any] | None = deque() if every else None
        self._event = asyncio.Event()
        self._on_replace = on_replace

    def put(self, item: Any) -> None:
        if self._queue is not None:
            self._queue.append(item)
            self._event.set()
            return
        if self._item is not None and self._on_replace is not None:
            self._on_replace()
        self._item = item
        self._event.set()

    async def get(self) -> Any:
        if self._queue is not None:
            while not self._queue:
                self._event.clear()
                await self._event.wait()
            return self._queue.popleft()
        while self._item is None:
            self._event.clear()
            await self._event.wait()
        item, self._item = self._item, None
        return item


class _Target:
    """Where one session's results go: its outbox, on its event loop."""

    def __init__(self, loop: asyncio.AbstractEventLoop, outbox: Outbox, jpeg: bool) -> None:
        self.loop, self.outbox, self.jpeg = loop, outbox, jpeg

    def put(self, item: Output) -> None:
        try:
            self.loop.call_soon_threadsafe(self.outbox.put, item)
        except RuntimeError:
            pass  # the event loop has closed: nobody is reading any more


class OutputProcessor:
    """Routes the render thread's results to the sessions' outboxes, by session id."""

    def __init__(self, metrics: Metrics, tracers: Tracers, jpeg_workers: int | None = None) -> None:
        self._metrics = metrics
        self._tracers = tracers
        self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=jpeg_workers or default_jpeg_workers(), thread_name_prefix="jpeg")
        self._lock = threading.Lock()
        self._targets: dict[int, _Target] = {}

    def register(self, session_id: int, loop: asyncio.AbstractEventLoop, outbox: Outbox, *, jpeg: bool) -> None:
        """Results for `session_id` go to `outbox`, read on `loop`; frames as JPEG if `jpeg`."""
        with self._lock:
            self._targets[session_id] = _Target(loop, outbox, jpeg)

    def unregister(self, session_id: int) -> None:
        with self._lock:
            self._targets.pop(session_id, None)

    def shutdown(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    def process(self, results: list[RenderResult]) -> None:
        """On the render thread: send each result on its way; a closed session's is dropped."""
        for result in results:
            with self._lock:
                target = self._targets.get(result.session_id)
            if target is None:
                continue
            if isinstance(result, RenderedFrame) and target.jpeg:
                try:
                    self._pool.submit(self._encode, result, target)
                except RuntimeError:
                    return  # shutting down
            else:
                target.put(result)

    def _encode(self, result: RenderedFrame, target: _Target) -> None:
        start = time.perf_counter()
        try:
            data = encode_image(result.frame, "jpeg", result.job.settings.quality)
        except Exception as e:  # noqa: BLE001 — the client hears of it; the pool goes on
            log.exception("JPEG encoding failed")
            target.put(RenderFailure(result.session_id, result.job, f"encoding failed: {type(e).__name__}: {e}"))
            return
        ready = time.perf_counter()
        self._tracers.emit("encode", start, ready, (result.job,))
        target.put(FrameOutput(result.session_id, result.job, result.batch, result.render_ms, data, ready))

    def sent(self, output: FrameOutput) -> None:
        """The socket took `output`: its latency from the move's arrival is measured here."""
        now = time.perf_counter()
        self._metrics.e2e.observe(now - output.job.received)
        self._tracers.emit("send", output.ready, now, (output.job,))
