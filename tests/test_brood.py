"""Broods on the real tiny model: reproducible children, parent picks, noken mode, and the loop's backlog."""

from __future__ import annotations

import asyncio

import pytest
import torch

from sdxl_breeder.engine.loop import FrameJob, FrameOutput, RenderLoop
from sdxl_breeder.engine.scheduler import Scheduler
from sdxl_breeder.model.brood import breed_brood, child_scene, picks
from sdxl_breeder.model.genome import GenomeError
from sdxl_breeder.model.scene import Scene
from sdxl_breeder.spec import FrameSettings
from tests.conftest import PROMPTS


@pytest.fixture(scope="module")
def parents(renderer):
    return [renderer.genome_from_prompt(p) for p in PROMPTS]


def same(a, b) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a.embeds, b.embeds))


def test_picks_are_two_distinct_parents_chosen_by_the_seed():
    plan = picks(4, 16, seed=7)
    assert plan == picks(4, 16, seed=7)
    assert plan != picks(4, 16, seed=8)
    assert all(p.a != p.b and {p.a, p.b} <= {0, 1, 2, 3} for p in plan)
    assert len({(p.a, p.b) for p in plan}) > 3  # the seed spreads the pairs
    assert picks(4, 9, seed=7) == plan[:9]  # a smaller brood is the start of a larger one
    assert {(p.a, p.b) for p in picks(1, 5, seed=1)} == {(0, 0)}
    with pytest.raises(GenomeError, match="1 to 4 parents"):
        picks(5, 3, seed=1)


def test_brood_is_reproducible_and_each_child_is_a_crossover_of_its_two_parents(renderer, parents):
    kids = breed_brood(parents[:3], 9, seed=11, mutation=0.0)
    again = breed_brood(parents[:3], 9, seed=11, mutation=0.0)
    assert all(same(a, b) for a, b in zip(kids, again))
    assert len({tuple(k.embeds[1].flatten().tolist()) for k in kids}) == 9  # nine different children
    by_id = {p.id: p for p in parents}
    for kid, pick in zip(kids, picks(3, 9, seed=11)):
        assert kid.parents == (parents[pick.a].id, parents[pick.b].id) or set(kid.parents) == {parents[pick.a].id, parents[pick.b].id}
        assert kid.seed == 11
        for i, x in enumerate(kid.embeds):
            sources = [by_id[g].embeds[i] for g in kid.parents]
            assert bool(((x == sources[0]) | (x == sources[1])).all())
    mutated = breed_brood(parents[:3], 9, seed=11, mutation=0.5, table_std=renderer.table_std)
    assert not any(same(a, b) for a, b in zip(kids, mutated))


def test_one_parent_gives_its_mutants(renderer, parents):
    kids = breed_brood(parents[:1], 4, seed=3, mutation=0.2, table_std=renderer.table_std)
    assert all(k.parents == (parents[0].id,) for k in kids)
    assert len({tuple(k.embeds[0].flatten().tolist()) for k in kids}) == 4
    for k in kids:  # start token and padding untouched
        assert torch.equal(k.embeds[0][0], parents[0].embeds[0][0])
        assert torch.equal(k.embeds[0][k.length + 1:], parents[0].embeds[0][k.length + 1:])


def test_noken_children_differ_only_in_the_slot(renderer, parents):
    template = renderer.template("an oil painting of [noken], museum lighting")
    kids = breed_brood(parents[:2], 6, seed=5, mutation=0.3, table_std=renderer.table_std, template=template)
    k = max(p.length for p in parents[:2])
    assert all(kid.length == k for kid in kids)
    start = 1 + int(template.prefix[0].shape[0])  # the slot's first position in the filled template
    rows = []
    for kid in kids:
        embeds, _, length = child_scene(kid, template).blend(0.0, 0.0)
        assert length == k
        rows.append(embeds)
    for enc in range(2):
        first = rows[0][enc]
        outside = torch.ones(first.shape[0], dtype=torch.bool)
        outside[start:start + k] = False
        for other in rows[1:]:
            assert torch.equal(other[enc][outside], first[outside])  # the template is shared
            assert not torch.equal(other[enc][start:start + k], first[start:start + k])  # the slot is not
    # the template's own tokens are where a plain prompt would put them
    plain = Scene((parents[0],) * 4, template).blend(0.0, 0.0)[0]
    assert torch.equal(plain[0][:start], rows[0][0][:start])


