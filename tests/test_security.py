"""Tests for sdxl_breeder.web.security: hosts, token, origins, body size, headers, redacted logs.

The middleware on a tiny inline app (Starlette's TestClient), then the real server on loopback
with raw sockets, httpx and websockets: DNS rebinding, a chunked flood, conflicting framing,
a request head that never ends, the access log.
"""

from __future__ import annotations

import asyncio
import json
import logging
import select
import socket
import time

import httpx
import pytest
import websockets
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Route, WebSocketRoute
from starlette.testclient import TestClient
from starlette.websockets import WebSocket, WebSocketDisconnect

from sdxl_breeder import protocol as p
from sdxl_breeder.cli import main
from sdxl_breeder.web.security import RedactTokens, Security, SecurityMiddleware
from tests.live import LiveServer, wait_for

TIMEOUT = 60


# --------------------------------------------------------------------------- the rules
def test_default_hosts_are_the_loopback_names():
    s = Security()
    for host in ("localhost:8000", "127.0.0.1:8000", "[::1]:8000", "LOCALHOST", "127.0.0.1"):
        assert s.host_ok(host), host
    for host in ("evil.example:8000", "localhost.evil.example", "", "127.0.0.2", "[::1", "a:b:c"):
        assert not s.host_ok(host), host


def test_hosts_for_a_bind():
    assert Security.for_bind("127.0.0.1").allowed_hosts == ("localhost", "127.0.0.1", "::1")
    named = Security.for_bind("192.168.1.5", allow_hosts=("breeder.local", "*.example.com"))
    assert named.host_ok("192.168.1.5:80") and named.host_ok("breeder.local") and named.host_ok("a.example.com:1")
    assert not named.host_ok("example.com") and not named.host_ok("evil.example")
    everywhere = Security.for_bind("0.0.0.0")
    assert everywhere.host_ok("anything.example:8000")  # the server cannot know its names
    assert not Security.for_bind("0.0.0.0", allow_hosts=("breeder.local",)).host_ok("evil.example")


def test_origin_is_checked_against_the_allowed_hosts_not_the_request_host():
    s = Security()
    # the rebinding attack: the attacker's page sends its own name as Host and as Origin
    assert not s.origin_ok("http://evil.example:8000", "evil.example:8000", "http")
    assert s.origin_ok("http://localhost:8000", "127.0.0.1:8000", "http")
    assert not s.origin_ok("http://localhost:5173", "127.0.0.1:8000", "http")  # another local app
    assert not s.origin_ok("null", "127.0.0.1:8000", "http")
    assert s.origin_ok(None, "127.0.0.1:8000", "http")  # not a browser: the token guards
    assert Security(allow_origins=("http://localhost:5173",)).origin_ok("http://localhost:5173", "127.0.0.1:8000", "http")


def test_an_empty_token_is_refused():
    with pytest.raises(ValueError, match="empty"):
        Security(token="")


def test_tokens_are_redacted_in_log_lines():
    record = logging.LogRecord("uvicorn.access", logging.INFO, "", 0, '%s - "%s %s HTTP/%s" %d',
                               ("127.0.0.1:5", "GET", "/api/genomes?limit=3&token=s3cret", "1.1", 200), None)
    RedactTokens().filter(record)
    assert "s3cret" not in record.getMessage() and "token=***" in record.getMessage() and "limit=3" in record.getMessage()


# --------------------------------------------------------------------------- the middleware
def _app(security: Security, max_body_bytes: int = 1000) -> Starlette:
    async def echo(request: Request) -> JSONResponse:
        return JSONResponse({"bytes": len(await request.body())})

    async def page(request: Request) -> PlainTextResponse:
        return PlainTextResponse("page")

    async def ws(websocket: WebSocket) -> None:
        await websocket.accept()
        await websocket.send_text("hi")
        await websocket.close()

    async def protocol_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, p.ProtocolError)
        return JSONResponse(exc.to_json(), status_code=413 if exc.code == p.ErrorCode.TOO_LARGE else 400)

    from starlette.middleware import Middleware

    return Starlette(
        routes=[Route("/api/echo", echo, methods=["GET", "POST"]), Route("/", page), WebSocketRoute("/ws", ws)],
        middleware=[Middleware(SecurityMiddleware, security=security, max_body_bytes=max_body_bytes)],
        exception_handlers={p.ProtocolError: protocol_error},
    )


