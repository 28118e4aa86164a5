"""Walks to videos: one path (`walk_video`) fed by a frame source: a Renderer, the server's loop, a server.

The walk is resampled at the output frame rate and every frame is rendered with the walk's seed,
blend and (optional) corner seeds; the renderer is deterministic, so the same walk gives the same
frames. Played on a server, each frame is one `move`, awaited before the next. torch is imported
only by the offline source, so the live one runs in a light client.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterator, Protocol, Sequence

import numpy as np

from sdxl_breeder.spec import LIMITS, FrameSettings
from sdxl_breeder.walks.paths import MAX_WALK_FRAMES, WalkError, WalkPoint, WalkTooLong, resample
from sdxl_breeder.walks.walkfile import Walk
from sdxl_breeder.walks.video import MAX_GIF_FPS, Frame, VideoWriter, format_for_path

if TYPE_CHECKING:
    from sdxl_breeder.client import BreederClient
    from sdxl_breeder.model.genome import Genome
    from sdxl_breeder.model.renderer import FrameRequest, Renderer
    from sdxl_breeder.model.scene import Scene

GenomeLookup = Callable[[str], "Genome"]


def _lookup(genomes: GenomeLookup | None, genome_id: str, where: str) -> Genome:
    """A stored genome by id; a missing one is a WalkError naming the corner."""
    if genomes is None:
        raise WalkError(f"unknown genome {genome_id} in {where} (no genome store given; pass --data-dir)")
    try:
        genome = genomes(genome_id)
    except (LookupError, FileNotFoundError):  # e.g. store.NotFound, a KeyError
        genome = None
    if genome is None:
        raise WalkError(f"unknown genome {genome_id} in {where}")
    return genome


def scene_for_walk(walk: Walk, renderer: Renderer, genomes: GenomeLookup | None = None) -> Scene:
    """The walk's four corners (prompts embedded, genome ids looked up) and template as a Scene."""
    from sdxl_breeder.model.scene import scene_from_corners

    known = [None if c.genome is None else _lookup(genomes, c.genome, f"corners[{i}]") for i, c in enumerate(walk.corners)]
    return scene_from_corners(renderer, walk.corners, walk.template, known)


def walk_frames(walk: Walk, fps: float, max_frames: int = MAX_WALK_FRAMES) -> list[WalkPoint]:
    """The cursor positions of the video: round(duration × fps) of them, at least 1; WalkTooLong
    past `max_frames` (checked before any is made)."""
    if isinstance(fps, (int, float)) and (frames := walk.duration * fps) > max_frames:
        raise WalkTooLong(f"{walk.duration:g} s at {fps:g} fps is {frames:.0f} frames; the limit is {max_frames}")
    return resample(walk.points, fps)


def walk_settings(walk: Walk, width: int | None = None, height: int | None = None) -> FrameSettings:
    """The walk's frame settings at its own size or the one asked for, within the size limits."""
    settings = walk.settings(width, height)
    for name, value in (("width", settings.width), ("height", settings.height)):
        if (problem := LIMITS.check_size(name, value)) is not None:
            raise WalkError(problem)
    return settings


def check_batch(batch: int) -> None:
    if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
        raise WalkError(f"batch must be a positive integer, got {batch!r}")


def _requests(walk: Walk, scene: Scene, points: list[WalkPoint], width: int,
              height: int) -> Iterator[FrameRequest]:
    from sdxl_breeder.model.renderer import FrameRequest

    settings = walk.settings(width, height)
    for p in points:
        yield FrameRequest(scene, p.x, p.y, settings)


def render_walk(walk: Walk, renderer: Renderer, *, fps: float, width: int | None = None,
                height: int | None = None, batch: int = 4, genomes: GenomeLookup | None = None,
                progress: bool = False) -> Iterator[np.ndarray]:
    """Yield the walk's frames (uint8 HxWx3) in order, rendered `batch` at a time.

    Everything that can fail before rendering (fps, size, corners, template) fails here, when
    called, not at the first `next()`.
    """
    check_batch(batch)
    width = walk.width if width is None else width
    height = walk.height if height is None else height
    renderer.check_size(width, height)
    points = walk_frames(walk, fps)
    scene = scene_for_walk(walk, renderer, genomes)
    return _render(walk, renderer, scene, points, width, height, batch, progress)


def _render(walk: Walk, renderer: Renderer, scene: Scene, points: list[WalkPoint], width: int,
            height: int, batch: int, progress: bool) -> Iterator[np.ndarray]:
    from tqdm import tqdm

    with tqdm(total=len(points), unit="frame", desc="rendering", disable=not progress,
              leave=False) as bar:
        pending: list[FrameRequest] = []
        for cond in _requests(walk, scene, points, width, height):
            pending.append(cond)
            if len(pending) == batch:
                yield from renderer.render(pending)
                bar.update(len(pending))
                pending = []
        if pending:
            yield from renderer.render(pending)
            bar.update(len(pending))


