"""`--model`, `--model-config`, `--device`, `--dtype`: added to every command that loads a model, read back as ModelOptions."""

from __future__ import annotations

import argparse
import logging
from typing import TYPE_CHECKING

from sdxl_breeder.model.options import DTYPE_NAMES, ModelOptions

if TYPE_CHECKING:
    from sdxl_breeder.model.loading import LoadedModel


def add_model_args(p: argparse.ArgumentParser, default: str = "auto") -> None:
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
        choices=DTYPE_NAMES,
        help="auto: fp32 on CPU, bf16 on GPUs that have it, else fp16 with the VAE kept in fp32",
    )


def model_options(args: argparse.Namespace) -> ModelOptions:
    """What `add_model_args` added, as the options `load_model` takes."""
    return ModelOptions(model=args.model, model_config=args.model_config, device=args.device, dtype=args.dtype)


def load_model(args: argparse.Namespace) -> LoadedModel:
    """The model the arguments name; a stand-in model's warning is logged."""
    model = model_options(args).load()
    if model.warning:
        logging.getLogger("sdxl_breeder").warning("%s", model.warning)
    return model
