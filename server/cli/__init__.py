"""The `sdxl-breeder` command line: the parser of every command, and `main`, which prints user errors as one line.

One module per command (or pair of commands): `render`, `serve`, `bench`, `walk` (walk and
render-walk), `evolve`, `save_model`; what they share is in `values` (argument values),
`model_args` (the model-loading options), `remote` (talking to a running server) and `errors`.
"""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Callable, Sequence

from sdxl_breeder import __version__
from sdxl_breeder.cli.bench import add_bench
from sdxl_breeder.cli.errors import EXIT_USAGE, is_user_error
from sdxl_breeder.cli.evolve import add_evolve
from sdxl_breeder.cli.render import add_render
from sdxl_breeder.cli.save_model import add_save_model
from sdxl_breeder.cli.serve import add_serve
from sdxl_breeder.cli.walk import add_render_walk, add_walk

COMMANDS: list[Callable[[argparse._SubParsersAction], None]] = [
    add_render, add_serve, add_bench, add_walk, add_render_walk, add_save_model, add_evolve,
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
        if not is_user_error(e):
            raise
        print(f"sdxl-breeder {args.command}: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130
    return int(result or 0)