class FrameSource(Protocol):
    """Where a walk's frames come from: a Renderer here, the server's render loop, or a server
    played one `move` at a time. `batch` points are asked for at once."""

    batch: int

    async def prepare(self, walk: Walk, settings: FrameSettings) -> None:
        """Resolve the corners and template; everything that can fail before rendering fails here."""

    async def render(self, points: Sequence[WalkPoint]) -> Sequence[Frame]:
        """The frames at `points`, in order."""


async def walk_video(walk: Walk, source: FrameSource, out: str | Path, *, fps: float,
                     width: int | None = None, height: int | None = None,
                     max_frames: int = MAX_WALK_FRAMES, progress: bool = False,
                     frames_done: Callable[[int], None] | None = None) -> dict[str, object]:
    """Render the walk into `out` (.mp4, .gif or a folder of PNGs): the one path from a walk to a
    video, for `render-walk`, `walk` and GET /api/walks/{id}/video.mp4 (and .gif).

    Returns {"frames", "path", "note", "width", "height", "fps"}; `note` says how the encoder
    changed the size (odd sizes in MP4), else None. Nothing is written unless the checks pass.
    `frames_done` hears how many frames are written after each batch (a server's progress).
    """
    from tqdm import tqdm

    out = Path(out)
    check_video_out(out, fps)
    settings = walk_settings(walk, width, height)
    points = walk_frames(walk, fps, max_frames)
    await source.prepare(walk, settings)
    out.parent.mkdir(parents=True, exist_ok=True)
    with VideoWriter(out, fps, settings.width, settings.height) as writer, \
            tqdm(total=len(points), unit="frame", desc="rendering", disable=not progress, leave=False) as bar:
        for i in range(0, len(points), source.batch):
            for frame in await source.render(points[i:i + source.batch]):
                await asyncio.to_thread(writer.write, frame)  # encoding must not stall a server's event loop
            bar.update(min(source.batch, len(points) - i))
            if frames_done is not None:
                frames_done(writer.frames_written)
    return {"frames": writer.frames_written, "path": str(out), "note": writer.adjustment_note,
            "width": writer.out_width, "height": writer.out_height, "fps": fps}


class RendererFrames:
    """Frames rendered here, deterministically, with a Renderer (offline: `render-walk`)."""

    def __init__(self, renderer: Renderer, genomes: GenomeLookup | None = None, batch: int = 4) -> None:
        check_batch(batch)
        self.renderer, self.genomes, self.batch = renderer, genomes, batch

    async def prepare(self, walk: Walk, settings: FrameSettings) -> None:
        self.scene = scene_for_walk(walk, self.renderer, self.genomes)
        self.settings = settings

    async def render(self, points: Sequence[WalkPoint]) -> Sequence[Frame]:
        from sdxl_breeder.model.renderer import FrameRequest

        return self.renderer.render([FrameRequest(self.scene, p.x, p.y, self.settings) for p in points])


class ServerFrames:
    """Frames played on a connected server, one awaited `move` each. Moves are not sent ahead:
    the server renders only the newest move, so that would skip frames."""

    batch = 1

    def __init__(self, client: BreederClient, quality: int = 95) -> None:
        self.client, self.quality = client, quality

    async def prepare(self, walk: Walk, settings: FrameSettings) -> None:
        s = settings
        await self.client.settings(width=s.width, height=s.height, seed=s.seed, blend=s.blend,
                                   quality=self.quality, corner_seeds=walk.corner_seeds)
        await self.client.set_corners([c.to_json() for c in walk.corners], walk.template)

    async def render(self, points: Sequence[WalkPoint]) -> Sequence[Frame]:
        return [(await self.client.move(p.x, p.y)).image.convert("RGB") for p in points]


def write_walk_video(walk: Walk, renderer: Renderer, out: str | Path, *, fps: float,
                     width: int | None = None, height: int | None = None, batch: int = 4,
                     genomes: GenomeLookup | None = None, progress: bool = False) -> dict[str, object]:
    """`walk_video` offline with `renderer`, `batch` frames at a time (blocking)."""
    source = RendererFrames(renderer, genomes, batch)
    return asyncio.run(walk_video(walk, source, out, fps=fps, width=width, height=height, progress=progress))


async def stream_walk_video(client: BreederClient, walk: Walk, out: str | Path, *, fps: float,
                            quality: int = 95, progress: bool = False) -> dict[str, object]:
    """`walk_video` played on a connected server (`sdxl-breeder walk`)."""
    return await walk_video(walk, ServerFrames(client, quality), out, fps=fps, progress=progress)


def check_video_out(out: str | Path, fps: float) -> None:
    """WalkError now, before any slow work, if `out` (and `fps`) cannot be written."""
    try:
        fmt = format_for_path(out)
    except ValueError as e:
        raise WalkError(str(e)) from None
    if fmt == "gif" and fps > MAX_GIF_FPS:
        raise WalkError(f"GIF cannot play faster than {MAX_GIF_FPS:g} fps (got {fps:g}); use .mp4 or a lower fps")
