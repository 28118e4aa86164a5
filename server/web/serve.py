"""`sdxl-breeder serve`: load the model, assemble store, render loop and app, run uvicorn."""

from __future__ import annotations

import asyncio
import errno
import logging
import socket
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from sdxl_breeder.model.options import ModelOptions

if TYPE_CHECKING:
    from sdxl_breeder.engine.loop import RenderLoop
    from sdxl_breeder.model.renderer import Renderer

log = logging.getLogger("sdxl_breeder")

BANNER = "!" * 78
HEAD_LIMIT_BYTES = 16 * 1024  # request line + headers
IDLE_TIMEOUT_S = 5  # an idle keep-alive connection
HEAD_TIMEOUT_S = 10  # to send a request's line and headers


@dataclass(frozen=True)
class ServeOptions(ModelOptions):
    """The model to load (ModelOptions) and how to serve it."""

    host: str = "127.0.0.1"
    port: int = 8000
    max_batch: int = 8
    data_dir: Path = Path("data")
    token: str | None = None
    insecure: bool = False
    allow_origins: tuple[str, ...] = ()
    allow_hosts: tuple[str, ...] = ()
    log_level: str = "info"
    compile: bool = False
    threads: int | None = None
    max_sessions: int = 256
    max_store_gb: float = 10.0
    drain_timeout: float = 30.0


class ServeError(RuntimeError):
    pass


def check_security(opts: ServeOptions) -> None:
    from sdxl_breeder.web.security import is_loopback

    if opts.token is not None and not opts.token.strip():
        raise ServeError("--token must not be empty (an empty token would let anyone in)")
    if any(not h.strip() for h in opts.allow_hosts):
        raise ServeError("--allow-host needs a host name, e.g. --allow-host breeder.local")
    if not is_loopback(opts.host) and opts.token is None and not opts.insecure:
        raise ServeError(
            f"--host {opts.host} exposes the server beyond this machine: give --token SECRET "
            "(clients then pass ?token=SECRET), or --insecure to run open on purpose"
        )


