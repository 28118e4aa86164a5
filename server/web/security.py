"""The server's door, as ASGI middleware: allowed hosts, the token, browser origins, body size, headers.

Like Starlette's `middleware/trustedhost.py`, one check for every route instead of a wrapper on
each. Order: the Host must be one the server is served as (DNS rebinding); paths under /api,
/metrics and /ws need the token; browsers (which send `Origin`) may change state or open the socket
only from an allowed origin; a request body stops at the limit while it streams in (413); every
response says `nosniff`, and the page may only be framed by itself.
"""

from __future__ import annotations

import hmac
import logging
import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from starlette.datastructures import Headers, MutableHeaders
from starlette.requests import HTTPConnection
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from starlette.websockets import WebSocket

from sdxl_breeder import protocol as p

LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "::1")
WILDCARD_BINDS = ("0.0.0.0", "::", "")  # bound to every interface: the server cannot know its names
SAFE_METHODS = ("GET", "HEAD", "OPTIONS")
POLICY_VIOLATION = 1008
HEADERS = {"X-Content-Type-Options": "nosniff"}
PAGE_CSP = (  # the page is same-origin ES modules, a canvas and a websocket: nothing else
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
    "media-src 'self' blob:; connect-src 'self'; object-src 'none'; base-uri 'self'; "
    "form-action 'self'; frame-ancestors 'self'"
)
TOKEN_HINT = "missing or wrong token (use ?token= or Authorization: Bearer)"


def is_loopback(host: str) -> bool:
    import ipaddress

    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def needs_token(path: str) -> bool:
    """The API, the metrics and the socket need the token; the page and /healthz do not."""
    return path in ("/api", "/metrics", "/ws") or path.startswith("/api/")


def _hostname(netloc: str) -> tuple[str, int | None] | None:
    """(lower-case name without brackets, port or None) of a Host header or URL netloc; None if garbled."""
    try:
        parts = urlsplit("//" + netloc)
        return (parts.hostname or "", parts.port)
    except ValueError:
        return None


@dataclass(frozen=True)
class Security:
    """Who may talk to the server: a token (None: none needed), hosts, extra browser origins."""

    token: str | None = None
    allow_origins: tuple[str, ...] = field(default_factory=tuple)
    allowed_hosts: tuple[str, ...] = LOOPBACK_HOSTS  # names; "*" any, "*.example.com" a domain

    def __post_init__(self) -> None:
        if self.token is not None and not self.token:
            raise ValueError("an empty token would accept ?token= with nothing after it")

    @classmethod
    def for_bind(cls, bind: str, token: str | None = None, allow_hosts: tuple[str, ...] = (),
                 allow_origins: tuple[str, ...] = ()) -> Security:
        """The hosts a server bound to `bind` is served as: loopback names, `bind` itself, and
        `allow_hosts`. Bound to every interface with no `allow_hosts`, any Host is accepted."""
        if bind in WILDCARD_BINDS and not allow_hosts:
            hosts: tuple[str, ...] = ("*",)
        else:
            extra = () if bind in WILDCARD_BINDS else (bind,)
            hosts = tuple(dict.fromkeys(h.lower().strip("[]") for h in (*LOOPBACK_HOSTS, *extra, *allow_hosts)))
        return cls(token, tuple(allow_origins), hosts)

    def host_ok(self, host_header: str) -> bool:
        parsed = _hostname(host_header)
        if parsed is None or not parsed[0]:
            return False
        name = parsed[0]
        return any(h == "*" or h == name or (h.startswith("*.") and name.endswith(h[1:])) for h in self.allowed_hosts)

    def token_ok(self, conn: HTTPConnection) -> bool:
        if self.token is None:
            return True
        given = conn.query_params.get("token")
        auth = conn.headers.get("authorization", "")
        if auth.lower().startswith("bearer "):
            given = auth[7:].strip()
        return given is not None and hmac.compare_digest(given.encode(), self.token.encode())

    def origin_ok(self, origin: str | None, host_header: str, scheme: str) -> bool:
        """Browsers send Origin; it must name a host the server is served as, on the port the
        request came to, unless allowed explicitly. Programs that send no Origin are not browsers
        and are let through (the token guards them)."""
        if origin is None:
            return True
        if "*" in self.allow_origins or origin in self.allow_origins:
            return True
        theirs = urlsplit(origin)
        ours = _hostname(host_header)
        if ours is None or theirs.scheme not in ("http", "https"):
            return False
        if "*" in self.allowed_hosts:  # any Host is served, so only the request's own one counts
            return theirs.netloc.lower() == host_header.lower()
        try:
            their_port = theirs.port or (443 if theirs.scheme == "https" else 80)
        except ValueError:
            return False
        our_port = ours[1] or (443 if scheme in ("https", "wss") else 80)
        return self.host_ok(theirs.netloc) and their_port == our_port

    def refusal(self, scope: Scope) -> tuple[int, str] | None:
        """(HTTP status, reason) when this request or socket may not pass, else None."""
        headers = Headers(scope=scope)
        host = headers.get("host", "")
        if not self.host_ok(host):
            return 403, f"host {host[:60]!r} is not one this server is served as (see --allow-host)"
        path = scope["path"]
        if needs_token(path) and not self.token_ok(HTTPConnection(scope)):
            return 401, TOKEN_HINT
        if scope["type"] == "websocket" or scope["method"] not in SAFE_METHODS:
            if not self.origin_ok(headers.get("origin"), host, scope.get("scheme", "http")):
                return 403, "origin not allowed (see --allow-origin)"
        return None


