"""The Starlette app: REST routes, the websocket endpoint, the page, security checks.

Routes are thin: they validate (protocol.py), call the service (service.py) and shape the reply.
Errors are JSON `{"type": "error", "code", "message"}` with a 4xx status; never a traceback.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import importlib.resources
import ipaddress
import logging
import math
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, AsyncIterator, Awaitable, Callable
from urllib.parse import urlsplit

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import HTTPConnection, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Mount, Route, WebSocketRoute
from starlette.staticfiles import StaticFiles
from starlette.websockets import WebSocket

from sdxl_breeder import protocol as p
from sdxl_breeder.engine.loop import encode_image
from sdxl_breeder.spec import FrameSettings
from sdxl_breeder.web.service import Breeder
from sdxl_breeder.store import NotFound
from sdxl_breeder.walks.paths import Walk, WalkError, resample
from sdxl_breeder.web.ws import PadSocket

log = logging.getLogger("sdxl_breeder.app")

PAGE_DIR = str(importlib.resources.files("sdxl_breeder.static"))  # static/ in a checkout, package data in a wheel

MAX_BODY_BYTES = 4 * 1024 * 1024  # REST request bodies (a long walk file is ~1 MiB)
MAX_VIDEO_FRAMES = 3600  # frames one /video.mp4 request may render
MAX_VIDEO_FPS = 60.0
POLICY_VIOLATION = 1008

STATUS = {
    p.ErrorCode.UNKNOWN_GENOME: 404,
    p.ErrorCode.UNKNOWN_WALK: 404,
    p.ErrorCode.UNAUTHORIZED: 401,
    p.ErrorCode.TOO_LARGE: 413,
    p.ErrorCode.RENDER_FAILED: 500,
    p.ErrorCode.INTERNAL: 500,
}


@dataclass(frozen=True)
class Security:
    token: str | None = None
    allow_origins: tuple[str, ...] = field(default_factory=tuple)

    def token_ok(self, conn: HTTPConnection) -> bool:
        if self.token is None:
            return True
        given = conn.query_params.get("token")
        auth = conn.headers.get("authorization", "")
        if auth.lower().startswith("bearer "):
            given = auth[7:].strip()
        return given is not None and hmac.compare_digest(given.encode(), self.token.encode())

    def origin_ok(self, conn: HTTPConnection) -> bool:
        """Browsers send Origin; it must be the page's own origin unless allowed explicitly.
        Programs that send no Origin are not browsers and are let through (the token guards them)."""
        origin = conn.headers.get("origin")
        if origin is None:
            return True
        if "*" in self.allow_origins or origin in self.allow_origins:
            return True
        return urlsplit(origin).netloc == conn.headers.get("host", "")


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def error(code: p.ErrorCode, message: str, status: int | None = None) -> JSONResponse:
    return JSONResponse(p.error_message(code, message), status_code=status or STATUS.get(code, 400))


def _genome_id(request: Request) -> str:
    try:
        return p.parse_genome_id(request.path_params["genome_id"], "genome id")
    except p.ProtocolError:
        raise p.ProtocolError(p.ErrorCode.UNKNOWN_GENOME, f"no genome {request.path_params['genome_id'][:40]!r}") from None


def _walk_id(request: Request) -> str:
    try:
        return p.parse_genome_id(request.path_params["walk_id"], "walk id")
    except p.ProtocolError:
        raise p.ProtocolError(p.ErrorCode.UNKNOWN_WALK, f"no walk {request.path_params['walk_id'][:40]!r}") from None


async def _json_body(request: Request, limits: p.Limits) -> Any:
    body = await request.body()
    if len(body) > MAX_BODY_BYTES:
        raise p.ProtocolError(p.ErrorCode.TOO_LARGE, f"request body is {len(body)} bytes; the limit is {MAX_BODY_BYTES}")
    deep = p.Limits(**{**limits.to_json(), "max_message_bytes": MAX_BODY_BYTES})
    return p.parse_json(body, deep)


def _query_number(request: Request, name: str, default: float | None, lo: float, hi: float) -> float | None:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not (lo <= value <= hi):
        raise p.ProtocolError(p.ErrorCode.BAD_VALUE, f"query parameter {name} must be a number within [{lo:g}, {hi:g}], got {raw[:20]!r}")
    return value


def create_app(
    breeder: Breeder,
    security: Security = Security(),
    *,
    on_shutdown: Callable[[], Awaitable[None]] | None = None,
    pad_socket: Callable[[WebSocket, Breeder], PadSocket] = PadSocket,  # a cluster's sessions live elsewhere
) -> Starlette:
    limits = breeder.limits

    # ------------------------------------------------------------------ genomes
    async def create_genome(request: Request) -> Response:
        body = await _json_body(request, limits)
        if not isinstance(body, dict) or set(body) != {"prompt"}:
            raise p.ProtocolError(p.ErrorCode.BAD_VALUE, 'the body must be {"prompt": "..."}')
        prompt = p.parse_prompt(body["prompt"], limits)
        genome = await breeder.genome_for_prompt(prompt)
        return JSONResponse(await asyncio.to_thread(breeder.store.genome_info, genome.id), status_code=201)

    async def list_genomes(request: Request) -> Response:
        limit = int(_query_number(request, "limit", 200, 1, 1000))  # type: ignore[arg-type]
        offset = int(_query_number(request, "offset", 0, 0, 10**9))  # type: ignore[arg-type]
        return JSONResponse({"genomes": await asyncio.to_thread(breeder.store.list_genomes, limit, offset)})

    async def genome(request: Request) -> Response:
        gid = _genome_id(request)
        try:
            if request.method == "DELETE":
                await asyncio.to_thread(breeder.store.delete_genome, gid)
                return Response(status_code=204)
            return JSONResponse(await asyncio.to_thread(breeder.store.genome_info, gid))
        except NotFound:
            raise p.ProtocolError(p.ErrorCode.UNKNOWN_GENOME, f"no genome {gid}") from None

    async def thumbnail(request: Request) -> Response:
        jpeg = await breeder.thumbnail(_genome_id(request))
        return Response(jpeg, media_type="image/jpeg", headers={"Cache-Control": "max-age=3600"})

    async def embedding(request: Request) -> Response:
        gid = _genome_id(request)
        data = await breeder.textual_inversion(gid)
        return Response(
            data,
            media_type="application/octet-stream",
            headers={"Content-Disposition": f'attachment; filename="noken-{gid}.safetensors"'},
        )

    async def breed(request: Request) -> Response:
        msg = p.parse_breed_request(await _json_body(request, limits), limits)
        return JSONResponse(await breeder.breed(msg.parents, msg.seed, msg.mutation), status_code=201)

    async def render(request: Request) -> Response:
        req = p.parse_render_request(await _json_body(request, limits), limits)
        resolved = await breeder.scene(req.corners, req.template)
        settings = FrameSettings(req.width, req.height, req.seed, req.blend, req.quality, req.corner_seeds)  # type: ignore[arg-type]
        frame = await breeder.render(resolved.scene, req.x, req.y, settings)
        data = await asyncio.to_thread(encode_image, frame, req.format, req.quality)
        return Response(data, media_type="image/png" if req.format == "png" else "image/jpeg")

    # ------------------------------------------------------------------ walks
    async def create_walk(request: Request) -> Response:
        body = await _json_body(request, limits)
        try:
            walk = Walk.from_json(body)
        except WalkError as e:
            raise p.ProtocolError(p.ErrorCode.BAD_VALUE, str(e)) from None
        for gid in walk.genome_ids():
            await breeder.get_genome(gid)
        info = await asyncio.to_thread(breeder.store.put_walk, walk, source="api")
        return JSONResponse(info, status_code=201)

    async def list_walks(request: Request) -> Response:
        return JSONResponse({"walks": await asyncio.to_thread(breeder.store.list_walks)})

    async def get_walk(request: Request) -> Response:
        wid = _walk_id(request)
        try:
            walk = await asyncio.to_thread(breeder.store.get_walk, wid)
            info = await asyncio.to_thread(breeder.store.walk_info, wid)
        except NotFound:
            raise p.ProtocolError(p.ErrorCode.UNKNOWN_WALK, f"no walk {wid}") from None
        return JSONResponse({**info, "walk": walk.to_json()})

    async def walk_video(request: Request) -> Response:
        from sdxl_breeder.walks.video import VideoWriter

        wid = _walk_id(request)
        try:
            walk = await asyncio.to_thread(breeder.store.get_walk, wid)
        except NotFound:
            raise p.ProtocolError(p.ErrorCode.UNKNOWN_WALK, f"no walk {wid}") from None
        fps = _query_number(request, "fps", 12.0, 1.0, MAX_VIDEO_FPS)
        width = int(_query_number(request, "width", walk.width, limits.min_size, limits.max_size))  # type: ignore[arg-type]
        height = int(_query_number(request, "height", walk.height, limits.min_size, limits.max_size))  # type: ignore[arg-type]
        for name, v in (("width", width), ("height", height)):
            if v % limits.size_multiple:
                raise p.ProtocolError(p.ErrorCode.BAD_VALUE, f"{name} must be a multiple of {limits.size_multiple}")
        points = resample(walk.points, fps)  # type: ignore[arg-type]
        if len(points) > MAX_VIDEO_FRAMES:
            raise p.ProtocolError(p.ErrorCode.TOO_LARGE, f"{len(points)} frames; one video request renders at most {MAX_VIDEO_FRAMES}")
        resolved = await breeder.scene(
            [p.Corner(prompt=c.prompt, genome=c.genome) for c in walk.corners], walk.template
        )
        settings = walk.settings(width, height)
        chunk = max(1, limits.max_batch // 2)  # leave room in each batch for live pads
        with tempfile.TemporaryDirectory(prefix="breeder-video-") as tmp:
            path = Path(tmp) / "walk.mp4"
            with VideoWriter(path, fps, width, height) as writer:  # type: ignore[arg-type]
                for i in range(0, len(points), chunk):
                    part = points[i : i + chunk]
                    frames = await asyncio.gather(*(breeder.render(resolved.scene, pt.x, pt.y, settings) for pt in part))
                    for frame in frames:
                        await asyncio.to_thread(writer.write, frame)
            data = path.read_bytes()
        return Response(data, media_type="video/mp4", headers={"Content-Disposition": f'inline; filename="walk-{wid}.mp4"'})

    # ------------------------------------------------------------------ service
    async def healthz(request: Request) -> Response:
        ok = breeder.loop.error is None
        return JSONResponse(
            {"status": "ok" if ok else "failed", "model": breeder.model_name, "sessions": breeder.loop.session_count(), "warning": breeder.warning},
            status_code=200 if ok else 503,
        )

    async def metrics(request: Request) -> Response:
        return Response(generate_latest(breeder.loop.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    async def config(request: Request) -> Response:
        return JSONResponse({"model": breeder.model_name, "warning": breeder.warning, "limits": limits.to_json(), "version": p.PROTOCOL_VERSION})

    async def websocket(ws: WebSocket) -> None:
        refusal = None
        if not security.token_ok(ws):
            refusal = "missing or wrong token (use ?token= or Authorization: Bearer)"
        elif not security.origin_ok(ws):
            refusal = "origin not allowed (see --allow-origin)"
        await ws.accept()
        if refusal is not None:
            # Accept, then close with 1008 and a reason: a refused handshake would only show the
            # client a bare HTTP 403. Nothing is read from or sent to a refused socket.
            await ws.close(code=POLICY_VIOLATION, reason=refusal)
            return
        await pad_socket(ws, breeder).run()

    # ------------------------------------------------------------------ wiring
    def guarded(handler: Callable[[Request], Awaitable[Response]]) -> Callable[[Request], Awaitable[Response]]:
        async def wrapper(request: Request) -> Response:
            if not security.token_ok(request):
                return error(p.ErrorCode.UNAUTHORIZED, "missing or wrong token (use ?token= or Authorization: Bearer)")
            if request.method != "GET" and not security.origin_ok(request):
                return error(p.ErrorCode.UNAUTHORIZED, "origin not allowed", 403)
            try:
                return await handler(request)
            except p.ProtocolError as e:
                return error(e.code, e.message)

        return wrapper

    routes = [
        Route("/healthz", healthz),
        Route("/metrics", guarded(metrics)),
        Route("/api/config", guarded(config)),
        Route("/api/genomes", guarded(create_genome), methods=["POST"]),
        Route("/api/genomes", guarded(list_genomes), methods=["GET"]),
        Route("/api/genomes/{genome_id}", guarded(genome), methods=["GET", "DELETE"]),
        Route("/api/genomes/{genome_id}/thumbnail.jpg", guarded(thumbnail)),
        Route("/api/genomes/{genome_id}/embedding.safetensors", guarded(embedding)),
        Route("/api/breed", guarded(breed), methods=["POST"]),
        Route("/api/render", guarded(render), methods=["POST"]),
        Route("/api/walks", guarded(create_walk), methods=["POST"]),
        Route("/api/walks", guarded(list_walks), methods=["GET"]),
        Route("/api/walks/{walk_id}", guarded(get_walk)),
        Route("/api/walks/{walk_id}/video.mp4", guarded(walk_video)),
        WebSocketRoute("/ws", websocket),
    ]
    routes.append(Mount("/", StaticFiles(directory=PAGE_DIR, html=True), name="static"))

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        code = p.ErrorCode.UNKNOWN_TYPE if exc.status_code in (404, 405) else p.ErrorCode.BAD_VALUE
        return error(code, str(exc.detail), exc.status_code)

    async def internal_error(request: Request, exc: Exception) -> Response:
        log.exception("unhandled error on %s", request.url.path, exc_info=exc)
        return error(p.ErrorCode.INTERNAL, f"internal error ({type(exc).__name__})", 500)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        if on_shutdown is not None:
            await on_shutdown()

    return Starlette(
        routes=routes,
        exception_handlers={HTTPException: http_error, Exception: internal_error},
        lifespan=lifespan,
    )
