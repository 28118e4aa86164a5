"""The render loop's bookkeeping: which sessions want a frame, and which of them the next batch serves.

Pure bookkeeping, like vLLM's scheduler: no model, no threads, and its decisions take the time
from the caller (`now`), so it is tested without a model or a clock. Each session keeps only its newest wanted frame (latest
wins). Sessions with a wanted frame wait in one line, in the order they started waiting; a newer
frame for a waiting session keeps its place. A batch renders one frame size: the size of the
session first in line, filled with the next sessions in line that want that size. Every batch
serves the session first in line, so a session that starts waiting behind k others is served
within k + 1 batches, whatever the sizes; with one size, within ⌈(k + 1) / max_batch⌉.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from sdxl_breeder.spec import FrameSettings

if TYPE_CHECKING:
    from sdxl_breeder.model.scene import Scene

COALESCE_MAX_S = 0.005  # longest wait for more sessions to join a batch
COALESCE_SHARE = 0.1  # ... and at most this share of the last batch's render time


@dataclass(frozen=True)
class FrameJob:
    """A wanted frame: the scene, where on the pad, and with which settings."""

    scene: Scene
    x: float
    y: float
    seq: int
    settings: FrameSettings
    received: float = field(default_factory=time.perf_counter)

    @property
    def size(self) -> tuple[int, int]:
        return (self.settings.width, self.settings.height)


@dataclass(frozen=True)
class Scheduled:
    """One frame of a batch: whose it is and what it shows."""

    session_id: int
    job: FrameJob


class Scheduler:
    """Sessions, each one's newest pending job, the waiting line and the coalescing window.

    Not thread-safe: its owner (the executor) holds a lock around every call."""

    def __init__(self, max_batch: int) -> None:
        if max_batch < 1:
            raise ValueError("max_batch must be at least 1")
        self.max_batch = max_batch
        self._sessions: dict[int, bool] = {}  # id → one_shot
        self._waiting: OrderedDict[int, FrameJob] = OrderedDict()  # in the order they started waiting
        self._round_start: float | None = None  # when the next batch started gathering
        self._last_render_s = 0.0

    # ------------------------------------------------------------------ sessions
    def add(self, session_id: int, *, one_shot: bool = False) -> None:
        """A new session; `one_shot` ones (a REST render, a video's frame) are not counted as pads."""
        if session_id in self._sessions:
            raise ValueError(f"session {session_id} is already open")
        self._sessions[session_id] = one_shot

    def remove(self, session_id: int) -> None:
        """The session leaves; its pending job, if any, is dropped."""
        self._sessions.pop(session_id, None)
        self._waiting.pop(session_id, None)

    def __contains__(self, session_id: int) -> bool:
        return session_id in self._sessions

    @property
    def pad_count(self) -> int:
        return sum(1 for one_shot in self._sessions.values() if not one_shot)

    # ------------------------------------------------------------------ jobs
    def submit(self, session_id: int, job: FrameJob) -> bool:
        """Latest wins: `job` replaces the session's pending job, keeping its place in line.
        Returns whether a pending job was replaced (skipped). A closed session's job is ignored."""
        if session_id not in self._sessions:
            return False
        replaced = session_id in self._waiting
        self._waiting[session_id] = job  # an existing key keeps its position
        return replaced

    @property
    def waiting(self) -> int:
        """Sessions with a pending job."""
        return len(self._waiting)

    def drain(self) -> list[Scheduled]:
        """Every pending job, taken out (the loop is stopping for good)."""
        out = [Scheduled(sid, job) for sid, job in self._waiting.items()]
        self._waiting.clear()
        return out

    # ------------------------------------------------------------------ batches
    def wait_s(self, now: float) -> float | None:
        """How long to wait before `schedule()`: None when nothing is pending, 0 to go now.

        Clients that each wait for their frame before moving again reply a few milliseconds
        apart; rendering at the first move would split them into two alternating half batches.
        So a batch gathers for a tenth of the last render (at most COALESCE_MAX_S), and only
        while fewer sessions are pending than could share it."""
        if not self._waiting:
            self._round_start = None
            return None
        if len(self._waiting) >= min(self.max_batch, len(self._sessions)):
            return 0.0
        if self._round_start is None:
            self._round_start = now
        window = min(COALESCE_MAX_S, COALESCE_SHARE * self._last_render_s)
        return max(0.0, self._round_start + window - now)

    def schedule(self) -> list[Scheduled]:
        """The next batch: the first session in line, and the next ones in line at its size."""
        self._round_start = None
        if not self._waiting:
            return []
        size = next(iter(self._waiting.values())).size
        batch = [Scheduled(sid, job) for sid, job in self._waiting.items() if job.size == size][: self.max_batch]
        for item in batch:
            del self._waiting[item.session_id]
        return batch

    def rendered(self, seconds: float) -> None:
        """How long the last batch took: it sizes the coalescing window."""
        self._last_render_s = seconds
