"""scripts/gpu-check --smoke: the GPU check's steps, on the CPU with the tiny model, so a GPU run
is never the script's first run. It must work from a checkout without the project installed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.timeout(900)
def test_gpu_check_smoke(tmp_path):
    out = tmp_path / "out"
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    proc = subprocess.run([sys.executable, str(REPO / "scripts" / "gpu-check"), "--smoke", str(out)],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=800)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "[gpu-check] all steps passed" in proc.stdout

    summary = json.loads((out / "summary.json").read_text())
    assert summary["ok"] and summary["smoke"]
    assert [(s["step"], s["status"]) for s in summary["steps"]] == [
        ("env", "passed"), ("cuda-tests", "passed"), ("bench-eager", "passed"), ("bench-compiled", "passed"),
    ]
    # sdxl_breeder came from the checkout through the script's own links, not an installed copy
    env_info = json.loads((out / "env.json").read_text())
    assert "gpu-check-" in env_info["sdxl_breeder"] and env_info["torch"]
    # the CUDA tests were collected and skipped (no GPU in a smoke run)
    assert 'skipped="' in (out / "cuda-tests.xml").read_text()

    eager = json.loads((out / "bench-eager.json").read_text())
    assert [r["config"]["vae"] for r in eager["runs"]] == ["full", "tiny"]
    first = eager["runs"][0]
    assert first["layout_ab"]["channels_last"] > 0 and first["layout_ab"]["contiguous"] > 0
    assert first["jpeg"]["pil"]["ms_per_frame"] > 0
    assert all(r["end_to_end"] and r["end_to_end"][0]["frames"] > 0 for r in eager["runs"])
    # the brood phase: a brood of 3 by evolve, in batches of the max batch 2, every child drawn
    assert [[(b["children"], b["batches"], b["all_children"]) for b in r["broods"]] for r in eager["runs"]] == [[(3, [2, 1], True)]] * 2

    compiled = json.loads((out / "bench-compiled.json").read_text())
    info = compiled["runs"][0]["compile"]
    assert info["ok"], info
    assert info["buckets"] == [1] and set(info["warmup_s"]) == {"1"}
    assert compiled["runs"][0]["end_to_end"][0]["frames"] > 0
    for name in ("env", "cuda-tests", "bench-eager", "bench-compiled"):
        assert (out / f"{name}.log").is_file()
