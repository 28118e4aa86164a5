"""`sdxl-breeder save-model`: write a model as a diffusers directory and, optionally, an SDXL single file."""

from __future__ import annotations

import argparse
from pathlib import Path

from sdxl_breeder.cli.errors import CliError
from sdxl_breeder.model.options import ModelOptions


def _save_model(args: argparse.Namespace) -> None:
    from sdxl_breeder.model.checkpoint import save_single_file

    out = Path(args.dir)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise CliError(f"{out} exists and is not an empty folder; give a new folder")
    single = Path(args.single_file) if args.single_file else None
    if single is not None and single.suffix.lower() != ".safetensors":
        raise CliError(f"--single-file {single}: use a .safetensors file name")
    options = ModelOptions(model=args.model, model_config=args.model_config, device="cpu", dtype=args.dtype)
    model = options.load(channels_last=False)
    model.pipeline.save_pretrained(out)
    print(f"wrote {out} (diffusers directory of {model.name}; StableDiffusionXLPipeline.from_pretrained loads it)")
    if single is not None:
        single.parent.mkdir(parents=True, exist_ok=True)
        save_single_file(model.pipeline, single)
        print(f"wrote {single} (SDXL single-file checkpoint; load it with --model {single} --model-config {out})")


def add_save_model(sub: argparse._SubParsersAction) -> None:
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
