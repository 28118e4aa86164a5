"""`sdxl-breeder render`: one frame, from a prompt or four blended corners, to a PNG or JPEG file."""

from __future__ import annotations

import argparse
from pathlib import Path

from sdxl_breeder.cli import values
from sdxl_breeder.cli.errors import CliError
from sdxl_breeder.cli.model_args import add_model_args, load_model
from sdxl_breeder.spec import BLEND_MODES, FrameSettings


def _render(args: argparse.Namespace) -> None:
    from PIL import Image

    from sdxl_breeder.model.renderer import FrameRequest, Renderer
    from sdxl_breeder.model.scene import scene_from_corners
    from sdxl_breeder.spec import Corner

    out = Path(args.out)
    if out.suffix.lower() not in (".png", ".jpg", ".jpeg"):
        raise CliError(f"--out {out}: use a .png or .jpg file name")
    if args.prompt is None and args.corners is None:
        raise CliError("give --prompt P or --corners A B C D")
    prompts = [args.prompt] * 4 if args.prompt is not None else list(args.corners)
    model = load_model(args)
    renderer = Renderer(model)
    renderer.check_size(args.width, args.height)
    scene = scene_from_corners(renderer, [Corner(prompt=p) for p in prompts], args.template or None)
    cond = FrameRequest(scene, args.x, args.y, FrameSettings(blend=args.blend, seed=args.seed, width=args.width, height=args.height))
    frame = renderer.render([cond])[0]
    out.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(frame).save(out, quality=95) if out.suffix.lower() != ".png" else Image.fromarray(frame).save(out)
    print(f"wrote {out} ({args.width}×{args.height}, model {model.name}, seed {args.seed})")


def add_render(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "render",
        help="render one frame to a PNG/JPEG file",
        description="Render one frame: a prompt, or the blend of four corner prompts at (x, y).",
    )
    add_model_args(p)
    src = p.add_mutually_exclusive_group()
    src.add_argument("--prompt", help="one prompt (all four corners)")
    src.add_argument("--corners", nargs=4, metavar=("TL", "TR", "BL", "BR"), help="four corner prompts")
    p.add_argument("--x", type=values.unit, default=0.0, help="pad x in [0, 1], 0 = left (default 0)")
    p.add_argument("--y", type=values.unit, default=0.0, help="pad y in [0, 1], 0 = top (default 0)")
    p.add_argument("--blend", choices=BLEND_MODES, default="lerp", help="how token vectors blend (default lerp)")
    p.add_argument("--template", help='noken mode: a prompt with one "[noken]"; corner prompts become nokens')
    p.add_argument("--seed", type=values.seed, default=0, help="noise seed (default 0)")
    p.add_argument("--width", type=values.size, default=512, help="pixels, multiple of 64 (default 512)")
    p.add_argument("--height", type=values.size, default=512, help="pixels, multiple of 64 (default 512)")
    p.add_argument("--out", required=True, help="output file, .png or .jpg")
    p.set_defaults(func=_render)
