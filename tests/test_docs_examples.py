"""Every Python example in docs/scripting.md and docs/walks.md runs, for real: client examples
against a live tiny server, offline ones on the tiny model, each in a fresh interpreter.

Examples are written as users read them: the server at ws://127.0.0.1:8000/ws, and snippets that
continue an earlier one (`async with BreederClient() as client:` at top level) rely on its imports.
The runner points them at the test server and wraps such snippets in `asyncio.run`.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from sdxl_breeder.walks.walkfile import Walk, scripted_walk
from tests.live import ROOT, LiveServer

DOCS = ROOT / "docs"
PAGES = ("scripting.md", "walks.md")
DEFAULT_WS = "ws://127.0.0.1:8000/ws"


def blocks(language: str) -> list[tuple[str, str]]:
    found = []
    for page in PAGES:
        for i, code in enumerate(re.findall(rf"^```{language}\n(.*?)^```", (DOCS / page).read_text(), re.S | re.M)):
            found.append((f"{page}#{language}{i + 1}", code))
    return found


PYTHON = blocks("python")
LIVE = [(name, code) for name, code in PYTHON if "BreederClient" in code]
OFFLINE = [(name, code) for name, code in PYTHON if "BreederClient" not in code]


def runnable(code: str, ws: str) -> str:
    code = code.replace(DEFAULT_WS, ws).replace("BreederClient()", f"BreederClient({ws!r})")
    top_level_await = re.search(r"^(async with|async for|await) ", code, re.M) and "asyncio.run(" not in code
    if top_level_await:  # a continuation: run it in a coroutine, with the page's imports
        code = ("import asyncio\nfrom sdxl_breeder.client import BreederClient\n\n"
                "async def _example():\n" + textwrap.indent(code, "    ") + "\nasyncio.run(_example())\n")
    return code


def run(code: str, cwd: Path) -> None:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
    r = subprocess.run([sys.executable, "-c", code], cwd=cwd, capture_output=True, text=True, timeout=300, env=env)
    assert r.returncode == 0, f"example failed:\n{code}\n--- stderr ---\n{r.stderr[-3000:]}"


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    with LiveServer(tmp_path_factory.mktemp("docs-live") / "data") as server:
        yield server


@pytest.fixture
def workdir(tmp_path):
    """What the examples expect in the current folder: the walk file and the video the pages'
    commands (`sdxl-breeder walk --walk-file fox-circle.json`, `… --out walk.mp4`) leave behind."""
    from sdxl_breeder.walks.video import VideoWriter

    import numpy as np

    scripted_walk("circle", ["a red fox", "a blue whale", "an oak tree", "a city at night"], seconds=1, fps=12,
                  width=64, height=64).save(tmp_path / "fox-circle.json")
    with VideoWriter(tmp_path / "walk.mp4", 12, 64, 64) as writer:
        for i in range(12):
            writer.write(np.full((64, 64, 3), i * 20, np.uint8))
    return tmp_path


def test_the_pages_have_examples():
    assert len(LIVE) >= 4 and len(OFFLINE) >= 2


@pytest.mark.parametrize(("name", "code"), LIVE, ids=[n for n, _ in LIVE])
def test_client_example_runs_against_a_live_server(name, code, live, workdir):
    run(runnable(code, live.ws), workdir)


@pytest.mark.parametrize(("name", "code"), OFFLINE, ids=[n for n, _ in OFFLINE])
def test_offline_example_runs(name, code, workdir):
    run(runnable(code, DEFAULT_WS), workdir)


@pytest.mark.parametrize(("name", "text"), blocks("json"), ids=[n for n, _ in blocks("json")])
def test_walk_file_examples_are_valid_walks(name, text):
    obj = json.loads(text)
    if obj.get("format") == "sdxl-breeder-walk":
        assert Walk.from_json(obj).to_json()["corners"] == obj["corners"]
