"""Walk videos over HTTP: the MP4 or GIF served like a file (HEAD, Range → 206, ETag → 304) and its
render job (POST starts it, GET reports progress). walks/cache.py keeps the files; the frames come through
the service (walks.render.walk_video with the server's render loop), beside the live pads."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from starlette.datastructures import Headers
from starlette.responses import FileResponse, JSONResponse, Response

from sdxl_breeder import protocol as p
from sdxl_breeder.walks.cache import MEDIA_TYPES, Progress, RenderVideo, VideoBusy, VideoCache, VideoSpec
from sdxl_breeder.walks.paths import WalkError, WalkTooLong
from sdxl_breeder.walks.walkfile import Walk
from sdxl_breeder.walks.render import walk_frames, walk_settings, walk_video
from sdxl_breeder.web.service import LoopFrames, Service


class WalkVideos:
    def __init__(self, service: Service) -> None:
        self.service = service
        limits = service.limits
        # A cluster's front end (cluster/front.py) has no data dir of its own: its videos go to a
        # temporary folder; its counters to its own registry.
        folder = getattr(service, "video_dir", None) or Path(tempfile.mkdtemp(prefix="sdxl-breeder-videos-"))
        registry = getattr(service, "metrics_registry", None) or getattr(getattr(service, "metrics", None), "registry", None)
        self.cache = VideoCache(folder, registry, max_bytes=limits.max_video_cache_bytes, max_jobs=limits.max_video_jobs)

    async def spec(self, walk_id: str, fps: float, width: int | None, height: int | None, fmt: str = "mp4") -> VideoSpec:
        """What the video depends on (its cache key); a bad or too long request fails here."""
        limits = self.service.limits
        if fmt not in MEDIA_TYPES:
            raise p.ProtocolError(p.ErrorCode.BAD_VALUE, f"query parameter format must be one of {', '.join(MEDIA_TYPES)}, got {fmt[:20]!r}")
        if fmt == "gif" and fps > limits.max_gif_fps:
            raise p.ProtocolError(p.ErrorCode.BAD_VALUE, f"a GIF plays at most {limits.max_gif_fps:g} fps (max_gif_fps), got {fps:g}; use MP4 or a lower fps")
        walk = await self.service.get_walk(walk_id)
        limit, max_frames = self._frame_limit(fmt)
        try:
            settings = walk_settings(walk, width, height)
            frames = len(walk_frames(walk, fps, max_frames))
        except WalkTooLong as e:
            raise p.ProtocolError(p.ErrorCode.TOO_LARGE, f"{e}; one {fmt.upper()} renders at most {max_frames} frames ({limit})") from None
        except WalkError as e:
            raise p.ProtocolError(p.ErrorCode.BAD_VALUE, str(e)) from None
        return VideoSpec(walk_id, walk.to_json(), self.service.model_name, fps, settings.width, settings.height, frames, fmt)

    async def file(self, spec: VideoSpec, headers: Headers) -> Response:
        """The video file, rendered first if it is not yet (sharing a render already running)."""
        etag = f'"{spec.key}"'  # the key covers everything the bytes depend on
        if etag in headers.get("if-none-match", ""):
            return Response(status_code=304, headers={"ETag": etag})
        try:
            path = await self.cache.get(spec, self._render(spec))
        except VideoBusy as e:
            raise p.ProtocolError(p.ErrorCode.BUSY, str(e)) from None
        return FileResponse(path, media_type=MEDIA_TYPES[spec.format], headers={
            "ETag": etag, "Cache-Control": "no-cache", "Content-Disposition": f'inline; filename="{spec.filename}"',
        })

    def job(self, spec: VideoSpec, start: bool) -> Response:
        """The render job: its progress, after starting it when `start` (202 while it renders)."""
        if not start:
            return JSONResponse(self.cache.status(spec))
        try:
            self.cache.start(spec, self._render(spec))
        except VideoBusy as e:
            raise p.ProtocolError(p.ErrorCode.BUSY, str(e)) from None
        status: dict[str, Any] = self.cache.status(spec)
        if status["status"] == "done":
            return JSONResponse(status)
        return JSONResponse(status, status_code=202, headers={"Location": status["status_url"]})

    def _frame_limit(self, fmt: str) -> tuple[str, int]:
        """The limit on one video's frames in `fmt`: its name and value (a GIF is many times the bytes of the same MP4)."""
        name = "max_gif_frames" if fmt == "gif" else "max_video_frames"
        return name, getattr(self.service.limits, name)

    def _render(self, spec: VideoSpec) -> RenderVideo:
        service = self.service
        _, max_frames = self._frame_limit(spec.format)

        async def render(out: Path, frames_done: Progress) -> None:  # `out` ends in .mp4 or .gif: the writer follows it
            await walk_video(Walk.from_json(spec.walk), LoopFrames(service), out, fps=spec.fps, width=spec.width,
                             height=spec.height, max_frames=max_frames, frames_done=frames_done)

        return render
