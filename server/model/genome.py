"""Genomes: the token embeddings CLIP would see for a prompt, for both SDXL encoders.

A genome is what a corner of the pad holds. It is made from a prompt (by the renderer, which owns
the tokenizers and embedding tables), bred from two parents, or kept from a point of a blend.
Its *noken* is its content tokens: the vectors between the start and end tokens.
"""

from __future__ import annotations

import json
import os
import random
import secrets
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import Tensor

from sdxl_breeder.files import atomic_path

MAX_TOKENS = 77  # CLIP's context: start token + 75 content tokens + end token
GENOME_FORMAT = "sdxl-breeder-genome/1"
ID_ALPHABET = "0123456789abcdef"
ID_LENGTH = 16


class GenomeError(ValueError):
    """Bad genome input; the message is one line meant for the user."""


def new_id() -> str:
    return secrets.token_hex(ID_LENGTH // 2)


def is_valid_id(value: object) -> bool:
    return isinstance(value, str) and len(value) == ID_LENGTH and all(c in ID_ALPHABET for c in value)


@dataclass(frozen=True)
class Genome:
    """Token embeddings `[77, d_i]` per text encoder (float32, CPU), plus where to pool.

    `pool` lists (position, weight) pairs summing to 1: the end-of-text position for a prompt;
    several positions for a blend or a child. `length` is the number of content tokens (the
    noken's length)."""

    embeds: tuple[Tensor, ...]
    pool: tuple[tuple[int, float], ...]
    length: int
    prompt: str | None = None
    parents: tuple[str, ...] = ()
    seed: int | None = None
    mutation: float = 0.0
    created: float = field(default_factory=time.time)
    id: str = field(default_factory=new_id)

    @property
    def widths(self) -> tuple[int, ...]:
        return tuple(int(e.shape[-1]) for e in self.embeds)

    def pool_weights(self) -> Tensor:
        w = torch.zeros(MAX_TOKENS, dtype=torch.float32)
        for pos, weight in self.pool:
            w[pos] += weight
        return w

    def noken(self) -> tuple[Tensor, ...]:
        """The content-token vectors `[length, d_i]` per encoder (no start/end tokens)."""
        return tuple(e[1 : 1 + self.length] for e in self.embeds)

    def metadata(self) -> dict[str, object]:
        return {
            "id": self.id,
            "prompt": self.prompt,
            "parents": list(self.parents),
            "seed": self.seed,
            "mutation": self.mutation,
            "created": self.created,
            "length": self.length,
            "pool": [[p, w] for p, w in self.pool],
            "widths": list(self.widths),
        }

    # ------------------------------------------------------------------ files
    def save(self, path: str | os.PathLike[str]) -> None:
        """Write a safetensors file atomically (temp file in the same folder, then rename)."""
        path = Path(path)
        tensors = {f"embeds_{i}": e.detach().to("cpu", torch.float32).contiguous() for i, e in enumerate(self.embeds)}
        meta = {"format": GENOME_FORMAT, "genome": json.dumps(self.metadata())}
        with atomic_path(path, suffix=".safetensors") as tmp:
            save_file(tensors, str(tmp), metadata=meta)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Genome:
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
        if meta.get("format") != GENOME_FORMAT:
            raise GenomeError(f"{Path(path).name}: not an SDXL Breeder genome file")
        info = json.loads(meta["genome"])
        tensors = load_file(str(path))
        embeds = tuple(tensors[f"embeds_{i}"] for i in range(len(tensors)))
        return cls(
            embeds=embeds,
            pool=tuple((int(p), float(w)) for p, w in info["pool"]),
            length=int(info["length"]),
            prompt=info.get("prompt"),
            parents=tuple(info.get("parents") or ()),
            seed=info.get("seed"),
            mutation=float(info.get("mutation") or 0.0),
            created=float(info["created"]),
            id=info["id"],
        )


def merge_pools(pools: list[tuple[tuple[int, float], ...]], weights: list[float]) -> tuple[tuple[int, float], ...]:
    acc: dict[int, float] = {}
    for pool, w in zip(pools, weights):
        for pos, pw in pool:
            if w * pw != 0.0:
                acc[pos] = acc.get(pos, 0.0) + w * pw
    return tuple(sorted(acc.items()))


# ---------------------------------------------------------------------- breeding
def _crossover(a: Tensor, b: Tensor, rng: random.Random) -> Tensor:
    """Walk the flattened tensors, alternating between the parents in contiguous runs.

    As in the original breeder: a coin picks the base parent, and runs are drawn below a random
    bound. The original's bound (500–5000 elements of 77×768) is kept as a fraction of the size
    so small models breed alike."""
    if rng.random() < 0.5:
        a, b = b, a
    flat_a, flat_b = a.reshape(-1), b.reshape(-1)
    out = flat_a.clone()
    n = flat_a.numel()
    bound = max(2, int(n * rng.uniform(500 / 59136, 5000 / 59136)))
    pos, take_other = 0, False
    while pos < n:
        run = rng.randrange(1, bound)
        if take_other:
            out[pos : pos + run] = flat_b[pos : pos + run]
        pos += run
        take_other = not take_other
    return out.view_as(a)


def breed(
    a: Genome,
    b: Genome,
    *,
    seed: int | None = None,
    mutation: float = 0.0,
    table_std: tuple[float, ...] | None = None,
) -> Genome:
    """Child = crossover of two genomes + optional Gaussian mutation.

    Mutation noise has standard deviation `mutation × table_std[i]` (the spread of encoder i's
    token-embedding table) and touches content tokens only, so start/padding stay valid. The
    same parents and seed give the same child."""
    if a.widths != b.widths:
        raise GenomeError(f"parents come from different models (widths {a.widths} vs {b.widths})")
    if not (mutation == mutation) or mutation < 0 or mutation > 10:
        raise GenomeError("mutation must be a number within [0, 10]")
    if seed is None:
        seed = secrets.randbelow(2**32)
    rng = random.Random(seed)
    embeds = [_crossover(ea, eb, rng) for ea, eb in zip(a.embeds, b.embeds)]
    length = max(a.length, b.length)
    if mutation > 0:
        if table_std is None:
            raise GenomeError("mutation needs the spread of the token-embedding tables")
        gen = torch.Generator().manual_seed(seed)
        for i, e in enumerate(embeds):
            noise = torch.randn(e[1 : 1 + length].shape, generator=gen, dtype=torch.float32)
            e[1 : 1 + length] += noise * (mutation * table_std[i])
    return Genome(
        embeds=tuple(embeds),
        pool=merge_pools([a.pool, b.pool], [0.5, 0.5]),
        length=length,
        prompt=None,
        parents=(a.id, b.id),
        seed=seed,
        mutation=mutation,
    )



# ---------------------------------------------------------------------- textual inversion
TI_KEYS = ("clip_l", "clip_g")  # SDXL textual-inversion convention: one tensor per encoder


def textual_inversion_tensors(noken: tuple[Tensor, ...]) -> dict[str, Tensor]:
    """A noken as an SDXL textual-inversion state dict: `clip_l` `[k, d1]`, `clip_g` `[k, d2]`.

    Load it into a stock pipeline with `load_textual_inversion(sd["clip_l"], token=T,
    text_encoder=pipe.text_encoder, tokenizer=pipe.tokenizer)` and likewise `clip_g` with the
    second encoder and tokenizer."""
    if len(noken) != len(TI_KEYS):
        raise GenomeError(f"a textual inversion needs {len(TI_KEYS)} encoders' vectors, got {len(noken)}")
    return {k: n.detach().to("cpu", torch.float32).contiguous() for k, n in zip(TI_KEYS, noken)}


def textual_inversion_bytes(noken: tuple[Tensor, ...], token: str = "<noken>") -> bytes:
    from safetensors.torch import save

    return save(textual_inversion_tensors(noken), metadata={"token": token, "format": "sdxl-textual-inversion"})