def test_middleware_checks_host_token_and_origin_on_every_api_route():
    client = TestClient(_app(Security(token="t", allowed_hosts=("testserver",))))
    assert client.get("/api/echo").status_code == 401
    assert client.get("/api/echo?token=t").status_code == 200
    assert client.get("/api/echo", headers={"Authorization": "Bearer t"}).status_code == 200
    assert client.get("/").status_code == 200  # the page needs no token
    bad_host = client.get("/api/echo?token=t", headers={"Host": "evil.example"})
    assert bad_host.status_code == 403 and "--allow-host" in bad_host.json()["message"]
    assert client.post("/api/echo?token=t", headers={"Origin": "http://evil.example"}).status_code == 403
    assert client.post("/api/echo?token=t", headers={"Origin": "http://testserver"}).status_code == 200
    for path, reason in [("/ws", "token"), ("/ws?token=t", "origin")]:
        headers = {"Origin": "http://evil.example"} if reason == "origin" else {}
        with client.websocket_connect(path, headers=headers) as ws, pytest.raises(WebSocketDisconnect) as info:
            ws.receive_text()
        assert info.value.code == 1008 and reason in info.value.reason
    with client.websocket_connect("/ws?token=t") as ws:
        assert ws.receive_text() == "hi"


def test_every_response_says_nosniff_and_the_page_has_a_csp():
    client = TestClient(_app(Security(allowed_hosts=("testserver",))))
    for r in (client.get("/"), client.get("/api/echo"), client.get("/missing"),
              client.get("/", headers={"Host": "evil.example"})):
        assert r.headers["x-content-type-options"] == "nosniff", r
    assert "frame-ancestors 'self'" in client.get("/").headers["content-security-policy"]


def test_bodies_are_counted_while_they_stream():
    client = TestClient(_app(Security(allowed_hosts=("testserver",)), max_body_bytes=1000))
    assert client.post("/api/echo", content=b"x" * 1000).json() == {"bytes": 1000}
    assert client.post("/api/echo", content=b"x" * 1001).status_code == 413  # said up front



async def test_a_chunked_body_is_stopped_at_the_limit_while_it_streams():
    app = _app(Security(allowed_hosts=("testserver",)), max_body_bytes=1000)
    pulled, sent = 0, []

    async def receive():  # an endless chunked body
        nonlocal pulled
        pulled += 1
        return {"type": "http.request", "body": b"x" * 100, "more_body": True}

    async def send(message):
        sent.append(message)

    scope = {"type": "http", "method": "POST", "path": "/api/echo", "raw_path": b"/api/echo", "query_string": b"",
             "headers": [(b"host", b"testserver"), (b"transfer-encoding", b"chunked")], "scheme": "http",
             "server": ("testserver", 80), "client": ("127.0.0.1", 1), "root_path": "", "http_version": "1.1",
             "asgi": {"version": "3.0"}}
    await asyncio.wait_for(app(scope, receive, send), TIMEOUT)
    assert sent[0]["status"] == 413 and pulled == 11  # 1100 bytes: one chunk past the limit, then stop


# --------------------------------------------------------------------------- the real server
@pytest.fixture(scope="module")
def live(tmp_path_factory):
    with LiveServer(tmp_path_factory.mktemp("door") / "data", "--allow-host", "breeder.test") as server:
        yield server


def test_dns_rebinding_is_refused(live):
    gid = httpx.post(live.http + "/api/genomes", json={"prompt": "a cat"}, timeout=TIMEOUT).json()["id"]
    evil = {"Host": f"evil.example:{live.port}", "Origin": f"http://evil.example:{live.port}"}
    r = httpx.delete(f"{live.http}/api/genomes/{gid}", headers=evil)
    assert r.status_code == 403 and r.json()["code"] == "unauthorized"
    assert httpx.get(f"{live.http}/api/genomes", headers={"Host": f"evil.example:{live.port}"}).status_code == 403
    assert httpx.get(f"{live.http}/api/genomes/{gid}").status_code == 200  # still there
    # a name given with --allow-host is served, and its pages may change state
    named = {"Host": f"breeder.test:{live.port}", "Origin": f"http://breeder.test:{live.port}"}
    assert httpx.get(f"{live.http}/api/genomes/{gid}", headers=named).status_code == 200
    # but a page on another port of an allowed name is another site
    other = {"Origin": f"http://localhost:{live.port + 1}"}
    assert httpx.delete(f"{live.http}/api/genomes/{gid}", headers=other).status_code == 403


async def test_dns_rebinding_cannot_open_the_socket(live):
    # the browser connects to 127.0.0.1 but names the attacker's host (the URL gives the Host header)
    sock = socket.create_connection(("127.0.0.1", live.port))
    async with websockets.connect(f"ws://evil.example:{live.port}/ws", sock=sock,
                                  origin=f"http://evil.example:{live.port}", open_timeout=TIMEOUT) as ws:
        with pytest.raises(websockets.ConnectionClosed) as info:
            await asyncio.wait_for(ws.recv(), TIMEOUT)
    assert info.value.rcvd.code == 1008 and "--allow-host" in info.value.rcvd.reason
    async with websockets.connect(live.ws, origin=f"http://localhost:{live.port}", open_timeout=TIMEOUT) as ws:
        assert json.loads(await asyncio.wait_for(ws.recv(), TIMEOUT))["type"] == "hello"


def _raw(port: int) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
    return s


def _response(s: socket.socket) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = s.recv(65536)
        if not chunk:
            break
        data += chunk
    return data


