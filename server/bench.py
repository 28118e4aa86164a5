"""`sdxl-breeder bench`: how fast the breeder is, measured in one run on this machine.

Four phases, every number measured in the run that writes the JSON:

1. naive baseline: the stock `StableDiffusionXLPipeline.__call__`, one frame per call (prompt,
   `num_inference_steps=1`, `guidance_scale=0.0`, height, width, generator): what the original
   breeder did. It runs before any `--compile` / `--channels-last` is applied: the stock pipeline
   as it was used.
2. renderer: `Renderer.render` at each batch size, conditionings at distinct pad points (so the
   token blending and both text encoders do real work), after a warm-up call.
3. end to end: a real server (uvicorn in a background thread, the app from `create_app`, sharing
   the loaded model) and N websocket clients at once, each tracing its own path on the pad: send a
   move, wait for the frame answering it (header seq == sent seq), send the next.
4. ratios: renderer at its best batch / naive, end to end / naive.

All model work runs on the render loop's thread (through `RenderLoop.call`), the thread that owns
the model in the server, so CUDA graphs and compiled code see one thread.

`python -m server.bench plot A.json [B.json ...] --out DIR` draws the PNG plots of docs/benchmarks.md.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import os
import platform
import re
import socket
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch

log = logging.getLogger("sdxl_breeder.bench")

PROMPTS = ("a cat", "a red fox in the snow", "a drawing of a whippet sleeping", "neon city at night")
FRAME_TIMEOUT_S = 120.0  # a frame slower than this means the server is stuck, not slow
JSON_VERSION = 1


class BenchError(RuntimeError):
    pass


@dataclass(frozen=True)
class BenchOptions:
    model: str = "tiny"
    device: str = "auto"
    dtype: str = "auto"
    size: int | None = None  # None: 256 for tiny, 512 otherwise
    vae: str = "full"
    tiny_vae_path: str | None = None
    compile: bool = False
    channels_last: bool | None = None  # None: on for CUDA
    batches: tuple[int, ...] = (1, 2, 4, 8, 16)
    clients: tuple[int, ...] = (1, 8, 32)
    seconds: float = 5.0
    max_batch: int = 8
    quality: int = 80
    json_path: Path | None = None
    seed: int = 0

    def resolved_size(self) -> int:
        return self.size if self.size is not None else (256 if self.model == "tiny" else 512)


def say(msg: str) -> None:
    print(msg, flush=True)


# --------------------------------------------------------------------------- helpers
def percentile(values: Sequence[float], q: float) -> float | None:
    return float(np.percentile(np.asarray(values, dtype=np.float64), q)) if len(values) else None


def _r(v: float | None, nd: int = 3) -> float | None:
    return None if v is None or not math.isfinite(v) else round(v, nd)


def pad_point(k: int, phase: float = 0.0) -> tuple[float, float]:
    """Distinct points over the pad (a low-discrepancy sequence): frame k of a renderer batch."""
    return (math.fmod(0.5 + phase + k * 0.6180339887, 1.0), math.fmod(0.5 + k * 0.7548776662, 1.0))


def client_path(client: int, step: int) -> tuple[float, float]:
    """Client `client`'s own cursor path: a Lissajous curve, a small step per move."""
    t = step * 0.02
    fx, fy = 1.0 + 0.13 * client, 1.3 + 0.07 * client
    px, py = 0.37 * client, 0.61 * client
    x = 0.5 + 0.45 * math.sin(2 * math.pi * (fx * t * 0.1) + px)
    y = 0.5 + 0.45 * math.sin(2 * math.pi * (fy * t * 0.1) + py)
    return round(x, 5), round(y, 5)


def synchronizer(device: torch.device) -> Callable[[], None]:
    if device.type == "cuda":
        return lambda: torch.cuda.synchronize(device)
    if device.type == "mps":
        return lambda: torch.mps.synchronize()
    return lambda: None


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _version(module: str) -> str | None:
    try:
        from importlib.metadata import version

        return version(module)
    except Exception:  # noqa: BLE001
        return None


