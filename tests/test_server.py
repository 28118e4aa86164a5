"""The realtime server, end to end: a real uvicorn subprocess on loopback, real websocket clients,
the real tiny pipeline, real SQLite."""

from __future__ import annotations

import asyncio
import io
import json
import socket

import httpx
import numpy as np
import pytest
import websockets
from PIL import Image
from safetensors.torch import load as load_safetensors

from sdxl_breeder.model.scene import Scene
from tests.conftest import PROMPTS, coarse_diff
from tests.live import CORNERS, SIZE, TIMEOUT, Client, LiveServer, served
from sdxl_breeder.model.renderer import FrameRequest
from sdxl_breeder.spec import FrameSettings

server = served("srv", "--max-batch", "8")


async def test_hello_names_model_limits_and_tiny_warning(server):
    c = await Client.connect(server.ws)
    assert c.hello["version"] == 1
    assert c.hello["model"] == "tiny"
    assert "TINY" in c.hello["warning"]
    limits = c.hello["limits"]
    for key in ("max_message_bytes", "max_prompt_chars", "min_size", "max_size", "max_seed", "max_quality", "max_batch"):
        assert key in limits
    await c.close()


async def test_frames_are_valid_jpegs_with_correct_headers(server):
    c = await Client.connect(server.ws)
    reply = await c.setup(seed=7)
    assert [x["prompt"] for x in reply["corners"]] == list(PROMPTS)
    assert all(len(x["genome"]) == 16 for x in reply["corners"])
    await c.send({"type": "move", "x": 0.25, "y": 0.75, "seq": 5})
    header, jpeg = await c.frame(5)
    assert (header.seq, header.x, header.y, header.seed) == (5, 0.25, 0.75, 7)
    assert (header.width, header.height) == (SIZE, SIZE)
    assert header.batch >= 1 and header.render_ms > 0
    img = Image.open(io.BytesIO(jpeg))
    assert img.format == "JPEG" and img.size == (SIZE, SIZE)
    await c.close()


async def test_eight_clients_are_rendered_in_batches(server):
    clients = [await Client.connect(server.ws) for _ in range(8)]
    for c in clients:
        await c.setup()

    async def fly(c: Client, k: int) -> list[int]:
        batches = []
        for i in range(1, 9):
            await c.send({"type": "move", "x": (i * (k + 1) % 10) / 10, "y": i / 10, "seq": i})
            header, _ = await c.frame(i)
            batches.append(header.batch)
        return batches

    batches_before = server.metric("breeder_batch_size_count")
    results = await asyncio.gather(*(fly(c, k) for k, c in enumerate(clients)))
    batches = server.metric("breeder_batch_size_count") - batches_before
    sizes = [b for r in results for b in r]
    assert max(sizes) <= 8
    # Clients that each wait for their frame reply together: most frames share a batch, and the
    # 64 frames took well under 64 batches (one frame each would be 64).
    assert sum(b > 1 for b in sizes) > len(sizes) / 2, sizes
    assert batches <= len(sizes) / 2, f"{batches:g} batches for {len(sizes)} frames"
    for c in clients:
        await c.close()


async def test_moves_at_full_speed_skip_stale_positions(server):
    c = await Client.connect(server.ws)
    await c.setup()
    for i in range(200):
        await c.send({"type": "move", "x": i / 199, "y": 0.5, "seq": i})
    seqs = []
    while True:
        header, _ = await c.frame()
        seqs.append(header.seq)
        if header.seq == 199:
            break
    assert len(seqs) < 100, f"{len(seqs)} frames for 200 moves: stale positions were rendered"
    assert seqs == sorted(seqs)
    assert server.metric("breeder_skipped_states_total") > 0
    await c.close()


STALLED_MAX_FRAMES = 400  # a stalled reader's socket buffers hold ~40 frames of 256² at quality 100


