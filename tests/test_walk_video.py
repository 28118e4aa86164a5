"""Walk videos served like files: rendered once per (walk, fps, size) into the data dir, then
answered with HEAD, Range (206) and ETag (304); a render job with progress; a real Chromium
`<video>` seeks to the middle."""

from __future__ import annotations

import io
import time
from typing import Any, Iterator

import httpx
import numpy as np
import pytest
from PIL import Image

from sdxl_breeder.walks.walkfile import scripted_walk
from sdxl_breeder.walks.video import probe, read_video_frames
from tests.conftest import coarse_diff
from tests.live import LiveServer
from tests.page_helpers import LAUNCH_ARGS, find_chromium

TIMEOUT = 300.0


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[LiveServer]:
    with LiveServer(tmp_path_factory.mktemp("videos") / "data") as live:
        yield live


def store_walk(server: LiveServer, seconds: float = 2.0, seed: int = 0) -> str:
    walk = scripted_walk("circle", ["a red fox", "a blue whale", "an oak tree", "a city at night"], seconds=seconds,
                         fps=12, width=64, height=64, seed=seed)
    r = httpx.post(f"{server.http}/api/walks", json=walk.to_json(), timeout=TIMEOUT)
    assert r.status_code == 201, r.text
    return r.json()["id"]


def renders(server: LiveServer) -> float:
    return server.metric("breeder_video_renders_total")


def test_the_video_renders_once_then_answers_head_range_and_etag(server, tmp_path):
    wid = store_walk(server)
    url = f"{server.http}/api/walks/{wid}/video.mp4?fps=12"
    before = renders(server)
    full = httpx.get(url, timeout=TIMEOUT)
    assert full.status_code == 200 and full.headers["content-type"] == "video/mp4"
    assert full.headers["accept-ranges"] == "bytes" and full.headers["etag"]
    (tmp_path / "w.mp4").write_bytes(full.content)
    assert probe(tmp_path / "w.mp4")["frames"] == 24
    assert renders(server) == before + 1

    head = httpx.head(url, timeout=TIMEOUT)
    assert head.status_code == 200 and head.content == b""
    assert int(head.headers["content-length"]) == len(full.content) and head.headers["etag"] == full.headers["etag"]

    part = httpx.get(url, headers={"Range": "bytes=0-99"}, timeout=TIMEOUT)
    assert part.status_code == 206 and part.content == full.content[:100]
    assert part.headers["content-range"] == f"bytes 0-99/{len(full.content)}"
    tail = httpx.get(url, headers={"Range": f"bytes={len(full.content) - 10}-"}, timeout=TIMEOUT)
    assert tail.status_code == 206 and tail.content == full.content[-10:]

    same = httpx.get(url, headers={"If-None-Match": full.headers["etag"]}, timeout=TIMEOUT)
    assert same.status_code == 304 and same.content == b""
    assert httpx.get(url, timeout=TIMEOUT).content == full.content
    assert renders(server) == before + 1  # none of these rendered again
    assert server.metric("breeder_video_cache_hits_total") == 4  # HEAD, two ranges, the full file again (304 reads no file)

    # another frame rate is another video, rendered once
    other = httpx.get(f"{server.http}/api/walks/{wid}/video.mp4?fps=6", timeout=TIMEOUT)
    assert other.status_code == 200 and other.headers["etag"] != full.headers["etag"]
    assert renders(server) == before + 2