def machine_info(device: torch.device, dtype: torch.dtype, vae_dtype: torch.dtype) -> dict[str, Any]:
    info: dict[str, Any] = {
        "cpu": _cpu_name(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "diffusers": _version("diffusers"),
        "transformers": _version("transformers"),
        "uvicorn": _version("uvicorn"),
        "websockets": _version("websockets"),
        "device": str(device),
        "dtype": str(dtype).replace("torch.", ""),
        "vae_dtype": str(vae_dtype).replace("torch.", ""),
        "gpu": None,
    }
    try:
        pages, page = os.sysconf("SC_PHYS_PAGES"), os.sysconf("SC_PAGE_SIZE")
        info["memory_gib"] = round(pages * page / 2**30, 1)
    except (ValueError, OSError, AttributeError):
        pass
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        info["gpu"] = torch.cuda.get_device_name(device)
        info["gpu_memory_gib"] = round(props.total_memory / 2**30, 1)
        info["cuda"] = torch.version.cuda
    try:
        info["loadavg_start"] = [round(v, 2) for v in os.getloadavg()]
    except OSError:
        pass
    return info


# --------------------------------------------------------------------------- model phases
def bench_naive(pipe: Any, size: int, seconds: float, device: torch.device) -> dict[str, Any]:
    """The stock pipeline, one frame per call, cycling the four prompts and seeds."""
    sync = synchronizer(device)

    def one(k: int) -> None:
        gen = torch.Generator(device).manual_seed(k)
        pipe(PROMPTS[k % 4], num_inference_steps=1, guidance_scale=0.0, height=size, width=size, generator=gen)

    t = time.perf_counter()
    one(0)
    sync()
    warm = time.perf_counter() - t
    frames, t0 = 0, time.perf_counter()
    while True:
        one(frames + 1)
        sync()
        frames += 1
        elapsed = time.perf_counter() - t0
        if elapsed >= seconds and frames >= 3:
            break
    return {"frames": frames, "seconds": _r(elapsed), "fps": _r(frames / elapsed), "ms_per_frame": _r(1000 * elapsed / frames), "warmup_s": _r(warm)}


def bench_renderer(renderer: Any, scene: Any, size: int, batch: int, seconds: float, start: int = 0) -> dict[str, Any]:
    """Repeated `renderer.render` of `batch` frames at distinct pad points (building the
    conditionings is timed too, as in the server's render_ms)."""
    sync = synchronizer(renderer.device)
    k = start

    def conds() -> list[Any]:
        nonlocal k
        out = []
        for _ in range(batch):
            x, y = pad_point(k)
            out.append(scene.conditioning(x, y, seed=k % 8, width=size, height=size))
            k += 1
        return out

    t = time.perf_counter()
    renderer.render(conds())
    sync()
    warm = time.perf_counter() - t
    calls, t0 = 0, time.perf_counter()
    while True:
        frames = renderer.render(conds())
        sync()
        calls += 1
        elapsed = time.perf_counter() - t0
        if elapsed >= seconds and calls >= 2:
            break
    assert len(frames) == batch
    n = calls * batch
    return {
        "batch": batch,
        "frames": n,
        "seconds": _r(elapsed),
        "fps": _r(n / elapsed),
        "ms_per_batch": _r(1000 * elapsed / calls),
        "warmup_s": _r(warm),
    }


def apply_channels_last(pipe: Any) -> None:
    pipe.unet.to(memory_format=torch.channels_last)
    pipe.vae.to(memory_format=torch.channels_last)


def apply_compile(pipe: Any, device: torch.device) -> tuple[dict[str, Any], Callable[[], None]]:
    """Wrap the UNet and the VAE decoder in torch.compile; returns (info, undo)."""
    import torch._dynamo as dynamo

    mode = "reduce-overhead" if device.type == "cuda" else "max-autotune-no-cudagraphs"
    for attr in ("cache_size_limit", "recompile_limit"):  # one graph per batch size
        if hasattr(dynamo.config, attr):
            setattr(dynamo.config, attr, max(64, getattr(dynamo.config, attr)))
    unet, decoder = pipe.unet, pipe.vae.decoder
    pipe.unet = torch.compile(unet, mode=mode, dynamic=False)
    pipe.vae.decoder = torch.compile(decoder, mode=mode, dynamic=False)

    def undo() -> None:
        pipe.unet = unet
        pipe.vae.decoder = decoder
        dynamo.reset()

    return {"mode": mode, "dynamic": False, "modules": ["unet", "vae.decoder"]}, undo


# --------------------------------------------------------------------------- server
class BenchServer:
    """The app of `sdxl-breeder serve`, in this process: uvicorn on a background thread, on a
    free loopback port, with a temporary store, sharing the already built render loop."""

    def __init__(self, renderer: Any, loop: Any, max_batch: int, warning: str | None) -> None:
        import uvicorn

        from .app import Security, create_app
        from .protocol import Limits
        from .service import Breeder
        from .store import Store

        self.loop = loop
        self._tmp = tempfile.TemporaryDirectory(prefix="breeder-bench-")
        self.store = Store(Path(self._tmp.name) / "data")
        self.limits = Limits(max_batch=max_batch)
        self.breeder = Breeder(renderer, loop, self.store, self.limits, warning)
        app = create_app(self.breeder, Security())
        for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
            logging.getLogger(name).setLevel(logging.WARNING)
        # As serve.py runs uvicorn (websocket size limit, pings, lifespan); the rest is default.
        config = uvicorn.Config(
            app, log_config=None, log_level="warning", access_log=False, lifespan="on",
            ws_max_size=self.limits.max_message_bytes, ws_ping_interval=20,
        )
        self.server = uvicorn.Server(config)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, name="bench-uvicorn", daemon=True)

    def __enter__(self) -> BenchServer:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise BenchError("the benchmark server did not start")
            time.sleep(0.01)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=15)
        self.sock.close()
        self.store.close()
        self._tmp.cleanup()


