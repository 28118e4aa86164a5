"""What the server promises under load, bad input and crashes (docs/reliability.md), against a real
server subprocess: the open-sessions cap, the genome quota, the store cap, the message rate limit,
stalled readers and shutdown."""

from __future__ import annotations

import asyncio
import json
import signal
import time

import httpx
import pytest
import websockets

from tests.live import CORNERS, TIMEOUT, Client, LiveServer, RawWebSocket, wait_for

MAX_SESSIONS = 4
WINDOW_S = 3.0  # frame-rate windows of the flood test (the flood is closed after max_over_rate_seconds)
BAD_MOVE = json.dumps({"type": "move", "x": 2, "y": 0.5, "seq": 1})  # each answered by an error


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    with LiveServer(tmp_path_factory.mktemp("reliability") / "data", "--max-sessions", str(MAX_SESSIONS)) as live:
        yield live


@pytest.fixture
def server(live):
    """The module's server once the sessions of earlier tests are closed (the cap counts them)."""
    wait_for(lambda: httpx.get(live.http + "/healthz").json()["sessions"] == 0, TIMEOUT, "earlier sessions to close")
    return live


async def refused(url: str) -> websockets.ConnectionClosed:
    ws = await websockets.connect(url, open_timeout=TIMEOUT)
    with pytest.raises(websockets.ConnectionClosed) as info:
        await asyncio.wait_for(ws.recv(), TIMEOUT)
    return info.value


async def test_open_sessions_are_capped_with_a_clear_refusal(server):
    clients = [await Client.connect(server.ws) for _ in range(MAX_SESSIONS)]
    assert clients[0].hello["limits"]["max_sessions"] == MAX_SESSIONS
    closed = await refused(server.ws)
    assert closed.rcvd.code == 1013 and "max_sessions" in closed.rcvd.reason
    await clients[0].setup(size=64)  # the open sessions are served as before
    await clients.pop().close()

    async def one_more() -> Client | None:
        try:
            return await Client.connect(server.ws)
        except (websockets.ConnectionClosed, AssertionError):
            return None

    deadline = asyncio.get_running_loop().time() + TIMEOUT
    while (again := await one_more()) is None:  # the freed slot opens once the server sees the close
        assert asyncio.get_running_loop().time() < deadline, "a closed session's slot never came back"
        await asyncio.sleep(0.05)
    for c in [*clients, again]:
        await c.close()


async def test_new_genomes_per_session_are_rate_limited(server):
    """A breeding loop stores max_genomes_per_minute genomes, then gets `rate_limited` and nothing
    is written; another session still breeds."""
    genomes = server.data_dir / "genomes"
    c = await Client.connect(server.ws)
    limit = c.hello["limits"]["max_genomes_per_minute"]
    parents = [g["genome"] for g in (await c.setup(size=64))["corners"][:2]]
    files = len(list(genomes.iterdir()))
    stored = 0
    for seed in range(limit + 10):
        await c.send({"type": "breed", "parents": parents, "seed": seed})
        reply = await c.json("genome")
        if reply["type"] == "error":
            break
        stored += 1
    assert reply["code"] == "rate_limited" and reply["in_reply_to"] == "breed", reply
    assert "max_genomes_per_minute" in reply["message"]
    assert stored >= limit - 4  # at most the corners' prompts were new genomes of this session
    assert len(list(genomes.iterdir())) == files + stored  # the refused breed wrote nothing
    other = await Client.connect(server.ws)
    await other.send({"type": "breed", "parents": parents, "seed": 10**6})
    assert (await other.json("genome"))["type"] == "genome"
    for x in (c, other):
        await x.close()


async def test_a_full_store_refuses_new_genomes_and_walks_clearly(tmp_path):
    with LiveServer(tmp_path / "data", "--max-store-gb", "0.00001") as live:  # 10 KiB: full at once
        c = await Client.connect(live.ws)
        assert c.hello["limits"]["max_store_bytes"] == 10737
        await c.send({"type": "corners", "corners": CORNERS})
        reply = await c.json("corners")
        assert reply["code"] == "store_full" and reply["in_reply_to"] == "corners", reply
        assert "max_store_bytes" in reply["message"]
        r = httpx.post(live.http + "/api/genomes", json={"prompt": "a new prompt"}, timeout=TIMEOUT)
        assert r.status_code == 507 and r.json()["code"] == "store_full"
        walk = {"format": "sdxl-breeder-walk", "version": 1, "corners": CORNERS, "width": 64, "height": 64,
                "points": [[0, 0, 0], [1, 1, 1]]}
        r = httpx.post(live.http + "/api/walks", json=walk, timeout=TIMEOUT)
        assert r.status_code == 507 and r.json()["code"] == "store_full"
        assert list((live.data_dir / "genomes").iterdir()) == []
        await c.send({"type": "settings", "width": 64})  # the session goes on
        assert (await c.json("settings"))["width"] == 64
        await c.close()
        wait_for(lambda: httpx.get(live.http + "/healthz").json()["sessions"] == 0, TIMEOUT, "the session to close")


async def frames_in(clients: list[Client], seconds: float) -> list[int]:
    """Frames each move-and-wait client gets in `seconds`, all moving at once."""
    loop = asyncio.get_running_loop()
    end = loop.time() + seconds

    async def one(c: Client) -> int:
        n = 0
        while loop.time() < end:
            c.seq = getattr(c, "seq", 0) + 1
            await c.send({"type": "move", "x": (c.seq % 50) / 50, "y": 0.5, "seq": c.seq})
            await c.frame(c.seq)
            n += 1
        return n

    return list(await asyncio.gather(*(one(c) for c in clients)))


