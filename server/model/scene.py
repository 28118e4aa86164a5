"""A scene: the four corner genomes (or nokens in a template) and what to render at (x, y).

Pure tensor bookkeeping between the genomes and the renderer: `Scene.conditioning(x, y)` is the
frame's recipe (blended token vectors, pooling weights, noise seeds, size).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from sdxl_breeder.model.blend import bilinear_weights, blend_bilinear
from sdxl_breeder.model.genome import MAX_TOKENS, Genome, GenomeError, merge_pools

from sdxl_breeder.spec import BLEND_MODES, NOKEN, FrameSettings


class SceneError(ValueError):
    """Bad corners or template; the message is one line meant for the user."""


def split_template(text: str) -> tuple[str, str]:
    """`"a drawing of [noken] sleeping"` → (`"a drawing of "`, `" sleeping"`)."""
    count = text.count(NOKEN)
    if count != 1:
        raise SceneError(f"a template needs exactly one {NOKEN} placeholder, found {count}")
    before, after = text.split(NOKEN)
    return before, after


@dataclass(frozen=True)
class Template:
    """A prompt with one noken slot, as token vectors per encoder (built by the renderer)."""

    text: str
    bos: tuple[Tensor, ...]  # [d_i]
    prefix: tuple[Tensor, ...]  # [p, d_i] content tokens before the slot
    suffix: tuple[Tensor, ...]  # [s, d_i] content tokens after the slot
    eos: tuple[Tensor, ...]  # [d_i]
    pad: tuple[Tensor, ...]  # [d_i] each tokenizer's padding vector

    @property
    def fixed_tokens(self) -> int:
        return 2 + int(self.prefix[0].shape[0]) + int(self.suffix[0].shape[0])

    def eos_position(self, noken_length: int) -> int:
        return 1 + int(self.prefix[0].shape[0]) + noken_length + int(self.suffix[0].shape[0])

    def assemble(self, slot: tuple[Tensor, ...], bare: bool = False) -> tuple[Tensor, ...]:
        """Full `[77, d_i]` token vectors with `slot` `[k, d_i]` in the placeholder; with `bare`,
        the noken alone (start, slot, end, padding): a genome whose noken is the slot."""
        k = int(slot[0].shape[0])
        if self.fixed_tokens + k > MAX_TOKENS:
            raise SceneError(
                f"template plus noken is {self.fixed_tokens + k} tokens; CLIP takes at most {MAX_TOKENS}"
            )
        out = []
        for bos, pre, s, suf, eos, pad in zip(self.bos, self.prefix, slot, self.suffix, self.eos, self.pad):
            parts = [bos[None], s.to(bos.dtype), eos[None]] if bare else [bos[None], pre, s.to(bos.dtype), suf, eos[None]]
            used = torch.cat(parts)
            out.append(torch.cat([used, pad[None].expand(MAX_TOKENS - used.shape[0], -1)]))
        return tuple(out)


def pad_noken(noken: tuple[Tensor, ...], length: int) -> tuple[Tensor, ...]:
    """The rule for nokens of different lengths: a shorter noken is padded to the longest one by
    repeating its last token vector."""
    have = int(noken[0].shape[0])
    if have == length:
        return noken
    return tuple(torch.cat([n, n[-1:].expand(length - have, -1)]) for n in noken)


@dataclass(frozen=True)
class Conditioning:
    """One frame's recipe: what the renderer needs, nothing more."""

    embeds: tuple[Tensor, ...]  # [77, d_i] per encoder
    pool_weights: Tensor  # [77]
    seed: int
    width: int
    height: int
    corner_seeds: tuple[int, int, int, int] | None = None
    x: float = 0.0
    y: float = 0.0


@dataclass(frozen=True)
class Scene:
    corners: tuple[Genome, Genome, Genome, Genome]
    template: Template | None = None

    def __post_init__(self) -> None:
        if len(self.corners) != 4:
            raise SceneError(f"a scene has 4 corners (TL, TR, BL, BR), got {len(self.corners)}")
        widths = {c.widths for c in self.corners}
        if len(widths) != 1:
            raise SceneError("the corner genomes come from different models")
        if self.template is not None:
            if any(c.length == 0 for c in self.corners):
                raise SceneError("in noken mode every corner needs at least one token")
            self.template.assemble(self.nokens()[0])  # raises if too long

    def nokens(self) -> list[tuple[Tensor, ...]]:
        k = max(c.length for c in self.corners)
        return [pad_noken(c.noken(), k) for c in self.corners]

    def blend(self, x: float, y: float, mode: str = "lerp", bare: bool = False) -> tuple[tuple[Tensor, ...], Tensor, int]:
        """(token vectors per encoder, pooling weights [77], content length) at (x, y).
        In noken mode, `bare` gives the blended noken alone instead of the filled-in template."""
        if mode not in BLEND_MODES:
            raise SceneError(f"unknown blend {mode!r}; use one of {', '.join(BLEND_MODES)}")
        weights = bilinear_weights(x, y)
        if self.template is None:
            n_enc = len(self.corners[0].embeds)
            embeds = tuple(blend_bilinear([c.embeds[i] for c in self.corners], x, y, mode) for i in range(n_enc))
            pool = merge_pools([c.pool for c in self.corners], list(weights))
            length = max(c.length for c, w in zip(self.corners, weights) if w > 0)
        else:
            nokens = self.nokens()
            slot = tuple(blend_bilinear([n[i] for n in nokens], x, y, mode) for i in range(len(nokens[0])))
            embeds = self.template.assemble(slot, bare=bare)
            length = int(slot[0].shape[0])
            pool = ((length + 1 if bare else self.template.eos_position(length), 1.0),)
        pool_weights = torch.zeros(MAX_TOKENS, dtype=torch.float32)
        for pos, w in pool:
            pool_weights[pos] += w
        return embeds, pool_weights, length

    def conditioning(self, x: float, y: float, settings: FrameSettings = FrameSettings()) -> Conditioning:
        """The frame at (x, y) rendered with `settings`: the one place scene + settings meet."""
        embeds, pool_weights, _ = self.blend(x, y, settings.blend)
        return Conditioning(
            embeds, pool_weights, settings.seed, settings.width, settings.height, settings.corner_seeds, x, y
        )

    def genome_at(self, x: float, y: float, mode: str = "lerp", prompt: str | None = None) -> Genome:
        """The blend at (x, y) as a genome of its own ("keep this frame"). In noken mode it is
        the blended noken alone, ready to be a corner again or a textual inversion."""
        embeds, pool_weights, length = self.blend(x, y, mode, bare=True)
        pool = tuple((int(i), float(pool_weights[i])) for i in torch.nonzero(pool_weights).flatten())
        parents = tuple(dict.fromkeys(c.id for c, w in zip(self.corners, bilinear_weights(x, y)) if w > 0))
        return Genome(embeds=tuple(e.clone() for e in embeds), pool=pool, length=length, prompt=prompt, parents=parents)


__all__ = ["Conditioning", "GenomeError", "NOKEN", "Scene", "SceneError", "Template", "pad_noken", "split_template"]
