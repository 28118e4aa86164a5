"""`sdxl-breeder bench` smoke test and the tiny-VAE option. No timing thresholds: benchmarks are
measured and reported, not asserted."""

from __future__ import annotations

import json

import numpy as np
import pytest

from sdxl_breeder.cli import main
from sdxl_breeder.model.stages import STAGES
from sdxl_breeder.model.scene import Scene
from tests.conftest import PROMPTS
from sdxl_breeder.model.renderer import FrameRequest
from sdxl_breeder.spec import FrameSettings


def _positive(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0


def test_bench_smoke_writes_json(tmp_path, capsys):
    out = tmp_path / "bench.json"
    code = main(["bench", "--model", "tiny", "--size", "64", "--batches", "1,2", "--clients", "2", "--seconds", "2",
                 "--vae", "full,tiny", "--json", str(out)])
    assert code == 0
    printed = capsys.readouterr().out
    assert "naive stock pipeline" in printed and "end to end" in printed and "per-frame stages" in printed
    assert "[bench] target: none applies here" in printed

    res = json.loads(out.read_text())
    for key in ("machine", "runs", "targets", "total_s"):
        assert key in res, key
    m = res["machine"]
    for key in ("cpu", "torch", "diffusers", "device", "dtype"):
        assert m[key], key
    assert m["device"] == "cpu" or m["device"].startswith(("cuda", "mps"))
    # one process, both VAEs: the same model with its own VAE, then with AutoencoderTiny
    assert [(r["config"]["vae"], r["config"]["vae_class"]) for r in res["runs"]] == [("full", "AutoencoderKL"), ("tiny", "AutoencoderTiny")]
    assert "skipped" not in res

    for run in res["runs"]:
        assert run["config"]["size"] == 64
        assert _positive(run["naive"]["fps"]) and _positive(run["naive"]["ms_per_frame"])
        assert [r["batch"] for r in run["renderer"]] == [1, 2]
        for row in run["renderer"]:
            assert _positive(row["fps"]) and _positive(row["ms_per_batch"]) and row["frames"] >= 2 * row["batch"]
            assert set(row["stages_ms_per_frame_p50"]) == set(STAGES)
            assert _positive(row["stages_ms_per_frame_p50"]["unet"])
        assert run["renderer_best"]["batch"] in (1, 2)

        (row,) = run["end_to_end"]
        assert row["clients"] == 2 and row["errors"] == []
        assert row["frames"] > 0
        for key in ("fps", "client_fps_min", "client_fps_mean", "mean_batch"):
            assert _positive(row[key]), key
        assert row["client_fps_min"] <= row["client_fps_mean"]
        assert 1 <= row["mean_batch"] <= 2
        for key in ("p50", "p95"):
            assert _positive(row["latency_ms"][key])
        assert row["latency_ms"]["p50"] <= row["latency_ms"]["p95"]
        assert _positive(row["render_ms"]["p50"])
        assert row["overhead_ms"]["p50"] is not None
        assert set(row["breakdown_ms_p50"]) == {"to_server", "queue", "render", "from_server"}
        # measured through the loop's trace hook (clients in another process): every part has a value
        assert all(isinstance(v, (int, float)) for v in row["breakdown_ms_p50"].values()), row["breakdown_ms_p50"]
        assert row["breakdown_ms_p50"]["queue"] >= 0 and _positive(row["breakdown_ms_p50"]["to_server"])
        # the per-frame stage breakdown: the renderer's stage clock, then JPEG and send from the trace
        assert set(row["stages_ms_per_frame_p50"]) == {*STAGES, "jpeg", "send"}
        assert _positive(row["stages_ms_per_frame_p50"]["jpeg"]) and _positive(row["stages_ms_per_frame_p50"]["unet"])

        assert _positive(run["ratios"]["renderer_best_over_naive"])
        assert _positive(run["ratios"]["end_to_end_over_naive"]["2"])
    jpeg = res["runs"][0]["jpeg"]
    assert _positive(jpeg["pil"]["ms_per_frame"]) and _positive(jpeg["simplejpeg"]["ms_per_frame"])
    assert "error" in jpeg["nvjpeg"]  # no GPU here


def test_bench_budget_skips_what_does_not_fit(tmp_path, capsys):
    """With a budget too small for the end-to-end phase, the run skips it, says so, and still
    writes its JSON and the target lines."""
    out = tmp_path / "bench.json"
    code = main(["bench", "--model", "tiny", "--size", "256", "--batches", "1", "--clients", "8", "--seconds", "30",
                 "--budget", "20", "--json", str(out)])
    assert code == 0
    printed = capsys.readouterr().out
    assert "SKIPPED end to end, 8 clients" in printed
    res = json.loads(out.read_text())
    assert any(s["phase"].startswith("end to end, 8 clients") for s in res["skipped"])
    assert res["runs"][0]["end_to_end"] == []
    # the CPU target applies to this configuration, and says it was not measured
    assert res["targets"] == ["server overhead per frame p50, 8 clients (ms) ≤ 3 (tiny 256², full VAE, cpu): NOT MEASURED (phase skipped or failed)"]
    assert res["total_s"] < 60


def test_bench_brood_phase(tmp_path, capsys):
    """--broods: each brood drawn by websocket evolve through the server, in batches up to the max
    batch, and by the naive pipeline one child at a time; every child arrives once, and each is the
    naive pipeline's picture of that child."""
    out = tmp_path / "bench.json"
    code = main(["bench", "--model", "tiny", "--size", "64", "--batches", "1", "--clients", "1", "--seconds", "0.5",
                 "--max-batch", "4", "--broods", "3,5", "--json", str(out)])
    assert code == 0
    printed = capsys.readouterr().out
    assert "brood of  5: last child after" in printed and "broods (evolve through the server, max batch 4)" in printed

    res = json.loads(out.read_text())
    assert "--broods 3,5" in res["command"] and "skipped" not in res
    rows = res["runs"][0]["broods"]
    assert [(b["children"], b["size"], b["rounds"]) for b in rows] == [(3, 64, 3), (5, 64, 3)]
    for b in rows:
        n = b["children"]
        assert b["all_children"] and b["children_received"] == n and b["child_indices"] == list(range(n))
        assert b["distinct_frames"] == n and b["right_size"]
        assert b["identical_across_rounds"]  # the same evolve on an idle server: the same bytes
        # the naive side drew the same children: its images, JPEG-encoded as the server does, match
        assert b["naive_vs_engine_mean_abs_diff_max"] < 0.5, b
        for key in ("engine_s_to_last_child", "engine_children_per_s", "naive_s_to_last_child", "naive_children_per_s",
                    "engine_over_naive", "engine_over_naive_frames"):
            assert _positive(b[key]), key
        assert len(b["engine_s_rounds"]) == len(b["naive_s_rounds"]) == 3
        assert b["engine_over_naive"] == pytest.approx(b["naive_s_to_last_child"] / b["engine_s_to_last_child"], rel=0.02)
        assert b["engine_children_per_s"] == pytest.approx(n / b["engine_s_to_last_child"], rel=0.02)
        assert b["engine_over_naive_frames"] == pytest.approx(b["engine_children_per_s"] / res["runs"][0]["naive"]["fps"], rel=0.02)
    # one backlog, batched up to the max batch: 3 in one batch, 5 as 4 + 1
    assert [b["batches"] for b in rows] == [[3], [4, 1]]


def test_bench_rejects_a_brood_over_the_limit(capsys):
    assert main(["bench", "--broods", "9,17"]) == 2
    assert "--broods" in capsys.readouterr().err


def test_targets_say_met_or_missed():
    from sdxl_breeder.bench.report import target_lines

    def run(vae, fps8, p50_1):
        return {"config": {"model": "sdxl-random", "size": 512, "vae": vae}, "end_to_end": [
            {"clients": 1, "frames": 10, "fps": 20.0, "latency_ms": {"p50": p50_1}, "overhead_ms": {"p50": 1.0}},
            {"clients": 8, "frames": 80, "fps": fps8, "latency_ms": {"p50": 50.0}, "overhead_ms": {"p50": 1.0}},
        ]}

    res = {"machine": {"device": "cuda"}, "runs": [run("full", 61.0, 45.0), run("tiny", 120.0, 20.0)]}
    assert target_lines(res) == [
        "frames/s, 8 clients ≥ 60 (sdxl-random 512², full VAE, cuda): met (61.00)",
        "one client's move-to-frame p50 (ms) ≤ 40 (sdxl-random 512², full VAE, cuda): MISSED (45.00)",
        "frames/s, 8 clients ≥ 150 (sdxl-random 512², tiny VAE, cuda): MISSED (120.00)",
    ]


def test_bench_rejects_bad_lists(capsys):
    with pytest.raises(SystemExit):
        main(["bench", "--batches", "0,2"])
    assert "positive" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["bench", "--vae", "full,medium"])
    assert "full,tiny" in capsys.readouterr().err


