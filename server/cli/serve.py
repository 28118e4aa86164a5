"""`sdxl-breeder serve`: the server's options, on one machine or (`--ray`) on Ray Serve."""

from __future__ import annotations

import argparse
from dataclasses import asdict, fields
from pathlib import Path

from sdxl_breeder.cli import values
from sdxl_breeder.cli.errors import CliError
from sdxl_breeder.cli.model_args import add_model_args, model_options
from sdxl_breeder.cluster.deploy import ClusterOptions  # stdlib-only at import: Ray loads when --ray runs
from sdxl_breeder.spec import LIMITS

RAY_OPTIONS = tuple(f.name for f in fields(ClusterOptions))
RAY_DEFAULTS = ClusterOptions()


def _serve(args: argparse.Namespace) -> None:
    from sdxl_breeder.web.serve import ServeError, ServeOptions, serve as serve_here

    opts = ServeOptions(
        **asdict(model_options(args)), host=args.host, port=args.port,
        max_batch=args.max_batch, data_dir=Path(args.data_dir), token=args.token, insecure=args.insecure,
        allow_origins=tuple(args.allow_origin or ()), allow_hosts=tuple(args.allow_host or ()), log_level="debug" if args.verbose else "info",
        compile=args.compile, threads=args.threads, max_sessions=args.max_sessions, max_store_gb=args.max_store_gb,
        drain_timeout=args.drain_timeout,
    )
    cluster_only = [f"--{k.replace('_', '-')}" for k in RAY_OPTIONS if getattr(args, k) != getattr(RAY_DEFAULTS, k)]
    if cluster_only and not args.ray:
        raise CliError(f"{', '.join(cluster_only)}: only with --ray")
    try:
        if args.ray:
            from sdxl_breeder.cluster.deploy import serve_ray

            serve_ray(opts, ClusterOptions(**{k: getattr(args, k) for k in RAY_OPTIONS}))
        else:
            serve_here(opts)
    except ServeError as e:
        raise CliError(str(e)) from None


def add_serve(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "serve",
        help="run the server: the pad at /, protocol v1 at /ws, REST at /api",
        description="Run the SDXL Breeder server. Open http://HOST:PORT/ in a browser for the pad; "
        "scripts speak protocol v1 on ws://HOST:PORT/ws (docs/protocol.md).",
    )
    add_model_args(p, default="auto")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1; others need --token or --insecure)")
    p.add_argument("--port", type=values.port, default=8000, help="port (default 8000)")
    p.add_argument("--max-batch", type=int, default=8, help="most frames rendered in one batch (default 8)")
    p.add_argument("--data-dir", default="data", help="where genomes, thumbnails and walks are kept (default ./data)")
    p.add_argument("--token", help="require this token from clients (?token= or Authorization: Bearer)")
    p.add_argument("--insecure", action="store_true", help="allow a non-loopback --host without a token")
    p.add_argument(
        "--allow-host", action="append", metavar="HOST",
        help="also answer requests addressed to this host name (e.g. breeder.local, *.example.com); "
        "loopback names and --host are always allowed; repeatable",
    )
    p.add_argument(
        "--allow-origin", action="append", metavar="ORIGIN",
        help="also accept browser pages from this origin (e.g. http://localhost:5173); repeatable",
    )
    p.add_argument(
        "--compile", action="store_true",
        help="torch.compile the text encoders, UNet step and VAE decode (CUDA graphs on CUDA) for batch "
        "buckets 1,2,4,8,16 up to --max-batch at start-up (minutes the first time; cached in "
        "DATA_DIR/compile-cache for the next start); falls back to uncompiled if it fails",
    )
    p.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice; 1 can help on busy shared CPUs)")
    p.add_argument(
        "--max-sessions", type=int, default=LIMITS.max_sessions,
        help=f"most pad sessions open at once; one more is refused with 1013 (default {LIMITS.max_sessions})",
    )
    p.add_argument(
        "--max-store-gb", type=float, default=LIMITS.max_store_bytes / 2**30,
        help="size of --data-dir beyond which new genomes and walks are refused "
        f"(default {LIMITS.max_store_bytes / 2**30:g} GiB)",
    )
    p.add_argument(
        "--drain-timeout", type=float, default=LIMITS.drain_timeout_seconds, metavar="SECONDS",
        help="close a websocket whose client takes no data for this long (default "
        f"{LIMITS.drain_timeout_seconds:g})",
    )
    ray = p.add_argument_group("Ray Serve (many GPUs or machines; docs/cluster.md; pip install 'sdxl-breeder[ray]')")
    ray.add_argument("--ray", action="store_true", help="run on Ray Serve: one render worker per GPU, sticky pad sessions, one store")
    ray.add_argument("--address", help="the Ray cluster to join (e.g. auto, or ray://HEAD:10001); default: start a local Ray instance")
    ray.add_argument("--replicas", type=int, help="render workers (default: one per GPU in the cluster; one where there is none)")
    ray.add_argument("--gpus-per-replica", type=float, help="GPUs each render worker reserves (default 1 where there are GPUs, else 0)")
    ray.add_argument("--cpus-per-replica", type=float, default=RAY_DEFAULTS.cpus_per_replica,
                     help=f"CPUs each render worker reserves (default {RAY_DEFAULTS.cpus_per_replica:g}; fractions allowed)")
    ray.add_argument("--front-ends", type=int, default=RAY_DEFAULTS.front_ends,
                     help=f"front-end replicas holding the websockets and REST (default {RAY_DEFAULTS.front_ends})")
    ray.add_argument("--sessions-per-replica", type=int, default=RAY_DEFAULTS.sessions_per_replica,
                     help=f"most pad sessions on one render worker (default {RAY_DEFAULTS.sessions_per_replica}); "
                     "sets its max_ongoing_requests")
    p.set_defaults(func=_serve)
