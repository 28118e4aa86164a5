"""The scheduler alone, without a model: latest wins, the waiting line, one size per batch,
the fairness bound whatever the sizes, and the coalescing window."""

from __future__ import annotations

import math
import random
import subprocess
import sys

import pytest

from sdxl_breeder.engine.scheduler import COALESCE_MAX_S, FrameJob, Scheduler
from sdxl_breeder.spec import FrameSettings


def job(seq: int = 0, size: int = 64, width: int | None = None) -> FrameJob:
    return FrameJob(None, 0.5, 0.5, seq, FrameSettings(width=width or size, height=size), received=0.0)  # type: ignore[arg-type]


def served(batch) -> list[int]:
    return [item.session_id for item in batch]


def test_the_scheduler_imports_no_model_code():
    code = "import sys, sdxl_breeder.engine.scheduler; print(sorted(m for m in ('torch', 'numpy', 'diffusers') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_latest_wins_and_keeps_its_place_in_line():
    s = Scheduler(max_batch=1)
    for sid in (1, 2):
        s.add(sid)
    assert s.submit(1, job(1)) is False
    assert s.submit(2, job(1)) is False
    assert [s.submit(1, job(seq)) for seq in (2, 3, 4)] == [True, True, True]  # replaced, not queued
    assert s.waiting == 2
    first = s.schedule()
    assert served(first) == [1] and first[0].job.seq == 4  # newest job, first place kept
    assert served(s.schedule()) == [2]
    assert s.schedule() == [] and s.waiting == 0


def test_a_served_session_goes_to_the_back_of_the_line():
    s = Scheduler(max_batch=2)
    for sid in range(5):
        s.add(sid)
        s.submit(sid, job())
    counts = [0] * 5
    order = []
    for _ in range(50):
        batch = s.schedule()
        assert len(batch) == 2
        order += served(batch)
        for item in batch:
            counts[item.session_id] += 1
            s.submit(item.session_id, job())  # wants another frame at once
        assert max(counts) - min(counts) <= 1, counts
    assert order[:10] == [0, 1, 2, 3, 4, 0, 1, 2, 3, 4]


def test_a_batch_is_one_size_the_size_of_the_first_in_line():
    s = Scheduler(max_batch=8)
    sizes = {1: 64, 2: 128, 3: 64, 4: 128, 5: 64}
    for sid, size in sizes.items():
        s.add(sid)
        s.submit(sid, job(size=size))
    assert served(s.schedule()) == [1, 3, 5]
    assert served(s.schedule()) == [2, 4]
    # width and height both count
    s.submit(1, job(size=64, width=128))
    s.submit(2, job(size=64))
    assert served(s.schedule()) == [1]


@pytest.mark.parametrize("busy", [4, 20])
@pytest.mark.parametrize("position", [0, 1, 2, 5])
def test_another_size_is_served_among_busy_sessions(busy, position):
    """Issue 12 item 2: busy 64² sessions, always pending, and one 128² session anywhere in line.
    The 128² one is served once the busy sessions ahead of it are: within ⌈ahead / max_batch⌉ + 1."""
    max_batch = 8
    s = Scheduler(max_batch)
    ids = list(range(busy))
    ids.insert(min(position, busy), "big")  # type: ignore[arg-type]
    numbers = {name: k for k, name in enumerate(ids)}
    for name in ids:
        s.add(numbers[name])
        s.submit(numbers[name], job(size=128 if name == "big" else 64))
    ahead = ids.index("big")
    for n in range(1, 100):
        batch = s.schedule()
        if numbers["big"] in served(batch):
            break
        for item in batch:
            s.submit(item.session_id, job(size=64))
    else:
        pytest.fail("the 128² session was never served")
    assert n <= math.ceil(ahead / max_batch) + 1, n


def test_every_waiting_session_is_served_within_the_bound_whatever_the_sizes():
    """A session that starts waiting behind k others is served within k + 1 batches."""
    rng = random.Random(12)
    sizes = (64, 128, 512)
    s = Scheduler(max_batch=4)
    n = 30
    for sid in range(n):
        s.add(sid)
    deadline: dict[int, int] = {}  # session → last batch number it may be served in
    for batch_no in range(1, 2000):
        for sid in range(n):
            if rng.random() < 0.3:  # a move: a new job, often of another size
                if sid not in deadline:
                    deadline[sid] = batch_no + s.waiting  # k = s.waiting ahead of it, served by k+1
                s.submit(sid, job(size=rng.choice(sizes)))
        for item in s.schedule():
            assert batch_no <= deadline.pop(item.session_id), (item.session_id, batch_no)
        late = [sid for sid, last in deadline.items() if last < batch_no]
        assert not late, f"sessions {late} waited past their bound"


def test_closed_and_one_shot_sessions():
    s = Scheduler(max_batch=4)
    s.add(1)
    s.add(2, one_shot=True)
    assert s.pad_count == 1 and 2 in s
    s.submit(1, job())
    s.remove(1)
    assert s.waiting == 0 and s.schedule() == []
    assert s.submit(1, job()) is False and s.waiting == 0  # a closed session's job is ignored
    with pytest.raises(ValueError):
        s.add(2)
    s.submit(2, job())
    assert [item.session_id for item in s.drain()] == [2] and s.waiting == 0


def test_coalescing_window():
    s = Scheduler(max_batch=4)
    for sid in range(3):
        s.add(sid)
    assert s.wait_s(0.0) is None  # nothing pending: sleep until a job comes
    s.submit(0, job())
    assert s.wait_s(10.0) == 0.0  # nothing rendered yet: no window to size the wait by
    s.schedule()
    s.rendered(0.020)  # a 20 ms batch: wait up to 2 ms for the others
    s.submit(0, job())
    assert s.wait_s(10.0) == pytest.approx(0.002)
    assert s.wait_s(10.0015) == pytest.approx(0.0005)
    assert s.wait_s(10.003) == 0.0
    s.schedule()
    s.rendered(10.0)  # slow renders: the wait is capped
    s.submit(0, job())
    assert s.wait_s(20.0) == pytest.approx(COALESCE_MAX_S)
    s.submit(1, job())
    s.submit(2, job())
    assert s.wait_s(20.0) == 0.0  # every session is pending: go at once


def test_max_batch_must_be_positive():
    with pytest.raises(ValueError):
        Scheduler(max_batch=0)
