"""Trace spans: the loop's hook for timing each stage a frame passes (the benchmark listens here).

A span names a stage and the jobs it covered, with start and end on `time.perf_counter()`:

- `queue`  — one job: the move arrived → its batch started rendering
- `render` — one batch: the renderer's call, all the batch's jobs
- `encode` — one frame: uint8 → JPEG on a worker thread
- `send`   — one frame: JPEG ready → the websocket took it

Tracers are called on the thread that ran the stage (the render thread, a JPEG worker, the event
loop): keep them quick and thread-safe. With no tracer attached no span is built.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

if TYPE_CHECKING:
    from sdxl_breeder.engine.scheduler import FrameJob

log = logging.getLogger("sdxl_breeder.engine")

STAGES = ("queue", "render", "encode", "send")


@dataclass(frozen=True)
class Span:
    name: str  # one of STAGES
    start: float
    end: float
    jobs: tuple[FrameJob, ...]

    @property
    def seconds(self) -> float:
        return self.end - self.start


Tracer = Callable[[Span], None]


class Tracers:
    """The tracers attached to one loop."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._tracers: tuple[Tracer, ...] = ()

    def add(self, tracer: Tracer) -> Callable[[], None]:
        """Attach `tracer`; returns the function that detaches it."""
        with self._lock:
            self._tracers = (*self._tracers, tracer)

        def remove() -> None:
            with self._lock:
                self._tracers = tuple(t for t in self._tracers if t is not tracer)

        return remove

    @property
    def active(self) -> bool:
        return bool(self._tracers)

    def emit(self, name: str, start: float, end: float, jobs: tuple[FrameJob, ...]) -> None:
        tracers = self._tracers
        if not tracers:
            return
        span = Span(name, start, end, jobs)
        for tracer in tracers:
            try:
                tracer(span)
            except Exception:  # noqa: BLE001 — a broken tracer must not stop the loop
                log.exception("tracer %r failed on a %s span", tracer, name)
