"""`--model` → a ready StableDiffusionXLPipeline on a device, in a dtype.

Kinds of model:
- any diffusers SDXL hub id or local directory (default `stabilityai/sdxl-turbo`);
- an SDXL single-file `.safetensors` checkpoint (what A1111 and ComfyUI keep), through
  diffusers' `from_single_file` with a diffusers model's configs (checkpoint.py);
- `tiny`: the SDXL architecture shrunk, seeded random weights and a tokenizer whose files are
  written here, so everything runs offline and fast on a CPU;
- `sdxl-random`: the full SDXL architecture (2.6B UNet, CLIP-L, CLIP-bigG, VAE) with random
  weights: the same compute as the real model, for benchmarks where weights can't be fetched.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from sdxl_breeder.model.checkpoint import looks_like_single_file
from sdxl_breeder.model.options import VAES
from sdxl_breeder.model.tokenizer import tiny_tokenizers

log = logging.getLogger("sdxl_breeder.models")

DEFAULT_MODEL = "stabilityai/sdxl-turbo"
TINY = "tiny"
SDXL_RANDOM = "sdxl-random"
AUTO = "auto"
DEVICES = ("auto", "cpu", "cuda", "mps")
DTYPES = {"auto": None, "fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
TAESDXL = "madebyollin/taesdxl"

TINY_WARNING = (
    "Running on the built-in TINY model (random weights): frames are noise-like patterns, "
    "not pictures. Install SDXL Turbo weights (e.g. `hf download stabilityai/sdxl-turbo`) and "
    "start with `--model stabilityai/sdxl-turbo`."
)


class ModelLoadError(RuntimeError):
    """A model could not be loaded; the message is one line meant for the user, `reason` the
    underlying cause alone (without advice)."""

    def __init__(self, message: str, reason: str | None = None) -> None:
        super().__init__(message)
        self.reason = reason or message


@dataclass
class LoadedModel:
    pipeline: Any  # diffusers.StableDiffusionXLPipeline
    name: str
    device: torch.device
    dtype: torch.dtype
    vae_dtype: torch.dtype
    warning: str | None = None


# --------------------------------------------------------------------------- devices
def pick_device(device: str = "auto") -> torch.device:
    if device not in DEVICES and not device.startswith("cuda:"):
        raise ModelLoadError(f"unknown device {device!r}; use one of {', '.join(DEVICES)} or cuda:N")
    if device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ModelLoadError(f"--device {device} asked for, but this torch build sees no CUDA GPU")
    if device == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ModelLoadError("--device mps asked for, but MPS is not available here")
    return torch.device(device)


def pick_dtypes(device: torch.device, dtype: str = "auto") -> tuple[torch.dtype, torch.dtype]:
    """(model dtype, VAE dtype). The stock SDXL VAE overflows to NaN in fp16, so in fp16 the VAE
    stays fp32; bf16 has fp32's range and is safe for the whole pipeline."""
    if dtype not in DTYPES:
        raise ModelLoadError(f"unknown dtype {dtype!r}; use one of {', '.join(DTYPES)}")
    chosen = DTYPES[dtype]
    if chosen is None:
        if device.type == "cuda":
            chosen = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        elif device.type == "mps":
            chosen = torch.float16
        else:
            chosen = torch.float32
    vae = torch.float32 if chosen == torch.float16 else chosen
    return chosen, vae


# --------------------------------------------------------------------------- architectures
def _clip_config(vocab_size: int, tok: Any, hidden: int, inter: int, layers: int, heads: int, proj: int, act: str) -> Any:
    from transformers import CLIPTextConfig

    return CLIPTextConfig(
        vocab_size=vocab_size,
        hidden_size=hidden,
        intermediate_size=inter,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        max_position_embeddings=77,
        projection_dim=proj,
        hidden_act=act,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
    )


TURBO_SCHEDULER = dict(
    beta_start=0.00085,
    beta_end=0.012,
    beta_schedule="scaled_linear",
    num_train_timesteps=1000,
    prediction_type="epsilon",
    steps_offset=1,
    timestep_spacing="trailing",
)