@pytest.fixture(scope="module")
def tiny_vae_renderer():
    from sdxl_breeder.model.loading import load_model
    from sdxl_breeder.model.renderer import Renderer

    return Renderer(load_model("tiny", device="cpu", vae="tiny"))


def test_tiny_vae_renders_frames(tiny_vae_renderer):
    from diffusers import AutoencoderTiny

    r = tiny_vae_renderer
    assert isinstance(r.pipe.vae, AutoencoderTiny)
    assert r.vae_scale_factor == 8
    scene = Scene(tuple(r.genome_from_prompt(p) for p in PROMPTS))
    conds = [FrameRequest(scene, x, y, FrameSettings(seed=i, width=128, height=64)) for i, (x, y) in enumerate([(0, 0), (0.3, 0.7), (1, 1)])]
    frames = r.render(conds)
    assert len(frames) == 3
    for f in frames:
        assert f.shape == (64, 128, 3) and f.dtype == np.uint8
        assert f.std() > 1  # a NaN in the decode would come out as a flat frame
    assert not np.array_equal(frames[0], frames[2])


def test_tiny_vae_decode_matches_stock_pipeline(tiny_vae_renderer):
    """With AutoencoderTiny swapped in, a corner frame still equals the stock pipeline's."""
    import torch

    r = tiny_vae_renderer
    scene = Scene(tuple(r.genome_from_prompt(p) for p in PROMPTS))
    ours = r.render([FrameRequest(scene, 1.0, 0.0, FrameSettings(seed=7, width=64, height=64))])[0]
    ref = r.pipe(
        PROMPTS[1], num_inference_steps=1, guidance_scale=0.0, height=64, width=64,
        generator=torch.Generator("cpu").manual_seed(7), output_type="np",
    ).images[0]
    assert np.isfinite(ref).all()  # the stock float image, before it becomes uint8
    ref = (ref * 255).round().astype(np.uint8)
    assert int(np.abs(ours.astype(np.int16) - ref.astype(np.int16)).max()) <= 1


def test_unknown_vae_is_a_load_error():
    from sdxl_breeder.model.loading import ModelLoadError, load_model

    with pytest.raises(ModelLoadError):
        load_model("tiny", device="cpu", vae="medium")


def test_bench_cuda_without_a_gpu_is_a_clean_error(capsys):
    """The CUDA path is only exercised this far on machines without a GPU: device selection."""
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is present: run the bench there instead (docs/benchmarks.md)")
    code = main(["bench", "--model", "tiny", "--device", "cuda", "--size", "64", "--batches", "1", "--clients", "1", "--seconds", "1"])
    assert code == 2
    assert "CUDA" in capsys.readouterr().err


def test_repeat_command_keeps_the_model_config():
    """The command recorded in the JSON repeats the run: a single-file model needs its configs."""
    from sdxl_breeder.bench.options import BenchOptions

    cmd = BenchOptions(model="turbo.safetensors", model_config="/models/sdxl-turbo").command()
    assert "--model turbo.safetensors" in cmd and "--model-config /models/sdxl-turbo" in cmd
    assert "--model-config" not in BenchOptions(model="tiny").command()
