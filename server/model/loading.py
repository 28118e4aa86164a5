"""`--model` → a ready StableDiffusionXLPipeline on a device, in a dtype.

Three kinds of model:
- any diffusers SDXL hub id or local directory (default `stabilityai/sdxl-turbo`);
- `tiny`: the SDXL architecture shrunk, seeded random weights and a tokenizer whose files are
  written here, so everything runs offline and fast on a CPU;
- `sdxl-random`: the full SDXL architecture (2.6B UNet, CLIP-L, CLIP-bigG, VAE) with random
  weights: the same compute as the real model, for benchmarks where weights can't be fetched.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

log = logging.getLogger("sdxl_breeder.models")

DEFAULT_MODEL = "stabilityai/sdxl-turbo"
TINY = "tiny"
SDXL_RANDOM = "sdxl-random"
AUTO = "auto"
DEVICES = ("auto", "cpu", "cuda", "mps")
DTYPES = {"auto": None, "fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
VAES = ("full", "tiny")  # the pipeline's own AutoencoderKL, or AutoencoderTiny (TAESDXL)
TAESDXL = "madebyollin/taesdxl"

TINY_WARNING = (
    "Running on the built-in TINY model (random weights): frames are noise-like patterns, "
    "not pictures. Install SDXL Turbo weights (e.g. `huggingface-cli download "
    "stabilityai/sdxl-turbo`) and start with `--model stabilityai/sdxl-turbo`."
)


class ModelLoadError(RuntimeError):
    """A model could not be loaded; the message is one line meant for the user."""


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


# --------------------------------------------------------------------------- tokenizer
# Words the tiny tokenizer knows whole; everything else falls back to single characters.
_TINY_WORDS = """a an the of in on at with and or by for to from style drawing painting photo
photograph portrait picture image sketch render illustration oil watercolor pencil ink digital
art artist cinematic lighting light dark night day sunset sunrise morning evening city street
forest mountain mountains river lake sea ocean beach sky clouds cloud rain snow fire water stone
castle house room window garden flower flowers tree trees field desert island space planet moon
star stars galaxy robot cat cats dog dogs whippet fox wolf bird owl horse fish dragon monster man
woman girl boy child face eyes hair old young red orange yellow green blue purple pink black white
gold golden silver grey gray bright colorful neon glowing sleeping running sitting standing flying
very highly detailed high quality beautiful cute small large big tiny giant vintage modern
futuristic ancient abstract surreal fantasy sci fi cyberpunk steampunk minimalist photorealistic
realistic studio close up wide angle lens macro 4k 8k hd van gogh monet picasso hokusai""".split()


def _bytes_to_unicode() -> dict[int, str]:
    # The byte ↔ printable-character table of GPT-2/CLIP byte-level BPE.
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, (chr(c) for c in cs)))


def tiny_vocab_and_merges() -> tuple[dict[str, int], list[str]]:
    """A small CLIP BPE vocabulary laid out like the real one: bytes, bytes + `</w>`, merges for a
    built-in word list, then the start/end tokens last (so EOS has the highest id, as in CLIP)."""
    chars = list(_bytes_to_unicode().values())
    tokens = chars + [c + "</w>" for c in chars]
    # A few rounds of real BPE training on the word list (most frequent pair first, ties broken
    # by the pair itself), so merges are consistent and every listed word ends up one token.
    words = [list(w[:-1]) + [w[-1] + "</w>"] for w in dict.fromkeys(_TINY_WORDS)]
    merges: list[str] = []
    while True:
        counts: dict[tuple[str, str], int] = {}
        for w in words:
            for pair in zip(w, w[1:]):
                counts[pair] = counts.get(pair, 0) + 1
        if not counts:
            break
        best = min(counts, key=lambda p: (-counts[p], p))
        merges.append(f"{best[0]} {best[1]}")
        tokens.append(best[0] + best[1])
        for w in words:
            i = 0
            while i < len(w) - 1:
                if (w[i], w[i + 1]) == best:
                    w[i : i + 2] = [w[i] + w[i + 1]]
                i += 1
    tokens += ["<|startoftext|>", "<|endoftext|>"]
    return {t: i for i, t in enumerate(tokens)}, merges


def write_tiny_tokenizer(directory: Path, pad_token: str) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    vocab, merges = tiny_vocab_and_merges()
    (directory / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    (directory / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n", encoding="utf-8")
    config = {
        "tokenizer_class": "CLIPTokenizer",
        "model_max_length": 77,
        "bos_token": "<|startoftext|>",
        "eos_token": "<|endoftext|>",
        "unk_token": "<|endoftext|>",
        "pad_token": pad_token,
    }
    (directory / "tokenizer_config.json").write_text(json.dumps(config), encoding="utf-8")


def _tiny_tokenizers(vocab_size_hint: list[int]) -> tuple[Any, Any]:
    from transformers import CLIPTokenizer

    with tempfile.TemporaryDirectory(prefix="sdxl-breeder-tok-") as tmp:
        write_tiny_tokenizer(Path(tmp) / "t1", pad_token="<|endoftext|>")
        # SDXL's second tokenizer pads with "!" rather than the end token.
        write_tiny_tokenizer(Path(tmp) / "t2", pad_token="!")
        tok1 = CLIPTokenizer.from_pretrained(Path(tmp) / "t1")
        tok2 = CLIPTokenizer.from_pretrained(Path(tmp) / "t2")
    vocab_size_hint.append(len(tok1))
    return tok1, tok2


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
    tok1, tok2 = _tiny_tokenizers(sizes)
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
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise ModelLoadError(f"could not load the tiny VAE {path!r} ({first[:200]})") from e
    else:
        torch.manual_seed(seed)
        vae = AutoencoderTiny()
    return vae.eval()


# --------------------------------------------------------------------------- loading
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
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ModelLoadError(
            f"could not load model {name!r} ({first[:200]}). Without network access or a local copy, "
            f"start with `--model tiny` (built in, runs offline)."
        ) from e


def is_cached(name: str) -> bool:
    """Whether `name` is a local directory or already in the Hugging Face cache."""
    if Path(name).is_dir():
        return True
    try:
        from huggingface_hub import try_to_load_from_cache

        return isinstance(try_to_load_from_cache(name, "model_index.json"), str)
    except Exception:  # noqa: BLE001
        return False


def load_model(
    name: str = DEFAULT_MODEL,
    device: str = "auto",
    dtype: str = "auto",
    seed: int = 0,
    *,
    vae: str = "full",
    tiny_vae_path: str | None = None,
    channels_last: bool = True,
) -> LoadedModel:
    """Resolve `--model` and return the pipeline on its device.

    `auto` means SDXL Turbo when it is cached or can be downloaded, otherwise the tiny model
    with a loud warning. `vae="tiny"` swaps the VAE for an AutoencoderTiny (TAESDXL): weights from
    `tiny_vae_path`, else seeded random ones (fine for benchmarks, noise for pictures).
    `channels_last` lays out the UNet and VAE convolutions channels-last, faster on CPUs and GPUs
    alike (docs/benchmarks.md)."""
    if vae not in VAES:
        raise ModelLoadError(f"unknown vae {vae!r}; use one of {', '.join(VAES)}")
    if vae == "tiny" or tiny_vae_path is not None:
        loaded = load_model(name, device, dtype, seed, channels_last=channels_last)
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
        offline = os.environ.get("HF_HUB_OFFLINE", "") not in ("", "0")
        try:
            if is_cached(DEFAULT_MODEL) or not offline:
                return load_model(DEFAULT_MODEL, device, dtype, seed, channels_last=channels_last)
        except ModelLoadError as e:
            log.warning("%s", e)
        name = TINY
        warning = f"SDXL Turbo is not available offline. {TINY_WARNING}"
    if name == TINY:
        # Built on the CPU in fp32 (seeded, so identical everywhere), then moved.
        pipe = build_random_pipeline(TINY, seed=seed)
        warning = warning or TINY_WARNING
    elif name == SDXL_RANDOM:
        pipe = build_random_pipeline(SDXL_RANDOM, seed=seed, device=dev)
        warning = "Running sdxl-random: full SDXL architecture with RANDOM weights (for benchmarks)."
    else:
        if not Path(name).is_dir() and "/" not in name:
            raise ModelLoadError(
                f"unknown model {name!r}: use auto, tiny, sdxl-random, a hub id like {DEFAULT_MODEL} "
                "or a local diffusers SDXL directory (offline, `--model tiny` always works)"
            )
        pipe = _load_pretrained(name, model_dtype, local_only=os.environ.get("HF_HUB_OFFLINE") == "1")
    pipe.to(dev, model_dtype)
    pipe.vae.to(dtype=vae_dtype)
    if channels_last:
        pipe.unet.to(memory_format=torch.channels_last)
        pipe.vae.to(memory_format=torch.channels_last)
    pipe.set_progress_bar_config(disable=True)
    return LoadedModel(pipe, name, dev, model_dtype, vae_dtype, warning)
