"""`sdxl-breeder` command line: arguments only; the work lives in the modules it calls."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Callable, Sequence

EXIT_USAGE = 2


class CliError(Exception):
    """An error to print as one line (no traceback) before exiting with status 2."""


def _add_model_args(p: argparse.ArgumentParser, default: str = "stabilityai/sdxl-turbo") -> None:
    p.add_argument(
        "--model",
        default=default,
        help="auto | tiny | sdxl-random | a diffusers SDXL hub id | a local diffusers directory "
        f"(default: {default}). `tiny` is built in and runs offline on a CPU; `auto` uses SDXL "
        "Turbo when available and falls back to tiny",
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
    if v < 64 or v > 2048 or v % 64:
        raise argparse.ArgumentTypeError(f"{v} must be a multiple of 64 within [64, 2048]")
    return v


def _unit(value: str) -> float:
    try:
        v = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a number") from None
    if not 0.0 <= v <= 1.0:
        raise argparse.ArgumentTypeError(f"{v} must be within [0, 1]")
    return v


def _seed(value: str) -> int:
    try:
        v = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a whole number") from None
    if not 0 <= v < 2**32:
        raise argparse.ArgumentTypeError(f"seed {v} must be within [0, 2**32 - 1]")
    return v


# --------------------------------------------------------------------------- render
def _render(args: argparse.Namespace) -> None:
    from PIL import Image

    from .models import load_model
    from .renderer import Renderer
    from .scene import Scene

    out = Path(args.out)
    if out.suffix.lower() not in (".png", ".jpg", ".jpeg"):
        raise CliError(f"--out {out}: use a .png or .jpg file name")
    if args.prompt is None and args.corners is None:
        raise CliError("give --prompt P or --corners A B C D")
    prompts = [args.prompt] * 4 if args.prompt is not None else list(args.corners)
    model = load_model(args.model, args.device, args.dtype)
    if model.warning:
        logging.getLogger("sdxl_breeder").warning("%s", model.warning)
    renderer = Renderer(model)
    renderer.check_size(args.width, args.height)
    template = renderer.template(args.template) if args.template else None
    scene = Scene(tuple(renderer.genome_from_prompt(p) for p in prompts), template)  # type: ignore[arg-type]
    cond = scene.conditioning(args.x, args.y, mode=args.blend, seed=args.seed, width=args.width, height=args.height)
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
    p.add_argument("--blend", choices=["lerp", "slerp"], default="lerp", help="how token vectors blend (default lerp)")
    p.add_argument("--template", help='noken mode: a prompt with one "[noken]"; corner prompts become nokens')
    p.add_argument("--seed", type=_seed, default=0, help="noise seed (default 0)")
    p.add_argument("--width", type=_size, default=512, help="pixels, multiple of 64 (default 512)")
    p.add_argument("--height", type=_size, default=512, help="pixels, multiple of 64 (default 512)")
    p.add_argument("--out", required=True, help="output file, .png or .jpg")
    p.set_defaults(func=_render)


# --------------------------------------------------------------------------- serve
def _serve(args: argparse.Namespace) -> None:
    from .serve import ServeError, ServeOptions, serve

    opts = ServeOptions(
        model=args.model, device=args.device, dtype=args.dtype, host=args.host, port=args.port,
        max_batch=args.max_batch, data_dir=Path(args.data_dir), token=args.token, insecure=args.insecure,
        allow_origins=tuple(args.allow_origin or ()), log_level="debug" if args.verbose else "info",
    )
    try:
        serve(opts)
    except ServeError as e:
        raise CliError(str(e)) from None


def _add_serve(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "serve",
        help="run the server: the pad at /, protocol v1 at /ws, REST at /api",
        description="Run the SDXL Breeder server. Open http://HOST:PORT/ in a browser for the pad; "
        "scripts speak protocol v1 on ws://HOST:PORT/ws (docs/protocol.md).",
    )
    _add_model_args(p, default="auto")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1; others need --token or --insecure)")
    p.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    p.add_argument("--max-batch", type=int, default=8, help="most frames rendered in one batch (default 8)")
    p.add_argument("--data-dir", default="data", help="where genomes, thumbnails and walks are kept (default ./data)")
    p.add_argument("--token", help="require this token from clients (?token= or Authorization: Bearer)")
    p.add_argument("--insecure", action="store_true", help="allow a non-loopback --host without a token")
    p.add_argument(
        "--allow-origin", action="append", metavar="ORIGIN",
        help="also accept browser pages from this origin (e.g. http://localhost:5173); repeatable",
    )
    p.set_defaults(func=_serve)


# --------------------------------------------------------------------------- main
COMMANDS: list[Callable[[argparse._SubParsersAction], None]] = [_add_render, _add_serve]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sdxl-breeder",
        description="SDXL Breeder: fly between prompts in real time. Run `sdxl-breeder COMMAND --help` for details.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug details")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for add in COMMANDS:
        add(sub)
    return parser


def _quiet_libraries() -> None:
    import warnings

    warnings.filterwarnings("ignore", category=FutureWarning)
    for name in ("transformers", "diffusers"):
        logging.getLogger(name).setLevel(logging.ERROR)
    try:
        import diffusers.utils.logging as dl
        import transformers.utils.logging as tl

        tl.set_verbosity_error()
        dl.set_verbosity_error()
    except Exception:  # noqa: BLE001 — quieting is best effort
        pass


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    _quiet_libraries()
    from .genome import GenomeError
    from .models import ModelLoadError
    from .renderer import RenderError
    from .scene import SceneError

    known: tuple[type[BaseException], ...] = (CliError, GenomeError, ModelLoadError, RenderError, SceneError)
    try:
        from .walks import WalkError

        known += (WalkError,)
    except ImportError:
        pass
    try:
        result = args.func(args)
    except known as e:
        print(f"sdxl-breeder {args.command}: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())
