"""`python -m sdxl_breeder.bench plot A.json [B.json ...] --out DIR [--prefix NAME]`: the plots of docs/benchmarks.md."""

from __future__ import annotations

import argparse
from pathlib import Path

from sdxl_breeder.bench.plot import plot

ap = argparse.ArgumentParser(prog="python -m sdxl_breeder.bench")
sub = ap.add_subparsers(dest="cmd", required=True)
pp = sub.add_parser("plot", help="PNG plots from bench JSON files")
pp.add_argument("json", nargs="+", type=Path)
pp.add_argument("--out", type=Path, default=Path("docs/bench"))
pp.add_argument("--prefix", default="cpu")
args = ap.parse_args()
for written in plot(args.json, args.out, args.prefix):
    print(f"wrote {written}")
