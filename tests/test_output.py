"""The output stage: uint8 frames → JPEG on the worker pool → the session's one-slot outbox, newest
wins; one-shot sessions get the array; failures pass through; closed sessions get nothing."""

from __future__ import annotations

import asyncio
import io
import threading

import numpy as np
from PIL import Image

from sdxl_breeder.engine.executor import RenderedFrame, RenderFailure
from sdxl_breeder.engine.metrics import Metrics
from sdxl_breeder.engine.output import FrameOutput, Outbox, OutputProcessor
from sdxl_breeder.engine.scheduler import FrameJob
from sdxl_breeder.engine.trace import Tracers
from sdxl_breeder.spec import FrameSettings

TIMEOUT = 60


def job(seq: int, quality: int = 80) -> FrameJob:
    return FrameJob(None, 0.25, 0.75, seq, FrameSettings(width=128, height=64, seed=3, quality=quality))  # type: ignore[arg-type]


def frame(seq: int, quality: int = 80, session_id: int = 1) -> RenderedFrame:
    yy, xx = np.mgrid[0:64, 0:128]  # smooth, so JPEG keeps it close
    pixels = np.stack([xx * 2, yy * 4, (xx + yy + 10 * seq) % 256], axis=-1).astype(np.uint8)
    return RenderedFrame(session_id, job(seq, quality), pixels, batch=2, render_ms=12.5)


def stage(tracers: Tracers | None = None) -> tuple[OutputProcessor, Metrics]:
    metrics = Metrics()
    return OutputProcessor(metrics, tracers or Tracers(), jpeg_workers=1), metrics  # one worker: in order


async def from_render_thread(fn) -> None:
    """Run `fn` on another thread, as the render thread calls the output stage."""
    t = threading.Thread(target=fn)
    t.start()
    await asyncio.to_thread(t.join)


async def test_a_pad_gets_its_frame_as_jpeg_with_what_the_header_needs():
    out, _ = stage()
    box = Outbox()
    out.register(1, asyncio.get_running_loop(), box, jpeg=True)
    try:
        await from_render_thread(lambda: out.process([frame(5, quality=95)]))
        got = await asyncio.wait_for(box.get(), TIMEOUT)
    finally:
        out.shutdown()
    assert isinstance(got, FrameOutput)
    assert (got.session_id, got.job.seq, got.batch, got.render_ms) == (1, 5, 2, 12.5)
    img = Image.open(io.BytesIO(got.jpeg))
    assert img.format == "JPEG" and img.size == (128, 64)
    decoded = np.asarray(img.convert("RGB")).astype(int)
    assert np.abs(decoded - frame(5).frame.astype(int)).mean() < 4  # the frame itself, up to JPEG loss


async def test_quality_is_the_sessions_setting():
    out, _ = stage()
    box = Outbox()
    out.register(1, asyncio.get_running_loop(), box, jpeg=True)
    sizes = []
    try:
        for q in (20, 95):
            await from_render_thread(lambda q=q: out.process([frame(1, quality=q)]))
            sizes.append(len((await asyncio.wait_for(box.get(), TIMEOUT)).jpeg))
    finally:
        out.shutdown()
    assert sizes[0] < sizes[1]


async def test_newest_wins_and_replaced_results_are_counted():
    metrics = Metrics()
    box = Outbox(on_replace=metrics.dropped.inc)
    for seq in range(5):
        box.put(FrameOutput(1, job(seq), 1, 1.0, b"jpeg", 0.0))
    got = await asyncio.wait_for(box.get(), TIMEOUT)
    assert got.job.seq == 4
    assert metrics.dropped._value.get() == 4
    box.put(FrameOutput(1, job(6), 1, 1.0, b"jpeg", 0.0))  # an empty slot: nothing replaced
    assert (await asyncio.wait_for(box.get(), TIMEOUT)).job.seq == 6
    assert metrics.dropped._value.get() == 4


async def test_one_shots_get_the_array_failures_pass_and_closed_sessions_get_nothing():
    out, _ = stage()
    loop = asyncio.get_running_loop()
    pad, one_shot, gone = Outbox(), Outbox(), Outbox()
    out.register(1, loop, pad, jpeg=True)
    out.register(2, loop, one_shot, jpeg=False)
    out.register(3, loop, gone, jpeg=True)
    out.unregister(3)
    try:
        results = [RenderFailure(1, job(1), "render failed: boom"), frame(2, session_id=2), frame(3, session_id=3)]
        await from_render_thread(lambda: out.process(results))
        failure = await asyncio.wait_for(pad.get(), TIMEOUT)
        raw = await asyncio.wait_for(one_shot.get(), TIMEOUT)
        await from_render_thread(lambda: out.process([frame(4, session_id=1)]))  # after the pool's work
        assert isinstance(await asyncio.wait_for(pad.get(), TIMEOUT), FrameOutput)
    finally:
        out.shutdown()
    assert isinstance(failure, RenderFailure) and failure.message == "render failed: boom"
    assert isinstance(raw, RenderedFrame) and raw.frame.shape == (64, 128, 3) and raw.frame.dtype == np.uint8
    assert gone._item is None


async def test_sent_frames_are_timed_and_traced():
    spans = []
    tracers = Tracers()
    tracers.add(spans.append)
    out, metrics = stage(tracers)
    box = Outbox()
    out.register(1, asyncio.get_running_loop(), box, jpeg=True)
    try:
        await from_render_thread(lambda: out.process([frame(7)]))
        got = await asyncio.wait_for(box.get(), TIMEOUT)
        out.sent(got)
    finally:
        out.shutdown()
    encode, send = spans
    assert (encode.name, send.name) == ("encode", "send")
    assert encode.jobs == send.jobs == (got.job,)
    assert encode.end == got.ready == send.start and send.end >= send.start
    assert metrics.e2e._sum.get() > 0


def test_jpeg_encoders_agree_and_the_pool_fits_the_machine():
    """Every JPEG encoder here gives a file PIL reads back close to the frame (4:2:0, as PIL
    writes by default); the server's encoder is the first of them; the pool scales with the CPUs."""
    from sdxl_breeder.engine.output import JPEG_ENCODERS, default_jpeg_workers, encode_image

    pixels = frame(1).frame
    assert "pil" in JPEG_ENCODERS and list(JPEG_ENCODERS)[0] == ("simplejpeg" if "simplejpeg" in JPEG_ENCODERS else "pil")
    for name, encode in JPEG_ENCODERS.items():
        back = np.asarray(Image.open(io.BytesIO(encode(pixels, 90))).convert("RGB")).astype(np.int16)
        assert back.shape == pixels.shape and np.abs(back - pixels).mean() < 3, name
    assert encode_image(pixels, "jpeg", 90) == next(iter(JPEG_ENCODERS.values()))(pixels, 90)
    assert [default_jpeg_workers(n) for n in (1, 2, 4, 16, 64)] == [2, 2, 2, 8, 8]
