"""The render loop's front door: sessions submit and await typed results; one-shot renders; the
trace hook; pads counted; a session closed mid-flight."""

from __future__ import annotations

import asyncio
import io

import numpy as np
import pytest
from PIL import Image

from sdxl_breeder.engine.loop import FrameJob, FrameOutput, RenderFailure, RenderLoop
from sdxl_breeder.model.scene import Scene
from sdxl_breeder.spec import FrameSettings
from tests.conftest import PROMPTS

SMALL = FrameSettings(width=64, height=64, seed=5)
TIMEOUT = 120


@pytest.fixture(scope="module")
def scene(renderer):
    return Scene(tuple(renderer.genome_from_prompt(p) for p in PROMPTS))


@pytest.fixture
def loop(renderer):
    loop = RenderLoop(renderer, max_batch=4)
    loop.start()
    yield loop
    loop.stop()


async def test_a_pad_session_gets_its_newest_frame_as_jpeg(loop, scene):
    with loop.open_session() as pad:
        assert loop.session_count() == 1
        for seq in range(1, 4):
            pad.submit(FrameJob(scene, seq / 4, 0.5, seq, SMALL))
        out = await asyncio.wait_for(pad.next(), TIMEOUT)
        while out.job.seq < 3:  # an older frame may have been rendered meanwhile; 3 is the last
            out = await asyncio.wait_for(pad.next(), TIMEOUT)
        assert isinstance(out, FrameOutput) and out.job.seq == 3 and out.batch == 1
        assert Image.open(io.BytesIO(out.jpeg)).size == (64, 64)
        pad.sent(out)
    assert loop.session_count() == 0
    assert loop.metrics.e2e._sum.get() > 0


async def test_render_once_returns_the_frame_and_is_not_a_pad(loop, scene, renderer):
    frames = await asyncio.gather(*(loop.render_once(FrameJob(scene, x, 0.5, 0, SMALL)) for x in (0.0, 1.0)))
    for frame in frames:
        assert frame.shape == (64, 64, 3) and frame.dtype == np.uint8
    assert not np.array_equal(frames[0], frames[1])
    assert loop.session_count() == 0
    with pytest.raises(RuntimeError, match="multiple of 64"):
        await loop.render_once(FrameJob(scene, 0.5, 0.5, 0, FrameSettings(width=100, height=64)))


async def test_a_render_failure_reaches_the_pad_and_the_pad_goes_on(loop, scene):
    with loop.open_session() as pad:
        pad.submit(FrameJob(scene, 0.5, 0.5, 1, FrameSettings(width=100, height=64)))
        failure = await asyncio.wait_for(pad.next(), TIMEOUT)
        assert isinstance(failure, RenderFailure) and "multiple of 64" in failure.message
        pad.submit(FrameJob(scene, 0.5, 0.5, 2, SMALL))
        out = await asyncio.wait_for(pad.next(), TIMEOUT)
        assert isinstance(out, FrameOutput) and out.job.seq == 2


async def test_the_trace_hook_reports_every_stage_of_a_frame(loop, scene):
    spans = []
    with loop.traced(spans.append), loop.open_session() as pad:
        pad.submit(FrameJob(scene, 0.5, 0.5, 1, SMALL))
        out = await asyncio.wait_for(pad.next(), TIMEOUT)
        pad.sent(out)
    assert [s.name for s in spans] == ["queue", "render", "encode", "send"]
    assert all(s.jobs == (out.job,) and s.end >= s.start for s in spans)
    queue, render, encode, send = spans
    assert queue.start == out.job.received and queue.end == render.start
    assert render.end <= encode.start and encode.end == send.start == out.ready
    with loop.open_session() as pad:  # detached: no more spans
        pad.submit(FrameJob(scene, 0.5, 0.5, 2, SMALL))
        await asyncio.wait_for(pad.next(), TIMEOUT)
    assert len(spans) == 4


async def test_a_closed_session_is_left_alone(loop, scene):
    pad = loop.open_session()
    pad.submit(FrameJob(scene, 0.5, 0.5, 1, SMALL))
    pad.close()
    pad.submit(FrameJob(scene, 0.5, 0.5, 2, SMALL))  # ignored
    await loop.render_once(FrameJob(scene, 0.5, 0.5, 0, SMALL))  # it would have been ahead in line
    assert loop.metrics.frames._value.get() == 1  # only render_once's frame was rendered
    assert loop.session_count() == 0
