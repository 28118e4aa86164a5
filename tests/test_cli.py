"""`sdxl-breeder render` and the CLI's error handling."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from importlib.metadata import version

import numpy as np
import pytest
from PIL import Image

from sdxl_breeder.cli import main
from sdxl_breeder.model.scene import Scene
from tests.conftest import PROMPTS
from sdxl_breeder.model.renderer import FrameRequest
from sdxl_breeder.spec import FrameSettings


@pytest.mark.parametrize("suffix", [".png", ".jpg"])
def test_render_writes_the_corner_frame(tmp_path, renderer, suffix):
    out = tmp_path / f"frame{suffix}"
    assert main(["render", "--model", "tiny", "--device", "cpu", "--corners", *PROMPTS, "--x", "1", "--y", "0",
                 "--seed", "5", "--width", "128", "--height", "64", "--out", str(out)]) == 0
    img = np.asarray(Image.open(out).convert("RGB"))
    assert img.shape == (64, 128, 3)
    if suffix == ".png":
        scene = Scene(tuple(renderer.genome_from_prompt(p) for p in PROMPTS))
        ours = renderer.render([FrameRequest(scene, 1, 0, FrameSettings(seed=5, width=128, height=64))])[0]
        assert np.abs(img.astype(int) - ours).max() <= 1


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--prompt", "a", "--width", "100"], "multiple of 64"),
        (["--prompt", "a", "--x", "2"], "within [0, 1]"),
        (["--prompt", "a", "--template", "no slot"], "exactly one [noken]"),
        (["--prompt", "a", "--model", "nonsense"], "--model tiny"),
        (["--prompt", "a", "--seed", "-3"], "seed"),
        (["--out-missing"], "arguments"),
    ],
)
def test_bad_arguments_give_one_clear_line(tmp_path, args, message):
    out = tmp_path / "x.png"
    argv = [sys.executable, "-m", "sdxl_breeder.cli", "render", "--model", "tiny", *args]
    if "--out-missing" in args:
        argv = [sys.executable, "-m", "sdxl_breeder.cli", "render", "--prompt", "a"]
    else:
        argv += ["--out", str(out)]
    r = subprocess.run(argv, capture_output=True, text=True, timeout=120, env={"HF_HUB_OFFLINE": "1", **os.environ})
    assert r.returncode == 2
    assert message in r.stderr
    assert "Traceback" not in r.stderr


def test_help_lists_every_command():
    r = subprocess.run([sys.executable, "-m", "sdxl_breeder", "--help"], capture_output=True, text=True, timeout=60,
                       env={**os.environ, "COLUMNS": "100"})
    assert r.returncode == 0
    # the command list: an indented "name  help" line per command ("render" must not match "render-walk")
    listed = {m.group(1) for m in re.finditer(r"^ {4}([a-z][a-z-]*) {2,}\S", r.stdout, re.MULTILINE)}
    assert listed == {"render", "serve", "bench", "walk", "render-walk"}, r.stdout


@pytest.mark.parametrize("argv", [["-m", "sdxl_breeder"], ["-m", "sdxl_breeder.cli"]])
def test_version_is_the_installed_distribution_version(argv):
    r = subprocess.run([sys.executable, *argv, "--version"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == f"sdxl-breeder {version('sdxl-breeder')}"