def test_a_render_job_reports_progress_then_the_file(server):
    wid = store_walk(server, seconds=4.0, seed=1)
    before = renders(server)
    started = httpx.post(f"{server.http}/api/walks/{wid}/video?fps=12", timeout=TIMEOUT)
    assert started.status_code == 202, started.text
    job = started.json()
    assert job["status"] == "rendering" and job["frames_total"] == 48
    assert started.headers["location"] == job["status_url"] == f"/api/walks/{wid}/video?fps=12&width=64&height=64"
    again = httpx.post(f"{server.http}/api/walks/{wid}/video?fps=12", timeout=TIMEOUT)
    assert again.status_code == 202  # the same job, not a second render
    seen = []
    deadline = time.monotonic() + TIMEOUT
    while job["status"] == "rendering":
        assert time.monotonic() < deadline, "the video did not finish"
        seen.append(job["frames_done"])
        time.sleep(0.05)
        job = httpx.get(server.http + job["status_url"], timeout=TIMEOUT).json()
    assert job["status"] == "done" and job["frames_done"] == 48 and job["error"] is None
    assert seen == sorted(seen) and all(0 <= n <= 48 for n in seen)
    video = httpx.get(server.http + job["video_url"], timeout=TIMEOUT)
    assert video.status_code == 200 and len(video.content) == job["bytes"]
    assert renders(server) == before + 1
    # a finished video is "done" straight away, POST or GET
    assert httpx.post(f"{server.http}/api/walks/{wid}/video?fps=12", timeout=TIMEOUT).json()["status"] == "done"


@pytest.mark.parametrize(("query", "status", "code"), [
    ("fps=0", 400, "bad_value"), ("fps=500", 400, "bad_value"), ("width=100", 400, "bad_value"),
    ("width=64.5", 400, "bad_value"), ("fps=60", 413, "too_large"),
])
def test_bad_video_requests_are_refused_at_the_door(server, query, status, code):
    wid = store_walk(server, seconds=70.0, seed=2)  # 70 s × 60 fps = 4200 frames: over the limit (3600)
    before = renders(server)
    for method in ("GET", "POST"):
        path = "video.mp4" if method == "GET" else "video"
        r = httpx.request(method, f"{server.http}/api/walks/{wid}/{path}?{query}", timeout=TIMEOUT)
        assert r.status_code == status and r.json()["code"] == code, r.text
    assert httpx.get(f"{server.http}/api/walks/0000000000000000/video.mp4", timeout=TIMEOUT).status_code == 404
    assert renders(server) == before


def test_a_gif_renders_once_from_its_job_and_decodes_back(server, tmp_path):
    wid = store_walk(server, seconds=2.0, seed=4)
    before = renders(server)
    started = httpx.post(f"{server.http}/api/walks/{wid}/video?format=gif&fps=6&width=128&height=64", timeout=TIMEOUT)
    assert started.status_code == 202, started.text
    job = started.json()
    assert (job["format"], job["frames_total"], job["width"], job["height"]) == ("gif", 12, 128, 64)
    assert job["status_url"] == f"/api/walks/{wid}/video?fps=6&width=128&height=64&format=gif"
    assert job["video_url"] == f"/api/walks/{wid}/video.gif?fps=6&width=128&height=64"
    deadline = time.monotonic() + TIMEOUT
    while job["status"] == "rendering":
        assert time.monotonic() < deadline, "the GIF did not finish"
        time.sleep(0.05)
        job = httpx.get(server.http + job["status_url"], timeout=TIMEOUT).json()
    assert job["status"] == "done" and job["frames_done"] == 12, job
    gif = httpx.get(server.http + job["video_url"], timeout=TIMEOUT)
    assert gif.status_code == 200 and gif.headers["content-type"] == "image/gif" and gif.content[:6] == b"GIF89a"
    assert gif.headers["content-disposition"] == f'inline; filename="walk-{wid}.gif"'
    with Image.open(io.BytesIO(gif.content)) as image:
        assert image.size == (128, 64) and image.n_frames == 12 and image.info["loop"] == 0
        delays, frames = [], []
        for i in range(image.n_frames):
            image.seek(i)
            delays.append(image.info["duration"])
            frames.append(np.asarray(image.convert("RGB")))
    assert sum(delays) == pytest.approx(2000, abs=20)  # 12 frames at 6 fps play for 2 s
    # served like the MP4: HEAD and Range from the file, and the MP4 of the same walk is another video
    head = httpx.head(server.http + job["video_url"], timeout=TIMEOUT)
    assert head.status_code == 200 and int(head.headers["content-length"]) == len(gif.content) == job["bytes"]
    part = httpx.get(server.http + job["video_url"], headers={"Range": "bytes=0-5"}, timeout=TIMEOUT)
    assert part.status_code == 206 and part.content == b"GIF89a"
    assert renders(server) == before + 1
    job = httpx.get(f"{server.http}/api/walks/{wid}/video?fps=6&width=128&height=64", timeout=TIMEOUT).json()
    assert (job["format"], job["status"]) == ("mp4", "none")  # the MP4 is another video
    # ...of the same frames: each GIF frame is its MP4 twin (both lossy, so compared coarsely)
    mp4 = httpx.get(server.http + job["video_url"], timeout=TIMEOUT)
    assert mp4.status_code == 200 and renders(server) == before + 2
    (tmp_path / "w.mp4").write_bytes(mp4.content)
    twins = read_video_frames(tmp_path / "w.mp4")
    assert len(twins) == 12
    for i, (frame, twin) in enumerate(zip(frames, twins)):
        assert coarse_diff(frame, twin) < 4, f"GIF frame {i} is not the MP4's frame {i}"
    assert coarse_diff(frames[0], twins[6]) > coarse_diff(frames[0], twins[0])  # the walk moves