class BodyTooLarge(p.ProtocolError):
    def __init__(self, limit: int) -> None:
        super().__init__(p.ErrorCode.TOO_LARGE, f"request body is over {limit} bytes; the limit is {limit}")


class SecurityMiddleware:
    """Refuse what `Security` refuses; count bodies as they stream; add the safety headers."""

    def __init__(self, app: ASGIApp, security: Security, max_body_bytes: int) -> None:
        self.app = app
        self.security = security
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        refusal = self.security.refusal(scope)
        if scope["type"] == "websocket":
            if refusal is not None:
                # Accept, then close with 1008 and a reason: a refused handshake would only show the
                # client a bare HTTP 403. Nothing is read from or sent to a refused socket.
                ws = WebSocket(scope, receive, send)
                await ws.accept()
                await ws.close(code=POLICY_VIOLATION, reason=refusal[1])
                return
            await self.app(scope, receive, send)
            return
        send = with_headers(send, scope["path"])
        if refusal is not None:
            status, reason = refusal
            await error_response(p.ErrorCode.UNAUTHORIZED, reason, status)(scope, receive, send)
            return
        headers = Headers(scope=scope)
        if "transfer-encoding" in headers and "content-length" in headers:
            # which one frames the body? Proxies and servers disagree (request smuggling): refuse
            await error_response(p.ErrorCode.BAD_VALUE, "a request may not have both Content-Length and Transfer-Encoding", 400)(scope, receive, send)
            return
        length = headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > self.max_body_bytes:
            # the client said so up front: answer before reading a byte of it
            await error_response(p.ErrorCode.TOO_LARGE, f"request body is {int(length)} bytes; the limit is {self.max_body_bytes}", 413)(scope, receive, send)
            return
        await self.app(scope, self._counting(receive), send)

    def _counting(self, receive: Receive) -> Receive:
        seen = 0
        limit = self.max_body_bytes

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:  # stop here: the rest of a chunked flood is never buffered
                    raise BodyTooLarge(limit)
            return message

        return counted


def with_headers(send: Send, path: str) -> Send:
    """`send` that adds nosniff to every response, and the CSP to the page's."""
    page = not needs_token(path)

    async def sending(message: Message) -> None:
        if message["type"] == "http.response.start":
            headers = MutableHeaders(scope=message)
            for k, v in HEADERS.items():
                headers.setdefault(k, v)
            if page:
                headers.setdefault("Content-Security-Policy", PAGE_CSP)
        await send(message)

    return sending


def error_response(code: p.ErrorCode, message: str, status: int) -> JSONResponse:
    return JSONResponse(p.error_message(code, message), status_code=status, headers=HEADERS)


class RedactTokens(logging.Filter):
    """Access-log lines show `?token=***`, never the token itself."""

    _TOKEN = re.compile(r"((?:^|[?&])token=)[^&\s\"]*")

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(self._TOKEN.sub(r"\1***", a) if isinstance(a, str) else a for a in record.args)
        return True


def redact_access_log(*loggers: Any) -> None:
    for name in loggers or ("uvicorn.access", "uvicorn.error"):
        logging.getLogger(name).addFilter(RedactTokens())