@dataclass
class ClientResult:
    frames: int = 0
    latency_ms: list[float] = field(default_factory=list)
    render_ms: list[float] = field(default_factory=list)
    batch: list[int] = field(default_factory=list)
    to_server_ms: list[float] = field(default_factory=list)  # move sent → server has the job
    queue_ms: list[float] = field(default_factory=list)  # server has the job → its batch starts
    from_server_ms: list[float] = field(default_factory=list)  # batch done → frame at the client
    error: str | None = None


async def _next_frame(ws: Any, seq: int, timeout: float) -> tuple[Any, float]:
    """Wait for the binary frame whose header seq is `seq` (others are skipped)."""
    from .protocol import decode_frame

    deadline = time.perf_counter() + timeout
    while True:
        remaining = deadline - time.perf_counter()
        if remaining <= 0:
            raise BenchError(f"no frame for move {seq} within {timeout:.0f} s")
        msg = await asyncio.wait_for(ws.recv(), remaining)
        if isinstance(msg, bytes):
            header, _ = decode_frame(msg)
            if header.seq == seq:
                return header, time.perf_counter()
        else:
            data = json.loads(msg)
            if data.get("type") == "error":
                raise BenchError(f"server error: {data.get('code')}: {data.get('message')}")


async def _expect(ws: Any, kind: str) -> dict[str, Any]:
    while True:
        msg = await asyncio.wait_for(ws.recv(), FRAME_TIMEOUT_S)
        if isinstance(msg, bytes):
            continue
        data = json.loads(msg)
        if data.get("type") == "error":
            raise BenchError(f"server error: {data.get('code')}: {data.get('message')}")
        if data.get("type") == kind:
            return data


