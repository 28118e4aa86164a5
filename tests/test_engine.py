"""The render loop on its own: latest wins, round-robin fairness, failures, calls on its thread."""

from __future__ import annotations

import threading

import pytest

from sdxl_breeder.engine.loop import FrameJob, RenderLoop, Session
from sdxl_breeder.spec import FrameSettings
from sdxl_breeder.model.scene import Scene
from tests.conftest import PROMPTS

SMALL = FrameSettings(width=64, height=64)


@pytest.fixture(scope="module")
def scene(renderer):
    return Scene(tuple(renderer.genome_from_prompt(p) for p in PROMPTS))


class Recorder:
    """A session's deliveries, with a condition to wait on."""

    def __init__(self) -> None:
        self.frames: list[tuple[FrameJob, int, str | None]] = []
        self.cond = threading.Condition()

    def deliver(self, job, frame, batch, ms, error) -> None:
        with self.cond:
            self.frames.append((job, batch, error))
            self.cond.notify_all()

    def wait_for(self, n: int, timeout: float = 60) -> None:
        with self.cond:
            assert self.cond.wait_for(lambda: len(self.frames) >= n, timeout), f"only {len(self.frames)} of {n} frames"


def test_latest_state_wins(renderer, scene):
    loop = RenderLoop(renderer, max_batch=4)
    rec = Recorder()
    session = loop.open(Session(rec.deliver))
    for seq in range(5):  # queued before the loop runs: only the newest may render
        loop.submit(session, FrameJob(scene, seq / 4, 0.5, seq, SMALL))
    loop.start()
    try:
        rec.wait_for(1)
        assert [job.seq for job, _, _ in rec.frames] == [4]
        assert loop.metrics.skipped._value.get() == 4
    finally:
        loop.stop()


def test_round_robin_serves_every_session(renderer, scene):
    loop = RenderLoop(renderer, max_batch=2)
    recs = [Recorder() for _ in range(5)]
    sessions: list[Session] = []

    def always_moving(i: int):
        def deliver(job, frame, batch, ms, error):
            recs[i].deliver(job, frame, batch, ms, error)
            loop.submit(sessions[i], job)  # each session wants another frame at once

        return deliver

    sessions.extend(loop.open(Session(always_moving(i))) for i in range(5))
    for i, s in enumerate(sessions):
        loop.submit(s, FrameJob(scene, i / 4, 0.5, i, SMALL))
    loop.start()
    try:
        for rec in recs:
            rec.wait_for(3)  # every session keeps being served although 5 compete for batches of 2
        counts = [len(r.frames) for r in recs]
        assert max(counts) <= 2 * min(counts) + 2, counts
        assert all(batch <= 2 for r in recs for _, batch, _ in r.frames)
    finally:
        loop.stop()


def test_a_failed_render_reports_and_the_loop_goes_on(renderer, scene):
    loop = RenderLoop(renderer, max_batch=4)
    rec = Recorder()
    session = loop.open(Session(rec.deliver))
    loop.start()
    try:
        loop.submit(session, FrameJob(scene, 0.5, 0.5, 1, FrameSettings(width=100, height=64)))  # not a multiple of 64
        rec.wait_for(1)
        assert rec.frames[0][2] is not None and "multiple of 64" in rec.frames[0][2]
        loop.submit(session, FrameJob(scene, 0.5, 0.5, 2, SMALL))
        rec.wait_for(2)
        assert rec.frames[1][2] is None and rec.frames[1][0].seq == 2
        assert loop.metrics.failures._value.get() == 1
    finally:
        loop.stop()


def test_calls_run_on_the_render_thread(renderer):
    loop = RenderLoop(renderer)
    loop.start()
    try:
        assert loop.call(lambda: threading.current_thread().name).result(timeout=30) == "render-loop"
    finally:
        loop.stop()


def test_closed_sessions_get_nothing(renderer, scene):
    loop = RenderLoop(renderer)
    rec = Recorder()
    session = loop.open(Session(rec.deliver))
    loop.submit(session, FrameJob(scene, 0.5, 0.5, 1, SMALL))
    loop.close(session)
    loop.start()
    try:
        loop.call(lambda: None).result(timeout=30)  # a full loop turn has passed
        assert rec.frames == [] and loop.session_count() == 0
    finally:
        loop.stop()


def test_a_frame_of_another_size_is_served_among_many_busy_sessions(renderer, scene):
    """20 sessions at 64² always pending and one at 128²: the 128² one is served within a bound."""
    loop = RenderLoop(renderer, max_batch=8)
    batches: list[int] = []
    big = Recorder()
    sessions: list[Session] = []

    def busy(i: int):
        def deliver(job, frame, batch, ms, error):
            if i == 0:
                batches.append(batch)
            loop.submit(sessions[i], job)  # wants another frame at once

        return deliver

    sessions.append(loop.open(Session(busy(0))))
    big_session = loop.open(Session(big.deliver))  # second in line, behind a busy session
    sessions.extend(loop.open(Session(busy(i))) for i in range(1, 20))
    for i, s in enumerate(sessions):
        loop.submit(s, FrameJob(scene, i / 20, 0.5, i, SMALL))
    loop.submit(big_session, FrameJob(scene, 0.5, 0.5, 1, FrameSettings(width=128, height=64)))
    loop.start()
    try:
        with big.cond:
            big.cond.wait_for(lambda: big.frames or len(batches) >= 12, 120)
        assert big.frames, f"the 128-wide session got no frame while session 0 got {len(batches)}"
    finally:
        loop.stop()