@pytest.mark.parametrize(("path", "status", "code", "says"), [
    ("video?format=avi", 400, "bad_value", "format must be one of mp4, gif"),
    ("video?format=gif&fps=60", 400, "bad_value", "max_gif_fps"),
    ("video.gif?fps=60", 400, "bad_value", "max_gif_fps"),
    ("video.gif?width=100", 400, "bad_value", "width must be a multiple of 64"),
    ("video?format=gif&fps=12", 413, "too_large", "max_gif_frames"),  # 70 s × 12 fps = 840 frames: over 600
    ("video.gif?fps=12", 413, "too_large", "max_gif_frames"),
])
def test_bad_gif_requests_are_refused_and_change_nothing(server, path, status, code, says):
    wid = store_walk(server, seconds=70.0, seed=2)
    before = renders(server)
    for method in ("GET", "POST") if path.startswith("video?") else ("GET",):  # the job, or the file
        r = httpx.request(method, f"{server.http}/api/walks/{wid}/{path}", timeout=TIMEOUT)
        assert r.status_code == status and r.json()["code"] == code and says in r.json()["message"], r.text
    assert httpx.get(f"{server.http}/api/walks/{wid}/video.avi", timeout=TIMEOUT).status_code == 404
    # the same walk as an MP4 at that rate is fine: its limit is max_video_frames
    assert httpx.get(f"{server.http}/api/walks/{wid}/video?fps=12", timeout=TIMEOUT).json()["status"] == "none"
    assert renders(server) == before


def test_chromium_video_element_seeks_to_the_middle(server):
    from playwright import sync_api

    path = find_chromium()
    if path is None:
        pytest.skip("no Chromium found (install the Debian `chromium` package or set BREEDER_CHROMIUM)")
    wid = store_walk(server, seconds=4.0, seed=3)
    url = f"{server.http}/api/walks/{wid}/video.mp4?fps=12"
    assert httpx.get(url, timeout=TIMEOUT).status_code == 200  # rendered; the browser reads the file
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=path, args=LAUNCH_ARGS)
        try:
            page = browser.new_page()
            page.set_content(f'<video id="v" src="{url}" muted preload="auto"></video>')
            result: dict[str, Any] = page.evaluate("""async () => {
                const v = document.getElementById('v');
                if (v.readyState < 1) await new Promise((ok, fail) => {
                    v.addEventListener('loadedmetadata', ok, {once: true});
                    v.addEventListener('error', () => fail(new Error('video error ' + (v.error && v.error.code))), {once: true});
                });
                const seekable = [v.seekable.start(0), v.seekable.end(0)];
                const target = v.duration / 2;
                const seeked = new Promise((ok) => v.addEventListener('seeked', ok, {once: true}));
                v.currentTime = target;
                await seeked;
                return {duration: v.duration, seekable, target, now: v.currentTime, ranges: v.seekable.length};
            }""")
        finally:
            browser.close()
    assert result["duration"] == pytest.approx(4.0, abs=0.2)
    assert result["seekable"][0] == 0 and result["seekable"][1] == pytest.approx(result["duration"], abs=0.1)
    assert result["now"] == pytest.approx(result["target"], abs=0.1)