def _arch(kind: str) -> dict[str, Any]:
    if kind == TINY:
        return dict(
            clip1=dict(hidden=32, inter=64, layers=3, heads=4, proj=32, act="quick_gelu"),
            clip2=dict(hidden=64, inter=128, layers=3, heads=4, proj=32, act="gelu"),
            unet=dict(
                sample_size=32,
                block_out_channels=(32, 64),
                layers_per_block=1,
                down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
                up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
                attention_head_dim=(2, 4),
                transformer_layers_per_block=(1, 1),
                addition_time_embed_dim=8,
                norm_num_groups=16,
            ),
            vae=dict(block_out_channels=(16, 32, 32, 32), layers_per_block=1, norm_num_groups=8, sample_size=256),
            vocab_size=None,
        )
    return dict(
        clip1=dict(hidden=768, inter=3072, layers=12, heads=12, proj=768, act="quick_gelu"),
        clip2=dict(hidden=1280, inter=5120, layers=32, heads=20, proj=1280, act="gelu"),
        unet=dict(
            sample_size=64,
            block_out_channels=(320, 640, 1280),
            layers_per_block=2,
            down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
            up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
            attention_head_dim=(5, 10, 20),
            transformer_layers_per_block=(1, 2, 10),
            addition_time_embed_dim=256,
            norm_num_groups=32,
        ),
        vae=dict(block_out_channels=(128, 256, 512, 512), layers_per_block=2, norm_num_groups=32, sample_size=1024),
        vocab_size=49408,
    )


def build_random_pipeline(kind: str, seed: int = 0, device: torch.device | None = None) -> Any:
    """An SDXL pipeline built in code with seeded random weights (`tiny` or `sdxl-random`)."""
    from diffusers import AutoencoderKL, EulerAncestralDiscreteScheduler, StableDiffusionXLPipeline, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTextModelWithProjection

    arch = _arch(kind)
    sizes: list[int] = []
    tok1, tok2 = tiny_tokenizers(sizes)
    vocab_size = arch["vocab_size"] or sizes[0]
    c1, c2 = arch["clip1"], arch["clip2"]
    build_device = device or torch.device("cpu")
    torch.manual_seed(seed)
    with torch.device(build_device):
        text_encoder = CLIPTextModel(_clip_config(vocab_size, tok1, **c1))
        text_encoder_2 = CLIPTextModelWithProjection(_clip_config(vocab_size, tok2, **c2))
        u = arch["unet"]
        unet = UNet2DConditionModel(
            in_channels=4,
            out_channels=4,
            use_linear_projection=True,
            addition_embed_type="text_time",
            projection_class_embeddings_input_dim=6 * u["addition_time_embed_dim"] + c2["proj"],
            cross_attention_dim=c1["hidden"] + c2["hidden"],
            **u,
        )
        v = arch["vae"]
        vae = AutoencoderKL(
            in_channels=3,
            out_channels=3,
            latent_channels=4,
            down_block_types=("DownEncoderBlock2D",) * len(v["block_out_channels"]),
            up_block_types=("UpDecoderBlock2D",) * len(v["block_out_channels"]),
            scaling_factor=0.13025,
            force_upcast=True,
            **v,
        )
    if kind == TINY:
        # Random weights barely listen to the text; amplify the pooled-text path and the output
        # so that different prompts give visibly different tiny frames (the demo and the page
        # tests rely on it). The stock pipeline sees the same weights, so exactness holds.
        with torch.no_grad():
            unet.add_embedding.linear_2.weight.mul_(30.0)
            unet.conv_out.weight.mul_(5.0)
            unet.conv_out.bias.mul_(5.0)
    scheduler = EulerAncestralDiscreteScheduler(**TURBO_SCHEDULER)
    for m in (text_encoder, text_encoder_2, unet, vae):
        m.eval()
    return StableDiffusionXLPipeline(
        vae=vae,
        text_encoder=text_encoder,
        text_encoder_2=text_encoder_2,
        tokenizer=tok1,
        tokenizer_2=tok2,
        unet=unet,
        scheduler=scheduler,
        force_zeros_for_empty_prompt=True,
        add_watermarker=False,
    )


