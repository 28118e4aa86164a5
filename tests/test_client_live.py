"""The documented scripting client and `sdxl-breeder walk` against the real server (tiny model)."""

from __future__ import annotations

import subprocess
import sys

import httpx
import numpy as np
import pytest

from sdxl_breeder.client import BreederClient, BreederError, Frame, SyncBreederClient
from sdxl_breeder.model.renderer import FrameRequest
from sdxl_breeder.model.scene import Scene
from sdxl_breeder.spec import FrameSettings
from tests.conftest import PROMPTS, coarse_diff
from tests.live import LiveServer, served

SIZE = 64
TIMEOUT = 60.0


server = served("client")


def pixels(frame: Frame) -> np.ndarray:
    return np.asarray(frame.image.convert("RGB"))


def corner_frame(renderer, x: float, y: float, seed: int) -> np.ndarray:
    scene = Scene(tuple(renderer.genome_from_prompt(p) for p in PROMPTS))
    return renderer.render([FrameRequest(scene, x, y, FrameSettings(seed=seed, width=SIZE, height=SIZE))])[0]


def shows(frame: np.ndarray, twin: np.ndarray, other: np.ndarray) -> bool:
    """A lossy frame shows the lossless `twin`: it is far nearer it than the `other` frame."""
    return coarse_diff(frame, twin) * 3 < coarse_diff(frame, other)


async def test_async_client_flies_breeds_keeps_and_records(server, renderer):
    async with BreederClient(server.ws, timeout=TIMEOUT) as client:
        assert client.hello["model"] == "tiny" and client.hello["version"] == 1
        settings = await client.settings(width=SIZE, height=SIZE, seed=5, quality=100)
        assert (settings["width"], settings["height"], settings["seed"]) == (SIZE, SIZE, 5)
        corners = await client.set_corners(list(PROMPTS))
        assert [c["prompt"] for c in corners] == list(PROMPTS) and all(len(c["genome"]) == 16 for c in corners)

        await client.record_start()
        frame = await client.move(1.0, 0.0)  # the top-right corner
        assert (frame.x, frame.y, frame.header.seed) == (1.0, 0.0, 5)
        assert frame.image.size == (SIZE, SIZE)
        top_right, top_left = corner_frame(renderer, 1, 0, 5), corner_frame(renderer, 0, 0, 5)
        assert shows(pixels(frame), top_right, top_left)
        last = await client.move(0.0, 0.0)
        assert last.seq == frame.seq + 1 and shows(pixels(last), top_left, top_right)
        walk = await client.record_stop()
        stored = httpx.get(f"{server.http}/api/walks/{walk['walk']}", timeout=TIMEOUT).json()["walk"]
        assert [p[1:] for p in stored["points"]][-2:] == [[1.0, 0.0], [0.0, 0.0]]

        child = await client.breed(corners[0]["genome"], corners[1]["genome"], seed=3, mutation=0.1)
        assert child["parents"] == [corners[0]["genome"], corners[1]["genome"]] and child["origin"] == "breed"
        kept = await client.keep("the top-left blend")
        assert kept["origin"] == "keep" and kept["prompt"] == "the top-left blend"

        # an error answers its request, and the session goes on
        with pytest.raises(BreederError) as info:
            await client.set_corners([{"genome": "0123456789abcdef"}, *PROMPTS[1:]])
        assert info.value.code == "unknown_genome"
        with pytest.raises(BreederError) as info:
            await client.settings(width=100)
        assert info.value.code == "bad_value"
        await client.set_corners([{"genome": child["id"]}, *PROMPTS[1:]])
        assert (await client.move(0.5, 0.5)).image.size == (SIZE, SIZE)


async def test_move_nowait_and_frames_end_on_the_newest_move(server):
    async with BreederClient(server.ws, timeout=TIMEOUT) as client:
        await client.settings(width=SIZE, height=SIZE)
        await client.set_corners(list(PROMPTS))
        stream = client.frames()
        seqs = [await client.move_nowait(i / 29, 0.5) for i in range(30)]
        seen = []
        async for frame in stream:
            seen.append(frame.seq)
            if frame.seq == seqs[-1]:
                break
        assert seen == sorted(seen) and seen[-1] == seqs[-1]
        assert client.latest_frame() is not None and client.latest_frame().x == 1.0


def test_sync_client_against_the_server(server):
    with SyncBreederClient(server.http, timeout=TIMEOUT) as client:  # http://host:port is fine too
        assert client.hello["model"] == "tiny"
        client.settings(width=SIZE, height=SIZE, corner_seeds=[1, 2, 3, 4])
        corners = client.set_corners(list(PROMPTS))
        assert len(corners) == 4
        frame = client.move(0.25, 0.75)
        assert (frame.x, frame.y) == (0.25, 0.75) and frame.image.size == (SIZE, SIZE)
        client.move_nowait(0.5, 0.5)
        assert client.next_frame().seq >= frame.seq
        with pytest.raises(BreederError) as info:
            client.breed("0123456789abcdef", corners[0]["genome"])
        assert info.value.code == "unknown_genome"
        assert client.move(1.0, 1.0).seq > frame.seq


def _walk(server: LiveServer, *args: str) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "sdxl_breeder", "walk", "--server", server.ws, *args]
    return subprocess.run(argv, capture_output=True, text=True, timeout=300)


def test_cli_walk_streams_frames_that_the_walk_file_rerenders(server, renderer, tmp_path):
    from sdxl_breeder.walks.walkfile import Walk
    from sdxl_breeder.walks.render import render_walk
    from sdxl_breeder.walks.video import probe, read_video_frames

    frames, walk_file = tmp_path / "frames", tmp_path / "walk.json"
    r = _walk(server, "--corners", *PROMPTS, "--path", "line", "--points", "0,0", "1,1", "--seconds", "1",
              "--fps", "4", "--width", str(SIZE), "--height", str(SIZE), "--corner-seeds", "1", "2", "3", "4",
              "--walk-file", str(walk_file), "--out", str(frames))
    assert r.returncode == 0, r.stderr
    assert f"wrote {frames} (4 frames, {SIZE}×{SIZE}, fps 4)" in r.stdout
    streamed = read_video_frames(frames)
    offline = list(render_walk(Walk.load(walk_file), renderer, fps=4))
    assert len(streamed) == len(offline) == 4
    for i in (0, 3):  # the corners (0, 0) and (1, 1): each frame is its own end's picture
        assert shows(streamed[i], offline[i], offline[3 - i]), f"streamed frame {i}"

    mp4 = tmp_path / "walk.mp4"
    r = _walk(server, "--corners", *PROMPTS, "--path", "circle", "--seconds", "0.5", "--fps", "8",
              "--width", str(SIZE), "--height", str(SIZE), "--out", str(mp4))
    assert r.returncode == 0, r.stderr
    assert (probe(mp4)["frames"], probe(mp4)["codec"]) == (4, "h264")


def test_cli_walk_server_errors_are_one_line(server, tmp_path):
    r = _walk(server, "--corners", "genome:0123456789abcdef", *PROMPTS[1:], "--seconds", "0.5", "--fps", "4",
              "--width", str(SIZE), "--height", str(SIZE), "--out", str(tmp_path / "x.mp4"))
    assert r.returncode == 2
    assert "sdxl-breeder walk: error: server error: unknown_genome" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "x.mp4").exists()
