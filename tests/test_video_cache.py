"""The walk video cache: one render per (walk, model, fps, size) shared by every request, progress
while it renders, a bounded folder (least recently used first), failures reported and retried."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest
from prometheus_client import CollectorRegistry

from sdxl_breeder.walks.cache import VideoBusy, VideoCache, VideoSpec
from sdxl_breeder.walks.video import VideoWriter, probe

WALK = {"format": "sdxl-breeder-walk", "version": 1, "points": [[0, 0, 0], [1, 1, 1]]}


def spec(fps: float = 4.0, width: int = 64, walk: dict | None = None) -> VideoSpec:
    return VideoSpec("0123456789abcdef", walk or WALK, "tiny", fps, width, 64, frames=4)


class Renders:
    """A real MP4 writer, gated so the test decides when each frame is done."""

    def __init__(self) -> None:
        self.calls = 0
        self.gate = asyncio.Event()
        self.fail: Exception | None = None

    async def __call__(self, out: Path, progress) -> None:
        self.calls += 1
        with VideoWriter(out, 4, 64, 64) as writer:
            for i in range(4):
                if i == 2:
                    await self.gate.wait()
                    if self.fail is not None:
                        raise self.fail
                writer.write(np.full((64, 64, 3), 60 * i, np.uint8))
                progress(i + 1)


async def wait_until(predicate, timeout: float = 30.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        assert asyncio.get_running_loop().time() < deadline, "condition not reached"
        await asyncio.sleep(0.01)


async def test_one_render_is_shared_and_then_served_from_the_folder(tmp_path):
    registry = CollectorRegistry()
    cache, render = VideoCache(tmp_path / "videos", registry), Renders()
    s = spec()
    assert cache.status(s)["status"] == "none"
    first = asyncio.create_task(cache.get(s, render))
    second = asyncio.create_task(cache.get(s, render))
    await wait_until(lambda: cache.status(s)["frames_done"] == 2)
    status = cache.status(s)
    assert (status["status"], status["frames_done"], status["frames_total"]) == ("rendering", 2, 4)
    assert status["video_url"] == "/api/walks/0123456789abcdef/video.mp4?fps=4&width=64&height=64"
    render.gate.set()
    assert await first == await second == cache.path(s)
    assert render.calls == 1 and probe(cache.path(s))["frames"] == 4
    assert cache.status(s)["status"] == "done"
    assert await cache.get(s, render) == cache.path(s) and render.calls == 1
    assert registry.get_sample_value("breeder_video_renders_total") == 1
    assert registry.get_sample_value("breeder_video_cache_hits_total") == 1
    # another fps, size, walk or format is another video
    gif = VideoSpec(s.walk_id, s.walk, s.model, s.fps, s.width, s.height, s.frames, "gif")
    assert len({spec().key, spec(fps=5).key, spec(width=128).key, spec(walk={**WALK, "seed": 1}).key, gif.key}) == 5
    assert cache.path(gif).suffix == ".gif" and cache.status(gif)["status"] == "none"
    assert cache.status(gif)["video_url"] == "/api/walks/0123456789abcdef/video.gif?fps=4&width=64&height=64"
    with pytest.raises(ValueError, match="unknown video format 'avi'"):
        VideoSpec(s.walk_id, s.walk, s.model, s.fps, s.width, s.height, s.frames, "avi")


async def test_a_client_leaving_does_not_stop_the_render(tmp_path):
    cache, render = VideoCache(tmp_path, CollectorRegistry()), Renders()
    s = spec()
    leaving = asyncio.create_task(cache.get(s, render))
    await wait_until(lambda: cache.status(s)["frames_done"] == 2)
    leaving.cancel()
    render.gate.set()
    await wait_until(lambda: cache.status(s)["status"] == "done")
    assert render.calls == 1


async def test_failures_are_reported_then_retried(tmp_path):
    cache, render = VideoCache(tmp_path, CollectorRegistry()), Renders()
    s = spec()
    render.fail = ValueError("no genome 0123456789abcdef")
    render.gate.set()
    with pytest.raises(ValueError):
        await cache.get(s, render)
    status = cache.status(s)
    assert status["status"] == "failed" and status["error"] == "no genome 0123456789abcdef"
    assert not cache.path(s).exists() and [p.name for p in tmp_path.iterdir()] == []  # no half video
    render.fail = None
    assert await cache.get(s, render) == cache.path(s) and render.calls == 2


async def test_at_most_max_jobs_render_at_once(tmp_path):
    cache, render = VideoCache(tmp_path, CollectorRegistry(), max_jobs=1), Renders()
    cache.start(spec(), render)
    with pytest.raises(VideoBusy, match="the limit is 1"):
        cache.start(spec(fps=5), render)
    assert cache.start(spec(), render) is cache.start(spec(), render)  # the running one is shared
    render.gate.set()
    await wait_until(lambda: cache.status(spec())["status"] == "done")
    cache.start(spec(fps=5), render)  # a slot is free again


async def test_the_folder_stays_within_its_limit_least_recently_used_first(tmp_path):
    render = Renders()
    render.gate.set()
    probe_cache = VideoCache(tmp_path / "probe", CollectorRegistry())
    size = (await probe_cache.get(spec(), render)).stat().st_size
    cache = VideoCache(tmp_path / "videos", CollectorRegistry(), max_bytes=2 * size + size // 2)  # room for two
    a, b, c = spec(fps=4), spec(fps=5), spec(fps=6)
    await cache.get(a, render)
    await cache.get(b, render)
    await cache.get(a, render)  # a is now more recently used than b
    await cache.get(c, render)
    assert cache.path(a).exists() and cache.path(c).exists() and not cache.path(b).exists()
    assert sum(f.stat().st_size for f in (tmp_path / "videos").iterdir()) <= cache.max_bytes
