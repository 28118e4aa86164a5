"""The real server on loopback against odd input and odd clients: limits at the door, text that is
not Unicode, walks too long to render, disconnects, and what /metrics exports."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import httpx
import pytest
import websockets

from sdxl_breeder.spec import LIMITS
from tests.conftest import PROMPTS
from tests.live import LiveServer

TIMEOUT = 60
CORNERS = [{"prompt": p} for p in PROMPTS]
SURROGATE = "a \ud800 cat"  # json.dumps escapes it, so it reaches the server as valid JSON text


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    with LiveServer(tmp_path_factory.mktemp("rest") / "data") as server:
        yield server


def _files(data_dir: Path) -> set[Path]:
    return {p for p in data_dir.rglob("*") if p.is_file() and p.suffix == ".safetensors"}


async def _hello(url: str):
    ws = await websockets.connect(url, open_timeout=TIMEOUT)
    assert json.loads(await asyncio.wait_for(ws.recv(), TIMEOUT))["type"] == "hello"
    return ws


async def _reply(ws) -> dict:
    while True:
        m = await asyncio.wait_for(ws.recv(), TIMEOUT)
        if isinstance(m, str):
            return json.loads(m)


async def test_lone_surrogates_are_bad_prompts_and_write_nothing(live):
    before = _files(live.data_dir)
    ws = await _hello(live.ws)
    await ws.send(json.dumps({"type": "corners", "corners": [{"prompt": SURROGATE}] + CORNERS[1:]}))
    err = await _reply(ws)
    assert (err["code"], err["in_reply_to"]) == ("bad_prompt", "corners"), err
    await ws.send(json.dumps({"type": "corners", "corners": CORNERS, "template": "a [noken] \udfff"}))
    err = await _reply(ws)
    assert (err["code"], err["in_reply_to"]) == ("bad_template", "corners"), err
    await ws.send(json.dumps({"type": "corners", "corners": CORNERS}))
    assert (await _reply(ws))["type"] == "corners"
    stored = _files(live.data_dir)
    await ws.send(json.dumps({"type": "keep", "prompt": SURROGATE}))
    err = await _reply(ws)
    assert (err["code"], err["in_reply_to"]) == ("bad_prompt", "keep"), err
    assert _files(live.data_dir) == stored  # no orphan genome file from the refused keep
    await ws.close()
    r = httpx.post(live.http + "/api/genomes", content=json.dumps({"prompt": SURROGATE}))
    assert r.status_code == 400 and r.json()["code"] == "bad_prompt"
    walk = {"format": "sdxl-breeder-walk", "version": 1, "corners": [{"prompt": SURROGATE}] + CORNERS[1:],
            "points": [[0, 0, 0]]}
    r = httpx.post(live.http + "/api/walks", content=json.dumps(walk))
    assert r.status_code == 400 and r.json()["code"] == "bad_value"
    assert before <= _files(live.data_dir)
    assert "Traceback" not in live.log_path.read_text(errors="replace")


@pytest.mark.parametrize("path", ["/api/genomes?limit=1.5", "/api/genomes?offset=2.0", "/api/genomes?limit=1e2",
                                  "/api/genomes?limit=0x10"])
def test_whole_number_parameters_are_not_truncated(live, path):
    r = httpx.get(live.http + path)
    assert r.status_code == 400 and r.json()["code"] == "bad_value", r.text


def _walk(points, size: int = 64) -> dict:
    return {"format": "sdxl-breeder-walk", "version": 1, "corners": CORNERS, "width": size, "height": size,
            "points": points}


def test_walk_limits(live):
    big = httpx.post(live.http + "/api/walks", json=_walk([[0, 0, 0], [1, 1, 1]], size=2048))
    assert big.status_code == 400 and "1024" in big.json()["message"]
    wid = httpx.post(live.http + "/api/walks", json=_walk([[0, 0, 0], [1000, 1, 1]])).json()["id"]
    video = f"{live.http}/api/walks/{wid}/video.mp4"
    for params in ({"fps": 37}, {"fps": 4}):  # 37000 frames: past the walk limit; 4000: past the video limit
        r = httpx.get(video, params=params, timeout=TIMEOUT)
        assert r.status_code == 413 and r.json()["code"] == "too_large", r.text
    forever = httpx.post(live.http + "/api/walks", json=_walk([[0, 0, 0], [1e308, 1, 1]])).json()["id"]
    r = httpx.get(f"{live.http}/api/walks/{forever}/video.mp4", params={"fps": 12}, timeout=TIMEOUT)
    assert r.status_code == 413 and r.json()["code"] == "too_large", r.text
    for params in ({"width": "64.5"}, {"height": "2048"}, {"width": "100"}, {"fps": "121"}, {"fps": "nan"}):
        r = httpx.get(video, params=params, timeout=TIMEOUT)
        assert r.status_code == 400 and r.json()["code"] == "bad_value", (params, r.text)
    assert "Traceback" not in live.log_path.read_text(errors="replace")


def test_a_short_walk_video_renders_at_another_size(live):
    wid = httpx.post(live.http + "/api/walks", json=_walk([[0, 0, 0], [0.25, 1, 1]])).json()["id"]
    r = httpx.get(f"{live.http}/api/walks/{wid}/video.mp4", params={"fps": 8, "width": 128}, timeout=TIMEOUT)
    assert r.status_code == 200 and r.headers["content-type"] == "video/mp4" and r.content[4:8] == b"ftyp"


def test_limits_are_in_hello_and_config(live):
    limits = httpx.get(live.http + "/api/config").json()["limits"]
    for name in ("max_body_bytes", "max_fps", "max_video_frames", "max_record_points"):
        assert limits[name] == getattr(LIMITS, name)


def test_metrics_export_process_and_python_and_speak_openmetrics(live):
    text = httpx.get(live.http + "/metrics")
    assert text.headers["content-type"].startswith("text/plain")
    for name in ("process_resident_memory_bytes", "process_cpu_seconds_total", "python_info",
                 "python_gc_objects_collected_total", "breeder_frames_total", "breeder_sessions"):
        assert name in text.text, name
    om = httpx.get(live.http + "/metrics", headers={"Accept": "application/openmetrics-text; version=1.0.0; charset=utf-8"})
    assert om.headers["content-type"].startswith("application/openmetrics-text")
    assert om.text.endswith("# EOF\n") and "breeder_frames_total" in om.text and "python_info" in om.text


async def test_disconnects_mid_request_log_no_errors(live):
    start = len(live.log_path.read_text(errors="replace"))  # only what this test adds counts
    busy = await _hello(live.ws)  # keeps the render thread busy, so replies come after the client left
    await busy.send(json.dumps({"type": "settings", "width": 1024, "height": 1024}))
    await busy.send(json.dumps({"type": "corners", "corners": CORNERS}))

    async def leave_abruptly(i: int) -> None:
        ws = await _hello(live.ws)
        await busy.send(json.dumps({"type": "move", "x": (i % 10) / 10, "y": 0.5, "seq": i}))
        # a new prompt waits for the render thread to be embedded; its reply then finds the socket gone
        await ws.send(json.dumps({"type": "corners", "corners": [{"prompt": f"a cat number {i}"}] + CORNERS[1:]}))
        await asyncio.sleep(0.1)
        ws.transport.abort()  # no close frame: as when a tab is killed

    for i in range(0, 24, 8):
        await asyncio.gather(*(leave_abruptly(j) for j in range(i, i + 8)))
    await busy.close()
    # the server has answered everything it was going to once a fresh session gets its reply
    ws = await _hello(live.ws)
    await ws.send(json.dumps({"type": "corners", "corners": [{"prompt": "the last cat"}] + CORNERS[1:]}))
    assert (await _reply(ws))["type"] == "corners"
    await ws.close()
    for _ in range(100):
        if httpx.get(live.http + "/healthz").json()["sessions"] == 0:
            break
        await asyncio.sleep(0.2)
    added = live.log_path.read_text(errors="replace")[start:]
    assert "Traceback" not in added and "ERROR" not in added, added[-3000:]
