"""`sdxl-breeder walk` and `render-walk`: a walk to a video, played on a running server or rendered offline."""

from __future__ import annotations

import argparse
from pathlib import Path

from sdxl_breeder.cli import remote, values
from sdxl_breeder.cli.errors import CliError
from sdxl_breeder.cli.model_args import add_model_args, load_model
from sdxl_breeder.spec import BLEND_MODES


def _walk(args: argparse.Namespace) -> None:
    from sdxl_breeder.walks.walkfile import Walk, scripted_walk
    from sdxl_breeder.walks.render import check_video_out, stream_walk_video

    walk = scripted_walk(args.path, args.corners, seconds=args.seconds, fps=args.fps, template=args.template,
                         blend=args.blend, seed=args.seed, width=args.width, height=args.height,
                         points=args.points, path_seed=args.path_seed)
    if args.corner_seeds is not None:
        walk = Walk.from_json({**walk.to_json(), "corner_seeds": args.corner_seeds})
    check_video_out(args.out, args.fps)
    client = remote.client(args)
    if args.walk_file:  # first: even an interrupted run leaves a walk to render offline
        walk.save(args.walk_file)
    info = remote.talk(client, lambda c: stream_walk_video(c, walk, args.out, fps=args.fps, quality=args.quality, progress=True))
    _wrote(info, f"; walk in {args.walk_file}" if args.walk_file else "")


def _wrote(info: dict[str, object], extra: str = "") -> None:
    if info["note"]:
        print(f"note: {info['note']}")
    print(f"wrote {info['path']} ({info['frames']} frames, {info['width']}×{info['height']}, fps {info['fps']:g}){extra}")


def add_walk(sub: argparse._SubParsersAction) -> None:
    from sdxl_breeder.walks.paths import PATH_KINDS

    p = sub.add_parser(
        "walk",
        help="play a scripted path on a running server and save the frames as a video",
        description="Script a walk (docs/walks.md), play it on a running `sdxl-breeder serve` one frame at a time "
        "and write an .mp4, a .gif or a folder of PNGs. --walk-file also saves the walk, for `render-walk`.",
    )
    remote.add_server_args(p)
    p.add_argument("--corners", nargs=4, required=True, metavar=("TL", "TR", "BL", "BR"),
                   help="four corners: a prompt each, or genome:<id> for a stored genome")
    p.add_argument("--template", help='noken mode: a prompt with one "[noken]"; corner prompts become nokens')
    p.add_argument("--path", choices=PATH_KINDS, default="circle", help="path shape (default circle)")
    p.add_argument("--points", nargs="+", type=values.point, metavar="X,Y",
                   help="keypoints for line (2), polyline and spline (2 or more), e.g. 0,0 1,0 1,1")
    p.add_argument("--seconds", type=values.number, default=4.0, help="duration (default 4)")
    p.add_argument("--fps", type=values.number, default=12.0, help="frames per second (default 12)")
    p.add_argument("--width", type=values.size, default=512, help="pixels, multiple of 64 (default 512)")
    p.add_argument("--height", type=values.size, default=512, help="pixels, multiple of 64 (default 512)")
    p.add_argument("--seed", type=values.seed, default=0, help="noise seed (default 0)")
    p.add_argument("--corner-seeds", type=values.seed, nargs=4, metavar=("TL", "TR", "BL", "BR"),
                   help="a noise seed per corner, blended with the prompts (instead of --seed)")
    p.add_argument("--path-seed", type=values.seed, default=0, help="seed of the random path (default 0)")
    p.add_argument("--blend", choices=BLEND_MODES, default="lerp", help="how token vectors blend (default lerp)")
    p.add_argument("--quality", type=values.quality, default=95, metavar="1-100",
                   help="JPEG quality of the streamed frames (default 95)")
    p.add_argument("--timeout", type=values.number, default=60.0, help="seconds to wait for each reply (default 60)")
    p.add_argument("--walk-file", help="also save the walk as JSON here")
    p.add_argument("--out", required=True, help="output: .mp4, .gif, or a folder (PNG frames)")
    p.set_defaults(func=_walk)


def _render_walk(args: argparse.Namespace) -> None:
    from sdxl_breeder.model.renderer import Renderer
    from sdxl_breeder.walks.paths import WalkError
    from sdxl_breeder.walks.walkfile import Walk
    from sdxl_breeder.walks.render import check_video_out, write_walk_video

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
        model = load_model(args)
        _wrote(write_walk_video(walk, Renderer(model), args.out, fps=args.fps, width=args.width,
                                height=args.height, batch=args.batch, progress=True,
                                genomes=store.get_genome if store else None))
    finally:
        if store is not None:
            store.close()


def add_render_walk(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "render-walk",
        help="render a walk file to a video offline (no server)",
        description="Render a walk file (recorded or scripted, docs/walks.md) with the model at any frame rate "
        "and size: .mp4, .gif, or a folder of PNGs. Same walk and model: same frames.",
    )
    p.add_argument("file", help="the walk file (JSON)")
    add_model_args(p, default="auto")
    p.add_argument("--fps", type=values.number, default=12.0, help="frames per second (default 12)")
    p.add_argument("--width", type=values.size, help="pixels, multiple of 64 (default: the walk's)")
    p.add_argument("--height", type=values.size, help="pixels, multiple of 64 (default: the walk's)")
    p.add_argument("--batch", type=int, default=4, help="frames rendered together (default 4)")
    p.add_argument("--data-dir", default="data", help="the server's data folder, for stored genomes (default ./data)")
    p.add_argument("--out", required=True, help="output: .mp4, .gif, or a folder (PNG frames)")
    p.set_defaults(func=_render_walk)
