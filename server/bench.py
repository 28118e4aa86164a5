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
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch

log = logging.getLogger("sdxl_breeder.bench")

PROMPTS = ("a cat", "a red fox in the snow", "a drawing of a whippet sleeping", "neon city at night")
FRAME_TIMEOUT_S = 120.0  # a frame slower than this means the server is stuck, not slow
JSON_VERSION = 1
ROUNDS = 3  # naive and renderer slices alternate this many times (when they can)


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
        return " ".join(parts)


def say(msg: str) -> None:
    print(msg, flush=True)


def _busy(row: dict[str, Any]) -> str:
    other = row.get("other_cpu")
    return f"  [other processes used {100 * other:.0f}% of the CPUs]" if other else ""


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


class CpuMeter:
    """The share of the machine's CPU time other processes used while a phase ran (Linux; None
    elsewhere): benchmarks on a shared machine say how shared it was."""

    def __init__(self) -> None:
        self.start = self._read()

    @staticmethod
    def _read() -> tuple[int, int, int] | None:
        try:
            cpu = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
            own = Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()
            return sum(cpu), cpu[3] + cpu[4], int(own[11]) + int(own[12])  # total, idle+iowait, utime+stime
        except (OSError, ValueError, IndexError):
            return None

    def other_load(self) -> float | None:
        end = self._read()
        if self.start is None or end is None:
            return None
        total, idle, own = (b - a for a, b in zip(self.start, end))
        return _r(max(0.0, (total - idle - own) / total), 2) if total > 0 else None


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
@dataclass
class Tally:
    """Frames and seconds of one measured thing, summed over the slices (rounds) it ran in."""

    frames: int = 0
    calls: int = 0
    seconds: float = 0.0
    warmup_s: float = 0.0
    cpu: list[int] = field(default_factory=lambda: [0, 0, 0])  # total, idle, own CPU ticks

    def add(self, frames: int, calls: int, seconds: float, meter: CpuMeter) -> None:
        self.frames += frames
        self.calls += calls
        self.seconds += seconds
        end = meter._read()
        if meter.start is not None and end is not None:
            self.cpu = [c + b - a for c, a, b in zip(self.cpu, meter.start, end)]

    def other_cpu(self) -> float | None:
        total, idle, own = self.cpu
        return _r(max(0.0, (total - idle - own) / total), 2) if total > 0 else None

    def summary(self) -> dict[str, Any]:
        return {
            "frames": self.frames, "seconds": _r(self.seconds), "fps": _r(self.frames / self.seconds),
            "ms_per_call": _r(1000 * self.seconds / self.calls), "warmup_s": _r(self.warmup_s), "other_cpu": self.other_cpu(),
        }


class NaiveBench:
    """The stock pipeline, one frame per call, cycling the four prompts and seeds: exactly the
    call the original breeder made per frame."""

    def __init__(self, pipe: Any, size: int, device: torch.device) -> None:
        self.pipe, self.size, self.device = pipe, size, device
        self.sync = synchronizer(device)
        self.k = 0
        self.tally = Tally()

    def _one(self) -> None:
        gen = torch.Generator(self.device).manual_seed(self.k)
        self.pipe(PROMPTS[self.k % 4], num_inference_steps=1, guidance_scale=0.0, height=self.size, width=self.size, generator=gen)
        self.sync()
        self.k += 1

    def warm_up(self) -> None:
        t = time.perf_counter()
        self._one()
        self.tally.warmup_s = time.perf_counter() - t

    def run(self, seconds: float, min_calls: int = 1) -> None:
        meter, calls, t0 = CpuMeter(), 0, time.perf_counter()
        while True:
            self._one()
            calls += 1
            elapsed = time.perf_counter() - t0
            if elapsed >= seconds and calls >= min_calls:
                break
        self.tally.add(calls, calls, elapsed, meter)

    def summary(self) -> dict[str, Any]:
        out = self.tally.summary()
        out["ms_per_frame"] = out.pop("ms_per_call")
        return out