async def run_clients(port: int, n: int, seconds: float, size: int, quality: int, stamps: dict[tuple[int, int], tuple[float, float]]) -> tuple[list[ClientResult], float]:
    """N clients at once for `seconds` after all of them have their first frame."""
    from websockets.asyncio.client import connect

    uri = f"ws://127.0.0.1:{port}/ws"
    sockets = []
    try:
        for i in range(n):
            ws = await connect(uri, max_size=None, open_timeout=30, ping_interval=None)
            sockets.append(ws)
            await _expect(ws, "hello")
            await ws.send(json.dumps({"type": "settings", "width": size, "height": size, "seed": i, "quality": quality}))
            await _expect(ws, "settings")
            await ws.send(json.dumps({"type": "corners", "corners": [{"prompt": p} for p in PROMPTS]}))
            await _expect(ws, "corners")
        # The corners message asks for a frame at the pad's centre (seq 0): every client has it
        # before the clock starts.
        await asyncio.gather(*(_next_frame(ws, 0, FRAME_TIMEOUT_S) for ws in sockets))
        stamps.clear()
        t0 = time.perf_counter()
        end = t0 + seconds

        async def client(i: int, ws: Any) -> ClientResult:
            res = ClientResult()
            seq = 0
            try:
                while True:
                    seq += 1
                    x, y = client_path(i, seq)
                    sent = time.perf_counter()
                    if sent >= end:
                        break
                    await ws.send(json.dumps({"type": "move", "x": x, "y": y, "seq": seq}))
                    header, got = await _next_frame(ws, seq, FRAME_TIMEOUT_S)
                    if got > end:
                        break
                    res.frames += 1
                    res.latency_ms.append(1000 * (got - sent))
                    res.render_ms.append(header.render_ms)
                    res.batch.append(header.batch)
                    stamp = stamps.get((i, seq))
                    if stamp is not None:
                        received, batch_start = stamp
                        res.to_server_ms.append(1000 * (received - sent))
                        res.queue_ms.append(1000 * (batch_start - received))
                        res.from_server_ms.append(1000 * (got - batch_start) - header.render_ms)
            except Exception as e:  # noqa: BLE001 — reported in the results, not fatal
                res.error = f"{type(e).__name__}: {e}"
            return res

        results = await asyncio.gather(*(client(i, ws) for i, ws in enumerate(sockets)))
        return list(results), time.perf_counter() - t0
    finally:
        await asyncio.gather(*(ws.close() for ws in sockets), return_exceptions=True)


def summarize_clients(n: int, results: list[ClientResult], seconds: float) -> dict[str, Any]:
    def cat(attr: str) -> list[float]:
        return [v for r in results for v in getattr(r, attr)]

    latency, render = cat("latency_ms"), cat("render_ms")
    overhead = [lat - ren for r in results for lat, ren in zip(r.latency_ms, r.render_ms)]
    per_client = [r.frames / seconds for r in results]
    total = sum(r.frames for r in results)
    mean_fps = sum(per_client) / n
    p = {q: percentile(latency, q) for q in (50, 95)}
    return {
        "clients": n,
        "seconds": _r(seconds),
        "frames": total,
        "fps": _r(total / seconds),
        "client_fps_min": _r(min(per_client)),
        "client_fps_mean": _r(mean_fps),
        "client_fps_max": _r(max(per_client)),
        "slowest_over_mean": _r(min(per_client) / mean_fps if mean_fps else None),
        "latency_ms": {"p50": _r(p[50]), "p95": _r(p[95]), "mean": _r(float(np.mean(latency)) if latency else None)},
        "render_ms": {"p50": _r(percentile(render, 50)), "mean": _r(float(np.mean(render)) if render else None)},
        "overhead_ms": {"p50": _r(percentile(overhead, 50)), "p95": _r(percentile(overhead, 95))},
        # latency = to_server + queue + render + from_server, each measured per frame
        "breakdown_ms_p50": {
            "to_server": _r(percentile(cat("to_server_ms"), 50)),
            "queue": _r(percentile(cat("queue_ms"), 50)),
            "render": _r(percentile(render, 50)),
            "from_server": _r(percentile(cat("from_server_ms"), 50)),
        },
        "overhead_without_queue_ms_p50": _r(
            percentile([a + b for r in results for a, b in zip(r.to_server_ms, r.from_server_ms)], 50)
        ),
        "mean_batch": _r(float(np.mean(cat("batch"))) if results and cat("batch") else None),
        "errors": [r.error for r in results if r.error],
    }


