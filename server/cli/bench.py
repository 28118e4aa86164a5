"""`sdxl-breeder bench`: the benchmark's options, checked here and run by `sdxl_breeder.bench`."""

from __future__ import annotations

import argparse
from dataclasses import asdict
from pathlib import Path

from sdxl_breeder.cli import values
from sdxl_breeder.cli.errors import CliError
from sdxl_breeder.cli.model_args import add_model_args, model_options
from sdxl_breeder.model.options import VAES


def _int_list(value: str) -> tuple[int, ...]:
    try:
        items = tuple(int(v) for v in value.split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r}: give whole numbers separated by commas, e.g. 1,2,4") from None
    if not items or min(items) < 1:
        raise argparse.ArgumentTypeError(f"{value!r}: give positive whole numbers, e.g. 1,2,4")
    return items


def _vae_list(value: str) -> tuple[str, ...]:
    items = tuple(v.strip() for v in value.split(",") if v.strip())
    if not items or any(v not in VAES for v in items) or len(set(items)) != len(items):
        raise argparse.ArgumentTypeError(f"{value!r}: give full, tiny or full,tiny")
    return items


def _bench(args: argparse.Namespace) -> None:
    from sdxl_breeder.bench.clients import BenchError
    from sdxl_breeder.bench.main import main as bench_main
    from sdxl_breeder.bench.options import BenchOptions

    if args.seconds <= 0:
        raise CliError("--seconds must be positive")
    if args.server is not None and not args.server.startswith(("ws://", "wss://")):
        raise CliError(f"--server {args.server}: give the server's websocket URL, e.g. ws://127.0.0.1:8000/ws")
    opts = BenchOptions(
        **asdict(model_options(args)), size=args.size, vae=args.vae,
        tiny_vae_path=args.tiny_vae_path, compile=args.compile, channels_last=args.channels_last,
        batches=args.batches, clients=args.clients, seconds=args.seconds, max_batch=args.max_batch,
        ws_deflate=args.ws_deflate, vae_chunk=args.vae_chunk, json_path=Path(args.json) if args.json else None,
        server=args.server, compile_backend=args.compile_backend, compile_buckets=args.compile_buckets,
        budget=args.budget, layout_ab=args.layout_ab, broods=args.broods,
    )
    try:
        bench_main(opts)
    except BenchError as e:
        raise CliError(str(e)) from None

def add_bench(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "bench",
        help="measure renderer, naive-pipeline and end-to-end frames/s and latency",
        description="Benchmark on this machine: the stock pipeline one frame at a time (the naive "
        "baseline), the renderer at each batch size with its stage breakdown, and a real server with N "
        "websocket clients (in another process); for each VAE asked for. Prints a table and met/missed "
        "per target, and writes JSON after every phase (docs/benchmarks.md).",
    )
    add_model_args(p, default="tiny")
    p.add_argument("--size", type=values.size, default=None, help="frame width = height in pixels (default 256 for tiny, 512 otherwise)")
    p.add_argument(
        "--vae", type=_vae_list, default=("full",),
        help="full: the model's VAE; tiny: AutoencoderTiny (TAESDXL); full,tiny: both in one run, the model loaded once",
    )
    p.add_argument("--tiny-vae-path", help="weights for --vae tiny (e.g. a local madebyollin/taesdxl); default: seeded random")
    p.add_argument("--compile", action="store_true", help="torch.compile the renderer as serve --compile does (slow warm-up, reported apart)")
    p.add_argument(
        "--compile-backend", default="inductor", metavar="NAME",
        help="torch.compile backend for --compile (default inductor; eager or aot_eager check the tracing quickly)",
    )
    p.add_argument(
        "--compile-buckets", type=_int_list, default=None, metavar="LIST",
        help="batch sizes to compile with --compile (default 1,2,4,8,16 up to the largest batch); batches pad up to the next",
    )
    p.add_argument("--budget", type=float, default=None, metavar="SECONDS", help="end the whole run within this many seconds, skipping (and listing) phases that do not fit")
    p.add_argument("--layout-ab", action="store_true", help="also time the eager renderer at batch 8 with channels_last vs contiguous")
    p.add_argument(
        "--channels-last", action=argparse.BooleanOptionalAction, default=True,
        help="UNet/VAE in channels_last memory format, as serve runs (default on; applied after the naive phase)",
    )
    p.add_argument("--batches", type=_int_list, default=(1, 2, 4, 8, 16), help="renderer batch sizes (default 1,2,4,8,16)")
    p.add_argument("--clients", type=_int_list, default=(1, 8, 32), help="concurrent websocket clients per run (default 1,8,32)")
    p.add_argument("--seconds", type=float, default=5.0, help="seconds per client run; the renderer phases share as much (default 5)")
    p.add_argument("--max-batch", type=int, default=8, help="the server's max batch, as in serve (default 8)")
    p.add_argument(
        "--ws-deflate", action=argparse.BooleanOptionalAction, default=False,
        help="offer websocket permessage-deflate (default off, as in serve: frames are JPEG already)",
    )
    p.add_argument(
        "--vae-chunk", type=int, default=None, metavar="N",
        help="frames per VAE decode call (default: 4 on CPU, the whole batch on GPUs; 0 = whole batch)",
    )
    p.add_argument(
        "--server", metavar="URL",
        help="run the end-to-end phase against this running server (e.g. ws://HOST:8000/ws of `serve --ray`) "
        "instead of one in this process; frames from a cluster add frames/s per render worker",
    )
    p.add_argument(
        "--broods", type=_int_list, default=(), metavar="LIST",
        help="also time broods of these sizes (1-16, e.g. 9,16) drawn by websocket evolve against the naive pipeline "
        "drawing the same children one by one (default: no brood phase)",
    )
    p.add_argument("--json", help="write the results here, after every phase (default bench-MODEL-DEVICE-SIZE-VAE.json)")
    p.set_defaults(func=_bench)
