"""Walks to videos: offline and deterministic with a Renderer, or live through a running server.

Offline, the walk is resampled at the output frame rate and every frame is rendered with the
walk's seed, blend and (optional) corner seeds; the renderer is deterministic, so the same walk
gives the same frames. Live, each frame is one `move` on a server, awaited before the next.
torch is imported only by the offline path, so the live one runs in a light client.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterator

import numpy as np

from sdxl_breeder.walks.video import MAX_GIF_FPS, VideoWriter, format_for_path
from sdxl_breeder.walks.paths import Walk, WalkError, WalkPoint, resample

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
    from sdxl_breeder.model.scene import Scene

    corners: list[Genome] = []
    for i, corner in enumerate(walk.corners):
        if corner.genome is not None:
            genome = _lookup(genomes, corner.genome, f"corners[{i}]")
            renderer.check_genome(genome)  # made with another model → one clear line
        else:
            genome = renderer.genome_from_prompt(str(corner.prompt))
        corners.append(genome)
    template = renderer.template(walk.template) if walk.template is not None else None
    return Scene((corners[0], corners[1], corners[2], corners[3]), template)


def walk_frames(walk: Walk, fps: float) -> list[WalkPoint]:
    """The cursor positions of the video: round(duration × fps) of them, at least 1."""
    return resample(walk.points, fps)


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
    if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
        raise WalkError(f"batch must be a positive integer, got {batch!r}")
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


def write_walk_video(walk: Walk, renderer: Renderer, out: str | Path, *, fps: float,
                     width: int | None = None, height: int | None = None, batch: int = 4,
                     genomes: GenomeLookup | None = None, progress: bool = False) -> dict[str, object]:
    """Render the walk into `out` (.mp4, .gif or a folder of PNGs).

    Returns {"frames", "path", "note", "width", "height", "fps"}; `note` says how the encoder
    changed the size (odd sizes in MP4), else None.
    """
    out = Path(out)
    check_video_out(out, fps)
    width = walk.width if width is None else width
    height = walk.height if height is None else height
    frames = render_walk(walk, renderer, fps=fps, width=width, height=height, batch=batch,
                         genomes=genomes, progress=progress)  # validates before any file exists
    out.parent.mkdir(parents=True, exist_ok=True)
    with VideoWriter(out, fps, width, height) as writer:
        for frame in frames:
            writer.write(frame)
    return {"frames": writer.frames_written, "path": str(out), "note": writer.adjustment_note,
            "width": writer.out_width, "height": writer.out_height, "fps": fps}


def check_video_out(out: str | Path, fps: float) -> None:
    """WalkError now, before any slow work, if `out` (and `fps`) cannot be written."""
    try:
        fmt = format_for_path(out)
    except ValueError as e:
        raise WalkError(str(e)) from None
    if fmt == "gif" and fps > MAX_GIF_FPS:
        raise WalkError(f"GIF cannot play faster than {MAX_GIF_FPS:g} fps (got {fps:g}); use .mp4 or a lower fps")


async def stream_walk_video(client: BreederClient, walk: Walk, out: str | Path, *, fps: float,
                            quality: int = 95, progress: bool = False) -> dict[str, object]:
    """Play the walk on a connected server, one awaited `move` per output frame, into `out`.

    Moves are not sent ahead: the server renders only the newest move, so that would skip
    frames. Returns the same dict as write_walk_video."""
    from tqdm import tqdm

    out = Path(out)
    check_video_out(out, fps)
    points = resample(walk.points, fps)
    await client.settings(width=walk.width, height=walk.height, seed=walk.seed, blend=walk.blend,
                          quality=quality, corner_seeds=walk.corner_seeds)
    await client.set_corners([c.to_json() for c in walk.corners], walk.template)
    out.parent.mkdir(parents=True, exist_ok=True)
    with VideoWriter(out, fps, walk.width, walk.height) as writer, \
            tqdm(total=len(points), unit="frame", desc="walk", disable=not progress, leave=False) as bar:
        for p in points:
            frame = await client.move(p.x, p.y)
            writer.write(frame.image.convert("RGB"))
            bar.update(1)
    return {"frames": writer.frames_written, "path": str(out), "note": writer.adjustment_note,
            "width": writer.out_width, "height": writer.out_height, "fps": fps}