# --------------------------------------------------------------------------- the run
def run_bench(opts: BenchOptions) -> dict[str, Any]:
    from .engine import RenderLoop
    from .models import load_model
    from .renderer import Renderer
    from .scene import Scene

    size = opts.resolved_size()
    if opts.seconds <= 0:
        raise BenchError("--seconds must be positive")
    if not opts.batches or min(opts.batches) < 1:
        raise BenchError("--batches: give positive batch sizes, e.g. 1,2,4,8")
    if not opts.clients or min(opts.clients) < 1:
        raise BenchError("--clients: give positive client counts, e.g. 1,8")
    if not 1 <= opts.max_batch <= 64:
        raise BenchError("--max-batch must be within [1, 64]")
    started = time.perf_counter()

    say(f"[bench] loading model {opts.model} (device {opts.device}, dtype {opts.dtype}, vae {opts.vae}) …")
    t = time.perf_counter()
    model = load_model(opts.model, opts.device, opts.dtype, opts.seed, vae=opts.vae, tiny_vae_path=opts.tiny_vae_path)
    load_s = time.perf_counter() - t
    if model.warning:
        say(f"[bench] note: {model.warning}")
    channels_last = opts.channels_last if opts.channels_last is not None else model.device.type == "cuda"
    renderer = Renderer(model)
    renderer.check_size(size, size)
    loop = RenderLoop(renderer, max_batch=opts.max_batch)
    loop.start()

    def on_render_thread(fn: Callable[[], Any]) -> Any:
        return loop.call(fn).result()

    result: dict[str, Any] = {
        "version": JSON_VERSION,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "command": "sdxl-breeder " + " ".join(sys.argv[1:]) if sys.argv and "sdxl-breeder" in sys.argv[0] else None,
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
        },
        "warmup_s": {"load_model": _r(load_s)},
    }
    try:
        # 1. naive baseline, before any optimisation is applied: the pipeline as it was used.
        per = opts.seconds / len(opts.batches)
        say(f"[bench] naive stock pipeline, batch 1, {size}×{size}, ~{per:.1f} s …")
        naive = on_render_thread(lambda: bench_naive(model.pipeline, size, per, model.device))
        result["naive"] = naive
        say(f"[bench]   naive: {naive['fps']:.2f} frames/s ({naive['ms_per_frame']:.1f} ms/frame)")

        # 2. optimisations
        if channels_last:
            on_render_thread(lambda: apply_channels_last(model.pipeline))
            say("[bench] channels_last applied to the UNet and VAE")
        scene = on_render_thread(lambda: Scene(tuple(renderer.genome_from_prompt(p) for p in PROMPTS)))  # type: ignore[arg-type]
        if opts.compile:
            say("[bench] torch.compile: wrapping the UNet and VAE decoder (the first calls compile; this can take minutes) …")
            info, undo = apply_compile(model.pipeline, model.device)
            t = time.perf_counter()
            try:
                on_render_thread(lambda: renderer.render([scene.conditioning(0.5, 0.5, width=size, height=size)]))
                info["ok"] = True
            except Exception as e:  # noqa: BLE001 — compiling is optional; report and go on
                on_render_thread(undo)
                info["ok"] = False
                info["error"] = f"{type(e).__name__}: {str(e).strip().splitlines()[0][:300] if str(e).strip() else ''}"
                say(f"[bench] NOTE: torch.compile failed, running uncompiled: {info['error']}")
            info["first_call_s"] = _r(time.perf_counter() - t)
            say(f"[bench]   first compiled call (batch 1): {info['first_call_s']:.1f} s")
            result["compile"] = info
            result["warmup_s"]["compile_first_call"] = info["first_call_s"]

        # 3. renderer throughput per batch size
        say(f"[bench] renderer throughput at batch sizes {','.join(map(str, opts.batches))}, ~{per:.1f} s each …")
        rows = []
        for i, b in enumerate(opts.batches):
            row = on_render_thread(lambda b=b, i=i: bench_renderer(renderer, scene, size, b, per, start=1000 * i))
            rows.append(row)
            say(f"[bench]   batch {b:3d}: {row['fps']:8.2f} frames/s  {row['ms_per_batch']:9.1f} ms/batch  (warm-up {row['warmup_s']:.2f} s)")
        result["renderer"] = rows
        best = max(rows, key=lambda r: r["fps"])
        result["renderer_best"] = {"batch": best["batch"], "fps": best["fps"]}

        # 4. end to end
        if opts.compile and result["compile"].get("ok"):
            missing = [b for b in range(1, opts.max_batch + 1) if b not in opts.batches]
            if missing:
                say(f"[bench] compiling the server's other batch sizes {missing} …")
                t = time.perf_counter()
                for b in missing:
                    conds = [scene.conditioning(*pad_point(k), width=size, height=size) for k in range(b)]
                    on_render_thread(lambda conds=conds: renderer.render(conds))
                result["warmup_s"]["compile_server_batches"] = _r(time.perf_counter() - t)
        stamps: dict[tuple[int, int], tuple[float, float]] = {}
        render_batch = loop._render

        def timed_render(batch: list[Any]) -> None:
            # Bench instrumentation only: when each job's batch started, for the latency breakdown.
            start = time.perf_counter()
            for _, job in batch:
                stamps[(job.settings.seed, job.seq)] = (job.received, start)
            render_batch(batch)

        loop._render = timed_render  # type: ignore[method-assign]
        e2e = []
        with BenchServer(renderer, loop, opts.max_batch, model.warning) as server:
            say(f"[bench] end to end: server on 127.0.0.1:{server.port} (max batch {opts.max_batch}) …")
            for n in opts.clients:
                say(f"[bench]   {n} client(s) for {opts.seconds:g} s …")
                results, elapsed = asyncio.run(run_clients(server.port, n, opts.seconds, size, opts.quality, stamps))
                row = summarize_clients(n, results, opts.seconds)
                e2e.append(row)
                errs = f"  ERRORS: {row['errors']}" if row["errors"] else ""
                say(
                    f"[bench]   {n:3d} clients: {row['fps'] or 0:8.2f} frames/s, slowest client {row['client_fps_min'] or 0:.2f}, "
                    f"p50 {row['latency_ms']['p50'] or 0:.1f} ms, p95 {row['latency_ms']['p95'] or 0:.1f} ms, "
                    f"overhead p50 {row['overhead_ms']['p50'] or 0:.2f} ms, mean batch {row['mean_batch'] or 0:.2f}{errs}"
                )
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
        f"end to end (max batch {c['max_batch']})",
        "clients   frames/s  × naive  slowest   mean  p50 ms  p95 ms  overhead p50  mean batch",
    ]
    for r in res["end_to_end"]:
        ratio = res["ratios"]["end_to_end_over_naive"][str(r["clients"])]
        lines.append(
            f"{r['clients']:7d} {r['fps'] or 0:10.2f} {ratio or 0:8.2f} {r['client_fps_min'] or 0:8.2f} {r['client_fps_mean'] or 0:6.2f} "
            f"{r['latency_ms']['p50'] or 0:7.1f} {r['latency_ms']['p95'] or 0:7.1f} {r['overhead_ms']['p50'] or 0:13.2f} {r['mean_batch'] or 0:11.2f}"
        )
    lines += ["", f"renderer at best batch ({res['renderer_best']['batch']}) / naive: {res['ratios']['renderer_best_over_naive']:.2f}×"]
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


