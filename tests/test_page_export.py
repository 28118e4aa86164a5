"""Exporting a recorded walk from the page, in a real Chromium against a real tiny-model server: the
render job's progress shown to the end, the MP4 and the GIF downloaded, one export at a time, and a
busy server said plainly. Screenshots land in artifacts/screenshots/ as for every page test."""

from __future__ import annotations

import io
import re
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image

from sdxl_breeder.walks.walkfile import scripted_walk
from tests.live import LiveServer
from tests.test_page import TIMEOUT_MS, Pad, browser, open_pad, pad, server, sync_api  # noqa: F401 — the page tests' fixtures

expect = sync_api.expect
pytestmark = pytest.mark.timeout(300)
RENDER_MS = 180_000  # a few frames of the tiny model on a busy CPU

# Every state the export row shows, in order (a MutationObserver sees each change).
WATCH = """() => {
    const log = window.exportLog = [];
    const box = document.getElementById('export-progress');
    new MutationObserver(() => log.push({
        state: box.dataset.state, text: document.getElementById('export-text').textContent,
        disabled: document.getElementById('export').disabled,
        value: document.getElementById('export-bar').value, max: document.getElementById('export-bar').max,
    })).observe(box, {subtree: true, childList: true, attributes: true, characterData: true});
}"""


def export(pad: Pad, video_posts: list[str]) -> tuple[bytes, str, list[dict[str, Any]]]:
    """Click Export twice at once; the downloaded file, its name, and the states the row showed."""
    page = pad.page
    pad.js(WATCH)
    posts = len(video_posts)
    with page.expect_download(timeout=RENDER_MS) as download:
        pad.js("() => { const b = document.getElementById('export'); b.click(); b.click(); }")
    path = download.value.path()
    assert path is not None, download.value.failure()
    expect(page.get_by_test_id("export-progress")).to_have_attribute("data-state", "done")
    assert len(video_posts) == posts + 1  # the second click started nothing
    return Path(path).read_bytes(), download.value.suggested_filename, pad.js("window.exportLog")


def check_progress(log: list[dict[str, Any]], name: str) -> int:
    """The row went rendering (button disabled, frames counting up) → done (bar full); the frame count."""
    rendering = [e for e in log if e["state"] == "rendering"]
    assert rendering and all(e["disabled"] for e in rendering), log
    counts = [tuple(map(int, m.groups())) for e in rendering if (m := re.search(r"(\d+) / (\d+) frames", e["text"]))]
    assert counts, log  # at least the job's first answer: a new video is "rendering" when it starts
    total = counts[0][1]
    assert [done for done, _ in counts] == sorted(done for done, _ in counts) and {t for _, t in counts} == {total}
    assert all(e["text"].startswith(f"Rendering the {name}") for e in rendering if " / " in e["text"])
    last = log[-1]
    assert last["state"] == "done" and last["value"] == last["max"] and f"{name} ready: {total} frames" in last["text"], log
    return total


def test_export_shows_progress_to_the_end_then_downloads_the_mp4_and_the_gif(pad: Pad) -> None:
    page = pad.page
    video_posts: list[str] = []
    page.on("request", lambda r: r.method == "POST" and "/video?" in r.url and video_posts.append(r.url))
    pad.record_walk()
    button = page.get_by_test_id("export")
    expect(button).to_have_text("⬇ Export MP4")
    page.get_by_test_id("export-fps").select_option("6")
    page.get_by_test_id("export-size").select_option("256")

    data, name, log = export(pad, video_posts)
    frames = check_progress(log, "MP4")
    walk_id = re.search(r"/api/walks/([0-9a-f]{16})/video\?format=mp4&fps=6&width=256&height=256$", video_posts[-1]).group(1)
    assert name == f"walk-{walk_id}.mp4" and data[4:8] == b"ftyp" and b"avc1" in data
    link = page.get_by_test_id("export-file")
    expect(link).to_be_visible()
    expect(link).to_have_attribute("href", f"/api/walks/{walk_id}/video.mp4?fps=6&width=256&height=256")
    expect(button).to_be_enabled()

    # the same walk as a GIF: another job, the same frames
    page.get_by_test_id("export-format").select_option("gif")
    expect(button).to_have_text("⬇ Export GIF")
    data, name, log = export(pad, video_posts)
    assert check_progress(log, "GIF") == frames
    assert name == f"walk-{walk_id}.gif" and data[:6] == b"GIF89a"
    with Image.open(io.BytesIO(data)) as gif:
        assert gif.size == (256, 256) and gif.n_frames == frames
    expect(page.get_by_test_id("export-file")).to_have_attribute("href", re.compile(r"/video\.gif\?fps=6&width=256&height=256$"))
    assert pad.errors == []


def test_a_busy_server_is_said_plainly_and_the_export_can_be_tried_again(browser: Any, tmp_path: Path) -> None:
    with LiveServer(tmp_path / "data") as live:
        # fill both video slots (max_video_jobs = 2) with long renders that outlast this test
        for seed in (1, 2):
            walk = scripted_walk("circle", ["a", "b", "c", "d"], seconds=100.0, fps=30, width=256, height=256, seed=seed)
            wid = httpx.post(f"{live.http}/api/walks", json=walk.to_json(), timeout=60).json()["id"]
            assert httpx.post(f"{live.http}/api/walks/{wid}/video?fps=30", timeout=60).status_code == 202
        context = browser.new_context(viewport={"width": 1280, "height": 900})
        try:
            pad = Pad(context.new_page())
            pad.page.set_default_timeout(TIMEOUT_MS)
            pad.page.goto(live.url + "/")
            pad.wait("window.breeder && window.breeder.framesShown > 0")
            pad.record_walk()
            pad.page.get_by_test_id("export").click()
            progress = pad.page.get_by_test_id("export-progress")
            expect(progress).to_have_attribute("data-state", "busy")
            expect(progress).to_have_attribute("role", "alert")
            expect(pad.page.get_by_test_id("export-text")).to_have_text(
                "The server is busy: 2 videos are rendering (the limit is 2); try again when one is done")
            expect(pad.page.get_by_test_id("export-file")).to_be_hidden()
            expect(pad.page.get_by_test_id("export")).to_be_enabled()  # try again later
            assert [e for e in pad.errors if "429" not in e] == []  # the browser logs the refused fetch itself
        finally:
            context.close()