def test_a_chunked_flood_is_stopped_at_the_limit(live):
    limit = p.Limits().max_body_bytes
    s = _raw(live.port)
    s.sendall(f"POST /api/genomes HTTP/1.1\r\nHost: 127.0.0.1:{live.port}\r\nTransfer-Encoding: chunked\r\n"
              "Content-Type: application/json\r\n\r\n".encode())
    chunk = b"%x\r\n%s\r\n" % (65536, b"x" * 65536)
    sent = 0
    try:
        while sent < 200 * 1024 * 1024:
            if select.select([s], [], [], 0)[0]:
                break  # the server answered
            s.sendall(chunk)
            sent += 65536
    except (BrokenPipeError, ConnectionResetError):
        pass  # it answered and closed while we were still sending
    head = _response(s)
    s.close()
    assert head.startswith(b"HTTP/1.1 413"), head[:200]
    assert sent < limit + 16 * 1024 * 1024  # answered near the limit, long before 200 MiB


def test_content_length_with_transfer_encoding_gets_400_not_a_hang(live):
    s = _raw(live.port)
    s.sendall(f"POST /api/genomes HTTP/1.1\r\nHost: 127.0.0.1:{live.port}\r\nContent-Length: 5\r\n"
              "Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n".encode())
    head = _response(s)
    s.close()
    assert head.startswith(b"HTTP/1.1 400"), head[:200]


def test_a_request_head_that_never_ends_is_closed(live):
    from sdxl_breeder.web.serve import HEAD_TIMEOUT_S

    s = _raw(live.port)
    s.sendall(f"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1:{live.port}\r\n".encode())
    start = time.monotonic()
    closed = False
    while time.monotonic() - start < HEAD_TIMEOUT_S + 30:
        try:
            s.sendall(b"X-Slow: 1\r\n")  # a header now and then keeps no connection alive
        except OSError:
            closed = True
            break
        if select.select([s], [], [], 1)[0]:
            closed = s.recv(100) == b""
            break
    s.close()
    assert closed and time.monotonic() - start >= HEAD_TIMEOUT_S - 1


async def test_the_head_deadline_spares_open_sockets(live):
    from sdxl_breeder.web.serve import HEAD_TIMEOUT_S

    async with websockets.connect(live.ws, open_timeout=TIMEOUT) as ws:
        assert json.loads(await asyncio.wait_for(ws.recv(), TIMEOUT))["type"] == "hello"
        await asyncio.sleep(HEAD_TIMEOUT_S + 2)  # a pad left open past the deadline for request heads
        await ws.send(json.dumps({"type": "move", "x": 0.5, "y": 0.5, "seq": 1}))
        assert json.loads(await asyncio.wait_for(ws.recv(), TIMEOUT))["code"] == "no_corners"


def test_an_oversized_request_head_is_refused(live):
    from sdxl_breeder.web.serve import HEAD_LIMIT_BYTES

    s = _raw(live.port)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    s.sendall(f"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1:{live.port}\r\nX-Big: ".encode())
    sent = 0
    try:
        while sent < 4 * HEAD_LIMIT_BYTES and not select.select([s], [], [], 0.05)[0]:  # a slow client's pace
            s.sendall(b"a" * 4096)
            sent += 4096
    except (BrokenPipeError, ConnectionResetError):
        pass  # refused while we were still sending
    head = _response(s)
    s.close()
    assert head.startswith(b"HTTP/1.1 400"), head[:200]
    assert sent < 2 * HEAD_LIMIT_BYTES


def test_headers_on_the_live_server(live):
    page = httpx.get(live.http + "/")
    assert page.headers["x-content-type-options"] == "nosniff"
    assert "frame-ancestors 'self'" in page.headers["content-security-policy"]
    for path in ("/api/genomes", "/healthz", "/api/nothing", "/js/main.js"):
        assert httpx.get(live.http + path).headers["x-content-type-options"] == "nosniff", path


def test_an_empty_token_is_a_usage_error(capsys):
    for host in ("127.0.0.1", "0.0.0.0"):
        assert main(["serve", "--model", "tiny", "--host", host, "--port", "1", "--token", ""]) == 2
        err = capsys.readouterr().err
        assert "--token must not be empty" in err and "Traceback" not in err


async def test_tokens_never_reach_the_access_log(tmp_path):
    with LiveServer(tmp_path / "data", "--token", "s3cret-value") as server:
        assert httpx.get(server.http + "/api/genomes?token=s3cret-value").status_code == 200
        assert httpx.get(server.http + "/api/genomes?token=wrong-guess").status_code == 401
        async with websockets.connect(server.ws + "?token=s3cret-value", open_timeout=TIMEOUT) as ws:
            await asyncio.wait_for(ws.recv(), TIMEOUT)
        wait_for(lambda: "/ws?token=***" in server.log_path.read_text(errors="replace"), TIMEOUT, "the access log")
        log = server.log_path.read_text(errors="replace")
    assert "/api/genomes?token=***" in log and "/ws?token=***" in log
    assert "s3cret-value" not in log and "wrong-guess" not in log
