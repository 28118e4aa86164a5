"""`sdxl-breeder bench`: how fast the breeder is, measured in one run on this machine.

Four phases, every number measured in the run that writes the JSON:

1. naive baseline: the stock `StableDiffusionXLPipeline.__call__`, one frame per call (prompt,
   `num_inference_steps=1`, `guidance_scale=0.0`, height, width, generator): what the original
   breeder did. It always runs on the stock pipeline: with `--compile` / `--channels-last`, in
   full before they are applied; otherwise in slices alternating with the renderer's (ROUNDS
   rounds), so a load that comes and goes on a shared machine hits both alike.
2. renderer: `Renderer.render` at each batch size, conditionings at distinct pad points (so the
   token blending and both text encoders do real work), after a warm-up call.
3. end to end: a real server (uvicorn in a background thread, the app from `create_app`, sharing
   the loaded model) and N websocket clients at once, each tracing its own path on the pad: send a
   move, wait for the frame answering it (header seq == sent seq), send the next.
   With `--server URL` the clients connect to that running server instead (e.g. `serve --ray`);
   frames from a cluster name their render worker, and each row adds frames/s per worker.
4. ratios: renderer at its best batch / naive, end to end / naive.

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
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable


log = logging.getLogger("sdxl_breeder.bench")

from sdxl_breeder.bench.clients import PROMPTS, BenchError, BenchServer, _r, run_clients, summarize_clients  # noqa: E402
from sdxl_breeder.bench.render import (  # noqa: E402
    CpuMeter, NaiveBench, RendererBench, apply_channels_last, machine_info,
)
from sdxl_breeder.engine.trace import Span  # noqa: E402

JSON_VERSION = 1
ROUNDS = 3  # naive and renderer slices alternate this many times (when they can)


@dataclass(frozen=True)
class BenchOptions:
    model: str = "tiny"
    model_config: str | None = None
    device: str = "auto"
    dtype: str = "auto"
    size: int | None = None  # None: 256 for tiny, 512 otherwise
    vae: str = "full"
    tiny_vae_path: str | None = None
    compile: bool = False
    channels_last: bool = True  # as serve runs; applied after the naive phase
    batches: tuple[int, ...] = (1, 2, 4, 8, 16)
    clients: tuple[int, ...] = (1, 8, 32)
    seconds: float = 5.0
    max_batch: int = 8
    quality: int = 80
    ws_deflate: bool = False  # websocket permessage-deflate; `serve` turns it off (frames are JPEG)
    vae_chunk: int | None = None  # frames per VAE decode call; None: the renderer's default (4 on CPU)
    json_path: Path | None = None
    seed: int = 0
    server: str | None = None  # the end-to-end phase against this running server's websocket URL

    def resolved_size(self) -> int:
        return self.size if self.size is not None else (256 if self.model == "tiny" else 512)

    def command(self) -> str:
        """The command line that repeats this run (minus --json)."""
        parts = ["sdxl-breeder bench", f"--model {self.model}", f"--device {self.device}", f"--dtype {self.dtype}",
                 f"--size {self.resolved_size()}", f"--vae {self.vae}"]
        if self.tiny_vae_path:
            parts.append(f"--tiny-vae-path {self.tiny_vae_path}")
        if self.compile:
            parts.append("--compile")
        if not self.channels_last:
            parts.append("--no-channels-last")
        parts += [f"--batches {','.join(map(str, self.batches))}", f"--clients {','.join(map(str, self.clients))}",
                  f"--seconds {self.seconds:g}", f"--max-batch {self.max_batch}"]
        if self.ws_deflate:
            parts.append("--ws-deflate")
        if self.vae_chunk is not None:
            parts.append(f"--vae-chunk {self.vae_chunk}")
        if self.server is not None:
            parts.append(f"--server {self.server}")
        return " ".join(parts)


def _per_worker(row: dict[str, Any]) -> str:
    return ", ".join(f"{w} {fps:.2f} frames/s" for w, fps in row["worker_fps"].items())


def say(msg: str) -> None:
    print(msg, flush=True)


def _busy(row: dict[str, Any]) -> str:
    other = row.get("other_cpu")
    return f"  [other processes used {100 * other:.0f}% of the CPUs]" if other else ""


# --------------------------------------------------------------------------- model phases


# --------------------------------------------------------------------------- the run
def run_bench(opts: BenchOptions) -> dict[str, Any]:
    from sdxl_breeder.engine.loop import RenderLoop
    from sdxl_breeder.model.loading import load_model
    from sdxl_breeder.model.renderer import Renderer
    from sdxl_breeder.model.scene import scene_from_corners
    from sdxl_breeder.spec import Corner

    size = opts.resolved_size()
    if opts.seconds <= 0:
        raise BenchError("--seconds must be positive")
    if not opts.batches or min(opts.batches) < 1:
        raise BenchError("--batches: give positive batch sizes, e.g. 1,2,4,8")
    if not opts.clients or min(opts.clients) < 1:
        raise BenchError("--clients: give positive client counts, e.g. 1,8")
    if not 1 <= opts.max_batch <= 64:
        raise BenchError("--max-batch must be within [1, 64]")
    if opts.vae_chunk is not None and opts.vae_chunk < 0:
        raise BenchError("--vae-chunk must be 0 (off) or a positive number of frames")
    started = time.perf_counter()

    say(f"[bench] loading model {opts.model} (device {opts.device}, dtype {opts.dtype}, vae {opts.vae}) …")
    t = time.perf_counter()
    # Loaded contiguous: the naive baseline is the stock pipeline as the original breeder ran it;
    # channels_last (serve's default) is applied after the naive phase.
    model = load_model(opts.model, opts.device, opts.dtype, opts.seed, vae=opts.vae, tiny_vae_path=opts.tiny_vae_path,
                       channels_last=False, model_config=opts.model_config)
    load_s = time.perf_counter() - t
    if model.warning:
        say(f"[bench] note: {model.warning}")
    channels_last = opts.channels_last
    renderer = Renderer(model, vae_chunk=opts.vae_chunk)
    renderer.check_size(size, size)
    loop = RenderLoop(renderer, max_batch=opts.max_batch)
    loop.start()

    def on_render_thread(fn: Callable[[], Any]) -> Any:
        return loop.call(fn).result()

    result: dict[str, Any] = {
        "version": JSON_VERSION,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "command": opts.command(),
        "machine": machine_info(model.device, model.dtype, model.vae_dtype),
        "config": {
            "model": model.name,
            "size": size,
            "vae": "tiny" if opts.vae == "tiny" or opts.tiny_vae_path else "full",
            "vae_class": type(model.pipeline.vae).__name__,
            "tiny_vae_path": opts.tiny_vae_path,
            "compile": opts.compile,
            "channels_last": channels_last,
            "batches": list(opts.batches),
            "clients": list(opts.clients),
            "seconds": opts.seconds,
            "max_batch": opts.max_batch,
            "jpeg_quality": opts.quality,
            "ws_deflate": opts.ws_deflate,
            "vae_chunk": renderer.vae_chunk,
            "server": opts.server,
        },
        "warmup_s": {"load_model": _r(load_s)},
    }
    try:
        # 1. naive baseline. It runs on the stock pipeline as it was used: before --compile and
        # --channels-last. Without those, naive and renderer slices alternate in ROUNDS rounds, so
        # a load that comes and goes on a shared machine hits both alike.
        per = opts.seconds / len(opts.batches)
        optimised = opts.compile or channels_last
        rounds = 1 if optimised else ROUNDS
        naive = NaiveBench(model.pipeline, size, model.device)
        say(f"[bench] naive stock pipeline (batch 1, {size}×{size}): warm-up …")
        on_render_thread(naive.warm_up)
        if optimised:
            say(f"[bench] naive: ~{per:.1f} s before the optimisations …")
            on_render_thread(lambda: naive.run(per, min_calls=3))

        # 2. optimisations
        if channels_last:
            on_render_thread(lambda: apply_channels_last(model.pipeline))
            say("[bench] channels_last applied to the UNet and VAE")
        scene = on_render_thread(lambda: scene_from_corners(renderer, [Corner(prompt=p) for p in PROMPTS]))
        from sdxl_breeder.model.compiled import compile_renderer, use_eager

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
            say("[bench] torch.compile: text encoders, UNet step and VAE decode at the batch buckets (this can take minutes) …")
            t = time.perf_counter()
            report = on_render_thread(lambda: compile_renderer(renderer, max_batch=max(opts.max_batch, *opts.batches), width=size, height=size))
            info = report.as_dict()
            info["first_call_s"] = _r(time.perf_counter() - t)
            say(f"[bench]   compiled in {info['first_call_s']:.1f} s" + ("" if report.ok else f"; FAILED, running uncompiled: {report.error}"))
            result["compile"] = info
            result["warmup_s"]["compile_first_call"] = info["first_call_s"]

        # 3. renderer throughput per batch size (each warmed up first)
        benches = [RendererBench(renderer, scene, size, b, start=1000 * i) for i, b in enumerate(opts.batches)]
        for rb in benches:
            compiled_call(rb.warm_up)
            say(f"[bench] renderer batch {rb.batch}: warm-up {rb.tally.warmup_s:.2f} s")
        say(
            f"[bench] timing: renderer at batch sizes {','.join(map(str, opts.batches))}"
            + ("" if optimised else " and the naive pipeline")
            + f", {rounds} round(s) of ~{per / rounds:.2f} s each …"
        )
        for _ in range(rounds):
            if not optimised:
                on_render_thread(lambda: naive.run(per / rounds))
            for rb in benches:
                on_render_thread(lambda rb=rb: rb.run(per / rounds, min_calls=2 if rounds == 1 else 1))
        result["naive"] = naive.summary()
        n = result["naive"]
        say(f"[bench]   naive:     {n['fps']:8.2f} frames/s  {n['ms_per_frame']:9.1f} ms/frame{_busy(n)}")
        rows = [rb.summary() for rb in benches]
        for row in rows:
            say(f"[bench]   batch {row['batch']:3d}: {row['fps']:8.2f} frames/s  {row['ms_per_batch']:9.1f} ms/batch{_busy(row)}")
        result["renderer"] = rows
        best = max(rows, key=lambda r: r["fps"])
        result["renderer_best"] = {"batch": best["batch"], "fps": best["fps"]}

        # 4. end to end
        stamps: dict[tuple[int, int], tuple[float, float]] = {}

        def on_span(span: Span) -> None:
            # The loop's trace hook: when each job arrived and when its batch started (the
            # latency breakdown). Clients use their index as the seed, so (seed, seq) is a frame.
            if span.name == "queue":
                (job,) = span.jobs
                stamps[(job.settings.seed, job.seq)] = (span.start, span.end)

        e2e = []
        with contextlib.ExitStack() as stack:
            stack.enter_context(loop.traced(on_span))
            if opts.server is not None:
                uri = opts.server
                say(f"[bench] end to end: the running server at {uri} …")
            else:
                server = stack.enter_context(BenchServer(renderer, loop, opts.max_batch, model.warning, opts.ws_deflate))
                uri = f"ws://127.0.0.1:{server.port}/ws"
                deflate = "on" if opts.ws_deflate else "off"
                say(f"[bench] end to end: server on 127.0.0.1:{server.port} (max batch {opts.max_batch}, websocket deflate {deflate}) …")
            for n in opts.clients:
                say(f"[bench]   {n} client(s) for {opts.seconds:g} s …")
                meter = CpuMeter()
                results, elapsed = asyncio.run(run_clients(uri, n, opts.seconds, size, opts.quality, stamps))
                row = summarize_clients(n, results, opts.seconds)
                row["other_cpu"] = meter.other_load()
                e2e.append(row)
                errs = f"  ERRORS: {row['errors']}" if row["errors"] else ""
                say(
                    f"[bench]   {n:3d} clients: {row['fps'] or 0:8.2f} frames/s, slowest client {row['client_fps_min'] or 0:.2f}, "
                    f"p50 {row['latency_ms']['p50'] or 0:.1f} ms, p95 {row['latency_ms']['p95'] or 0:.1f} ms, "
                    f"overhead p50 {row['overhead_ms']['p50'] or 0:.2f} ms, mean batch {row['mean_batch'] or 0:.2f}{_busy(row)}{errs}"
                )
                if row["worker_fps"]:
                    say(f"[bench]         per render worker: {_per_worker(row)}")
        result["end_to_end"] = e2e
    finally:
        loop.stop()

    naive_fps = result["naive"]["fps"]
    result["ratios"] = {
        "renderer_best_over_naive": _r(result["renderer_best"]["fps"] / naive_fps),
        "end_to_end_over_naive": {str(r["clients"]): _r((r["fps"] or 0) / naive_fps) for r in result["end_to_end"]},
    }
    try:
        result["machine"]["loadavg_end"] = [round(v, 2) for v in os.getloadavg()]
    except OSError:
        pass
    others = [r.get("other_cpu") for r in [result["naive"], *result["renderer"], *result["end_to_end"]]]
    others = [o for o in others if o is not None]
    result["max_other_cpu"] = max(others) if others else None
    result["total_s"] = _r(time.perf_counter() - started)
    return result


def format_table(res: dict[str, Any]) -> str:
    c, m = res["config"], res["machine"]
    where = m["gpu"] or m["cpu"]
    lines = [
        f"SDXL Breeder bench: model {c['model']}, {c['size']}×{c['size']}, {m['device']} {m['dtype']}, "
        f"VAE {c['vae']} ({c['vae_class']}), compile {'on' if c['compile'] else 'off'}, channels_last {'on' if c['channels_last'] else 'off'}",
        f"on {where} ({m['cpu_count']} CPUs, torch {m['torch']}, diffusers {m['diffusers']})",
        "",
        f"naive stock pipeline (batch 1): {res['naive']['fps']:.2f} frames/s, {res['naive']['ms_per_frame']:.1f} ms/frame",
        "",
        "renderer   batch   frames/s   ms/batch   × naive",
    ]
    for r in res["renderer"]:
        lines.append(f"          {r['batch']:6d} {r['fps']:10.2f} {r['ms_per_batch']:10.1f} {r['fps'] / res['naive']['fps']:9.2f}")
    lines += [
        "",
        f"end to end (max batch {c['max_batch']}, websocket permessage-deflate {'on' if c.get('ws_deflate', True) else 'off'})",
        "clients   frames/s  × naive  slowest   mean  p50 ms  p95 ms  overhead p50  mean batch",
    ]
    for r in res["end_to_end"]:
        ratio = res["ratios"]["end_to_end_over_naive"][str(r["clients"])]
        lines.append(
            f"{r['clients']:7d} {r['fps'] or 0:10.2f} {ratio or 0:8.2f} {r['client_fps_min'] or 0:8.2f} {r['client_fps_mean'] or 0:6.2f} "
            f"{r['latency_ms']['p50'] or 0:7.1f} {r['latency_ms']['p95'] or 0:7.1f} {r['overhead_ms']['p50'] or 0:13.2f} {r['mean_batch'] or 0:11.2f}"
        )
        if r.get("worker_fps"):
            lines.append(f"        per render worker: {_per_worker(r)}")
    lines += ["", f"renderer at best batch ({res['renderer_best']['batch']}) / naive: {res['ratios']['renderer_best_over_naive']:.2f}×"]
    other = res.get("max_other_cpu")
    if other is not None and other > 0.1:
        lines += [f"WARNING: other processes used up to {100 * other:.0f}% of the CPUs during a phase: the numbers are disturbed."]
    return "\n".join(lines)


def default_json_path(opts: BenchOptions, device: str) -> Path:
    model = re.sub(r"[^A-Za-z0-9_.-]+", "-", opts.model).strip("-")
    return Path(f"bench-{model}-{device}-{opts.resolved_size()}-{opts.vae}.json")


def main(opts: BenchOptions) -> dict[str, Any]:
    res = run_bench(opts)
    say("")
    say(format_table(res))
    path = opts.json_path or default_json_path(opts, res["machine"]["device"].split(":")[0])
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(res, indent=2) + "\n", encoding="utf-8")
    say(f"\n[bench] wrote {path}")
    return res