async def test_a_flooding_client_barely_slows_the_others(server):
    """One client sends moves as fast as the server takes them: the others keep the frame rate they
    have beside a busy well-behaved client (whose frames share each batch as the flooder's do),
    the flooder gets one `rate_limited` error and, as the flood goes on, a 1008 close."""
    others = [await Client.connect(server.ws) for _ in range(2)]
    busy = await Client.connect(server.ws)
    for c in [*others, busy]:
        await c.setup(size=64)
    limits = others[0].hello["limits"]
    flooder = await asyncio.to_thread(RawWebSocket, server.port)
    flooder.sock.sendall(flooder.text_frame(json.dumps({"type": "settings", "width": 64, "height": 64}))
                         + flooder.text_frame(json.dumps({"type": "corners", "corners": [{"prompt": "a cat"}] * 4})))
    await asyncio.to_thread(flooder.read_all, lambda: any(t["type"] == "corners" for t in flooder.texts), TIMEOUT)
    alone = sum((await frames_in([*others, busy], WINDOW_S))[:-1])  # beside a busy, polite client
    await busy.close()
    flooder.flood(json.dumps({"type": "move", "x": 0.5, "y": 0.5, "seq": 1}))
    reader = asyncio.create_task(asyncio.to_thread(flooder.read_all, lambda: False, TIMEOUT))
    start = time.monotonic()
    beside = sum(await frames_in(others, WINDOW_S))
    sent = flooder.sent
    assert sent > 10 * limits["max_messages_per_second"] * WINDOW_S, f"the test client sent only {sent} moves"
    assert beside >= 0.5 * alone, f"the others got {beside} frames in {WINDOW_S:g} s beside a flood, {alone} beside a polite client"
    await reader  # until the server closes the flooder
    closed_after = time.monotonic() - start
    assert flooder.close is not None and flooder.close[0] == 1008, flooder.close
    assert "max_messages_per_second" in flooder.close[1]
    assert limits["max_over_rate_seconds"] - 1 < closed_after < limits["max_over_rate_seconds"] + 30
    errors = [t for t in flooder.texts if t["type"] == "error"]
    assert [e["code"] for e in errors] == ["rate_limited"], errors[:5]
    assert "max_messages_per_second" in errors[0]["message"]
    assert sum(await frames_in(others, 0.5)) > 0  # the others go on
    for c in others:
        await c.close()


async def test_a_reader_that_stalls_is_closed_after_the_drain_timeout(tmp_path):
    """A client that asks for frames (under the rate limit) and never reads: once the server's send
    buffer stays full for drain_timeout_seconds the socket is closed; the others go on."""
    with LiveServer(tmp_path / "data", "--drain-timeout", "2") as live:
        first = await Client.connect(live.ws)
        assert first.hello["limits"]["drain_timeout_seconds"] == 2
        await first.close()
        stalled = await asyncio.to_thread(RawWebSocket, live.port, rcvbuf=4096)
        stalled.sock.sendall(stalled.text_frame(json.dumps({"type": "settings", "width": 256, "height": 256, "quality": 100}))
                             + stalled.text_frame(json.dumps({"type": "corners", "corners": CORNERS})))
        wait_for(lambda: httpx.get(live.http + "/healthz").json()["sessions"] == 1, TIMEOUT, "the stalled session alone")
        seq, start = 0, time.monotonic()
        try:
            while time.monotonic() - start < TIMEOUT:  # 100 moves/s, well under the rate limit
                for _ in range(50):
                    seq += 1
                    stalled.sock.sendall(stalled.text_frame(json.dumps({"type": "move", "x": seq % 10 / 10, "y": 0.5, "seq": seq})))
                    await asyncio.sleep(0.01)
                if httpx.get(live.http + "/healthz").json()["sessions"] == 0:
                    break
        except ConnectionResetError:
            pass  # the server aborted the socket
        assert httpx.get(live.http + "/healthz").json()["sessions"] == 0, f"a stalled reader still open after {seq} moves"
        assert "drain_timeout_seconds" in live.log_tail()
        other = await Client.connect(live.ws)
        await other.setup(size=64)
        await other.close()


async def test_sigterm_stops_the_server_whatever_a_stalled_reader_does(tmp_path):
    """A client floods bad moves (each answered by an error) and never reads; SIGTERM still stops
    the server within a few seconds."""
    live = LiveServer(tmp_path / "data").start()
    try:
        stalled = await asyncio.to_thread(RawWebSocket, live.port, rcvbuf=4096)
        stalled.flood(BAD_MOVE)
        ok = await Client.connect(live.ws)
        await ok.setup(size=64)
        wait_for(lambda: stalled.sent > 20000, TIMEOUT, "the flood to fill the buffers between us")
        assert httpx.get(live.http + "/healthz").json()["sessions"] == 2
        assert live.proc is not None
        live.proc.send_signal(signal.SIGTERM)
        start = time.monotonic()
        wait_for(lambda: live.proc.poll() is not None, 30, "the server to exit after SIGTERM")
        took = time.monotonic() - start
        assert took < 10, f"the server took {took:.1f} s to exit after SIGTERM"
        # a clean exit (uvicorn raises the signal again once it is done, hence -SIGTERM)
        assert live.proc.returncode in (0, -signal.SIGTERM), live.log_tail()
        assert "Application shutdown complete" in live.log_tail()
    finally:
        live.stop()
