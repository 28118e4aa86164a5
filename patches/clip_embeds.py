"""Token embeddings into transformers' CLIP text encoders, batched, without forking transformers.

`CLIPTextModel.forward` only takes `input_ids`. We run the encoder's own submodules in the stock
order instead: the embeddings module with `inputs_embeds` (adds the positional embeddings), every
encoder layer with a causal mask, then the final layer norm. No hook and no per-call closure, so
the whole function traces as one graph under `torch.compile`. Pooling is done here, as a weighted
sum over positions, because a blend of prompts has several end-of-text positions and the stock
code can only take one.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

# Checked against these transformers releases (tests/test_patches.py proves equality with
# diffusers' `encode_prompt`). The route relies on the text model's `embeddings` (taking
# `inputs_embeds`), `encoder.layers` (taking hidden states and an additive attention mask) and
# `final_layer_norm`: the layout since 4.x (in 5.x `CLIPTextModel` is itself the text model).
CHECKED_VERSIONS = ("5.24",)
SUPPORTED_MAJOR = (4, 5)
MIN_VERSION = (4, 40)


class UnsupportedTransformers(RuntimeError):
    pass


def check_transformers_version(version: str | None = None) -> str:
    """Fail with a clear message on a transformers release this patch was not written for."""
    if version is None:
        import transformers

        version = transformers.__version__
    try:
        major, minor = (int(p) for p in version.split(".")[:2])
    except ValueError as e:
        raise UnsupportedTransformers(f"cannot parse transformers version {version!r}") from e
    if major not in SUPPORTED_MAJOR or (major, minor) < MIN_VERSION:
        raise UnsupportedTransformers(
            f"transformers {version} is not supported by patches/clip_embeds.py (needs >= "
            f"{MIN_VERSION[0]}.{MIN_VERSION[1]} and < {SUPPORTED_MAJOR[-1] + 1}; checked against "
            f"{', '.join(CHECKED_VERSIONS)}). Install e.g. `pip install 'transformers>=4.40,<6'`."
        )
    return version


def text_model(text_encoder: Any) -> Any:
    """The module holding `embeddings`, `encoder` and `final_layer_norm`: the encoder itself in
    transformers 5.x `CLIPTextModel`, its `.text_model` otherwise."""
    inner = getattr(text_encoder, "text_model", text_encoder)
    for name in ("embeddings", "encoder", "final_layer_norm"):
        if not hasattr(inner, name):
            raise UnsupportedTransformers(
                f"this transformers release lays out CLIP differently (no `{name}` on the text model); "
                "see patches/README.md"
            )
    return inner


def causal_mask(batch: int, tokens: int, dtype: torch.dtype, device: torch.device) -> Tensor:
    """The additive causal mask `[B, 1, T, T]` CLIP's attention takes: 0 on and below the
    diagonal, the dtype's minimum above it (every attention implementation accepts it)."""
    mask = torch.full((tokens, tokens), torch.finfo(dtype).min, dtype=dtype, device=device).triu(1)
    return mask[None, None].expand(batch, 1, tokens, tokens)


def encode_token_embeddings(text_encoder: Any, embeds: Tensor, *, final: bool = True) -> tuple[Tensor, Tensor | None]:
    """Run one CLIP text encoder on token embeddings `[B, T, d]`.

    Returns (penultimate hidden states `[B, T, d]`, final hidden states after the final layer
    norm `[B, T, d]`, or None with `final=False`, which skips the last layer), exactly what the
    stock forward computes from ids with the same vectors."""
    model = text_model(text_encoder)
    batch, tokens, width = embeds.shape
    expected = model.embeddings.token_embedding.weight.shape[1]
    if width != expected:
        raise ValueError(f"token embeddings are {width} wide; this text encoder takes {expected}")
    hidden = model.embeddings(inputs_embeds=embeds)
    mask = causal_mask(batch, tokens, hidden.dtype, hidden.device)
    layers = model.encoder.layers
    for layer in layers[:-1]:
        hidden = _layer(layer, hidden, mask)
    penultimate = hidden
    if not final:
        return penultimate, None
    return penultimate, model.final_layer_norm(_layer(layers[-1], hidden, mask))


def _layer(layer: Any, hidden: Tensor, mask: Tensor) -> Tensor:
    # 5.x layers return the hidden states, 4.x a one-element tuple.
    out = layer(hidden, mask)
    return out[0] if isinstance(out, tuple) else out


def drop_output_capture_hooks(text_encoder: Any) -> int:
    """Remove the output-capturing hooks transformers 5.x puts on a model's layers the first time
    its stock forward runs (they read a ContextVar, which splits a compiled graph), and clear the
    flag that says they are there, so the next stock forward installs them again. Returns how
    many were removed. Only `torch.compile` needs this; eager results are the same either way."""
    removed = 0
    for module in text_encoder.modules():
        hooks = getattr(module, "_forward_hooks", None)
        if hooks:
            for key in [k for k, fn in hooks.items() if getattr(fn, "__name__", "") == "output_capturing_hook"]:
                del hooks[key]
                removed += 1
        if getattr(module, "_output_capturing_hooks_installed", False):
            module._output_capturing_hooks_installed = False
    return removed


def sdxl_conditioning(
    text_encoder: Any,
    text_encoder_2: Any,
    embeds_1: Tensor,
    embeds_2: Tensor,
    pool_weights: Tensor,
) -> tuple[Tensor, Tensor]:
    """SDXL conditioning from token embeddings of both encoders.

    embeds_1 `[B, 77, d1]`, embeds_2 `[B, 77, d2]`, pool_weights `[B, 77]` (the weight of each
    position in the pooled vector: one-hot at the end-of-text token for a plain prompt).
    Returns prompt_embeds `[B, 77, d1 + d2]` and pooled `[B, projection_dim]` with
    pooled = text_projection(Σᵢ wᵢ · h[i]); the projection is linear, so blending before it is
    the same as blending the parents' pooled vectors."""
    if embeds_1.shape[:2] != embeds_2.shape[:2] or pool_weights.shape != embeds_1.shape[:2]:
        raise ValueError(
            f"shape mismatch: embeds_1 {tuple(embeds_1.shape)}, embeds_2 {tuple(embeds_2.shape)}, "
            f"pool_weights {tuple(pool_weights.shape)}"
        )
    # SDXL reads the first encoder's penultimate layer only: its last layer is never run.
    h1, _ = encode_token_embeddings(text_encoder, embeds_1, final=False)
    h2, last2 = encode_token_embeddings(text_encoder_2, embeds_2)
    assert last2 is not None
    pooled_hidden = (pool_weights.to(last2.dtype)[:, :, None] * last2).sum(1)
    pooled = text_encoder_2.text_projection(pooled_hidden)
    return torch.cat([h1, h2.to(h1.dtype)], dim=-1), pooled


check_transformers_version()