async def metric_above(server: LiveServer, name: str, value: float, timeout: float = TIMEOUT) -> float:
    """Wait until the server's metric `name` exceeds `value`; returns the new value."""
    deadline = asyncio.get_running_loop().time() + timeout
    while (now := await asyncio.to_thread(server.metric, name)) <= value:
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"{name} stayed at {now:g} for {timeout} s (waiting for > {value:g})")
        await asyncio.sleep(0.01)
    return now


async def test_client_that_never_reads_costs_one_frame(server):
    """A reader that stalls: frames keep being rendered, unsent ones are replaced, memory stays flat."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", server.port))
    ws = await websockets.connect(server.ws, sock=sock, max_queue=1, open_timeout=TIMEOUT)
    c = Client(ws)
    c.hello = await c.json()
    await c.setup(size=256, quality=100)
    dropped_before = server.metric("breeder_dropped_frames_total")
    rendered_before = server.metric("breeder_frames_total")
    rss_before = server.rss()
    # From here on the client sends but never reads: a move, and the next once the server rendered
    # it, until the socket buffers between us are full and the server starts replacing frames.
    rendered, dropped = rendered_before, dropped_before
    for i in range(1, STALLED_MAX_FRAMES + 1):
        await ws.send(json.dumps({"type": "move", "x": (i % 100) / 100, "y": (i % 37) / 37, "seq": i}))
        rendered = await metric_above(server, "breeder_frames_total", rendered)  # rendering goes on
        dropped = server.metric("breeder_dropped_frames_total")
        if dropped > dropped_before:
            break
    assert dropped > dropped_before, f"{i} frames for a stalled reader were all queued, none replaced"
    # now the reader costs one frame: each new frame replaces the unsent one
    for i in range(i + 1, i + 11):
        await ws.send(json.dumps({"type": "move", "x": (i % 100) / 100, "y": (i % 37) / 37, "seq": i}))
        rendered = await metric_above(server, "breeder_frames_total", rendered)
    await metric_above(server, "breeder_dropped_frames_total", dropped + 8)  # 9 of 10, or more
    grown = server.rss() - rss_before
    assert grown < 64 * 2**20, f"server grew by {grown / 2**20:.1f} MiB for a stalled reader"
    ws.transport.abort()
    # the server is still fine for others
    other = await Client.connect(server.ws)
    await other.setup()
    await other.close()


MALFORMED = [  # (message, the error code it must get)
    (b"\x00\x01binary", "binary_not_supported"),
    ("not json", "bad_json"),
    ("[1, 2]", "not_an_object"),
    ('"a string"', "not_an_object"),
    ("null", "not_an_object"),
    ("{}", "missing_field"),
    ('{"type": 5}', "bad_value"),
    ('{"type": "fly"}', "unknown_type"),
    ('{"type": "move", "x": 0.5, "y": 0.5}', "missing_field"),
    ('{"type": "move", "x": "0.5", "y": 0.5, "seq": 1}', "bad_value"),
    ('{"type": "move", "x": true, "y": 0.5, "seq": 1}', "bad_value"),
    ('{"type": "move", "x": NaN, "y": 0.5, "seq": 1}', "bad_json"),
    ('{"type": "move", "x": Infinity, "y": 0.5, "seq": 1}', "bad_json"),
    ('{"type": "move", "x": 1.5, "y": 0.5, "seq": 1}', "bad_value"),
    ('{"type": "move", "x": -0.1, "y": 0.5, "seq": 1}', "bad_value"),
    ('{"type": "move", "x": 0.5, "y": 0.5, "seq": -1}', "bad_value"),
    ('{"type": "move", "x": 0.5, "y": 0.5, "seq": 1.5}', "bad_value"),
    ('{"type": "move", "x": 0.5, "y": 0.5, "seq": 1, "z": 3}', "unknown_field"),
    ('{"type": "settings"}', "missing_field"),
    ('{"type": "settings", "width": 100}', "bad_value"),
    ('{"type": "settings", "width": 4096}', "bad_value"),
    ('{"type": "settings", "seed": -1}', "bad_value"),
    ('{"type": "settings", "seed": 99999999999999}', "bad_value"),
    ('{"type": "settings", "blend": "cubic"}', "bad_value"),
    ('{"type": "settings", "quality": 0}', "bad_value"),
    ('{"type": "settings", "quality": 101}', "bad_value"),
    ('{"type": "settings", "corner_seeds": [1, 2, 3]}', "bad_value"),
    ('{"type": "corners", "corners": [{"prompt": "a"}, {"prompt": "b"}, {"prompt": "c"}]}', "bad_value"),
    ('{"type": "corners", "corners": [{}, {"prompt": "b"}, {"prompt": "c"}, {"prompt": "d"}]}', "missing_field"),
    ('{"type": "corners", "corners": [{"genome": "../../etc/passwd"}, {"prompt": "b"}, {"prompt": "c"}, {"prompt": "d"}]}', "bad_value"),
    ('{"type": "corners", "corners": [{"genome": "0123456789abcdef"}, {"prompt": "b"}, {"prompt": "c"}, {"prompt": "d"}]}', "unknown_genome"),
    ('{"type": "corners", "corners": [{"prompt": "a"}, {"prompt": "b"}, {"prompt": "c"}, {"prompt": "d"}], "template": "no slot"}', "bad_template"),
    ('{"type": "corners", "corners": [{"prompt": "a"}, {"prompt": "b"}, {"prompt": "c"}, {"prompt": "d"}], "template": "[noken] [noken]"}', "bad_template"),
    (json.dumps({"type": "corners", "corners": [{"prompt": "word " * 100}] * 4}), "bad_prompt"),
    ('{"type": "breed", "parents": ["0123456789abcdef"]}', "bad_value"),
    ('{"type": "breed", "parents": ["0123456789abcdef", "fedcba9876543210"]}', "unknown_genome"),
    ('{"type": "breed", "parents": ["0123456789abcdef", "fedcba9876543210"], "mutation": 5}', "bad_value"),
    ('{"type": "record", "action": "pause"}', "bad_value"),
    ('{"type": "record", "action": "stop"}', "not_recording"),
    ("[" * 100 + "]" * 100, "too_deep"),
    ("[" * 10000, "too_deep"),
]

async def test_malformed_messages_each_get_an_error_and_the_session_goes_on(server):
    c = await Client.connect(server.ws)
    await c.setup()
    for bad, code in MALFORMED:
        await c.send(bad)
        reply = await c.json()
        assert (reply["type"], reply["code"]) == ("error", code), (bad, reply)
        assert reply["message"] and "Traceback" not in reply["message"]
    await c.send({"type": "move", "x": 0.1, "y": 0.9, "seq": 777})
    header, _ = await c.frame(777)
    assert header.seq == 777
    await c.close()


async def test_over_limit_message_closes_with_1009(server):
    c = await Client.connect(server.ws)
    await c.send(json.dumps({"type": "keep", "prompt": "x" * (c.hello["limits"]["max_message_bytes"] + 10)}))
    with pytest.raises(websockets.ConnectionClosed) as info:
        await c.recv()
    assert info.value.rcvd.code == 1009


async def test_move_before_corners_is_an_error(server):
    c = await Client.connect(server.ws)
    await c.send({"type": "move", "x": 0.5, "y": 0.5, "seq": 1})
    assert (await c.json())["code"] == "no_corners"
    await c.close()


async def test_disconnect_mid_render_is_harmless(server):
    for _ in range(3):
        c = await Client.connect(server.ws)
        await c.send({"type": "corners", "corners": CORNERS})
        await c.send({"type": "move", "x": 0.3, "y": 0.3, "seq": 1})
        await c.ws.close()
    assert httpx.get(server.http + "/healthz").json()["status"] == "ok"
    c = await Client.connect(server.ws)
    await c.setup()
    await c.close()


async def test_breed_keep_and_record_over_websocket(server):
    c = await Client.connect(server.ws)
    reply = await c.setup()
    a, b = reply["corners"][0]["genome"], reply["corners"][1]["genome"]
    await c.send({"type": "breed", "parents": [a, b], "seed": 3, "mutation": 0.1})
    child = (await c.json("genome"))["genome"]
    assert child["parents"] == [a, b] and child["seed"] == 3 and child["prompt"] is None
    await c.send({"type": "record", "action": "start"})
    for i in range(5):
        await c.send({"type": "move", "x": i / 4, "y": i / 4, "seq": 100 + i})
        await c.frame(100 + i)
    await c.send({"type": "keep", "prompt": "a kept blend"})
    kept = (await c.json("genome"))["genome"]
    assert kept["prompt"] == "a kept blend"
    await c.send({"type": "record", "action": "stop"})
    walk = await c.json("walk")
    assert walk["type"] == "walk" and walk["points"] >= 5
    stored = httpx.get(f"{server.http}/api/walks/{walk['walk']}").json()
    assert stored["walk"]["points"][-1][1:] == [1.0, 1.0]
    assert [x.get("prompt") for x in stored["walk"]["corners"]] == list(PROMPTS)
    info = httpx.get(f"{server.http}/api/genomes/{child['id']}").json()
    assert info["parents"] == [a, b]
    assert child["id"] in httpx.get(f"{server.http}/api/genomes/{a}").json()["children"]
    await c.close()


def test_rest_genomes_thumbnails_and_textual_inversion(server):
    r = httpx.post(server.http + "/api/genomes", json={"prompt": "a tiny red boat"})
    assert r.status_code == 201
    g = r.json()
    assert g["prompt"] == "a tiny red boat"
    assert g["id"] in [x["id"] for x in httpx.get(server.http + "/api/genomes").json()["genomes"]]
    thumb = httpx.get(f"{server.http}/api/genomes/{g['id']}/thumbnail.jpg", timeout=TIMEOUT)
    assert thumb.status_code == 200 and Image.open(io.BytesIO(thumb.content)).size == (256, 256)
    ti = httpx.get(f"{server.http}/api/genomes/{g['id']}/embedding.safetensors")
    tensors = load_safetensors(ti.content)
    assert tensors["clip_l"].shape == (g["length"], 32) and tensors["clip_g"].shape == (g["length"], 64)
    child = httpx.post(server.http + "/api/breed", json={"parents": [g["id"], g["id"]], "seed": 1})
    assert child.status_code == 201 and child.json()["parents"] == [g["id"], g["id"]]
    assert httpx.delete(f"{server.http}/api/genomes/{g['id']}").status_code == 204
    gone = httpx.get(f"{server.http}/api/genomes/{g['id']}")
    assert gone.status_code == 404 and gone.json()["code"] == "unknown_genome"


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "code"),
    [
        ("GET", "/api/genomes/0123456789abcdef", None, 404, "unknown_genome"),
        ("GET", "/api/genomes/..%2F..%2Fetc%2Fpasswd", None, 404, ("unknown_genome", "unknown_type")),
        ("GET", "/api/genomes/ZZZ/thumbnail.jpg", None, 404, "unknown_genome"),
        ("DELETE", "/api/genomes/0123456789abcdef", None, 404, "unknown_genome"),
        ("POST", "/api/genomes", b"not json", 400, "bad_json"),
        ("POST", "/api/genomes", b'{"prompt": 5}', 400, "bad_prompt"),
        ("POST", "/api/genomes", b'{"prompt": "a", "x": 1}', 400, "bad_value"),
        ("POST", "/api/breed", b'{"parents": ["0123456789abcdef", "0123456789abcdef"]}', 404, "unknown_genome"),
        ("POST", "/api/render", b'{"corners": []}', 400, "bad_value"),
        ("GET", "/api/walks/0123456789abcdef", None, 404, "unknown_walk"),
        ("POST", "/api/walks", b'{"format": "sdxl-breeder-walk", "version": 2}', 400, "bad_value"),
        ("GET", "/api/nothing-here", None, 404, "unknown_type"),
        ("GET", "/api/genomes?limit=abc", None, 400, "bad_value"),
    ],
)
def test_rest_errors_are_json(server, method, path, body, status, code):
    r = httpx.request(method, server.http + path, content=body)
    assert r.status_code == status, r.text
    assert r.json()["code"] in (code if isinstance(code, tuple) else (code,))
    assert "Traceback" not in r.text


def test_rest_render_png_at_corner_equals_engine_frame(server, renderer):
    body = {"corners": CORNERS, "x": 1.0, "y": 1.0, "seed": 11, "width": SIZE, "height": SIZE, "format": "png"}
    r = httpx.post(server.http + "/api/render", json=body, timeout=TIMEOUT)
    assert r.status_code == 200 and r.headers["content-type"] == "image/png"
    served = np.asarray(Image.open(io.BytesIO(r.content)).convert("RGB"))
    scene = Scene(tuple(renderer.genome_from_prompt(p) for p in PROMPTS))
    ours = renderer.render([FrameRequest(scene, 1.0, 1.0, FrameSettings(seed=11, width=SIZE, height=SIZE))])[0]
    assert np.abs(served.astype(int) - ours.astype(int)).max() <= 1


def test_metrics_and_health(server):
    text = httpx.get(server.http + "/metrics").text
    for name in ("breeder_frames_total", "breeder_batch_size_bucket", "breeder_render_seconds_bucket",
                 "breeder_frame_latency_seconds_bucket", "breeder_sessions"):
        assert name in text
    health = httpx.get(server.http + "/healthz").json()
    assert health["status"] == "ok" and health["model"] == "tiny"


def test_restart_keeps_genomes_and_walks(tmp_path):
    data = tmp_path / "data"
    with LiveServer(data) as first:
        ids = {httpx.post(first.http + "/api/genomes", json={"prompt": p}).json()["id"] for p in PROMPTS}
        walk = {"format": "sdxl-breeder-walk", "version": 1, "corners": CORNERS, "width": 64, "height": 64,
                "points": [[0, 0, 0], [1, 1, 1]]}
        wid = httpx.post(first.http + "/api/walks", json=walk).json()["id"]
    with LiveServer(data) as second:
        listed = {g["id"] for g in httpx.get(second.http + "/api/genomes").json()["genomes"]}
        assert ids <= listed
        again = httpx.post(second.http + "/api/genomes", json={"prompt": PROMPTS[0]}).json()["id"]
        assert again in ids  # a prompt is stored once, across restarts
        assert httpx.get(f"{second.http}/api/walks/{wid}").status_code == 200


async def test_token_and_origin_are_enforced(tmp_path):
    with LiveServer(tmp_path / "data", "--token", "s3cret") as live:
        assert httpx.get(live.http + "/api/genomes").status_code == 401
        assert httpx.get(live.http + "/api/genomes", headers={"Authorization": "Bearer s3cret"}).status_code == 200
        assert httpx.get(live.http + "/healthz").status_code == 200
        for url, origin, reason in [(live.ws, None, "token"), (live.ws + "?token=wrong", None, "token"),
                                    (live.ws + "?token=s3cret", "http://evil.example", "origin")]:
            refused = await websockets.connect(url, origin=origin)
            with pytest.raises(websockets.ConnectionClosed) as info:
                await asyncio.wait_for(refused.recv(), TIMEOUT)
            assert info.value.rcvd.code == 1008 and reason in info.value.rcvd.reason
        ok = await Client.connect(live.ws + "?token=s3cret")
        await ok.close()
        same = await Client.connect(live.ws + "?token=s3cret", origin=f"http://127.0.0.1:{live.port}")
        await same.close()


def test_non_loopback_host_needs_token(capsys):
    from sdxl_breeder.cli import main

    assert main(["serve", "--model", "tiny", "--host", "0.0.0.0", "--port", "1"]) == 2
    err = capsys.readouterr().err
    assert "--token" in err and "Traceback" not in err


async def test_recorded_walk_exports_mp4_and_rerenders_offline(server, renderer, tmp_path):
    from sdxl_breeder.walks.video import probe, read_video_frames
    from sdxl_breeder.walks.render import render_walk, walk_frames
    from sdxl_breeder.walks.walkfile import Walk

    c = await Client.connect(server.ws)
    await c.setup(size=64, corner_seeds=[1, 2, 3, 4])  # distinct noise per corner: distinct ends
    await c.send({"type": "record", "action": "start"})
    for i in range(6):
        await c.send({"type": "move", "x": i / 5, "y": 1 - i / 5, "seq": 10 + i})
        await c.frame(10 + i)
    await c.send({"type": "record", "action": "stop"})
    walk_id = (await c.json("walk"))["walk"]
    await c.close()

    walk = Walk.from_json(httpx.get(f"{server.http}/api/walks/{walk_id}").json()["walk"])
    fps = 60
    points = walk_frames(walk, fps)
    offline = list(render_walk(walk, renderer, fps=fps))
    assert len(offline) == len(points) >= 2
    diff = lambda a, b: np.abs(a.astype(float) - b.astype(float)).mean()  # noqa: E731
    assert diff(offline[0], offline[-1]) > 10, "the walk's ends look alike: the comparisons below prove nothing"

    # the same frames, losslessly: the server's PNG at each of the walk's points is the offline frame
    for pt, ours in zip(points, offline):
        body = {"corners": walk.to_json()["corners"], "x": pt.x, "y": pt.y, "seed": walk.seed, "blend": walk.blend,
                "corner_seeds": walk.corner_seeds, "width": 64, "height": 64, "format": "png"}
        r = httpx.post(server.http + "/api/render", json=body, timeout=TIMEOUT)
        assert r.status_code == 200, r.text
        theirs = np.asarray(Image.open(io.BytesIO(r.content)).convert("RGB"))
        assert np.abs(theirs.astype(int) - ours.astype(int)).max() <= 1, f"frame at {pt} differs"  # batch rounding

    # the video: one H.264 frame per point, each the offline frame up to H.264's loss
    r = httpx.get(f"{server.http}/api/walks/{walk_id}/video.mp4", params={"fps": fps, "width": 64, "height": 64}, timeout=TIMEOUT)
    assert r.status_code == 200 and r.headers["content-type"] == "video/mp4"
    path = tmp_path / "walk.mp4"
    path.write_bytes(r.content)
    info = probe(path)
    assert (info["frames"], info["width"], info["height"], info["codec"]) == (len(points), 64, 64, "h264")
    served = read_video_frames(path)
    for i, frame in enumerate(served):
        assert coarse_diff(frame, offline[i]) < 4, f"video frame {i} is not the walk's frame {i}"
    assert coarse_diff(served[0], offline[-1]) > 8  # ... and the ends are told apart
    bad = httpx.get(f"{server.http}/api/walks/{walk_id}/video.mp4", params={"fps": "fast"})
    assert bad.status_code == 400 and bad.json()["code"] == "bad_value"


async def test_errors_name_the_request_they_answer(server):
    c = await Client.connect(server.ws)
    await c.send({"type": "corners", "corners": CORNERS, "template": "[noken] [noken]"})
    err = await c.json()
    assert err["code"] == "bad_template" and err["in_reply_to"] == "corners"
    await c.send("not json")
    assert "in_reply_to" not in await c.json()
    await c.close()
