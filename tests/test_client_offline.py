"""The scripting client without the real server: frame decoding, URLs, connection errors, and
message routing against a small scripted websocket peer."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import socket
import threading
import time
from typing import Any, AsyncIterator, Callable, Iterator

import pytest
from PIL import Image
from websockets.asyncio.server import ServerConnection, serve
from websockets.datastructures import Headers
from websockets.http11 import Response

from sdxl_breeder.client import (BreederClient, BreederConnectionError, BreederError, Frame, SyncBreederClient,
                           normalize_url, redact)
from sdxl_breeder.protocol import FrameHeader, Limits, encode_frame, hello

GENOME = "0123456789abcdef"


def _jpeg(width: int = 64, height: int = 64, color: tuple[int, int, int] = (200, 30, 40)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (width, height), color).save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def _frame(seq: int, x: float = 0.5, y: float = 0.5) -> bytes:
    return encode_frame(FrameHeader(seq=seq, x=x, y=y, seed=0, width=64, height=64, render_ms=1.5, batch=1), _jpeg())


# ------------------------------------------------------------------------------ pieces
def test_frame_decodes_header_and_image(tmp_path):
    frame = Frame.decode(_frame(7, 0.25, 0.75))
    assert (frame.seq, frame.x, frame.y) == (7, 0.25, 0.75)
    assert frame.header.width == 64 and frame.header.render_ms == 1.5
    assert frame.image.size == (64, 64) and frame.image.mode == "RGB"
    assert frame.image is frame.image  # decoded once
    frame.save(tmp_path / "f.jpg")
    assert (tmp_path / "f.jpg").read_bytes() == frame.jpeg  # no re-encoding
    frame.save(tmp_path / "f.png")
    assert Image.open(tmp_path / "f.png").size == (64, 64)


def test_garbled_frame_is_a_protocol_error():
    from sdxl_breeder.protocol import ProtocolError

    with pytest.raises(ProtocolError, match="truncated"):
        Frame.decode(b"\x00\x00\x01\x00{}")


@pytest.mark.parametrize("url, want", [
    ("ws://127.0.0.1:8000/ws", "ws://127.0.0.1:8000/ws"),
    ("localhost:9000", "ws://localhost:9000/ws"),
    ("http://example.com:8000", "ws://example.com:8000/ws"),
    ("https://example.com/", "wss://example.com/ws"),
    ("wss://example.com/breeder/ws/", "wss://example.com/breeder/ws"),
    ("ws://h:1/ws?token=abc", "ws://h:1/ws?token=abc"),
])
def test_normalize_url(url, want):
    assert normalize_url(url) == want


@pytest.mark.parametrize("url", ["ftp://host/ws", "ws://", "ws:///ws"])
def test_bad_urls_are_one_line_errors(url):
    with pytest.raises(ValueError, match="must look like ws://HOST:PORT/ws"):
        BreederClient(url)


def test_token_is_redacted_from_shown_urls():
    client = BreederClient("ws://h:1/ws?token=secret&x=1", token="other")
    assert "secret" not in client.shown_url and "token=***" in client.shown_url and "x=1" in client.shown_url
    assert redact("ws://h:1/ws") == "ws://h:1/ws"


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def test_closed_port_fails_fast_and_clearly():
    port = _closed_port()
    started = time.monotonic()
    with pytest.raises(BreederConnectionError) as e:
        async with BreederClient(f"ws://127.0.0.1:{port}/ws", timeout=5):
            pass
    assert time.monotonic() - started < 3
    msg = str(e.value)
    assert msg.startswith(f"cannot reach server at ws://127.0.0.1:{port}/ws: is `sdxl-breeder serve` running?")
    assert "\n" not in msg


def test_cli_walk_closed_port_is_one_line(tmp_path, capsys):
    from sdxl_breeder.cli import main

    port = _closed_port()
    code = main(["walk", "--server", f"127.0.0.1:{port}", "--corners", "a", "b", "c", "d", "--seconds", "0.5",
                 "--walk-file", str(tmp_path / "w.json"), "--out", str(tmp_path / "w.mp4")])
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert err == (f"sdxl-breeder walk: error: cannot reach server at ws://127.0.0.1:{port}/ws: "
                   "is `sdxl-breeder serve` running? (Connection refused)")
    assert not (tmp_path / "w.mp4").exists() and (tmp_path / "w.json").exists()


def test_sync_client_closed_port():
    client = SyncBreederClient(f"127.0.0.1:{_closed_port()}", timeout=5)
    with pytest.raises(BreederConnectionError, match="cannot reach server"):
        client.connect()
    assert not client._thread.is_alive()  # the background loop is gone too


async def test_not_connected_and_local_checks():
    client = BreederClient()
    with pytest.raises(RuntimeError, match="not connected"):
        await client.settings(seed=1)


# ------------------------------------------------------------------------------ a scripted peer
Reply = Callable[[dict[str, Any], dict[str, Any]], list[str | bytes]]


def pad(msg: dict[str, Any], state: dict[str, Any]) -> list[str | bytes]:
    """Answers like the real server: replies to settings/corners, then a frame at the current seq."""
    kind = msg["type"]
    if kind == "settings":
        if msg.get("width", 512) % 64:
            return [json.dumps({"type": "error", "code": "bad_value", "message": "settings.width must be ..."})]
        out: list[str | bytes] = [json.dumps({"type": "settings", "width": 512, **msg})]
        return out + ([_frame(state["seq"])] if state.get("corners") else [])
    if kind == "corners":
        state["corners"] = True
        reply = {"type": "corners", "template": msg["template"],
                 "corners": [{"genome": GENOME, "prompt": c.get("prompt")} for c in msg["corners"]]}
        return [_frame(state["seq"]), json.dumps(reply)]  # the frame may come first
    if kind == "move":
        state["seq"] = msg["seq"]
        return [_frame(msg["seq"] - 1), _frame(msg["seq"], msg["x"], msg["y"])]  # a stale frame first
    if kind in ("breed", "keep"):
        return [json.dumps({"type": "genome", "genome": {"id": "9b1d0e3c4a5f6789", "prompt": msg.get("prompt")}})]
    if msg == {"type": "record", "action": "stop"}:
        return [json.dumps({"type": "walk", "walk": "5e6f708192a3b4c5", "points": 3, "seconds": 1.5})]
    return []


class Peer:
    def __init__(self, reply: Reply = pad, *, version: int = 1, status: int | None = None) -> None:
        self.reply, self.version, self.status = reply, version, status
        self.received: list[dict[str, Any]] = []
        self.headers: Headers | None = None

    def refuse(self, conn: ServerConnection, request: Any) -> Response | None:
        self.headers = request.headers
        if self.status is None:
            return None
        return conn.respond(self.status, "missing or wrong token\n")

    async def handle(self, ws: ServerConnection) -> None:
        await ws.send(json.dumps({**hello("tiny", Limits()), "version": self.version}))
        state: dict[str, Any] = {"seq": 0}
        async for text in ws:
            msg = json.loads(text)
            self.received.append(msg)
            if msg.get("type") == "hang up":
                return
            for out in self.reply(msg, state):
                await ws.send(out)


@contextlib.asynccontextmanager
async def running(peer: Peer) -> AsyncIterator[str]:
    async with serve(peer.handle, "127.0.0.1", 0, process_request=peer.refuse) as server:
        yield f"ws://127.0.0.1:{server.sockets[0].getsockname()[1]}/ws"


async def test_session_roundtrip():
    peer = Peer()
    async with running(peer) as url, BreederClient(url, token="s3cret", timeout=5) as c:
        assert c.hello["version"] == 1 and c.hello["limits"]["max_batch"] == 8
        with pytest.raises(BreederError, match="no_corners"):  # checked here, never sent
            await c.move(0.5, 0.5)
        assert await c.settings(seed=3) == {"width": 512, "seed": 3}
        corners = await c.set_corners(["a cat", {"genome": GENOME}, "a fox", "an owl"], template="a [noken]")
        assert [x["genome"] for x in corners] == [GENOME] * 4
        frame = await c.move(0.1, 0.2)  # the corners frame (seq 0) and the stale one are not it
        assert (frame.seq, frame.x, frame.y) == (1, 0.1, 0.2)
        assert (await c.move(1, 0)).seq == 2
        assert c.latest_frame().seq == 2
        assert (await c.breed(GENOME, GENOME, seed=1))["id"] == "9b1d0e3c4a5f6789"
        assert (await c.keep("label"))["prompt"] == "label"
        await c.record_start()
        assert (await c.record_stop())["walk"] == "5e6f708192a3b4c5"
    assert peer.headers["Authorization"] == "Bearer s3cret"
    sent = peer.received
    assert sent[1]["corners"] == [{"prompt": "a cat"}, {"genome": GENOME}, {"prompt": "a fox"}, {"prompt": "an owl"}]
    assert [m["seq"] for m in sent if m["type"] == "move"] == [1, 2]
    assert sent[-2:] == [{"type": "record", "action": "start"}, {"type": "record", "action": "stop"}]


async def test_error_answers_its_request_and_the_session_goes_on():
    async with running(Peer()) as url, BreederClient(url, timeout=5) as c:
        await c.set_corners(["a", "b", "c", "d"])
        with pytest.raises(BreederError) as e:
            await c.settings(width=100)
        assert (e.value.code, e.value.message) == ("bad_value", "settings.width must be ...")
        assert (await c.move(0.5, 0.5)).seq == 1
        with pytest.raises(ValueError, match="x must be a number within"):  # checked here, never sent
            await c.move(1.5, 0)
        assert (await c.move(0.5, 0.5)).seq == 2


async def test_render_failure_fails_the_waiting_move():
    def failing(msg: dict[str, Any], state: dict[str, Any]) -> list[str | bytes]:
        if msg["type"] == "move":
            return [json.dumps({"type": "error", "code": "render_failed", "message": "out of memory"})]
        return pad(msg, state)

    async with running(Peer(failing)) as url, BreederClient(url, timeout=5) as c:
        await c.set_corners(["a", "b", "c", "d"])
        with pytest.raises(BreederError, match="render_failed: out of memory"):
            await c.move(0.5, 0.5)


async def test_move_nowait_and_frames():
    async with running(Peer()) as url, BreederClient(url, timeout=5) as c:
        await c.set_corners(["a", "b", "c", "d"])
        frames = c.frames()
        seqs = [await c.move_nowait(i / 4, 0.5) for i in range(1, 4)]
        assert seqs == [1, 2, 3]
        got = [(await anext(frames)).seq]
        while got[-1] < 3:
            got.append((await anext(frames)).seq)
        assert got == sorted(got)  # the newest frame each time, never going back
        await frames.aclose()


async def test_close_fails_waiters_clearly():
    def hang_up(msg: dict[str, Any], state: dict[str, Any]) -> list[str | bytes]:
        raise ConnectionError("peer gives up")  # the handler dies: the socket closes with 1011

    async with running(Peer(hang_up)) as url, BreederClient(url, timeout=5) as c:
        with pytest.raises(BreederConnectionError, match="connection"):
            await c.settings(seed=1)
        with pytest.raises(BreederConnectionError):  # and every later call says so too
            await c.settings(seed=2)


async def test_silence_times_out_with_a_message():
    async with running(Peer(lambda m, s: [])) as url, BreederClient(url, timeout=0.2) as c:
        with pytest.raises(TimeoutError, match=r"no settings reply to settings from ws://127\.0\.0\.1:\d+/ws within 0\.2 s"):
            await c.settings(seed=1)


async def test_refused_handshake_and_wrong_version():
    async with running(Peer(status=403)) as url:
        with pytest.raises(BreederConnectionError, match=r"refused the connection \(HTTP 403\): missing or wrong token"):
            await BreederClient(url, timeout=5).connect()
    async with running(Peer(version=2)) as url:
        with pytest.raises(BreederConnectionError, match="speaks protocol version 2; this client speaks 1"):
            await BreederClient(url, timeout=5).connect()


@contextlib.contextmanager
def _peer_in_thread(peer: Peer) -> Iterator[str]:
    """The peer on its own loop in a thread, since the sync client blocks the caller."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()

    async def start() -> Any:
        return await serve(peer.handle, "127.0.0.1", 0)  # serve() needs the running loop

    server = asyncio.run_coroutine_threadsafe(start(), loop).result()
    try:
        yield f"ws://127.0.0.1:{server.sockets[0].getsockname()[1]}/ws"
    finally:
        server.close()
        asyncio.run_coroutine_threadsafe(server.wait_closed(), loop).result()
        loop.call_soon_threadsafe(loop.stop)
        thread.join()
        loop.close()


def test_sync_client():
    with _peer_in_thread(Peer()) as url, SyncBreederClient(url, timeout=5) as c:
        assert c.hello["version"] == 1
        c.set_corners(["a", "b", "c", "d"])
        frame = c.move(0.3, 0.4)
        assert (frame.seq, frame.x) == (1, 0.3) and frame.image.size == (64, 64)
        assert c.latest_frame().seq == 1
        assert c.breed(GENOME, GENOME)["id"] == "9b1d0e3c4a5f6789"
        frames = c.frames()
        c.move_nowait(0.9, 0.9)
        while next(frames).seq < 2:
            pass
    with pytest.raises(RuntimeError, match="closed"):
        c.move(0.1, 0.1)