class RendererBench:
    """Repeated `renderer.render` of `batch` frames at distinct pad points. Building the
    conditionings (the token blend) is timed too, as it is in the server's render_ms."""

    def __init__(self, renderer: Any, scene: Any, size: int, batch: int, start: int = 0) -> None:
        self.renderer, self.scene, self.size, self.batch = renderer, scene, size, batch
        self.sync = synchronizer(renderer.device)
        self.k = start
        self.tally = Tally()

    def _one(self) -> None:
        conds = []
        for _ in range(self.batch):
            x, y = pad_point(self.k)
            conds.append(self.scene.conditioning(x, y, seed=self.k % 8, width=self.size, height=self.size))
            self.k += 1
        frames = self.renderer.render(conds)
        self.sync()
        assert len(frames) == self.batch

    def warm_up(self) -> None:
        t = time.perf_counter()
        self._one()
        self.tally.warmup_s = time.perf_counter() - t

    def run(self, seconds: float, min_calls: int = 1) -> None:
        meter, calls, t0 = CpuMeter(), 0, time.perf_counter()
        while True:
            self._one()
            calls += 1
            elapsed = time.perf_counter() - t0
            if elapsed >= seconds and calls >= min_calls:
                break
        self.tally.add(calls * self.batch, calls, elapsed, meter)

    def summary(self) -> dict[str, Any]:
        out = {"batch": self.batch, **self.tally.summary()}
        out["ms_per_batch"] = out.pop("ms_per_call")
        return out


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

    def __init__(self, renderer: Any, loop: Any, max_batch: int, warning: str | None, ws_deflate: bool = False) -> None:
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
            ws_max_size=self.limits.max_message_bytes, ws_ping_interval=20, ws_per_message_deflate=ws_deflate,
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
    if opts.vae_chunk is not None and opts.vae_chunk < 0:
        raise BenchError("--vae-chunk must be 0 (off) or a positive number of frames")
    started = time.perf_counter()

    say(f"[bench] loading model {opts.model} (device {opts.device}, dtype {opts.dtype}, vae {opts.vae}) …")
    t = time.perf_counter()
    # Loaded contiguous: the naive baseline is the stock pipeline as the original breeder ran it;
    # channels_last (serve's default) is applied after the naive phase.
    model = load_model(opts.model, opts.device, opts.dtype, opts.seed, vae=opts.vae, tiny_vae_path=opts.tiny_vae_path,
                       channels_last=False)
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
        scene = on_render_thread(lambda: Scene(tuple(renderer.genome_from_prompt(p) for p in PROMPTS)))  # type: ignore[arg-type]
        info: dict[str, Any] = {"ok": False}
        undo: Callable[[], None] = lambda: None

        def compiled_call(fn: Callable[[], Any]) -> Any:
            """Run `fn` on the render thread; if compiled code fails there, go on uncompiled."""
            try:
                return on_render_thread(fn)
            except Exception as e:  # noqa: BLE001 — compiling is optional; report and go on
                if not info["ok"]:
                    raise
                on_render_thread(undo)
                info["ok"] = False
                info["error"] = f"{type(e).__name__}: {str(e).strip().splitlines()[0][:300] if str(e).strip() else ''}"
                say(f"[bench] NOTE: torch.compile failed, running uncompiled from here: {info['error']}")
                return on_render_thread(fn)

        if opts.compile:
            say("[bench] torch.compile: wrapping the UNet and VAE decoder (the first calls compile; this can take minutes) …")
            info, undo = apply_compile(model.pipeline, model.device)
            info["ok"] = True
            t = time.perf_counter()
            compiled_call(lambda: renderer.render([scene.conditioning(0.5, 0.5, width=size, height=size)]))
            info["first_call_s"] = _r(time.perf_counter() - t)
            say(f"[bench]   first compiled call (batch 1): {info['first_call_s']:.1f} s")
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
        if opts.compile and info["ok"]:
            missing = [b for b in range(1, opts.max_batch + 1) if b not in opts.batches]
            if missing:
                say(f"[bench] compiling the server's other batch sizes {missing} …")
                t = time.perf_counter()
                for b in missing:
                    conds = [scene.conditioning(*pad_point(k), width=size, height=size) for k in range(b)]
                    compiled_call(lambda conds=conds: renderer.render(conds))
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
        with BenchServer(renderer, loop, opts.max_batch, model.warning, opts.ws_deflate) as server:
            deflate = "on" if opts.ws_deflate else "off"
            say(f"[bench] end to end: server on 127.0.0.1:{server.port} (max batch {opts.max_batch}, websocket deflate {deflate}) …")
            for n in opts.clients:
                say(f"[bench]   {n} client(s) for {opts.seconds:g} s …")
                meter = CpuMeter()
                results, elapsed = asyncio.run(run_clients(server.port, n, opts.seconds, size, opts.quality, stamps))
                row = summarize_clients(n, results, opts.seconds)
                row["other_cpu"] = meter.other_load()
                e2e.append(row)
                errs = f"  ERRORS: {row['errors']}" if row["errors"] else ""
                say(
                    f"[bench]   {n:3d} clients: {row['fps'] or 0:8.2f} frames/s, slowest client {row['client_fps_min'] or 0:.2f}, "
                    f"p50 {row['latency_ms']['p50'] or 0:.1f} ms, p95 {row['latency_ms']['p95'] or 0:.1f} ms, "
                    f"overhead p50 {row['overhead_ms']['p50'] or 0:.2f} ms, mean batch {row['mean_batch'] or 0:.2f}{_busy(row)}{errs}"
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


# --------------------------------------------------------------------------- plots
def _label(r: dict[str, Any]) -> str:
    c = r["config"]
    extra = [k for k, on in (("compiled", c.get("compile")), ("channels_last", c.get("channels_last") and r["machine"]["device"] == "cpu"),
                             (f"VAE chunk {c.get('vae_chunk')}", c.get("vae_chunk")), ("no ws deflate", c.get("ws_deflate") is False)) if on]
    return f"{c['model']} {c['size']}², VAE {c['vae']}" + "".join(f", {e}" for e in extra)


def _where(r: dict[str, Any]) -> str:
    m = r["machine"]
    return m["gpu"] or f"{m['cpu_count']}-core CPU"


def plot(paths: Sequence[Path], out: Path, prefix: str = "cpu") -> list[Path]:
    """Three PNGs: frames/s against batch size (renderer; naive as a dotted line; end to end at its
    mean batch), the same as a multiple of each run's own naive baseline, and latency against clients."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import ScalarFormatter

    runs = [json.loads(Path(p).read_text(encoding="utf-8")) for p in paths]
    out.mkdir(parents=True, exist_ok=True)
    written = []
    batches = sorted({row["batch"] for r in runs for row in r["renderer"]})

    def finish(fig: Any, ax: Any, name: str, title: str, xlabel: str, ylabel: str, xticks: list[int]) -> None:
        ax.set_xscale("log", base=2)
        ax.set_xticks(xticks)
        ax.get_xaxis().set_major_formatter(ScalarFormatter())
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.set_ylim(bottom=0)
        ax.set_title(title, fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
        fig.tight_layout()
        path = out / f"{prefix}-{name}.png"
        fig.savefig(path)
        plt.close(fig)
        written.append(path)

    for name, ratio in (("fps-vs-batch", False), ("speedup-vs-batch", True)):
        fig, ax = plt.subplots(figsize=(7.0, 4.6), dpi=120)
        for i, r in enumerate(runs):
            color, base = f"C{i}", (r["naive"]["fps"] if ratio else 1.0)
            ax.plot([row["batch"] for row in r["renderer"]], [row["fps"] / base for row in r["renderer"]], "o-", color=color, label=f"renderer: {_label(r)}")
            if not ratio:
                ax.axhline(r["naive"]["fps"], color=color, ls=":", lw=1.2, label=f"naive stock pipeline: {_label(r)}")
            for row in r["end_to_end"]:
                if row["mean_batch"]:
                    ax.plot([row["mean_batch"]], [row["fps"] / base], marker="s", ms=8, color=color, ls="none", mfc="none")
                    ax.annotate(f"{row['clients']} cl.", (row["mean_batch"], row["fps"] / base), textcoords="offset points", xytext=(6, -3), fontsize=7, color=color)
        if ratio:
            ax.axhline(1.0, color="black", ls=":", lw=1, label="naive stock pipeline (= 1)")
            ax.axhline(2.0, color="grey", ls="--", lw=1, label="target for end to end (2×)")
        ax.plot([], [], marker="s", ms=8, color="grey", ls="none", mfc="none", label="end to end, at its mean batch (label: clients)")
        finish(
            fig, ax, name,
            f"{'Speed-up over the naive pipeline' if ratio else 'Throughput'} vs batch size ({_where(runs[0])})",
            "batch size (frames per render call)", "× naive frames/s (same run)" if ratio else "frames / s", batches,
        )

    fig, ax = plt.subplots(figsize=(7.0, 4.6), dpi=120)
    for i, r in enumerate(runs):
        color = f"C{i}"
        n = [row["clients"] for row in r["end_to_end"]]
        ax.plot(n, [row["latency_ms"]["p50"] for row in r["end_to_end"]], "o-", color=color, label=f"p50: {_label(r)}")
        ax.plot(n, [row["latency_ms"]["p95"] for row in r["end_to_end"]], "^--", color=color, label=f"p95: {_label(r)}")
    finish(
        fig, ax, "latency-vs-clients", f"Move → frame latency vs clients, client-measured ({_where(runs[0])})",
        "concurrent websocket clients", "latency (ms)", sorted({row["clients"] for r in runs for row in r["end_to_end"]}),
    )
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
