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
    assert listed == {"render", "serve", "bench", "walk", "render-walk", "save-model", "evolve"}, r.stdout


@pytest.mark.parametrize("argv", [["-m", "sdxl_breeder"], ["-m", "sdxl_breeder.cli"]])
def test_version_is_the_installed_distribution_version(argv):
    r = subprocess.run([sys.executable, *argv, "--version"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == f"sdxl-breeder {version('sdxl-breeder')}"


# --------------------------------------------------------------------------- rough edges, each one line
def _cli(*args: str, env: dict[str, str] | None = None, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "sdxl_breeder.cli", *args], capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, "HF_HUB_OFFLINE": "1", **(env or {})})


def _one_line_error(r: subprocess.CompletedProcess[str], *expected: str) -> str:
    assert r.returncode == 2, r.stderr
    assert "Traceback" not in r.stderr
    lines = [line for line in r.stderr.splitlines() if "error:" in line]
    assert len(lines) == 1, r.stderr
    for text in expected:
        assert text in lines[0], lines[0]
    return lines[0]


UNREACHABLE = "ws://127.0.0.1:9/ws"  # nothing listens there: an error about it means we connected too early


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["serve", "--model", "tiny", "--port", "70000"], ["--port", "70000", "[0, 65535]"]),
        (["serve", "--verbose", "--port", "70000"], ["--port"]),  # --verbose after the command is accepted
        (["walk", "--server", UNREACHABLE, "--corners", "a", "b", "c", "d", "--quality", "0", "--out", "w.mp4"],
         ["--quality", "[1, 100]"]),
        (["walk", "--server", UNREACHABLE, "--corners", "a", "b", "c", "d", "--width", "2048", "--out", "w.mp4"],
         ["--width", "2048", "[64, 1024]"]),
    ],
)
def test_cli_mistakes_give_one_line(args, expected):
    line = _one_line_error(_cli(*args), *expected)
    assert "1, 2, 3" not in line  # --quality 0 once listed all 100 allowed values


def test_unknown_video_suffix_names_the_path_given(tmp_path):
    out = tmp_path / "sub" / "w.avi"
    _one_line_error(_cli("walk", "--server", UNREACHABLE, "--corners", "a", "b", "c", "d", "--out", str(out)), str(out))


def test_a_taken_port_is_found_before_the_model_loads(tmp_path):
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        r = _cli("serve", "--model", "tiny", "--port", str(port), "--data-dir", str(tmp_path / "data"))
    _one_line_error(r, "already in use", str(port))
    assert "loading model" not in r.stderr
    assert not (tmp_path / "data").exists()


def test_verbose_works_before_and_after_the_command():
    from sdxl_breeder.cli import build_parser

    parser = build_parser()
    assert parser.parse_args(["serve", "--verbose"]).verbose is True
    assert parser.parse_args(["-v", "serve"]).verbose is True
    assert parser.parse_args(["serve"]).verbose is False
    # render's default model is auto, like serve and render-walk
    assert parser.parse_args(["render", "--prompt", "a", "--out", "x.png"]).model == "auto"


def test_offline_auto_falls_back_once_and_does_not_advise_what_it_did(tmp_path):
    # A Hugging Face cache holding only SDXL Turbo's model_index.json does not count as cached.
    snapshot = tmp_path / "hub" / "models--stabilityai--sdxl-turbo" / "snapshots" / "abc123"
    snapshot.mkdir(parents=True)
    (snapshot / "model_index.json").write_text('{"_class_name": "StableDiffusionXLPipeline"}')
    (tmp_path / "hub" / "models--stabilityai--sdxl-turbo" / "refs").mkdir()
    (tmp_path / "hub" / "models--stabilityai--sdxl-turbo" / "refs" / "main").write_text("abc123")
    out = tmp_path / "f.png"
    r = _cli("render", "--prompt", "a cat", "--width", "64", "--height", "64", "--out", str(out),
             env={"HF_HUB_CACHE": str(tmp_path / "hub")})
    assert r.returncode == 0, r.stderr
    assert out.exists()
    assert "not in the Hugging Face cache" in r.stderr and "fell back to the tiny model" in r.stderr
    assert "start with `--model tiny`" not in r.stderr
    assert "hf download stabilityai/sdxl-turbo" in r.stderr and "huggingface-cli" not in r.stderr


def test_hf_cache_counts_only_with_weights(tmp_path):
    from sdxl_breeder.model.loading import DEFAULT_MODEL, is_cached

    repo = tmp_path / "models--stabilityai--sdxl-turbo"
    snapshot = repo / "snapshots" / "abc123"
    snapshot.mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("abc123")
    (snapshot / "model_index.json").write_text("{}")
    assert not is_cached(DEFAULT_MODEL, cache_dir=str(tmp_path))
    for part in ("unet", "vae", "text_encoder", "text_encoder_2"):
        (snapshot / part).mkdir()
        (snapshot / part / "model.fp16.safetensors").write_bytes(b"x")
    assert is_cached(DEFAULT_MODEL, cache_dir=str(tmp_path))


def test_long_load_errors_keep_whole_words():
    from sdxl_breeder.model.loading import error_summary

    short = "Error no file named diffusion_pytorch_model.safetensors found in directory /some/where/unet " * 3
    assert error_summary(ValueError(short.strip() + "\nsecond line")) == short.strip()
    long = ("word " * 200).strip()
    cut = error_summary(ValueError(long))
    assert cut.endswith(" …") and cut.removesuffix(" …").endswith("word") and len(cut) <= 502