# --------------------------------------------------------------------------- tiny VAE
def build_tiny_vae(seed: int = 0, path: str | None = None) -> Any:
    """A diffusers `AutoencoderTiny` with the TAESDXL architecture (the library defaults, as in
    `madebyollin/taesdxl`'s config): its weights from `path` (a local diffusers directory or hub id)
    or, without one, seeded random weights. Its `scaling_factor` is 1.0 and `decode` returns images
    in [-1, 1], like AutoencoderKL, so the renderer's decode step is the same for both."""
    from diffusers import AutoencoderTiny

    if path is not None:
        try:
            vae = AutoencoderTiny.from_pretrained(path, local_files_only=os.environ.get("HF_HUB_OFFLINE") == "1")
        except Exception as e:  # noqa: BLE001 — hub, file and config errors all mean "can't load"
            raise ModelLoadError(f"could not load the tiny VAE {path!r} ({error_summary(e)})") from e
    else:
        torch.manual_seed(seed)
        vae = AutoencoderTiny()
    return vae.eval()


# --------------------------------------------------------------------------- loading
def error_summary(e: BaseException, limit: int = 500) -> str:
    """The first line of an error's message, whole unless it is very long; then cut between words."""
    text = str(e).strip()
    first = text.splitlines()[0].strip() if text else type(e).__name__
    if len(first) <= limit:
        return first
    head = first[:limit]
    return (head.rsplit(" ", 1)[0] if " " in head else head).rstrip(" ,;:") + " …"


def _load_pretrained(name: str, dtype: torch.dtype, local_only: bool) -> Any:
    from diffusers import StableDiffusionXLPipeline

    kwargs: dict[str, Any] = dict(torch_dtype=dtype, add_watermarker=False, local_files_only=local_only)
    try:
        if dtype == torch.float16 and not Path(name).is_dir():
            try:
                return StableDiffusionXLPipeline.from_pretrained(name, variant="fp16", **kwargs)
            except (OSError, ValueError):
                pass  # no fp16 variant published: fall back to the default weights
        return StableDiffusionXLPipeline.from_pretrained(name, **kwargs)
    except Exception as e:  # noqa: BLE001 — hub, file and config errors all mean "can't load"
        raise ModelLoadError(
            f"could not load model {name!r} ({error_summary(e)}). Without network access or a local copy, "
            f"start with `--model tiny` (built in, runs offline).",
            reason=error_summary(e),
        ) from e


def _load_single_file(path: Path, config: str | None, dtype: torch.dtype, local_only: bool) -> Any:
    """An SDXL single-file checkpoint through diffusers' `from_single_file`, with the configs and
    tokenizers of `config` (a local diffusers directory or hub id; default SDXL Turbo's)."""
    from diffusers import StableDiffusionXLPipeline

    from sdxl_breeder.model.checkpoint import sdxl_problem

    if not path.is_file():
        raise ModelLoadError(f"no such checkpoint file: {path}")
    problem = sdxl_problem(path)
    if problem is not None:
        raise ModelLoadError(problem)
    config = config or DEFAULT_MODEL
    if not Path(config).is_dir() and local_only and not is_cached(config, weights=False):
        raise ModelLoadError(
            f"{path.name} is loaded with the configs and tokenizers of {config}, which are not in the "
            f"Hugging Face cache (and HF_HUB_OFFLINE is set): run `hf download {config} --include "
            "'*.json' '*.txt'` once with network access, or give --model-config DIR (a local diffusers SDXL directory)"
        )
    try:
        return StableDiffusionXLPipeline.from_single_file(
            str(path), config=config, torch_dtype=dtype, local_files_only=local_only, add_watermarker=False
        )
    except Exception as e:  # noqa: BLE001 — config, shape and file errors all mean "can't load"
        raise ModelLoadError(f"could not load checkpoint {path} with the configs of {config} ({error_summary(e)})") from e


def is_cached(name: str, *, weights: bool = True, cache_dir: str | None = None) -> bool:
    """Whether `name` is a local directory or in the Hugging Face cache: its model_index.json and,
    with `weights`, each model component's weights (a cache holding only configs does not count)."""
    if Path(name).is_dir():
        return True
    try:
        from huggingface_hub import try_to_load_from_cache

        index = try_to_load_from_cache(name, "model_index.json", cache_dir=cache_dir)
    except Exception:  # noqa: BLE001 — an invalid repo id, an unreadable cache: not cached
        return False
    if not isinstance(index, str):
        return False
    snapshot = Path(index).parent
    if not weights:
        return (snapshot / "tokenizer" / "vocab.json").exists() and (snapshot / "unet" / "config.json").exists()
    return all(
        any(f.suffix in (".safetensors", ".bin") for f in (snapshot / part).glob("*"))
        for part in ("unet", "vae", "text_encoder", "text_encoder_2")
    )


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "") not in ("", "0")


