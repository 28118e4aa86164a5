"""The Starlette app: REST routes, the websocket endpoint, the page; the door is web/security.py.

Routes are thin: they validate (protocol/), call the service (service.py) and shape the reply.
Errors are JSON `{"type": "error", "code", "message"}` with a 4xx status; never a traceback.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.resources
import logging
import math
from typing import Any, AsyncIterator, Awaitable, Callable

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Mount, Route, WebSocketRoute
from starlette.staticfiles import StaticFiles
from starlette.websockets import WebSocket

from sdxl_breeder import protocol as p
from sdxl_breeder.engine.loop import encode_image
from sdxl_breeder.spec import FrameSettings
from sdxl_breeder.walks.cache import VideoSpec
from sdxl_breeder.walks.paths import WalkError
from sdxl_breeder.walks.walkfile import Walk
from sdxl_breeder.web.security import Security, SecurityMiddleware, error_response
from sdxl_breeder.web.quotas import ClientQuotas, GenomeQuota, SessionSlots
from sdxl_breeder.web.service import Breeder
from sdxl_breeder.web.videos import WalkVideos
from sdxl_breeder.web.ws import PadSocket

log = logging.getLogger("sdxl_breeder.app")

PAGE_DIR = str(importlib.resources.files("sdxl_breeder.static"))  # static/ in a checkout, package data in a wheel

TRY_AGAIN_LATER = 1013

STATUS = {
    p.ErrorCode.UNKNOWN_GENOME: 404,
    p.ErrorCode.UNKNOWN_WALK: 404,
    p.ErrorCode.UNKNOWN_BROOD: 404,
    p.ErrorCode.UNAUTHORIZED: 401,
    p.ErrorCode.TOO_LARGE: 413,
    p.ErrorCode.BUSY: 429,
    p.ErrorCode.RATE_LIMITED: 429,
    p.ErrorCode.STORE_FULL: 507,
    p.ErrorCode.RENDER_FAILED: 500,
    p.ErrorCode.INTERNAL: 500,
}


def error(code: p.ErrorCode, message: str, status: int | None = None) -> JSONResponse:
    return error_response(code, message, status or STATUS.get(code, 400))


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
    # SecurityMiddleware has already stopped a body past max_body_bytes while it streamed in
    body = await request.body()
    return p.parse_json(body, p.Limits(**{**limits.to_json(), "max_message_bytes": limits.max_body_bytes}))


def _query_number(request: Request, name: str, default: float, lo: float, hi: float) -> float:
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


def _query_int(request: Request, name: str, default: int, lo: int, hi: int) -> int:
    """A whole-number query parameter: 1.5 is refused, not truncated."""
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return default
    value = int(raw) if raw.isascii() and raw.lstrip("-").isdigit() and len(raw) <= 12 else None
    if value is None or not lo <= value <= hi:
        raise p.ProtocolError(p.ErrorCode.BAD_VALUE, f"query parameter {name} must be a whole number within [{lo}, {hi}], got {raw[:20]!r}")
    return value


def create_app(
    breeder: Breeder,
    security: Security = Security(),
    *,
    on_shutdown: Callable[[], Awaitable[None]] | None = None,
    pad_socket: Callable[[WebSocket, Breeder], PadSocket] = PadSocket,  # a cluster's sessions live elsewhere
) -> Starlette:
    limits = breeder.limits
    videos = WalkVideos(breeder)
    sessions = SessionSlots(limits.max_sessions)
    quotas = ClientQuotas(limits.max_genomes_per_minute)

    def quota(request: Request) -> GenomeQuota:
        return quotas.get(request.client.host if request.client else "")

    # ------------------------------------------------------------------ genomes
    async def create_genome(request: Request) -> Response:
        body = await _json_body(request, limits)
        if not isinstance(body, dict) or set(body) != {"prompt"}:
            raise p.ProtocolError(p.ErrorCode.BAD_VALUE, 'the body must be {"prompt": "..."}')
        return JSONResponse(await breeder.create_genome(p.parse_prompt(body["prompt"], limits), quota(request)), status_code=201)

    async def list_genomes(request: Request) -> Response:
        limit = _query_int(request, "limit", 200, 1, 1000)
        offset = _query_int(request, "offset", 0, 0, 10**9)
        return JSONResponse({"genomes": await breeder.list_genomes(limit, offset)})

    async def genome(request: Request) -> Response:
        gid = _genome_id(request)
        if request.method == "DELETE":
            await breeder.delete_genome(gid)
            return Response(status_code=204)
        return JSONResponse(await breeder.genome_info(gid))

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
        return JSONResponse(await breeder.breed(msg.parents, msg.seed, msg.mutation, quota(request)), status_code=201)

    async def render(request: Request) -> Response:
        req = p.parse_render_request(await _json_body(request, limits), limits)
        resolved = await breeder.scene(req.corners, req.template)
        settings = FrameSettings(req.width, req.height, req.seed, req.blend, req.quality, req.corner_seeds)  # type: ignore[arg-type]
        frame = await breeder.render(resolved.scene, req.x, req.y, settings)
        data = await asyncio.to_thread(encode_image, frame, req.format, req.quality)
        return Response(data, media_type="image/png" if req.format == "png" else "image/jpeg")

    # ------------------------------------------------------------------ broods
    def _evolution() -> Any:
        evolution = getattr(breeder, "evolution", None)
        if evolution is None:  # a cluster's front end has no render loop of its own
            raise p.ProtocolError(p.ErrorCode.BAD_VALUE, "broods are not available on a cluster yet (serve without --ray)")
        return evolution

    def _brood(request: Request) -> Any:
        try:
            brood_id = p.parse_genome_id(request.path_params["brood_id"], "brood id")
        except p.ProtocolError:
            raise p.ProtocolError(p.ErrorCode.UNKNOWN_BROOD, f"no brood {request.path_params['brood_id'][:40]!r}") from None
        return _evolution().api_book.get(brood_id)

    async def create_brood(request: Request) -> Response:
        req = p.parse_brood_request(await _json_body(request, limits), limits)
        evolution = _evolution()
        template = None if req.template is None else await evolution.template(req.template)
        settings = FrameSettings(width=req.width, height=req.height, quality=90)
        brood = await evolution.breed(req.parents, req.count, req.mutation, req.seed, settings, template=template)
        try:
            brood.jpegs.extend([out.jpeg async for out in evolution.draw(brood)])
        except RuntimeError as e:
            raise p.ProtocolError(p.ErrorCode.RENDER_FAILED, str(e)) from None
        evolution.api_book.add(brood)
        base = f"/api/broods/{brood.id}/children"
        children = [{"child": i, "url": f"{base}/{i}.jpg"} for i in range(brood.count)]
        return JSONResponse({**brood.message(), "children": children}, status_code=201)

    async def brood_child(request: Request) -> Response:
        brood = _brood(request)
        raw = request.path_params["child"]
        if not (raw.isdigit() and len(raw) <= 3):
            raise p.ProtocolError(p.ErrorCode.BAD_VALUE, f"child must be an index from 0 to {brood.count - 1}, got {raw[:20]!r}")
        index = int(raw)
        brood.child(index, "child")
        return Response(brood.jpegs[index], media_type="image/jpeg", headers={"Cache-Control": "max-age=3600"})

    async def select_brood(request: Request) -> Response:
        brood = _brood(request)
        children = p.parse_select_request(await _json_body(request, limits), limits)
        return JSONResponse({"genomes": await _evolution().select(brood, children)}, status_code=201)

    # ------------------------------------------------------------------ walks
    async def create_walk(request: Request) -> Response:
        body = await _json_body(request, limits)
        try:
            walk = Walk.from_json(body)
        except WalkError as e:
            raise p.ProtocolError(p.ErrorCode.BAD_VALUE, str(e)) from None
        return JSONResponse(await breeder.save_walk(walk, source="api"), status_code=201)

    async def list_walks(request: Request) -> Response:
        return JSONResponse({"walks": await breeder.list_walks()})

    async def get_walk(request: Request) -> Response:
        return JSONResponse(await breeder.walk_info(_walk_id(request)))

    async def video_spec(request: Request, fmt: str) -> VideoSpec:
        wid = _walk_id(request)
        fps = _query_number(request, "fps", 12.0, 1.0, limits.max_fps)
        width = _query_int(request, "width", 0, limits.min_size, limits.max_size) or None
        height = _query_int(request, "height", 0, limits.min_size, limits.max_size) or None
        return await videos.spec(wid, fps, width, height, fmt)

    async def walk_mp4(request: Request) -> Response:
        return await videos.file(await video_spec(request, "mp4"), request.headers)

    async def walk_gif(request: Request) -> Response:
        return await videos.file(await video_spec(request, "gif"), request.headers)

    async def walk_video_job(request: Request) -> Response:
        fmt = request.query_params.get("format") or "mp4"
        return videos.job(await video_spec(request, fmt), start=request.method == "POST")

    # ------------------------------------------------------------------ service
    async def healthz(request: Request) -> Response:
        health = breeder.health()
        return JSONResponse(health, status_code=200 if health["status"] == "ok" else 503)

    async def metrics(request: Request) -> Response:
        data, content_type = breeder.metrics(request.headers.get("accept"))
        return Response(data, headers={"Content-Type": content_type})

    async def config(request: Request) -> Response:
        return JSONResponse(breeder.config())

    async def websocket(ws: WebSocket) -> None:
        await ws.accept()  # SecurityMiddleware has checked the host, the token and the origin
        if not sessions.try_open():  # full: accepted, then closed with 1013 ("try again later") and why
            await ws.close(code=TRY_AGAIN_LATER, reason=sessions.refusal())
            return
        try:
            await pad_socket(ws, breeder).run()
        finally:
            sessions.close()

    # ------------------------------------------------------------------ wiring
    routes = [
        Route("/healthz", healthz),
        Route("/metrics", metrics),
        Route("/api/config", config),
        Route("/api/genomes", create_genome, methods=["POST"]),
        Route("/api/genomes", list_genomes, methods=["GET"]),
        Route("/api/genomes/{genome_id}", genome, methods=["GET", "DELETE"]),
        Route("/api/genomes/{genome_id}/thumbnail.jpg", thumbnail),
        Route("/api/genomes/{genome_id}/embedding.safetensors", embedding),
        Route("/api/breed", breed, methods=["POST"]),
        Route("/api/render", render, methods=["POST"]),
        Route("/api/broods", create_brood, methods=["POST"]),
        Route("/api/broods/{brood_id}/children/{child}.jpg", brood_child),
        Route("/api/broods/{brood_id}/select", select_brood, methods=["POST"]),
        Route("/api/walks", create_walk, methods=["POST"]),
        Route("/api/walks", list_walks, methods=["GET"]),
        Route("/api/walks/{walk_id}", get_walk),
        Route("/api/walks/{walk_id}/video.mp4", walk_mp4),  # GET, and HEAD with it
        Route("/api/walks/{walk_id}/video.gif", walk_gif),
        Route("/api/walks/{walk_id}/video", walk_video_job, methods=["GET", "POST"]),
        WebSocketRoute("/ws", websocket),
        Mount("/", StaticFiles(directory=PAGE_DIR, html=True), name="static"),
    ]

    async def protocol_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, p.ProtocolError)
        return error(exc.code, exc.message)

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
        middleware=[Middleware(SecurityMiddleware, security=security, max_body_bytes=limits.max_body_bytes)],
        exception_handlers={p.ProtocolError: protocol_error, HTTPException: http_error, Exception: internal_error},
        lifespan=lifespan,
    )
