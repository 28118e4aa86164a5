"""SDXL single-file checkpoints (the layout A1111 and ComfyUI keep): write one from a pipeline,
recognise one before loading it.

The key layout is Stability's original SDXL one (`model.diffusion_model.*` UNet,
`first_stage_model.*` VAE, `conditioner.embedders.0.transformer.*` CLIP-L,
`conditioner.embedders.1.model.*` OpenCLIP bigG), the inverse of what diffusers'
`from_single_file` converts from; it is derived from each component's config, so the tiny model
writes a checkpoint that stock diffusers loads with the tiny model's own configs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

UNET = "model.diffusion_model."
VAE = "first_stage_model."
CLIP_L = "conditioner.embedders.0.transformer."
CLIP_G = "conditioner.embedders.1.model."
# Keys every SDXL base/turbo checkpoint has (the refiner has no CLIP-L, SD 1.x/2.x use cond_stage_model).
SDXL_KEYS = (UNET + "input_blocks.0.0.weight", CLIP_L + "text_model.embeddings.position_embedding.weight",
             CLIP_G + "positional_embedding", VAE + "decoder.conv_in.weight")
SUFFIXES = (".safetensors",)

_RESNET = (("norm1", "in_layers.0"), ("conv1", "in_layers.2"), ("norm2", "out_layers.0"),
           ("conv2", "out_layers.3"), ("time_emb_proj", "emb_layers.1"), ("conv_shortcut", "skip_connection"))
_UNET_TOP = {
    "time_embedding.linear_1": "time_embed.0", "time_embedding.linear_2": "time_embed.2",
    "add_embedding.linear_1": "label_emb.0.0", "add_embedding.linear_2": "label_emb.0.2",
    "conv_in": "input_blocks.0.0", "conv_norm_out": "out.0", "conv_out": "out.2",
}
_VAE_ATTN = (("group_norm", "norm"), ("to_q", "q"), ("to_k", "k"), ("to_v", "v"), ("to_out.0", "proj_out"))
_VAE_TOP = {"conv_in": "conv_in", "conv_out": "conv_out", "conv_norm_out": "norm_out"}


def looks_like_single_file(name: str) -> bool:
    return Path(name).suffix.lower() in SUFFIXES or Path(name).suffix.lower() == ".ckpt"


def sdxl_problem(path: Path) -> str | None:
    """Why the file at `path` is not an SDXL single-file checkpoint, or None if it is one."""
    from safetensors import safe_open

    if path.suffix.lower() not in SUFFIXES:
        return f"{path} is a {path.suffix} file; only .safetensors checkpoints are loaded (pickled .ckpt files can run code)"
    try:
        with safe_open(str(path), framework="pt") as f:
            keys = set(f.keys())
    except Exception as e:  # noqa: BLE001 — a truncated or foreign file: say so in one line
        return f"{path} is not a readable safetensors file ({str(e).splitlines()[0] if str(e) else type(e).__name__})"
    if all(k in keys for k in SDXL_KEYS):
        return None
    if any(k.startswith("cond_stage_model.") for k in keys):
        kind = "a Stable Diffusion 1.x/2.x checkpoint"
    elif any(k.startswith(UNET) for k in keys):
        kind = "a diffusion checkpoint without SDXL's two text encoders (a refiner or another model)"
    elif any(k.startswith(("down_blocks.", "text_model.", "encoder.", "decoder.")) for k in keys):
        kind = "a single diffusers component, not a whole checkpoint"
    else:
        kind = f"not a diffusion checkpoint ({len(keys)} tensors, none in SDXL's layout)"
    return f"{path} is {kind}; --model needs an SDXL checkpoint (UNet, VAE, CLIP-L and OpenCLIP-bigG in one file)"


# --------------------------------------------------------------------------- writing
def _rename(sd: dict[str, torch.Tensor], src: str, dst: str, out: dict[str, torch.Tensor],
            pairs: tuple[tuple[str, str], ...] = ()) -> None:
    for key, value in sd.items():
        if key.startswith(src):
            rest = key[len(src):]
            for a, b in pairs:
                if rest.startswith(a + "."):
                    rest = b + rest[len(a):]
            out[dst + rest] = value


def _unet(unet: Any) -> dict[str, torch.Tensor]:
    cfg, sd = unet.config, unet.state_dict()
    per = cfg.layers_per_block
    levels = len(cfg.block_out_channels)
    out: dict[str, torch.Tensor] = {}
    for a, b in _UNET_TOP.items():
        _rename(sd, a + ".", b + ".", out)
    for level in range(levels):
        first = 1 + level * (per + 1)
        for j in range(per):
            _rename(sd, f"down_blocks.{level}.resnets.{j}.", f"input_blocks.{first + j}.0.", out, _RESNET)
            _rename(sd, f"down_blocks.{level}.attentions.{j}.", f"input_blocks.{first + j}.1.", out)
        _rename(sd, f"down_blocks.{level}.downsamplers.0.conv.", f"input_blocks.{first + per}.0.op.", out)
    _rename(sd, "mid_block.resnets.0.", "middle_block.0.", out, _RESNET)
    _rename(sd, "mid_block.attentions.0.", "middle_block.1.", out)
    _rename(sd, "mid_block.resnets.1.", "middle_block.2.", out, _RESNET)
    for level in range(levels):
        for j in range(per + 1):
            i = level * (per + 1) + j
            _rename(sd, f"up_blocks.{level}.resnets.{j}.", f"output_blocks.{i}.0.", out, _RESNET)
            _rename(sd, f"up_blocks.{level}.attentions.{j}.", f"output_blocks.{i}.1.", out)
        has_attn = any(k.startswith(f"up_blocks.{level}.attentions.") for k in sd)
        last = level * (per + 1) + per
        _rename(sd, f"up_blocks.{level}.upsamplers.0.conv.", f"output_blocks.{last}.{2 if has_attn else 1}.conv.", out)
    return out


def _vae(vae: Any) -> dict[str, torch.Tensor]:
    sd = vae.state_dict()
    levels = len(vae.config.block_out_channels)
    out: dict[str, torch.Tensor] = {}
    for part in ("encoder", "decoder"):
        for a, b in _VAE_TOP.items():
            _rename(sd, f"{part}.{a}.", f"{part}.{b}.", out)
        for i in range(2):
            _rename(sd, f"{part}.mid_block.resnets.{i}.", f"{part}.mid.block_{i + 1}.", out, (("conv_shortcut", "nin_shortcut"),))
        _rename(sd, f"{part}.mid_block.attentions.0.", f"{part}.mid.attn_1.", out, _VAE_ATTN)
    for i in range(levels):
        _rename(sd, f"encoder.down_blocks.{i}.resnets.", f"encoder.down.{i}.block.", out)
        _rename(sd, f"encoder.down_blocks.{i}.downsamplers.0.conv.", f"encoder.down.{i}.downsample.conv.", out)
        up = levels - 1 - i  # the original decoder numbers its up blocks from the bottom
        _rename(sd, f"decoder.up_blocks.{i}.resnets.", f"decoder.up.{up}.block.", out)
        _rename(sd, f"decoder.up_blocks.{i}.upsamplers.0.conv.", f"decoder.up.{up}.upsample.conv.", out)
    for key in list(out):
        if ".block." in key or ".block_" in key:
            out[key.replace(".conv_shortcut.", ".nin_shortcut.")] = out.pop(key)
        elif ".mid.attn_1." in key and key.endswith("weight") and out[key].ndim == 2:
            out[key] = out[key][:, :, None, None]  # the original attention projections are 1×1 convs
    for name in ("quant_conv", "post_quant_conv"):
        _rename(sd, name + ".", name + ".", out)
    return out


def _clip_g(encoder: Any) -> dict[str, torch.Tensor]:
    sd = {k.removeprefix("text_model."): v for k, v in encoder.state_dict().items()}
    out = {
        "positional_embedding": sd["embeddings.position_embedding.weight"],
        "token_embedding.weight": sd["embeddings.token_embedding.weight"],
        "ln_final.weight": sd["final_layer_norm.weight"],
        "ln_final.bias": sd["final_layer_norm.bias"],
        "text_projection": sd["text_projection.weight"].T.contiguous(),
    }
    for i in range(encoder.config.num_hidden_layers):
        src, dst = f"encoder.layers.{i}.", f"transformer.resblocks.{i}."
        for kind in ("weight", "bias"):
            out[f"{dst}attn.in_proj_{kind}"] = torch.cat([sd[f"{src}self_attn.{q}_proj.{kind}"] for q in "qkv"])
            out[f"{dst}attn.out_proj.{kind}"] = sd[f"{src}self_attn.out_proj.{kind}"]
            out[f"{dst}ln_1.{kind}"] = sd[f"{src}layer_norm1.{kind}"]
            out[f"{dst}ln_2.{kind}"] = sd[f"{src}layer_norm2.{kind}"]
            out[f"{dst}mlp.c_fc.{kind}"] = sd[f"{src}mlp.fc1.{kind}"]
            out[f"{dst}mlp.c_proj.{kind}"] = sd[f"{src}mlp.fc2.{kind}"]
    return out


def single_file_state_dict(pipe: Any) -> dict[str, torch.Tensor]:
    """The pipeline's weights in the original SDXL single-file layout (fp32, contiguous, on CPU)."""
    clip_l = {("" if k.startswith("text_model.") else "text_model.") + k: v
              for k, v in pipe.text_encoder.state_dict().items() if not k.endswith("position_ids")}
    parts = ((UNET, _unet(pipe.unet)), (VAE, _vae(pipe.vae)), (CLIP_L, clip_l), (CLIP_G, _clip_g(pipe.text_encoder_2)))
    return {prefix + k: v.detach().to("cpu", torch.float32).contiguous() for prefix, sd in parts for k, v in sd.items()}


def save_single_file(pipe: Any, path: Path) -> None:
    from safetensors.torch import save_file

    from sdxl_breeder.files import atomic_path

    with atomic_path(path) as tmp:
        save_file(single_file_state_dict(pipe), str(tmp), metadata={"format": "pt"})
