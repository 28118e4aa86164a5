"""The render loop's bookkeeping: which sessions want a frame, and which of them the next batch serves.

Pure bookkeeping, like vLLM's scheduler: no model, no threads, and its decisions take the time
from the caller (`now`), so it is tested without a model or a clock. Each session keeps only its newest wanted frame (latest
wins). Sessions with a wanted frame wait in one line, in the order they started waiting; a newer
frame for a waiting session keeps its place. A batch renders one frame size: the size of the
session first in line, filled with the next sessions in line that want that size. Every batch
serves the session first in line, so a session that starts waiting behind k others is served
within k + 1 batches, whatever the sizes; with one size, within ⌈(k + 1) / max_batch⌉.

A session may instead hold a backlog of frames that must all render (a brood's children): it
waits in line with its next frame like any session, goes to the back of the line after each turn,
and also gets the slots a batch has left over, except those that sessions active lately (a pad
between two moves) will want: a backlog fills an idle loop's batch and trickles beside busy pads.
"""

from __future__ import annotations

import time
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from sdxl_breeder.spec import FrameSettings

if TYPE_CHECKING:
    from sdxl_breeder.model.scene import Scene

COALESCE_MAX_S = 0.005  # longest wait for more sessions to join a batch
COALESCE_SHARE = 0.1  # ... and at most this share of the last batch's render time
ACTIVE_S = 0.5  # a session that wanted a frame this recently (or 3 renders ago) keeps a slot from backlogs


@dataclass(frozen=True)
class FrameJob:
    """A wanted frame: the scene, where on the pad, and with which settings."""

    scene: Scene
    x: float
    y: float
    seq: int
    settings: FrameSettings
    received: float = field(default_factory=time.perf_counter)
    brood: str | None = None  # a brood's child: the frame header names its brood and child index
    child: int | None = None

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
        self._backlogs: dict[int, deque[FrameJob]] = {}  # session → frames after the one waiting in line
        self._last_submit: dict[int, float] = {}
        self._peers: dict[int, int] = {}  # backlog session → the pad it was asked from

    # ------------------------------------------------------------------ sessions
    def add(self, session_id: int, *, one_shot: bool = False, peer: int | None = None) -> None:
        """A new session; `one_shot` ones (a REST render, a video's frame, a brood) are not
        counted as pads. A backlog session's `peer` (the pad that asked) keeps no slot from it."""
        if session_id in self._sessions:
            raise ValueError(f"session {session_id} is already open")
        self._sessions[session_id] = one_shot
        if peer is not None:
            self._peers[session_id] = peer

    def remove(self, session_id: int) -> None:
        """The session leaves; its pending job, if any, is dropped."""
        self._sessions.pop(session_id, None)
        self._waiting.pop(session_id, None)
        self._backlogs.pop(session_id, None)
        self._last_submit.pop(session_id, None)
        self._peers.pop(session_id, None)

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
        self._last_submit[session_id] = job.received
        return replaced

    def submit_all(self, session_id: int, jobs: list[FrameJob]) -> None:
        """Every job renders, in order (no latest wins): the first waits in line, the rest behind it."""
        if session_id not in self._sessions or not jobs:
            return
        backlog = self._backlogs.setdefault(session_id, deque())
        backlog.extend(jobs)
        if session_id not in self._waiting:
            self._waiting[session_id] = backlog.popleft()

    @property
    def waiting(self) -> int:
        """Sessions with a pending job."""
        return len(self._waiting)

    def drain(self) -> list[Scheduled]:
        """Every pending job, taken out (the loop is stopping for good)."""
        out = [Scheduled(sid, job) for sid, job in self._waiting.items()]
        out += [Scheduled(sid, job) for sid, backlog in self._backlogs.items() for job in backlog]
        self._waiting.clear()
        self._backlogs.clear()
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

    def schedule(self, now: float | None = None) -> list[Scheduled]:
        """The next batch: the first session in line, and the next ones in line at its size; then
        more of the backlogs at that size, in the slots left over that no session active since
        `now - ACTIVE_S` (or three renders) will want. Without `now`, no slot is kept."""
        self._round_start = None
        if not self._waiting:
            return []
        size = next(iter(self._waiting.values())).size
        batch = [Scheduled(sid, job) for sid, job in self._waiting.items() if job.size == size][: self.max_batch]
        for item in batch:
            del self._waiting[item.session_id]
            self._next_in_backlog(item.session_id)  # to the back of the line
        spare = self.max_batch - len(batch) - self._kept_slots(batch, now)
        while spare > 0:
            more = [sid for sid, job in self._waiting.items() if sid in self._backlogs and job.size == size][:spare]
            if not more:
                break
            for sid in more:
                batch.append(Scheduled(sid, self._waiting.pop(sid)))
                self._next_in_backlog(sid)
            spare -= len(more)
        return batch

    def _next_in_backlog(self, session_id: int) -> None:
        backlog = self._backlogs.get(session_id)
        if backlog:
            self._waiting[session_id] = backlog.popleft()
        elif backlog is not None:
            del self._backlogs[session_id]

    def _kept_slots(self, batch: list[Scheduled], now: float | None) -> int:
        """Slots for sessions that wanted a frame lately and will likely want one again soon."""
        if now is None or not self._backlogs:
            return 0
        since = now - max(ACTIVE_S, 3 * self._last_render_s)
        skip = {item.session_id for item in batch} | set(self._backlogs) | set(self._waiting)
        skip |= {self._peers[sid] for sid in self._backlogs if sid in self._peers}
        return sum(1 for sid, t in self._last_submit.items() if sid not in skip and t > since)

    def rendered(self, seconds: float) -> None:
        """How long the last batch took: it sizes the coalescing window."""
        self._last_render_s = seconds