def job(child: int | None = None, size: int = 64, received: float = 0.0) -> FrameJob:
    return FrameJob(None, 0.0, 0.0, 0, FrameSettings(width=size, height=size), received=received,  # type: ignore[arg-type]
                    brood=None if child is None else "0" * 16, child=child)


def test_an_idle_scheduler_renders_a_backlog_in_one_batch_in_order():
    s = Scheduler(max_batch=8)
    s.add(1, one_shot=True)
    s.submit_all(1, [job(i) for i in range(6)])
    assert s.wait_s(now=10.0) == 0  # a backlog is as ready as a pad
    batch = s.schedule(now=10.0)
    assert [item.job.child for item in batch] == list(range(6))
    assert s.schedule(now=10.0) == [] and s.waiting == 0
    s.submit_all(1, [job(i) for i in range(11)])  # more than a batch: 8, then 3
    assert [len(s.schedule(now=10.0)), len(s.schedule(now=10.0))] == [8, 3]


def test_a_backlog_takes_its_turn_and_leaves_busy_pads_their_slots():
    s = Scheduler(max_batch=8)
    for pad in range(6):
        s.add(pad)
    s.add(99, one_shot=True)
    s.submit_all(99, [job(i) for i in range(6)])
    children: list[int] = []
    for _ in range(3):
        now = 100.0
        for pad in range(4):  # four pads want a frame now; two moved a moment ago and will again
            s.submit(pad, job(received=now - 0.01))
        for pad in (4, 5):
            s._last_submit[pad] = now - 0.02
        batch = s.schedule(now=now)
        mine = [item.job.child for item in batch if item.session_id == 99]
        assert [item.session_id for item in batch if item.session_id != 99] == [0, 1, 2, 3]
        assert len(mine) == 2  # its turn, plus the one slot the six pads leave over
        children += mine
    assert children == list(range(6))
    # pads that went quiet keep nothing: the backlog gets the whole batch
    s.submit_all(99, [job(i) for i in range(8)])
    assert len(s.schedule(now=200.0)) == 8


def test_the_pad_that_asked_for_a_brood_keeps_no_slot_from_it():
    s = Scheduler(max_batch=8)
    s.add(1)
    s.add(2, one_shot=True, peer=1)
    s.submit(1, job(received=50.0))
    assert len(s.schedule(now=50.0)) == 1
    s.submit_all(2, [job(i) for i in range(8)])
    assert len(s.schedule(now=50.1)) == 8  # its own pad just moved, but the brood is what it wants


def test_a_backlog_of_another_size_waits_its_turn():
    s = Scheduler(max_batch=4)
    s.add(1)
    s.add(2, one_shot=True)
    s.submit(1, job(size=128))
    s.submit_all(2, [job(i, size=64) for i in range(3)])
    assert [item.session_id for item in s.schedule(now=1.0)] == [1]
    assert [item.job.child for item in s.schedule(now=1.0)] == [0, 1, 2]


async def test_loop_renders_an_idle_brood_in_one_batch(renderer, parents):
    small = FrameSettings(width=64, height=64)
    kids = breed_brood(parents, 6, seed=1)
    loop = RenderLoop(renderer, max_batch=8)
    loop.start()
    try:
        with loop.open_backlog() as session:
            session.submit_all([FrameJob(child_scene(c), 0.0, 0.0, 0, small, brood="0" * 16, child=i)
                                for i, c in enumerate(kids)])
            outs = [await asyncio.wait_for(session.next(), 60) for _ in kids]
    finally:
        loop.stop()
    assert all(isinstance(o, FrameOutput) for o in outs)
    assert sorted(o.job.child for o in outs) == list(range(6))  # every child, none replaced by another
    assert {o.batch for o in outs} == {6}
    assert len({o.jpeg for o in outs}) == 6
