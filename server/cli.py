"""`sdxl-breeder` command line: parse arguments, call the package, print user errors as one line."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Awaitable, Callable, Sequence, TypeVar

from sdxl_breeder import __version__
from sdxl_breeder.spec import BLEND_MODES, LIMITS, FrameSettings

if TYPE_CHECKING:  # the client is imported only by the commands that talk to a server
    from sdxl_breeder.client import Brood, BreederClient

T = TypeVar("T")

EXIT_USAGE = 2


class CliError(Exception):
    """An error to print as one line (no traceback) before exiting with status 2."""


def _add_model_args(p: argparse.ArgumentParser, default: str = "auto") -> None:
    p.add_argument(
        "--model",
        default=default,
        help="auto | tiny | sdxl-random | a diffusers SDXL hub id | a local diffusers directory | an SDXL "
        f"single-file .safetensors checkpoint (default: {default}). `tiny` is built in and runs offline on a "
        "CPU; `auto` uses SDXL Turbo when available and falls back to tiny",
    )
    p.add_argument(
        "--model-config",
        metavar="DIR_OR_ID",
        help="for a single-file --model: the diffusers SDXL directory or hub id whose configs and tokenizers "
        "describe it (default stabilityai/sdxl-turbo, from the Hugging Face cache or downloaded)",
    )
    p.add_argument("--device", default="auto", help="auto (cuda > mps > cpu) | cpu | cuda | cuda:N | mps")
    p.add_argument(
        "--dtype",
        default="auto",
        choices=["auto", "fp32", "fp16", "bf16"],
        help="auto: fp32 on CPU, bf16 on GPUs that have it, else fp16 with the VAE kept in fp32",
    )


def _size(value: str) -> int:
    try:
        v = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a whole number of pixels") from None
    problem = LIMITS.check_size(f"{v} pixels", v)
    if problem is not None:  # the same limits the server enforces, checked before connecting
        raise argparse.ArgumentTypeError(problem.replace(f", got {v}", ""))
    return v


def _unit(value: str) -> float:
    try:
        v = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a number") from None
    if not 0.0 <= v <= 1.0:
        raise argparse.ArgumentTypeError(f"{v} must be within [0, 1]")
    return v


def _whole(name: str, lo: int, hi: int, shown_hi: str | None = None) -> Callable[[str], int]:
    """An argparse type: a whole number within [lo, hi], else one line naming the range."""
    def parse(value: str) -> int:
        try:
            v = int(value)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{value!r} is not a whole number") from None
        if not lo <= v <= hi:
            raise argparse.ArgumentTypeError(f"{name} {v} must be within [{lo}, {shown_hi or hi}]")
        return v

    parse.__name__ = name  # argparse names the type in some messages
    return parse


_seed = _whole("seed", 0, LIMITS.max_seed)
_port = _whole("port", 0, 65535)
_quality = _whole("quality", LIMITS.min_quality, LIMITS.max_quality)


# --------------------------------------------------------------------------- render
def _render(args: argparse.Namespace) -> None:
    from PIL import Image

    from sdxl_breeder.model.loading import load_model
    from sdxl_breeder.model.renderer import FrameRequest, Renderer
    from sdxl_breeder.model.scene import scene_from_corners
    from sdxl_breeder.spec import Corner

    out = Path(args.out)
    if out.suffix.lower() not in (".png", ".jpg", ".jpeg"):
        raise CliError(f"--out {out}: use a .png or .jpg file name")
    if args.prompt is None and args.corners is None:
        raise CliError("give --prompt P or --corners A B C D")
    prompts = [args.prompt] * 4 if args.prompt is not None else list(args.corners)
    model = load_model(args.model, args.device, args.dtype, model_config=args.model_config)
    if model.warning:
        logging.getLogger("sdxl_breeder").warning("%s", model.warning)
    renderer = Renderer(model)
    renderer.check_size(args.width, args.height)
    scene = scene_from_corners(renderer, [Corner(prompt=p) for p in prompts], args.template or None)
    cond = FrameRequest(scene, args.x, args.y, FrameSettings(blend=args.blend, seed=args.seed, width=args.width, height=args.height))
    frame = renderer.render([cond])[0]
    out.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(frame).save(out, quality=95) if out.suffix.lower() != ".png" else Image.fromarray(frame).save(out)
    print(f"wrote {out} ({args.width}×{args.height}, model {model.name}, seed {args.seed})")


def _add_render(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "render",
        help="render one frame to a PNG/JPEG file",
        description="Render one frame: a prompt, or the blend of four corner prompts at (x, y).",
    )
    _add_model_args(p)
    src = p.add_mutually_exclusive_group()
    src.add_argument("--prompt", help="one prompt (all four corners)")
    src.add_argument("--corners", nargs=4, metavar=("TL", "TR", "BL", "BR"), help="four corner prompts")
    p.add_argument("--x", type=_unit, default=0.0, help="pad x in [0, 1], 0 = left (default 0)")
    p.add_argument("--y", type=_unit, default=0.0, help="pad y in [0, 1], 0 = top (default 0)")
    p.add_argument("--blend", choices=BLEND_MODES, default="lerp", help="how token vectors blend (default lerp)")
    p.add_argument("--template", help='noken mode: a prompt with one "[noken]"; corner prompts become nokens')
    p.add_argument("--seed", type=_seed, default=0, help="noise seed (default 0)")
    p.add_argument("--width", type=_size, default=512, help="pixels, multiple of 64 (default 512)")
    p.add_argument("--height", type=_size, default=512, help="pixels, multiple of 64 (default 512)")
    p.add_argument("--out", required=True, help="output file, .png or .jpg")
    p.set_defaults(func=_render)


# --------------------------------------------------------------------------- serve
def _serve(args: argparse.Namespace) -> None:
    from sdxl_breeder.web.serve import ServeError, ServeOptions, serve

    opts = ServeOptions(
        model=args.model, model_config=args.model_config, device=args.device, dtype=args.dtype, host=args.host, port=args.port,
        max_batch=args.max_batch, data_dir=Path(args.data_dir), token=args.token, insecure=args.insecure,
        allow_origins=tuple(args.allow_origin or ()), allow_hosts=tuple(args.allow_host or ()), log_level="debug" if args.verbose else "info",
        compile=args.compile, threads=args.threads, max_sessions=args.max_sessions, max_store_gb=args.max_store_gb,
        drain_timeout=args.drain_timeout,
    )
    cluster_only = [f"--{k.replace('_', '-')}" for k in RAY_OPTIONS if getattr(args, k) != _SERVE_DEFAULTS.get(k)]
    if cluster_only and not args.ray:
        raise CliError(f"{', '.join(cluster_only)}: only with --ray")
    try:
        if args.ray:
            from sdxl_breeder.cluster.deploy import ClusterOptions, serve_ray

            serve_ray(opts, ClusterOptions(**{k: getattr(args, k) for k in RAY_OPTIONS}))
        else:
            serve(opts)
    except ServeError as e:
        raise CliError(str(e)) from None


RAY_OPTIONS = ("address", "replicas", "gpus_per_replica", "cpus_per_replica", "front_ends", "sessions_per_replica")
_SERVE_DEFAULTS = {"cpus_per_replica": 1.0, "front_ends": 1, "sessions_per_replica": 32}


def _add_serve(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "serve",
        help="run the server: the pad at /, protocol v1 at /ws, REST at /api",
        description="Run the SDXL Breeder server. Open http://HOST:PORT/ in a browser for the pad; "
        "scripts speak protocol v1 on ws://HOST:PORT/ws (docs/protocol.md).",
    )
    _add_model_args(p, default="auto")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1; others need --token or --insecure)")
    p.add_argument("--port", type=_port, default=8000, help="port (default 8000)")
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
    ray.add_argument("--cpus-per-replica", type=float, default=_SERVE_DEFAULTS["cpus_per_replica"],
                     help="CPUs each render worker reserves (default 1; fractions allowed)")
    ray.add_argument("--front-ends", type=int, default=_SERVE_DEFAULTS["front_ends"],
                     help="front-end replicas holding the websockets and REST (default 1)")
    ray.add_argument("--sessions-per-replica", type=int, default=_SERVE_DEFAULTS["sessions_per_replica"],
                     help="most pad sessions on one render worker (default 32); sets its max_ongoing_requests")
    p.set_defaults(func=_serve)


# --------------------------------------------------------------------------- bench
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
    if not items or any(v not in ("full", "tiny") for v in items) or len(set(items)) != len(items):
        raise argparse.ArgumentTypeError(f"{value!r}: give full, tiny or full,tiny")
    return items


def _bench(args: argparse.Namespace) -> None:
    from sdxl_breeder.bench.main import BenchError, BenchOptions, main as bench_main

    if args.seconds <= 0:
        raise CliError("--seconds must be positive")
    if args.server is not None and not args.server.startswith(("ws://", "wss://")):
        raise CliError(f"--server {args.server}: give the server's websocket URL, e.g. ws://127.0.0.1:8000/ws")
    opts = BenchOptions(
        model=args.model, model_config=args.model_config, device=args.device, dtype=args.dtype, size=args.size, vae=args.vae,
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


def _add_bench(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "bench",
        help="measure renderer, naive-pipeline and end-to-end frames/s and latency",
        description="Benchmark on this machine: the stock pipeline one frame at a time (the naive "
        "baseline), the renderer at each batch size with its stage breakdown, and a real server with N "
        "websocket clients (in another process); for each VAE asked for. Prints a table and met/missed "
        "per target, and writes JSON after every phase (docs/benchmarks.md).",
    )
    _add_model_args(p, default="tiny")
    p.add_argument("--size", type=_size, default=None, help="frame width = height in pixels (default 256 for tiny, 512 otherwise)")
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


# --------------------------------------------------------------------------- walk / render-walk
def _point(value: str) -> tuple[float, float]:
    try:
        x, y = (float(v) for v in value.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a point; write x,y (e.g. 0.5,0.25)") from None
    return x, y  # the walk checks the range and names the point


def _number(value: str) -> float:
    try:
        return float(value)  # the walk checks ranges (fps within (0, 120], seconds > 0)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a number") from None


def _client(args: argparse.Namespace) -> BreederClient:
    """The client for --server, --token and --timeout (a bad URL is a one-line error)."""
    from sdxl_breeder.client import BreederClient

    try:
        return BreederClient(args.server, token=args.token, timeout=args.timeout)
    except ValueError as e:
        raise CliError(str(e)) from None


def _talk(client: BreederClient, work: Callable[[BreederClient], Awaitable[T]]) -> T:
    """Connect, run `work`, close; connection and server errors become one-line CLI errors."""
    import asyncio

    from sdxl_breeder.client import BreederConnectionError, BreederError

    async def run() -> T:
        async with client:
            return await work(client)

    try:
        return asyncio.run(run())
    except (BreederConnectionError, TimeoutError) as e:
        raise CliError(str(e)) from None
    except BreederError as e:
        raise CliError(f"server error: {e}") from None


def _add_server_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--server", default="ws://127.0.0.1:8000/ws", help="websocket URL (default ws://127.0.0.1:8000/ws)")
    p.add_argument("--token", help="the server's --token, if it has one")


def _walk(args: argparse.Namespace) -> None:
    from sdxl_breeder.walks.render import check_video_out, stream_walk_video
    from sdxl_breeder.walks.paths import Walk, scripted_walk

    walk = scripted_walk(args.path, args.corners, seconds=args.seconds, fps=args.fps, template=args.template,
                         blend=args.blend, seed=args.seed, width=args.width, height=args.height,
                         points=args.points, path_seed=args.path_seed)
    if args.corner_seeds is not None:
        walk = Walk.from_json({**walk.to_json(), "corner_seeds": args.corner_seeds})
    check_video_out(args.out, args.fps)
    client = _client(args)
    if args.walk_file:  # first: even an interrupted run leaves a walk to render offline
        walk.save(args.walk_file)
    info = _talk(client, lambda c: stream_walk_video(c, walk, args.out, fps=args.fps, quality=args.quality, progress=True))
    _wrote(info, f"; walk in {args.walk_file}" if args.walk_file else "")


def _wrote(info: dict[str, object], extra: str = "") -> None:
    if info["note"]:
        print(f"note: {info['note']}")
    print(f"wrote {info['path']} ({info['frames']} frames, {info['width']}×{info['height']}, fps {info['fps']:g}){extra}")


def _add_walk(sub: argparse._SubParsersAction) -> None:
    from sdxl_breeder.walks.paths import PATH_KINDS

    p = sub.add_parser(
        "walk",
        help="play a scripted path on a running server and save the frames as a video",
        description="Script a walk (docs/walks.md), play it on a running `sdxl-breeder serve` one frame at a time "
        "and write an .mp4, a .gif or a folder of PNGs. --walk-file also saves the walk, for `render-walk`.",
    )
    _add_server_args(p)
    p.add_argument("--corners", nargs=4, required=True, metavar=("TL", "TR", "BL", "BR"),
                   help="four corners: a prompt each, or genome:<id> for a stored genome")
    p.add_argument("--template", help='noken mode: a prompt with one "[noken]"; corner prompts become nokens')
    p.add_argument("--path", choices=PATH_KINDS, default="circle", help="path shape (default circle)")
    p.add_argument("--points", nargs="+", type=_point, metavar="X,Y",
                   help="keypoints for line (2), polyline and spline (2 or more), e.g. 0,0 1,0 1,1")
    p.add_argument("--seconds", type=_number, default=4.0, help="duration (default 4)")
    p.add_argument("--fps", type=_number, default=12.0, help="frames per second (default 12)")
    p.add_argument("--width", type=_size, default=512, help="pixels, multiple of 64 (default 512)")
    p.add_argument("--height", type=_size, default=512, help="pixels, multiple of 64 (default 512)")
    p.add_argument("--seed", type=_seed, default=0, help="noise seed (default 0)")
    p.add_argument("--corner-seeds", type=_seed, nargs=4, metavar=("TL", "TR", "BL", "BR"),
                   help="a noise seed per corner, blended with the prompts (instead of --seed)")
    p.add_argument("--path-seed", type=_seed, default=0, help="seed of the random path (default 0)")
    p.add_argument("--blend", choices=BLEND_MODES, default="lerp", help="how token vectors blend (default lerp)")
    p.add_argument("--quality", type=_quality, default=95, metavar="1-100",
                   help="JPEG quality of the streamed frames (default 95)")
    p.add_argument("--timeout", type=_number, default=60.0, help="seconds to wait for each reply (default 60)")
    p.add_argument("--walk-file", help="also save the walk as JSON here")
    p.add_argument("--out", required=True, help="output: .mp4, .gif, or a folder (PNG frames)")
    p.set_defaults(func=_walk)


# --------------------------------------------------------------------------- evolve
def _evolve(args: argparse.Namespace) -> None:
    from sdxl_breeder.client.sheet import save_brood

    if Path(args.out).exists() and not Path(args.out).is_dir():
        raise CliError(f"--out {args.out} is a file; give a folder for the children and the contact sheet")

    async def work(client: BreederClient) -> tuple[Brood, list[Path], list[dict[str, Any]]]:
        await client.settings(width=args.width, height=args.height, seed=args.noise_seed, quality=args.quality)
        brood = await client.evolve(args.parents, args.count, mutation=args.mutation, seed=args.seed)
        paths = save_brood(brood, args.out)
        kept = await client.select(brood, args.keep) if args.keep else []
        return brood, paths, kept

    brood, paths, kept = _talk(_client(args), work)
    print(f"brood {brood.id} (generation {brood.generation}, seed {brood.seed}): wrote {len(paths) - 1} children "
          f"and {paths[-1]}")
    for info in kept:
        print(f"kept child {info.get('child')} as genome {info['id']}")


def _add_evolve(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "evolve",
        help="breed a brood of children on a running server and save them with a contact sheet",
        description="Breed COUNT children from 1 to 4 stored genomes on a running `sdxl-breeder serve`, write "
        "each child's frame as OUT/child-NN.jpg and all of them as OUT/contact-sheet.jpg. Nothing is stored "
        "on the server unless you --keep children. Same parents, seed, count, mutation and size: same children.",
    )
    _add_server_args(p)
    p.add_argument("--parents", nargs="+", required=True, metavar="ID", help="1 to 4 genome ids")
    p.add_argument("--count", type=int, default=9, help=f"children, 1 to {LIMITS.max_brood_children} (default 9)")
    p.add_argument("--mutation", type=_number, default=0.2,
                   help=f"mutation strength, 0 to {LIMITS.max_brood_mutation:g} (default 0.2)")
    p.add_argument("--seed", type=_seed, help="brood seed (default: random; printed, to repeat the brood)")
    p.add_argument("--noise-seed", type=_seed, default=0, help="noise seed of the frames (default 0)")
    p.add_argument("--width", type=_size, default=512, help="pixels, multiple of 64 (default 512)")
    p.add_argument("--height", type=_size, default=512, help="pixels, multiple of 64 (default 512)")
    p.add_argument("--quality", type=_quality, default=95, metavar="1-100", help="JPEG quality of the frames (default 95)")
    p.add_argument("--keep", type=int, nargs="+", metavar="I", help="store these children (0-based) as genomes")
    p.add_argument("--timeout", type=_number, default=120.0, help="seconds to wait for each reply (default 120)")
    p.add_argument("--out", required=True, help="folder for child-NN.jpg and contact-sheet.jpg")
    p.set_defaults(func=_evolve)


def _render_walk(args: argparse.Namespace) -> None:
    from sdxl_breeder.model.loading import load_model
    from sdxl_breeder.model.renderer import FrameRequest, Renderer
    from sdxl_breeder.walks.render import check_video_out, write_walk_video
    from sdxl_breeder.walks.paths import Walk, WalkError

    walk = Walk.load(args.file)
    check_video_out(args.out, args.fps)
    store = None
    missing = [(i, c.genome) for i, c in enumerate(walk.corners) if c.genome]
    if missing and Path(args.data_dir).is_dir():  # look genomes up before the slow model load
        from sdxl_breeder.store import Store

        try:
            store = Store(args.data_dir)
        except Exception as e:  # noqa: BLE001 — a newer schema, a broken database: one line
            raise CliError(f"cannot open --data-dir {args.data_dir}: {e}") from None
        missing = [(i, g) for i, g in missing if not store.has_genome(g)]
    try:
        if missing:
            i, g = missing[0]
            raise WalkError(f"unknown genome {g} in corners[{i}] (not in --data-dir {args.data_dir})")
        if args.batch < 1:
            raise CliError(f"--batch must be at least 1, got {args.batch}")
        model = load_model(args.model, args.device, args.dtype, model_config=args.model_config)
        if model.warning:
            logging.getLogger("sdxl_breeder").warning("%s", model.warning)
        _wrote(write_walk_video(walk, Renderer(model), args.out, fps=args.fps, width=args.width,
                                height=args.height, batch=args.batch, progress=True,
                                genomes=store.get_genome if store else None))
    finally:
        if store is not None:
            store.close()


def _add_render_walk(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "render-walk",
        help="render a walk file to a video offline (no server)",
        description="Render a walk file (recorded or scripted, docs/walks.md) with the model at any frame rate "
        "and size: .mp4, .gif, or a folder of PNGs. Same walk and model: same frames.",
    )
    p.add_argument("file", help="the walk file (JSON)")
    _add_model_args(p, default="auto")
    p.add_argument("--fps", type=_number, default=12.0, help="frames per second (default 12)")
    p.add_argument("--width", type=_size, help="pixels, multiple of 64 (default: the walk's)")
    p.add_argument("--height", type=_size, help="pixels, multiple of 64 (default: the walk's)")
    p.add_argument("--batch", type=int, default=4, help="frames rendered together (default 4)")
    p.add_argument("--data-dir", default="data", help="the server's data folder, for stored genomes (default ./data)")
    p.add_argument("--out", required=True, help="output: .mp4, .gif, or a folder (PNG frames)")
    p.set_defaults(func=_render_walk)


# --------------------------------------------------------------------------- save-model
def _save_model(args: argparse.Namespace) -> None:
    from sdxl_breeder.model.checkpoint import save_single_file
    from sdxl_breeder.model.loading import load_model

    out = Path(args.dir)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise CliError(f"{out} exists and is not an empty folder; give a new folder")
    single = Path(args.single_file) if args.single_file else None
    if single is not None and single.suffix.lower() != ".safetensors":
        raise CliError(f"--single-file {single}: use a .safetensors file name")
    model = load_model(args.model, "cpu", args.dtype, model_config=args.model_config, channels_last=False)
    model.pipeline.save_pretrained(out)
    print(f"wrote {out} (diffusers directory of {model.name}; StableDiffusionXLPipeline.from_pretrained loads it)")
    if single is not None:
        single.parent.mkdir(parents=True, exist_ok=True)
        save_single_file(model.pipeline, single)
        print(f"wrote {single} (SDXL single-file checkpoint; load it with --model {single} --model-config {out})")


def _add_save_model(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "save-model",
        help="write a model (e.g. the built-in tiny one) as a diffusers directory and, optionally, a single file",
        description="Write MODEL (anything --model takes; `tiny` for the built-in test model) as a diffusers "
        "directory that stock `StableDiffusionXLPipeline.from_pretrained` loads, and with --single-file also as "
        "an SDXL single-file checkpoint in the original layout (what A1111 and ComfyUI keep).",
    )
    p.add_argument("model", help="tiny | sdxl-random | a hub id | a diffusers directory | an SDXL .safetensors checkpoint")
    p.add_argument("dir", help="the new diffusers directory (must not exist or be empty)")
    p.add_argument("--single-file", metavar="FILE", help="also write an SDXL single-file checkpoint (.safetensors) here")
    p.add_argument("--model-config", metavar="DIR_OR_ID", help="for a single-file MODEL: the diffusers configs to read it with (as in serve)")
    p.add_argument("--dtype", default="fp32", choices=["fp32", "fp16", "bf16"], help="weights' dtype (default fp32)")
    p.set_defaults(func=_save_model)


# --------------------------------------------------------------------------- main
COMMANDS: list[Callable[[argparse._SubParsersAction], None]] = [
    _add_render, _add_serve, _add_bench, _add_walk, _add_render_walk, _add_save_model, _add_evolve,
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sdxl-breeder",
        description="SDXL Breeder: fly between prompts in real time. Run `sdxl-breeder COMMAND --help` for details.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug details")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}",
                        help="print the installed version and exit")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for add in COMMANDS:
        add(sub)
    for command in sub.choices.values():  # `sdxl-breeder serve --verbose` as well as `sdxl-breeder -v serve`
        command.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS, help="log debug details")
    return parser


def _quiet_libraries() -> None:
    """Keep library chatter (deprecations, optional-backend notices) out of the user's terminal.
    Environment variables, not imports: client commands must start without loading torch."""
    import os
    import warnings

    warnings.filterwarnings("ignore", category=FutureWarning)
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("DIFFUSERS_VERBOSITY", "error")
    for name in ("transformers", "diffusers"):
        logging.getLogger(name).setLevel(logging.ERROR)


# Errors whose message is meant for the user: printed as one line. Looked up by module so that
# the CLI imports none of the heavy modules a command did not use.
USER_ERRORS = (
    ("sdxl_breeder.model.genome", "GenomeError"),
    ("sdxl_breeder.model.loading", "ModelLoadError"),
    ("sdxl_breeder.model.renderer", "RenderError"),
    ("sdxl_breeder.model.scene", "SceneError"),
    ("sdxl_breeder.walks.paths", "WalkError"),
    ("sdxl_breeder.web.serve", "ServeError"),
)


def _is_user_error(e: BaseException) -> bool:
    if isinstance(e, CliError):
        return True
    for module, name in USER_ERRORS:
        cls = getattr(sys.modules.get(module), name, None)
        if cls is not None and isinstance(e, cls):
            return True
    return False


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    _quiet_libraries()
    try:
        result = args.func(args)
    except Exception as e:
        if not _is_user_error(e):
            raise
        print(f"sdxl-breeder {args.command}: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())
