"""A scene: the four corner genomes (or nokens in a template), blended at points of the pad.

Pure tensor bookkeeping between the genomes and the renderer. A scene's corners go to the
renderer's device once (`Scene.pack`); `blend_packs` then blends a whole batch of frames, of any
mix of scenes, positions and blend modes, in batched tensor ops on that device.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Sequence

import torch
from torch import Tensor

from sdxl_breeder.model.blend import bilinear_weights, blend_bilinear, blend_rows, row_weights
from sdxl_breeder.model.genome import MAX_TOKENS, Genome, GenomeError
from sdxl_breeder.spec import BLEND_MODES, CORNER_NAMES, NOKEN, Corner

if TYPE_CHECKING:
    from sdxl_breeder.model.renderer import Renderer


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
class ScenePack:
    """A scene's corners as tensors on one device, float32 (the blend's compute precision)."""

    corners: tuple[Tensor, ...]  # [4, 77, d_i] per encoder: the full token vectors of each corner
    varies: Tensor  # [77, 1] bool: positions that blend (all for prompts; the slot in a template)
    pools: Tensor  # [4, 77] each corner's pooling weights


def blend_packs(packs: Sequence[ScenePack], xy: Tensor, slerp: bool | Tensor = False) -> tuple[tuple[Tensor, ...], Tensor]:
    """Blend B frames in batched tensor ops: row b is `packs[b]` at `xy[b]` (`[B, 2]`, on the packs'
    device), slerped where `slerp` says so (one flag, or a bool tensor `[B]`). Returns (token vectors
    `[B, 77, d_i]` per encoder, pooling weights `[B, 77]`), float32. Exactly a corner at a corner."""
    n_enc = len(packs[0].corners)
    varies = torch.stack([p.varies for p in packs])
    embeds = []
    for i in range(n_enc):
        corners = torch.stack([p.corners[i] for p in packs])
        # Template positions outside the slot are the same in all four corners: they are kept as
        # they are rather than blended with themselves (which would move them by rounding).
        embeds.append(torch.where(varies, blend_rows(corners, xy, slerp), corners[:, 0]))
    pools = torch.stack([p.pools for p in packs])
    pool_weights = (row_weights(xy.to(pools.dtype))[:, :, None] * pools).sum(1)
    return tuple(embeds), pool_weights


@dataclass(frozen=True)
class Scene:
    corners: tuple[Genome, Genome, Genome, Genome]
    template: Template | None = None
    # The corners on each device they were used on, built once (a new scene for new corners).
    _packs: dict[torch.device, ScenePack] = field(default_factory=dict, init=False, repr=False, compare=False)

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

    def pack(self, device: torch.device | str = "cpu") -> ScenePack:
        """The corners as tensors on `device`, built on first use and kept with the scene."""
        device = torch.device(device)
        cached = self._packs.get(device)
        if cached is not None:
            return cached
        if self.template is None:
            full = [c.embeds for c in self.corners]
            varies = torch.ones(MAX_TOKENS, 1, dtype=torch.bool)
            pools = torch.stack([c.pool_weights() for c in self.corners])
        else:
            nokens = self.nokens()
            k = int(nokens[0][0].shape[0])
            full = [self.template.assemble(n) for n in nokens]
            start = 1 + int(self.template.prefix[0].shape[0])
            varies = torch.zeros(MAX_TOKENS, 1, dtype=torch.bool)
            varies[start : start + k] = True
            pools = torch.zeros(4, MAX_TOKENS)
            pools[:, self.template.eos_position(k)] = 1.0
        corners = tuple(torch.stack([f[i] for f in full]).to(torch.float32) for i in range(len(full[0])))
        pack = ScenePack(tuple(c.to(device) for c in corners), varies.to(device), pools.to(device))
        self._packs[device] = pack
        return pack

    def blend(self, x: float, y: float, mode: str = "lerp", bare: bool = False) -> tuple[tuple[Tensor, ...], Tensor, int]:
        """(token vectors per encoder, pooling weights [77], content length) at (x, y), on the CPU.
        In noken mode, `bare` gives the blended noken alone instead of the filled-in template."""
        if mode not in BLEND_MODES:
            raise SceneError(f"unknown blend {mode!r}; use one of {', '.join(BLEND_MODES)}")
        weights = bilinear_weights(x, y)
        if self.template is not None and bare:
            nokens = self.nokens()
            slot = tuple(blend_bilinear([n[i] for n in nokens], x, y, mode) for i in range(len(nokens[0])))
            embeds = self.template.assemble(slot, bare=True)
            length = int(slot[0].shape[0])
            pool_weights = torch.zeros(MAX_TOKENS, dtype=torch.float32)
            pool_weights[length + 1] = 1.0
            return embeds, pool_weights, length
        rows, pool_weights = blend_packs([self.pack()], torch.tensor([[x, y]]), slerp=mode == "slerp")
        if self.template is None:
            length = max(c.length for c, w in zip(self.corners, weights) if w > 0)
        else:
            length = int(self.nokens()[0][0].shape[0])
        return tuple(r[0] for r in rows), pool_weights[0], length

    def genome_at(self, x: float, y: float, mode: str = "lerp", prompt: str | None = None) -> Genome:
        """The blend at (x, y) as a genome of its own ("keep this frame"). In noken mode it is
        the blended noken alone, ready to be a corner again or a textual inversion."""
        embeds, pool_weights, length = self.blend(x, y, mode, bare=True)
        pool = tuple((int(i), float(pool_weights[i])) for i in torch.nonzero(pool_weights).flatten())
        parents = tuple(dict.fromkeys(c.id for c, w in zip(self.corners, bilinear_weights(x, y)) if w > 0))
        return Genome(embeds=tuple(e.clone() for e in embeds), pool=pool, length=length, prompt=prompt, parents=parents)


def scene_from_corners(renderer: Renderer, corners: Sequence[Corner], template: str | None = None,
                       known: Sequence[Genome | None] | None = None) -> Scene:
    """Corners → a scene, the one place: each corner's genome (given in `known`, else its prompt
    embedded), checked to come from this model, and the template's tokens. Call it where the
    renderer lives (the render thread, in a server)."""
    if len(corners) != len(CORNER_NAMES):
        raise SceneError(f"a scene has 4 corners ({', '.join(CORNER_NAMES)}), got {len(corners)}")
    given = list(known) if known is not None else [None] * len(corners)
    genomes = []
    for name, corner, genome in zip(CORNER_NAMES, corners, given):
        if genome is None:
            if corner.prompt is None:
                raise SceneError(f"the {name} corner names genome {corner.genome}, which is not known")
            genome = renderer.genome_from_prompt(corner.prompt)
        renderer.check_genome(genome)  # made with another model → one clear line
        genomes.append(genome)
    tpl = renderer.template(template) if template is not None else None
    return Scene((genomes[0], genomes[1], genomes[2], genomes[3]), tpl)


__all__ = ["GenomeError", "NOKEN", "Scene", "SceneError", "ScenePack", "Template", "blend_packs", "pad_noken", "scene_from_corners", "split_template"]