# --------------------------------------------------------------------------- plots
def plot(paths: Sequence[Path], out: Path, prefix: str = "cpu") -> list[Path]:
    """Frames/s against batch size (renderer, naive as a line) and latency against clients."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = [json.loads(Path(p).read_text(encoding="utf-8")) for p in paths]
    out.mkdir(parents=True, exist_ok=True)
    written = []

    def label(r: dict[str, Any]) -> str:
        c = r["config"]
        return f"{c['model']} {c['size']}², VAE {c['vae']}" + (", compiled" if c.get("compile") else "")

    fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=120)
    for i, r in enumerate(runs):
        color = f"C{i}"
        b = [row["batch"] for row in r["renderer"]]
        f = [row["fps"] for row in r["renderer"]]
        ax.plot(b, f, "o-", color=color, label=f"renderer, {label(r)}")
        ax.axhline(r["naive"]["fps"], color=color, ls=":", label=f"naive stock pipeline, {label(r)}")
        for row in r["end_to_end"]:
            ax.plot([r["config"]["max_batch"]], [row["fps"]], marker="s", color=color, ls="none", mfc="none")
    ax.plot([], [], marker="s", color="grey", ls="none", mfc="none", label="end to end (at max batch; one mark per client count)")
    ax.set_xscale("log", base=2)
    ax.set_xticks(sorted({row["batch"] for r in runs for row in r["renderer"]}))
    ax.get_xaxis().set_major_formatter(matplotlib.ticker.ScalarFormatter())
    ax.set_xlabel("batch size (frames per render call)")
    ax.set_ylabel("frames / s")
    ax.set_ylim(bottom=0)
    ax.set_title(f"Throughput vs batch size ({runs[0]['machine']['gpu'] or runs[0]['machine']['cpu_count'] and str(runs[0]['machine']['cpu_count']) + '-core CPU'})", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    p = out / f"{prefix}-fps-vs-batch.png"
    fig.savefig(p)
    plt.close(fig)
    written.append(p)

    fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=120)
    for i, r in enumerate(runs):
        color = f"C{i}"
        n = [row["clients"] for row in r["end_to_end"]]
        ax.plot(n, [row["latency_ms"]["p50"] for row in r["end_to_end"]], "o-", color=color, label=f"p50, {label(r)}")
        ax.plot(n, [row["latency_ms"]["p95"] for row in r["end_to_end"]], "^--", color=color, label=f"p95, {label(r)}")
    ax.set_xscale("log", base=2)
    ax.set_xticks(sorted({row["clients"] for r in runs for row in r["end_to_end"]}))
    ax.get_xaxis().set_major_formatter(matplotlib.ticker.ScalarFormatter())
    ax.set_xlabel("concurrent websocket clients")
    ax.set_ylabel("move → frame latency (ms)")
    ax.set_ylim(bottom=0)
    ax.set_title("Pad-to-frame latency vs clients (client-measured)", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    p = out / f"{prefix}-latency-vs-clients.png"
    fig.savefig(p)
    plt.close(fig)
    written.append(p)
    return written


if __name__ == "__main__":  # python -m server.bench plot A.json [B.json ...] --out DIR [--prefix NAME]
    import argparse

    ap = argparse.ArgumentParser(prog="python -m server.bench")
    sub = ap.add_subparsers(dest="cmd", required=True)
    pp = sub.add_parser("plot", help="PNG plots from bench JSON files")
    pp.add_argument("json", nargs="+", type=Path)
    pp.add_argument("--out", type=Path, default=Path("docs/bench"))
    pp.add_argument("--prefix", default="cpu")
    a = ap.parse_args()
    for written in plot(a.json, a.out, a.prefix):
        print(f"wrote {written}")
