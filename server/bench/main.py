"""`sdxl-breeder bench`: how fast the breeder is, measured in one run on this machine.

Phases, every number measured in the run that writes the JSON (written again after each phase,
so a run cut short keeps what it measured). For each VAE in `--vae` (one process: the model is
loaded once and the UNet reused):

1. naive baseline: the stock `StableDiffusionXLPipeline.__call__`, one frame per call (prompt,
   `num_inference_steps=1`, `guidance_scale=0.0`, height, width, generator): what the original
   breeder did. For the first VAE it runs before `--compile` and channels_last are applied.
2. renderer: `Renderer.render` at each batch size, frames at distinct pad points, after a
   warm-up call, with the renderer's stage clock on (blend, text encoders, UNet, VAE, to host).
3. end to end: a real server (uvicorn in a background thread, the app from `create_app`, sharing
   the loaded model) and N websocket clients in a separate process, each tracing its own path on
   the pad: send a move, wait for the frame answering it, send the next. The loop's trace hook
   times the queue, JPEG and send; the stage clock the render. With `--server URL` the clients
   connect to that running server instead (e.g. `serve --ray`; no stage breakdown then); frames
   from a cluster name their render worker, and each row adds frames/s per worker.
4. ratios: renderer at its best batch / naive, end to end / naive.

5. broods (`--broods`, brood.py): a brood of N children by websocket `evolve` through that server,
   time to the last child and children/s, against the naive pipeline drawing the same children.

Then, once: JPEG encoders (ms per frame), and with `--layout-ab` the eager renderer with
channels_last vs contiguous. `--budget` bounds the whole run: a phase that does not fit in what
is left is skipped and listed. The last lines say, per target that applies, met or missed.

All model work runs on the render loop's thread (through `RenderLoop.call`), the thread that owns
the model in the server, so CUDA graphs and compiled code see one thread.

`python -m sdxl_breeder.bench plot A.json [B.json ...] --out DIR` draws the PNG plots of docs/benchmarks.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import re
import time
from pathlib import Path
from typing import Any, Callable

log = logging.getLogger("sdxl_breeder.bench")

from sdxl_breeder.bench.brood import run_broods  # noqa: E402
from sdxl_breeder.bench.jpeg import time_encoders  # noqa: E402
from sdxl_breeder.bench.clients import PROMPTS, BenchServer, _r, run_clients, run_clients_apart, summarize_clients  # noqa: E402
from sdxl_breeder.bench.render import (  # noqa: E402
    CpuMeter, NaiveBench, RendererBench, apply_channels_last, layout_ab, machine_info, stage_p50,
)
from sdxl_breeder.bench.report import ROUNDS, format_table, per_worker, say, target_lines  # noqa: E402
from sdxl_breeder.bench.options import BenchOptions  # noqa: E402
from sdxl_breeder.engine.trace import Span  # noqa: E402

JSON_VERSION = 2
JPEG_SIZE = 512


def _busy(row: dict[str, Any]) -> str:
    other = row.get("other_cpu")
    return f"  [other processes used {100 * other:.0f}% of the CPUs]" if other else ""


class Budget:
    """What is left of `--budget`; a phase runs only if its estimate fits."""

    def __init__(self, seconds: float | None, result: dict[str, Any], write: Callable[[], None]) -> None:
        self.end = None if seconds is None else time.perf_counter() + seconds
        self.result = result
        self.write = write

    def left(self) -> float:
        return float("inf") if self.end is None else self.end - time.perf_counter()

    def fits(self, phase: str, need: float) -> bool:
        if need <= self.left():
            return True
        self.result.setdefault("skipped", []).append({"phase": phase, "needed_s": _r(need), "left_s": _r(max(0.0, self.left()))})
        say(f"[bench] SKIPPED {phase}: needs ~{need:.0f} s, {max(0.0, self.left()):.0f} s of the budget left")
        self.write()
        return False


# --------------------------------------------------------------------------- one VAE
def _run_vae(opts: BenchOptions, model: Any, vae: str, first: bool, budget: Budget, run: dict[str, Any]) -> None:
    """The naive, renderer and end-to-end phases for one VAE, filling `run` as they finish."""
    from sdxl_breeder.engine.loop import RenderLoop
    from sdxl_breeder.model.compiled import compile_renderer, use_eager
    from sdxl_breeder.model.renderer import Renderer
    from sdxl_breeder.model.scene import scene_from_corners
    from sdxl_breeder.spec import Corner

    size = opts.resolved_size()
    renderer = Renderer(model, vae_chunk=opts.vae_chunk)
    renderer.check_size(size, size)
    run["config"]["vae_class"] = type(model.pipeline.vae).__name__
    run["config"]["vae_chunk"] = renderer.vae_chunk
    loop = RenderLoop(renderer, max_batch=opts.max_batch)
    loop.start()

    def on_render_thread(fn: Callable[[], Any]) -> Any:
        return loop.call(fn).result()

    try:
        # 1. naive baseline: before --compile and channels_last for the first VAE. Without those,
        # naive and renderer slices alternate in ROUNDS rounds, so a load that comes and goes on a
        # shared machine hits both alike.
        per = opts.seconds / len(opts.batches)
        optimised = opts.compile or opts.channels_last or not first
        rounds = 1 if optimised else ROUNDS
        naive = NaiveBench(model.pipeline, size, model.device)
        if budget.fits(f"naive ({vae} VAE)", 2 * per):
            say(f"[bench] naive stock pipeline ({vae} VAE, batch 1, {size}×{size}): warm-up …")
            on_render_thread(naive.warm_up)
            if optimised:
                on_render_thread(lambda: naive.run(per, min_calls=3))
        # 2. optimisations
        if opts.channels_last:
            on_render_thread(lambda: apply_channels_last(model.pipeline))
        scene = on_render_thread(lambda: scene_from_corners(renderer, [Corner(prompt=p) for p in PROMPTS]))
        info: dict[str, Any] = {"ok": False}

        def compiled_call(fn: Callable[[], Any]) -> Any:
            """Run `fn` on the render thread; if compiled code fails there, go on uncompiled."""
            try:
                return on_render_thread(fn)
            except Exception as e:  # noqa: BLE001 — compiling is optional; report and go on
                if not info["ok"]:
                    raise
                on_render_thread(lambda: use_eager(renderer))
                info["ok"] = False
                info["error"] = f"{type(e).__name__}: {str(e).strip().splitlines()[0][:300] if str(e).strip() else ''}"
                say(f"[bench] NOTE: torch.compile failed, running uncompiled from here: {info['error']}")
                return on_render_thread(fn)

        if opts.compile:
            say(f"[bench] torch.compile ({opts.compile_backend}): text encoders, UNet step and VAE decode at the batch buckets …")
            t = time.perf_counter()
            report = on_render_thread(lambda: compile_renderer(
                renderer, max_batch=max(opts.max_batch, *opts.batches), width=size, height=size, backend=opts.compile_backend,
                buckets=opts.compile_buckets))
            info = report.as_dict()
            info["total_s"] = _r(time.perf_counter() - t)
            say(f"[bench]   compiled in {info['total_s']:.1f} s" + ("" if report.ok else f"; FAILED, running uncompiled: {report.error}"))
            run["compile"] = info
            budget.write()

        # 3. renderer throughput per batch size (each warmed up first), stage clock on
        renderer.clock.enabled = True
        benches = [RendererBench(renderer, scene, size, b, start=1000 * i) for i, b in enumerate(opts.batches)]
        if budget.fits(f"renderer ({vae} VAE)", opts.seconds * (2 if not optimised else 1) + 1):
            for rb in benches:
                compiled_call(rb.warm_up)
                say(f"[bench] renderer batch {rb.batch}: warm-up {rb.tally.warmup_s:.2f} s")
            for _ in range(rounds):
                if not optimised:
                    on_render_thread(lambda: naive.run(per / rounds))
                for rb in benches:
                    on_render_thread(lambda rb=rb: rb.run(per / rounds, min_calls=2 if rounds == 1 else 1))
            rows = [rb.summary() for rb in benches]
            for row in rows:
                stages = ", ".join(f"{k} {v:.2f}" for k, v in row["stages_ms_per_frame_p50"].items() if v is not None)
                say(f"[bench]   batch {row['batch']:3d}: {row['fps']:8.2f} frames/s  {row['ms_per_batch']:9.1f} ms/batch  "
                    f"per frame: {stages} ms{_busy(row)}")
            run["renderer"] = rows
            best = max(rows, key=lambda r: r["fps"])
            run["renderer_best"] = {"batch": best["batch"], "fps": best["fps"]}
        if naive.tally.calls:
            run["naive"] = naive.summary()
            n = run["naive"]
            say(f"[bench]   naive:     {n['fps']:8.2f} frames/s  {n['ms_per_frame']:9.1f} ms/frame{_busy(n)}")
        budget.write()

        # 4. end to end, clients in another process
        stamps: dict[tuple[int, int], tuple[float, float]] = {}
        stages: list[dict[str, float]] = []

        def on_span(span: Span) -> None:
            # The loop's trace hook, on the thread that ran the stage. Clients use their index as
            # the seed, so (seed, seq) names a frame.
            if span.name == "queue":
                (job,) = span.jobs
                stamps[(job.settings.seed, job.seq)] = (span.start, span.end)
            elif span.name == "render":
                per_frame = {k: v / len(span.jobs) for k, v in renderer.clock.last.items()}
                stages.append(per_frame)
            elif span.name == "encode":
                stages.append({"jpeg": 1000 * span.seconds})
            elif span.name == "send":
                stages.append({"send": 1000 * span.seconds})

        run["end_to_end"] = []
        with contextlib.ExitStack() as stack:
            if opts.server is not None:
                uri = opts.server
                say(f"[bench] end to end: the running server at {uri} …")
            else:
                server = stack.enter_context(BenchServer(renderer, loop, opts.max_batch, model.warning, opts.ws_deflate))
                stack.enter_context(loop.traced(on_span))
                uri = f"ws://127.0.0.1:{server.port}/ws"
                say(f"[bench] end to end ({vae} VAE): server on 127.0.0.1:{server.port} (max batch {opts.max_batch}) …")
            for n in opts.clients:
                if not budget.fits(f"end to end, {n} clients ({vae} VAE)", opts.seconds + 5):
                    continue
                say(f"[bench]   {n} client(s) for {opts.seconds:g} s …")
                stamps.clear()
                stages.clear()
                meter = CpuMeter()
                if opts.server is None:  # the server shares this process: keep the clients off its GIL
                    results, _ = run_clients_apart(uri, n, opts.seconds, size, opts.quality)
                else:
                    results, _ = asyncio.run(run_clients(uri, n, opts.seconds, size, opts.quality))
                for i, r in enumerate(results):
                    r.attach_stamps(i, stamps)
                row = summarize_clients(n, results, opts.seconds)
                row["stages_ms_per_frame_p50"] = stage_p50(stages)
                row["other_cpu"] = meter.other_load()
                run["end_to_end"].append(row)
                errs = f"  ERRORS: {row['errors']}" if row["errors"] else ""
                say(
                    f"[bench]   {n:3d} clients: {row['fps'] or 0:8.2f} frames/s, slowest client {row['client_fps_min'] or 0:.2f}, "
                    f"p50 {row['latency_ms']['p50'] or 0:.1f} ms, p95 {row['latency_ms']['p95'] or 0:.1f} ms, "
                    f"overhead p50 {row['overhead_ms']['p50'] or 0:.2f} ms, mean batch {row['mean_batch'] or 0:.2f}{_busy(row)}{errs}"
                )
                if row["worker_fps"]:
                    say(f"[bench]         per render worker: {per_worker(row)}")
                budget.write()
        if opts.broods:  # 5. broods, through a server of their own on the same loop
            run_broods(opts, renderer, loop, model, budget, run, f"{vae} VAE")
        if first and budget.fits("JPEG encoders", 4):
            # One real frame at 512², the size the JPEG figures are quoted for.
            frame = on_render_thread(lambda: renderer.render([RendererBench(renderer, scene, JPEG_SIZE, 1).request(0)])[0])
            run["jpeg"] = time_encoders(frame, opts.quality, model.device, seconds=min(1.0, opts.seconds / 2))
            say("[bench] JPEG, ms per frame: " + ", ".join(
                f"{k} {v['ms_per_frame']:.2f}" if "ms_per_frame" in v else f"{k} n/a" for k, v in run["jpeg"].items()))
        if opts.layout_ab and first:
            if opts.compile:
                run["layout_ab"] = {"skipped": "runs eager: leave out --compile"}
            elif budget.fits("channels_last A/B", opts.seconds + 5):
                say("[bench] channels_last vs contiguous, eager, batch 8 …")
                run["layout_ab"] = ab = on_render_thread(lambda: layout_ab(renderer, scene, size, 8, opts.seconds))
                say(f"[bench]   channels_last {ab['channels_last']:.2f} frames/s, contiguous {ab['contiguous']:.2f} frames/s")
    finally:
        renderer.clock.enabled = False
        loop.stop()
    naive_fps = run.get("naive", {}).get("fps")
    if naive_fps:
        run["ratios"] = {
            "renderer_best_over_naive": _r(run["renderer_best"]["fps"] / naive_fps) if "renderer_best" in run else None,
            "end_to_end_over_naive": {str(r["clients"]): _r((r["fps"] or 0) / naive_fps) for r in run["end_to_end"]},
        }


# --------------------------------------------------------------------------- the run
def run_bench(opts: BenchOptions, json_path: Path | None = None) -> dict[str, Any]:
    """All phases; with `json_path` the results are written there after every phase."""
    from sdxl_breeder.model.loading import build_tiny_vae

    opts.check()
    started = time.perf_counter()
    size = opts.resolved_size()
    say(f"[bench] loading model {opts.model} (device {opts.device}, dtype {opts.dtype}) …")
    t = time.perf_counter()
    # Loaded contiguous: the naive baseline is the stock pipeline as the original breeder ran it;
    # channels_last (serve's default) is applied after the naive phase.
    model = opts.load(opts.seed, vae=opts.vae[0], tiny_vae_path=opts.tiny_vae_path, channels_last=False)
    if model.warning:
        say(f"[bench] note: {model.warning}")
    result: dict[str, Any] = {
        "version": JSON_VERSION,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "command": opts.command(),
        "machine": machine_info(model.device, model.dtype, model.vae_dtype),
        "load_model_s": _r(time.perf_counter() - t),
        "runs": [],
    }

    def write() -> None:
        if json_path is not None:
            json_path.parent.mkdir(parents=True, exist_ok=True)
            tmp = json_path.with_suffix(".tmp")
            tmp.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
            tmp.replace(json_path)

    budget = Budget(opts.budget, result, write)
    vaes = {opts.vae[0]: model.pipeline.vae}
    for i, vae in enumerate(opts.vae):
        if vae not in vaes:  # the same UNet and text encoders with the other VAE
            vaes[vae] = build_tiny_vae(opts.seed, opts.tiny_vae_path).to(model.device, model.dtype)
            model.pipeline.vae = vaes[vae]
        run: dict[str, Any] = {"config": {
            "model": model.name, "size": size, "vae": vae, "tiny_vae_path": opts.tiny_vae_path if vae == "tiny" else None,
            "compile": opts.compile, "channels_last": opts.channels_last, "batches": list(opts.batches),
            "clients": list(opts.clients), "seconds": opts.seconds, "max_batch": opts.max_batch,
            "jpeg_quality": opts.quality, "ws_deflate": opts.ws_deflate, "server": opts.server,
        }}
        result["runs"].append(run)
        _run_vae(opts, model, vae, i == 0, budget, run)
        write()
    try:
        result["machine"]["loadavg_end"] = [round(v, 2) for v in os.getloadavg()]
    except OSError:
        pass
    rows = [r for run in result["runs"] for r in [run.get("naive", {}), *run.get("renderer", []), *run["end_to_end"]]]
    others = [r.get("other_cpu") for r in rows if r.get("other_cpu") is not None]
    result["max_other_cpu"] = max(others) if others else None
    result["targets"] = target_lines(result)
    result["total_s"] = _r(time.perf_counter() - started)
    write()
    return result


def default_json_path(opts: BenchOptions, device: str) -> Path:
    model = re.sub(r"[^A-Za-z0-9_.-]+", "-", opts.model).strip("-")
    return Path(f"bench-{model}-{device}-{opts.resolved_size()}-{'-'.join(opts.vae)}.json")


def main(opts: BenchOptions) -> dict[str, Any]:
    import torch

    device = opts.device if opts.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
    path = opts.json_path or default_json_path(opts, device.split(":")[0])
    res = run_bench(opts, path)
    say("")
    say(format_table(res))
    say("")
    for line in res["targets"]:
        say(f"[bench] target: {line}")
    say(f"\n[bench] wrote {path}")
    return res
