"""`sdxl-breeder evolve`: breed a brood on a running server, save its children and a contact sheet."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sdxl_breeder.cli import remote, values
from sdxl_breeder.cli.errors import CliError
from sdxl_breeder.spec import LIMITS

if TYPE_CHECKING:  # the client is imported only when the command runs
    from sdxl_breeder.client import Brood, BreederClient


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

    brood, paths, kept = remote.talk(remote.client(args), work)
    print(f"brood {brood.id} (generation {brood.generation}, seed {brood.seed}): wrote {len(paths) - 1} children "
          f"and {paths[-1]}")
    for info in kept:
        print(f"kept child {info.get('child')} as genome {info['id']}")


def add_evolve(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "evolve",
        help="breed a brood of children on a running server and save them with a contact sheet",
        description="Breed COUNT children from 1 to 4 stored genomes on a running `sdxl-breeder serve`, write "
        "each child's frame as OUT/child-NN.jpg and all of them as OUT/contact-sheet.jpg. Nothing is stored "
        "on the server unless you --keep children. Same parents, seed, count, mutation and size: same children.",
    )
    remote.add_server_args(p)
    p.add_argument("--parents", nargs="+", required=True, metavar="ID", help="1 to 4 genome ids")
    p.add_argument("--count", type=int, default=9, help=f"children, 1 to {LIMITS.max_brood_children} (default 9)")
    p.add_argument("--mutation", type=values.number, default=0.2,
                   help=f"mutation strength, 0 to {LIMITS.max_brood_mutation:g} (default 0.2)")
    p.add_argument("--seed", type=values.seed, help="brood seed (default: random; printed, to repeat the brood)")
    p.add_argument("--noise-seed", type=values.seed, default=0, help="noise seed of the frames (default 0)")
    p.add_argument("--width", type=values.size, default=512, help="pixels, multiple of 64 (default 512)")
    p.add_argument("--height", type=values.size, default=512, help="pixels, multiple of 64 (default 512)")
    p.add_argument("--quality", type=values.quality, default=95, metavar="1-100", help="JPEG quality of the frames (default 95)")
    p.add_argument("--keep", type=int, nargs="+", metavar="I", help="store these children (0-based) as genomes")
    p.add_argument("--timeout", type=values.number, default=120.0, help="seconds to wait for each reply (default 120)")
    p.add_argument("--out", required=True, help="folder for child-NN.jpg and contact-sheet.jpg")
    p.set_defaults(func=_evolve)
