"""Rendered walk videos, kept as files in the data dir: each (walk, model, fps, size, format)
renders once, in one job that every request for it shares, and is then served like any file.

The folder is bounded by MAX_VIDEO_CACHE_BYTES (the least recently used videos go first) and at
most MAX_VIDEO_JOBS videos render at once, since they share the render loop with live pads.
No torch here: the render itself is a function the server passes in.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Awaitable, Callable

from prometheus_client import CollectorRegistry, Counter, Gauge

log = logging.getLogger("sdxl_breeder.videos")

MAX_VIDEO_CACHE_BYTES = 1 << 30  # 1 GiB of MP4s and GIFs in DATA_DIR/videos
MAX_VIDEO_JOBS = 2  # videos rendering at the same time
RENDER_VERSION = 1  # part of every key: bump it when the same walk would render other frames
MEDIA_TYPES = {"mp4": "video/mp4", "gif": "image/gif"}  # the formats a server renders walks to

Progress = Callable[[int], None]  # called with the number of frames written so far
RenderVideo = Callable[[Path, Progress], Awaitable[None]]  # writes the video at the path (atomically; its suffix names the format)


class VideoBusy(RuntimeError):
    """MAX_VIDEO_JOBS other videos are rendering; try again when one is done."""


@dataclass(frozen=True)
class VideoSpec:
    """One video of a walk: what its frames depend on, and so its cache key."""

    walk_id: str
    walk: dict[str, Any]  # the walk file's JSON (corners, template, seed, blend, points …)
    model: str
    fps: float
    width: int
    height: int
    frames: int
    format: str = "mp4"  # a key of MEDIA_TYPES

    def __post_init__(self) -> None:
        if self.format not in MEDIA_TYPES:
            raise ValueError(f"unknown video format {self.format!r}; choose one of {', '.join(MEDIA_TYPES)}")

    @property
    def key(self) -> str:
        text = json.dumps([RENDER_VERSION, self.walk, self.model, self.fps, self.width, self.height, self.format], sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:32]

    @property
    def query(self) -> str:
        return f"fps={self.fps:g}&width={self.width}&height={self.height}"

    @property
    def filename(self) -> str:
        return f"walk-{self.walk_id}.{self.format}"


@dataclass
class VideoJob:
    spec: VideoSpec
    status: str = "rendering"  # rendering → done | failed
    frames_done: int = 0
    error: str | None = None
    started: float = field(default_factory=time.monotonic)
    task: asyncio.Task[Path] | None = None

    def to_json(self) -> dict[str, Any]:
        s = self.spec
        job_query = s.query if s.format == "mp4" else f"{s.query}&format={s.format}"
        return {
            "walk": s.walk_id, "status": self.status, "frames_done": self.frames_done, "frames_total": s.frames,
            "format": s.format, "fps": s.fps, "width": s.width, "height": s.height, "error": self.error,
            "status_url": f"/api/walks/{s.walk_id}/video?{job_query}",
            "video_url": f"/api/walks/{s.walk_id}/video.{s.format}?{s.query}",
        }


class VideoCache:
    def __init__(self, folder: Path, registry: CollectorRegistry | None = None, *,
                 max_bytes: int = MAX_VIDEO_CACHE_BYTES, max_jobs: int = MAX_VIDEO_JOBS) -> None:
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        for leftover in self.folder.glob(".*"):  # temporary files of renders a crash interrupted
            leftover.unlink(missing_ok=True)
        self.max_bytes, self.max_jobs = max_bytes, max_jobs
        self._jobs: dict[str, VideoJob] = {}
        self._used: dict[str, float] = {}  # key → last use; ETags come from the file, so no touching it
        try:
            self._metrics(registry)
        except ValueError:  # another cache counts into this registry already (the bench builds apps on one loop)
            self._metrics(CollectorRegistry())
        self.size.set(sum(f.stat().st_size for f in self._files()))

    def _metrics(self, registry: CollectorRegistry | None) -> None:
        self.renders = Counter("breeder_video_renders", "Walk videos rendered (a cached video is not rendered again)", registry=registry)
        self.hits = Counter("breeder_video_cache_hits", "Walk video requests served from the cache", registry=registry)
        self.size = Gauge("breeder_video_cache_bytes", "Bytes of rendered walk videos kept", registry=registry)

    def path(self, spec: VideoSpec) -> Path:
        return self.folder / f"{spec.key}.{spec.format}"

    def _files(self) -> list[Path]:
        return [f for fmt in MEDIA_TYPES for f in self.folder.glob(f"*.{fmt}")]

    def cached(self, spec: VideoSpec) -> Path | None:
        """The rendered file, or None; counts as a use (and a hit) when it is there."""
        path = self.path(spec)
        if not path.is_file():
            return None
        self._used[spec.key] = time.time()
        self.hits.inc()
        return path

    def status(self, spec: VideoSpec) -> dict[str, Any]:
        """The job's state; `"status": "none"` when it was never asked for (or was evicted)."""
        if self.path(spec).is_file():
            return {**VideoJob(spec, "done", spec.frames).to_json(), "bytes": self.path(spec).stat().st_size}
        job = self._jobs.get(spec.key)
        return job.to_json() if job is not None else {**VideoJob(spec, "none").to_json()}

    def start(self, spec: VideoSpec, render: RenderVideo) -> VideoJob:
        """The job rendering `spec`: the running one if there is one, else a new one."""
        if self.path(spec).is_file():
            return VideoJob(spec, "done", spec.frames)
        job = self._jobs.get(spec.key)
        if job is not None and job.status == "rendering":
            return job
        running = sum(1 for j in self._jobs.values() if j.status == "rendering")
        if running >= self.max_jobs:
            raise VideoBusy(f"{running} videos are rendering (the limit is {self.max_jobs}); try again when one is done")
        job = VideoJob(spec)
        job.task = asyncio.create_task(self._run(job, render), name=f"video-{spec.key}")
        job.task.add_done_callback(lambda t: t.cancelled() or t.exception())  # failures live in job.error
        self._jobs = {k: j for k, j in self._jobs.items() if j.status == "rendering"}  # forget finished ones
        self._jobs[spec.key] = job
        return job

    async def get(self, spec: VideoSpec, render: RenderVideo) -> Path:
        """The video's file, rendering it first if needed (sharing a render already running).
        A client that goes away does not stop the render: others may be waiting for it."""
        path = self.cached(spec)
        if path is not None:
            return path
        job = self.start(spec, render)
        if job.task is None:
            return self.path(spec)
        return await asyncio.shield(job.task)

    async def _run(self, job: VideoJob, render: RenderVideo) -> Path:
        out = self.path(job.spec)

        def progress(frames: int) -> None:
            job.frames_done = frames

        t = time.monotonic()
        try:
            await render(out, progress)
        except BaseException as e:
            job.status, job.error = "failed", str(e) or type(e).__name__
            raise
        job.status, job.frames_done = "done", job.spec.frames
        self.renders.inc()
        self._used[job.spec.key] = time.time()
        log.info("rendered walk %s %s (%d frames, %d×%d, fps %g) in %.1f s", job.spec.walk_id, job.spec.format.upper(),
                 job.spec.frames, job.spec.width, job.spec.height, job.spec.fps, time.monotonic() - t)
        self._evict(keep=out)
        return out

    def _evict(self, keep: Path) -> None:
        files = [(f, f.stat()) for f in self._files()]
        total = sum(st.st_size for _, st in files)
        for f, st in sorted(files, key=lambda fs: self._used.get(fs[0].stem, fs[1].st_mtime)):
            if total <= self.max_bytes:
                break
            if f != keep:
                f.unlink(missing_ok=True)
                self._used.pop(f.stem, None)
                total -= st.st_size
        self.size.set(total)
