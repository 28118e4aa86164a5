"""The render thread with the real tiny renderer: latest wins, fairness, one size per batch,
failures, calls on its thread, trace spans, and what happens when the loop itself dies."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from sdxl_breeder.engine.executor import Executor, LoopStopped, RenderedFrame, RenderFailure
from sdxl_breeder.engine.metrics import Metrics
from sdxl_breeder.engine.scheduler import FrameJob, Scheduler
from sdxl_breeder.engine.trace import Tracers
from sdxl_breeder.model.scene import Scene
from sdxl_breeder.spec import FrameSettings
from tests.conftest import PROMPTS

SMALL = FrameSettings(width=64, height=64)
WIDE = FrameSettings(width=128, height=64)
TIMEOUT = 120


@pytest.fixture(scope="module")
def scene(renderer):
    return Scene(tuple(renderer.genome_from_prompt(p) for p in PROMPTS))


class Sink:
    """The results the executor hands on, batch by batch, with a condition to wait on. `then` runs
    on the render thread after each batch is recorded (e.g. to want another frame at once)."""

    def __init__(self, then=None) -> None:
        self.batches: list[list[RenderedFrame | RenderFailure]] = []
        self.cond = threading.Condition()
        self.then = then

    def __call__(self, results) -> None:
        with self.cond:
            self.batches.append(list(results))
            self.cond.notify_all()
        if self.then is not None:
            self.then(results)

    def results(self, session_id: int | None = None) -> list[RenderedFrame | RenderFailure]:
        with self.cond:
            return [r for b in self.batches for r in b if session_id is None or r.session_id == session_id]

    def wait(self, predicate, what: str) -> None:
        with self.cond:
            assert self.cond.wait_for(predicate, TIMEOUT), f"timed out waiting for {what}"


def make(renderer, sink, max_batch: int = 4, tracers: Tracers | None = None) -> tuple[Executor, Metrics]:
    metrics = Metrics()
    return Executor(renderer, Scheduler(max_batch), sink, metrics, tracers or Tracers()), metrics


def make_busy(renderer, max_batch: int) -> tuple[Executor, Sink]:
    """An executor whose sessions want another frame as soon as one is rendered."""
    ex: Executor

    def again(results):
        for r in results:
            ex.submit(r.session_id, r.job)

    sink = Sink(then=again)
    ex, _ = make(renderer, sink, max_batch=max_batch)
    return ex, sink


def test_latest_state_wins(renderer, scene):
    sink = Sink()
    ex, metrics = make(renderer, sink)
    ex.add(1, one_shot=False)
    for seq in range(5):  # wanted before the loop runs: only the newest may render
        ex.submit(1, FrameJob(scene, seq / 4, 0.5, seq, SMALL))
    ex.start()
    try:
        sink.wait(lambda: sink.batches, "a frame")
        (result,) = sink.results()
        assert isinstance(result, RenderedFrame) and result.job.seq == 4
        assert result.frame.shape == (64, 64, 3) and result.frame.dtype == np.uint8
        assert metrics.skipped._value.get() == 4
    finally:
        ex.stop()


def test_busy_sessions_are_served_in_turn(renderer, scene):
    """5 sessions that always want a frame share batches of 2: served in turn, none more than
    one frame ahead of another (counted after the loop has stopped)."""
    ex, sink = make_busy(renderer, max_batch=2)
    for sid in range(5):
        ex.add(sid, one_shot=False)
        ex.submit(sid, FrameJob(scene, sid / 4, 0.5, sid, SMALL))
    ex.start()
    try:
        sink.wait(lambda: len(sink.batches) >= 12, "12 batches")
    finally:
        ex.stop()
    assert all(len(b) == 2 for b in sink.batches)
    counts = [len(sink.results(sid)) for sid in range(5)]
    assert max(counts) - min(counts) <= 1, counts


def test_a_frame_of_another_size_is_served_among_busy_sessions(renderer, scene):
    """Issue 12 item 2, live: 20 sessions at 64² always wanting a frame, and one at 128×64 second
    in line. It used to get no frame at all; now it is served in the second batch."""
    ex, sink = make_busy(renderer, max_batch=8)
    order = [0, "wide", *range(1, 20)]
    for sid in order:
        ex.add(-1 if sid == "wide" else sid, one_shot=False)
    for sid in order:
        if sid == "wide":
            ex.submit(-1, FrameJob(scene, 0.5, 0.5, 1, WIDE))
        else:
            ex.submit(sid, FrameJob(scene, sid / 20, 0.5, sid, SMALL))
    ex.start()
    try:
        sink.wait(lambda: sink.results(-1) or len(sink.batches) >= 10, "the 128×64 frame")
    finally:
        ex.stop()
    served_in = next((n for n, b in enumerate(sink.batches, 1) if any(r.session_id == -1 for r in b)), None)
    assert served_in == 2, f"the 128×64 session was served in batch {served_in} of {len(sink.batches)}"
    (wide,) = sink.results(-1)
    assert isinstance(wide, RenderedFrame) and wide.frame.shape == (64, 128, 3)
    for batch in sink.batches:
        assert len({r.frame.shape for r in batch}) == 1  # one size per batch


def test_a_failed_render_reports_and_the_loop_goes_on(renderer, scene):
    sink = Sink()
    ex, metrics = make(renderer, sink)
    ex.add(1, one_shot=False)
    ex.start()
    try:
        ex.submit(1, FrameJob(scene, 0.5, 0.5, 1, FrameSettings(width=100, height=64)))  # not a multiple of 64
        sink.wait(lambda: len(sink.batches) >= 1, "the failure")
        ex.submit(1, FrameJob(scene, 0.5, 0.5, 2, SMALL))
        sink.wait(lambda: len(sink.batches) >= 2, "the next frame")
    finally:
        ex.stop()
    failure, frame = sink.results()
    assert isinstance(failure, RenderFailure) and "multiple of 64" in failure.message and failure.job.seq == 1
    assert isinstance(frame, RenderedFrame) and frame.job.seq == 2
    assert metrics.failures._value.get() == 1


def test_calls_run_on_the_render_thread(renderer):
    ex, _ = make(renderer, Sink())
    ex.start()
    try:
        assert ex.call(lambda: threading.current_thread().name).result(timeout=TIMEOUT) == "render-loop"
        fut = ex.call(lambda: 1 / 0)
        with pytest.raises(ZeroDivisionError):
            fut.result(timeout=TIMEOUT)
    finally:
        ex.stop()


def test_a_closed_session_gets_nothing(renderer, scene):
    sink = Sink()
    ex, metrics = make(renderer, sink, max_batch=1)
    for sid in (1, 2):
        ex.add(sid, one_shot=False)
    ex.submit(1, FrameJob(scene, 0.5, 0.5, 1, SMALL))
    ex.submit(2, FrameJob(scene, 0.5, 0.5, 2, SMALL))  # behind session 1 in line
    ex.remove(1)
    ex.start()
    try:
        sink.wait(lambda: sink.results(2), "session 2's frame")  # session 1's turn came before
    finally:
        ex.stop()
    assert [r.session_id for r in sink.results()] == [2]
    assert metrics.frames._value.get() == 1


def test_trace_spans_time_each_job_and_batch(renderer, scene):
    spans = []
    tracers = Tracers()
    remove = tracers.add(spans.append)
    sink = Sink()
    ex, _ = make(renderer, sink, tracers=tracers)
    jobs = [FrameJob(scene, k / 2, 0.5, k, SMALL) for k in range(3)]
    for k, job in enumerate(jobs):
        ex.add(k, one_shot=False)
        ex.submit(k, job)
    ex.start()
    try:
        sink.wait(lambda: len(sink.results()) == 3, "3 frames")
    finally:
        ex.stop()
    remove()
    queue = [s for s in spans if s.name == "queue"]
    (render,) = [s for s in spans if s.name == "render"]
    assert sorted(s.jobs[0].seq for s in queue) == [0, 1, 2]
    assert all(s.start == s.jobs[0].received and s.end == render.start for s in queue)
    assert render.jobs == tuple(jobs) and render.seconds > 0
    (frame, *_) = sink.results()
    assert frame.render_ms == pytest.approx(1000 * render.seconds)


def test_when_the_loop_dies_every_waiting_session_hears_it(renderer, scene):
    """A bug past the renderer (here: the output stage raising) kills the loop: the frames in
    flight and every session still waiting get a failure, and later work is refused."""
    results: list = []
    died = threading.Event()

    def sink(batch) -> None:
        if not results and isinstance(batch[0], RenderedFrame):
            results.append("boom")
            raise RuntimeError("boom")
        results.extend(batch)
        died.set()

    ex, _ = make(renderer, sink, max_batch=1)
    for sid in (1, 2, 3):
        ex.add(sid, one_shot=False)
        ex.submit(sid, FrameJob(scene, 0.5, 0.5, sid, SMALL))
    ex.start()
    try:
        assert died.wait(TIMEOUT)
        failures = results[1:]
        assert sorted(f.session_id for f in failures) == [1, 2, 3]
        assert all(isinstance(f, RenderFailure) and "boom" in f.message for f in failures)
        assert isinstance(ex.error, RuntimeError)
        with pytest.raises(LoopStopped):
            ex.submit(1, FrameJob(scene, 0.5, 0.5, 9, SMALL))
        with pytest.raises(LoopStopped):
            ex.call(lambda: None).result(timeout=TIMEOUT)
    finally:
        ex.stop()
