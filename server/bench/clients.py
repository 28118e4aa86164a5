"""The end-to-end phase of `sdxl-breeder bench`: a real server in the bench's process and N
websocket clients in another process (so they do not share the server's GIL), each moving on its
own path and waiting for the frame that answers each move."""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import json
import multiprocessing
import logging
import math
import socket
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

log = logging.getLogger("sdxl_breeder.bench")

PROMPTS = ("a cat", "a red fox in the snow", "a drawing of a whippet sleeping", "neon city at night")
FRAME_TIMEOUT_S = 120.0  # a frame slower than this means the server is stuck, not slow


class BenchError(RuntimeError):
    pass


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


class BenchServer:
    """The app of `sdxl-breeder serve`, in this process: uvicorn on a background thread, on a
    free loopback port, with a temporary store, sharing the already built render loop."""

    def __init__(self, renderer: Any, loop: Any, max_batch: int, warning: str | None, ws_deflate: bool = False) -> None:
        import uvicorn

        from sdxl_breeder.web.app import create_app
        from sdxl_breeder.web.security import Security
        from sdxl_breeder.protocol import Limits
        from sdxl_breeder.web.service import Breeder
        from sdxl_breeder.store import Store

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
    moves: list[tuple[int, float, float]] = field(default_factory=list)  # (seq, sent, got) per frame
    to_server_ms: list[float] = field(default_factory=list)  # move sent → server has the job
    queue_ms: list[float] = field(default_factory=list)  # server has the job → its batch starts
    from_server_ms: list[float] = field(default_factory=list)  # batch done → frame at the client
    workers: collections.Counter[str] = field(default_factory=collections.Counter)  # frames per render worker (a cluster)
    error: str | None = None

    def attach_stamps(self, client: int, stamps: dict[tuple[int, int], tuple[float, float]]) -> None:
        """Split each frame's latency with the server's (arrived, batch started) stamps. Both
        sides read `time.perf_counter()`, one clock for every process of the machine."""
        for (seq, sent, got), render_ms in zip(self.moves, self.render_ms):
            stamp = stamps.get((client, seq))
            if stamp is not None:
                received, batch_start = stamp
                self.to_server_ms.append(1000 * (received - sent))
                self.queue_ms.append(1000 * (batch_start - received))
                self.from_server_ms.append(1000 * (got - batch_start) - render_ms)


async def _next_frame(ws: Any, seq: int, timeout: float) -> tuple[Any, float, str | None]:
    """Wait for the binary frame whose header seq is `seq` (others are skipped): its header, when
    it came, and the render worker that drew it (a cluster's frames name one)."""
    from sdxl_breeder.protocol import decode_frame, frame_worker

    deadline = time.perf_counter() + timeout
    while True:
        remaining = deadline - time.perf_counter()
        if remaining <= 0:
            raise BenchError(f"no frame for move {seq} within {timeout:.0f} s")
        msg = await asyncio.wait_for(ws.recv(), remaining)
        if isinstance(msg, bytes):
            header, _ = decode_frame(msg)
            if header.seq == seq:
                return header, time.perf_counter(), frame_worker(msg)
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


def run_clients_apart(uri: str, n: int, seconds: float, size: int, quality: int) -> tuple[list[ClientResult], float]:
    """`run_clients` in a separate process; returns its results here."""
    ctx = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(max_workers=1, mp_context=ctx) as pool:
        raw, elapsed = pool.submit(_clients_process, uri, n, seconds, size, quality).result(timeout=seconds + 2 * FRAME_TIMEOUT_S)
    return [ClientResult(**{**r, "workers": collections.Counter(r["workers"])}) for r in raw], elapsed


def _clients_process(uri: str, n: int, seconds: float, size: int, quality: int) -> tuple[list[dict[str, Any]], float]:
    results, elapsed = asyncio.run(run_clients(uri, n, seconds, size, quality))
    return [asdict(r) for r in results], elapsed


async def run_clients(uri: str, n: int, seconds: float, size: int, quality: int) -> tuple[list[ClientResult], float]:
    """N clients of the server at websocket `uri` at once, for `seconds` after all of them have
    their first frame."""
    from websockets.asyncio.client import connect

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
                    header, got, worker = await _next_frame(ws, seq, FRAME_TIMEOUT_S)
                    if got > end:
                        break
                    res.frames += 1
                    res.latency_ms.append(1000 * (got - sent))
                    res.render_ms.append(header.render_ms)
                    res.batch.append(header.batch)
                    res.moves.append((seq, sent, got))
                    if worker is not None:
                        res.workers[worker] += 1
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
        # frames/s per render worker, for a cluster (`serve --ray`); empty for one server
        "worker_fps": {w: _r(f / seconds) for w, f in sorted(sum((r.workers for r in results), collections.Counter()).items())},
        "errors": [r.error for r in results if r.error],
    }