def bind(host: str, port: int) -> socket.socket:
    """The listening socket, bound before the (slow) model load so that a taken port or a wrong
    address fails in a second, with one line; uvicorn then serves on this very socket."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as e:
        raise ServeError(f"--host {host}: cannot resolve this address ({e.strerror})") from None
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn does: restart without waiting
        sock.bind(address)
        sock.listen(2048)
    except OSError as e:
        sock.close()
        if e.errno == errno.EADDRINUSE:
            raise ServeError(f"port {port} on {host} is already in use (another server?); stop it or pick another --port") from None
        if e.errno == errno.EACCES:
            raise ServeError(f"no permission to listen on port {port} (ports below 1024 need privileges); pick another --port") from None
        raise ServeError(f"cannot listen on {host}:{port} ({e.strerror or e})") from None
    sock.set_inheritable(True)
    return sock


def compile_renderer(renderer: "Renderer", loop: "RenderLoop", max_batch: int, cache_dir: Path) -> None:
    """torch.compile the renderer's stages for the batch buckets up to `max_batch` at the default
    frame size now, on the render thread (which owns the model and, on CUDA, its graphs), so the
    first pads don't wait; compiled artifacts are cached in `cache_dir` for the next start. On
    failure it logs and serves uncompiled."""
    from sdxl_breeder.model.compiled import compile_renderer as compile_stages
    from sdxl_breeder.spec import FrameSettings

    size = FrameSettings().width if renderer.name != "tiny" else 256
    log.info("torch.compile: batch sizes up to %d at %d² … (a first compile can take minutes)", max_batch, size)
    report = loop.call(
        lambda: compile_stages(renderer, max_batch=max_batch, width=size, height=size, cache_dir=cache_dir)
    ).result()
    if report.ok:
        cached = " (from the compile cache)" if report.cache_loaded else ""
        log.info("torch.compile: ready in %.1f s%s, batch buckets %s", report.seconds, cached, ",".join(map(str, report.buckets)))


def http_protocol() -> type:
    """uvicorn's h11 protocol with a deadline for request heads.

    uvicorn times out idle keep-alive connections, but not one that connects and then sends its
    request line and headers a byte at a time (or never): each connection gets HEAD_TIMEOUT_S to
    finish a request head, whatever trickles in meanwhile.
    """
    from uvicorn.protocols.http.h11_impl import H11Protocol

    class HeadDeadlineH11(H11Protocol):
        _deadline: asyncio.TimerHandle | None = None

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._arm()

        def on_response_complete(self) -> None:
            super().on_response_complete()
            if not self.transport.is_closing():
                self._arm()  # the next request on this connection gets its own deadline

        def handle_events(self) -> None:
            scope = self.scope
            super().handle_events()
            if self.scope is not scope and self._deadline is not None:  # a head arrived (a request or an upgrade)
                self._deadline.cancel()
                self._deadline = None

        def connection_lost(self, exc: Exception | None) -> None:
            if self._deadline is not None:
                self._deadline.cancel()
            super().connection_lost(exc)

        def _arm(self) -> None:
            if self._deadline is not None:
                self._deadline.cancel()
            self._deadline = self.loop.call_later(HEAD_TIMEOUT_S, self._expire)

        def _expire(self) -> None:
            self._deadline = None
            if not self.transport.is_closing():
                self.transport.close()

    return HeadDeadlineH11


def serve(opts: ServeOptions) -> None:
    import uvicorn

    from sdxl_breeder.web.app import create_app
    from sdxl_breeder.web.security import Security, redact_access_log
    from sdxl_breeder.engine.loop import RenderLoop
    from sdxl_breeder.protocol import Limits
    from sdxl_breeder.model.renderer import Renderer
    from sdxl_breeder.web.service import Breeder
    from sdxl_breeder.web.sockets import SHUTDOWN_GRACE_S, websocket_protocol
    from sdxl_breeder.store import Store

    check_security(opts)
    if not 1 <= opts.max_batch <= 64:
        raise ServeError("--max-batch must be within [1, 64]")
    if opts.max_sessions < 1:
        raise ServeError("--max-sessions must be at least 1")
    if not opts.max_store_gb > 0:
        raise ServeError("--max-store-gb must be positive")
    if not opts.drain_timeout > 0:
        raise ServeError("--drain-timeout must be positive")
    if opts.threads is not None:
        if opts.threads < 1:
            raise ServeError("--threads must be at least 1")
        import torch

        torch.set_num_threads(opts.threads)
    sock = bind(opts.host, opts.port)
    log.info("loading model %s …", opts.model)
    try:
        model = opts.load()
    except BaseException:
        sock.close()
        raise
    if model.warning:
        for line in (BANNER, f"WARNING: {model.warning}", BANNER):
            log.warning("%s", line)
    renderer = Renderer(model)
    loop = RenderLoop(renderer, max_batch=opts.max_batch)
    limits = Limits(max_batch=opts.max_batch, max_sessions=opts.max_sessions,
                    max_store_bytes=int(opts.max_store_gb * 2**30), drain_timeout_seconds=opts.drain_timeout)
    store = Store(opts.data_dir, max_bytes=limits.max_store_bytes)
    breeder = Breeder(renderer, loop, store, limits, model.warning)
    loop.start()
    if opts.compile:
        compile_renderer(renderer, loop, opts.max_batch, opts.data_dir / "compile-cache")

    async def shutdown() -> None:
        loop.stop()
        store.close()

    security = Security.for_bind(opts.host, opts.token, opts.allow_hosts, opts.allow_origins)
    if "*" in security.allowed_hosts:
        log.info("bound to every interface: any Host header is accepted (give --allow-host to name the ones served)")
    app = create_app(breeder, security, on_shutdown=shutdown)
    shown = "localhost" if opts.host in ("127.0.0.1", "::1") else opts.host
    port = sock.getsockname()[1]  # --port 0 picks a free one
    log.info(
        "SDXL Breeder on http://%s:%d/ (model %s on %s, %s; data in %s)",
        shown, port, model.name, model.device, str(model.dtype).replace("torch.", ""), opts.data_dir,
    )
    config = uvicorn.Config(
        app,
        host=opts.host,
        port=port,
        log_level=opts.log_level,
        ws_max_size=limits.max_message_bytes,
        ws_ping_interval=20,
        ws_per_message_deflate=False,  # frames are JPEG: deflating them again only costs time
        ws=websocket_protocol(limits.drain_timeout_seconds),  # stalled readers are cut off
        timeout_graceful_shutdown=SHUTDOWN_GRACE_S,  # shutdown ends whatever the clients do
        lifespan="on",
        # h11 caps an incomplete request's head; idle and half-sent heads are closed after a timeout
        http=http_protocol(),
        h11_max_incomplete_event_size=HEAD_LIMIT_BYTES,
        timeout_keep_alive=IDLE_TIMEOUT_S,
    )
    redact_access_log()  # after Config: it (re)configures uvicorn's loggers
    try:
        uvicorn.Server(config).run(sockets=[sock])
    finally:
        sock.close()
    sys.stdout.flush()
