"""Token embeddings into transformers' CLIP text encoders, batched, without forking transformers.

`CLIPTextModel.forward` only takes `input_ids`. We run the stock forward with placeholder ids and
a forward hook on the token-embedding layer (`get_input_embeddings()`) that swaps its output for
our token vectors; positional embeddings, the causal mask, every layer and the final layer norm
stay the stock code. Pooling is done here, as a weighted sum over positions, because a blend of
prompts has several end-of-text positions and the stock code can only take one.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Iterator

import torch
from torch import Tensor

# Checked against these transformers releases (tests/test_patches.py proves equality with
# diffusers' `encode_prompt`). The hook relies only on `get_input_embeddings()` being the module
# that turns ids into vectors, which has held since 4.x; 5.x dropped the inner text_model.
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


@contextmanager
def _token_embeddings_replaced(text_encoder: Any, embeds: Tensor) -> Iterator[list[bool]]:
    layer = text_encoder.get_input_embeddings()
    fired: list[bool] = []

    def hook(module: Any, args: Any, output: Tensor) -> Tensor:
        if output.shape != embeds.shape:
            raise RuntimeError(f"token embedding hook: expected output {tuple(embeds.shape)}, got {tuple(output.shape)}")
        fired.append(True)
        return embeds.to(output.dtype)

    handle = layer.register_forward_hook(hook)
    try:
        yield fired
    finally:
        handle.remove()


def encode_token_embeddings(text_encoder: Any, embeds: Tensor) -> tuple[Tensor, Tensor]:
    """Run one CLIP text encoder on token embeddings `[B, T, d]`.

    Returns (penultimate hidden states `[B, T, d]`, final hidden states after the final layer
    norm `[B, T, d]`), exactly what the stock forward computes from ids with the same vectors."""
    batch, tokens, width = embeds.shape
    expected = text_encoder.get_input_embeddings().weight.shape[1]
    if width != expected:
        raise ValueError(f"token embeddings are {width} wide; this text encoder takes {expected}")
    # Placeholder ids: only their shape matters, since the hook replaces the vectors and we pool ourselves.
    ids = torch.zeros((batch, tokens), dtype=torch.long, device=embeds.device)
    with _token_embeddings_replaced(text_encoder, embeds) as fired:
        out = text_encoder(input_ids=ids, output_hidden_states=True)
    if not fired:
        raise UnsupportedTransformers(
            "the CLIP token-embedding hook did not fire: this transformers release builds text "
            "embeddings differently; see patches/README.md"
        )
    return out.hidden_states[-2], out.last_hidden_state


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
    h1, _ = encode_token_embeddings(text_encoder, embeds_1)
    h2, last2 = encode_token_embeddings(text_encoder_2, embeds_2)
    pooled_hidden = torch.einsum("bt,btd->bd", pool_weights.to(last2.dtype), last2)
    pooled = text_encoder_2.text_projection(pooled_hidden)
    return torch.cat([h1, h2], dim=-1), pooled


check_transformers_version()