def load_model(
    name: str = DEFAULT_MODEL,
    device: str = "auto",
    dtype: str = "auto",
    seed: int = 0,
    *,
    vae: str = "full",
    tiny_vae_path: str | None = None,
    channels_last: bool = True,
    model_config: str | None = None,
) -> LoadedModel:
    """Resolve `--model` and return the pipeline on its device.

    `auto` means SDXL Turbo when it is cached or can be downloaded, otherwise the tiny model
    with a loud warning. `vae="tiny"` swaps the VAE for an AutoencoderTiny (TAESDXL): weights from
    `tiny_vae_path`, else seeded random ones (fine for benchmarks, noise for pictures).
    `channels_last` lays out the UNet and VAE convolutions channels-last, faster on CPUs and GPUs
    alike (docs/benchmarks.md). A `.safetensors` file is an SDXL single-file checkpoint, read with
    the configs and tokenizers of `model_config` (a diffusers directory or hub id; default SDXL Turbo's)."""
    if vae not in VAES:
        raise ModelLoadError(f"unknown vae {vae!r}; use one of {', '.join(VAES)}")
    if vae == "tiny" or tiny_vae_path is not None:
        loaded = load_model(name, device, dtype, seed, channels_last=channels_last, model_config=model_config)
        pipe = loaded.pipeline
        # TAESD has no fp16 overflow problem: it runs in the model's dtype.
        pipe.vae = build_tiny_vae(seed, tiny_vae_path).to(loaded.device, loaded.dtype)
        if channels_last:
            pipe.vae.to(memory_format=torch.channels_last)
        note = "tiny VAE (AutoencoderTiny) " + (f"from {tiny_vae_path}" if tiny_vae_path else "with RANDOM weights")
        warning = f"{loaded.warning} Using {note}." if loaded.warning else f"Using {note}."
        return LoadedModel(pipe, loaded.name, loaded.device, loaded.dtype, loaded.dtype, warning)
    dev = pick_device(device)
    model_dtype, vae_dtype = pick_dtypes(dev, dtype)
    warning = None
    if name == AUTO:
        offline = _offline()
        why = "not in the Hugging Face cache and HF_HUB_OFFLINE is set"
        try:
            if is_cached(DEFAULT_MODEL) or not offline:
                return load_model(DEFAULT_MODEL, device, dtype, seed, channels_last=channels_last)
        except ModelLoadError as e:
            why = e.reason  # the advice in e ("start with --model tiny") is what happens next
        name = TINY
        warning = f"SDXL Turbo could not be loaded ({why}), so `--model auto` fell back to the tiny model. {TINY_WARNING}"
    if name == TINY:
        # Built on the CPU in fp32 (seeded, so identical everywhere), then moved.
        pipe = build_random_pipeline(TINY, seed=seed)
        warning = warning or TINY_WARNING
    elif name == SDXL_RANDOM:
        pipe = build_random_pipeline(SDXL_RANDOM, seed=seed, device=dev)
        warning = "Running sdxl-random: full SDXL architecture with RANDOM weights (for benchmarks)."
    elif looks_like_single_file(name):
        pipe = _load_single_file(Path(name), model_config, model_dtype, local_only=_offline())
    else:
        if not Path(name).is_dir() and "/" not in name:
            raise ModelLoadError(
                f"unknown model {name!r}: use auto, tiny, sdxl-random, a hub id like {DEFAULT_MODEL}, "
                "a local diffusers SDXL directory or an SDXL .safetensors checkpoint (offline, `--model tiny` always works)"
            )
        pipe = _load_pretrained(name, model_dtype, local_only=_offline())
    pipe.to(dev, model_dtype)
    pipe.vae.to(dtype=vae_dtype)
    if channels_last:
        pipe.unet.to(memory_format=torch.channels_last)
        pipe.vae.to(memory_format=torch.channels_last)
    pipe.set_progress_bar_config(disable=True)
    return LoadedModel(pipe, name, dev, model_dtype, vae_dtype, warning)
