"""Broods: several children bred at once from one to four parents, reproducible from one seed.

Child i is a crossover of two parents (picked by the seed; with one parent, that parent with
itself) plus mutation, exactly as `breed` makes one child. The picks and each child's own seed
come from one `random.Random(seed)`, drawn child after child, so a brood of 9 is the first 9 of
the brood of 16 with the same seed. In noken mode (a template) the parents' nokens are bred, not
their whole prompts: every child is a bare noken, and in the template the children differ only
in the slot.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, replace
from typing import Sequence

from sdxl_breeder.model.genome import Genome, GenomeError, breed
from sdxl_breeder.model.scene import Scene, Template, pad_noken

MAX_PARENTS = 4
SEED_RANGE = 2**32


@dataclass(frozen=True)
class Pick:
    """Which two parents (indices into the parent list) make a child, and the child's own seed."""

    a: int
    b: int
    seed: int


def picks(parents: int, count: int, seed: int) -> list[Pick]:
    """The seed's choice of two distinct parents and a breeding seed for each of `count` children."""
    if not 1 <= parents <= MAX_PARENTS:
        raise GenomeError(f"a brood needs 1 to {MAX_PARENTS} parents, got {parents}")
    if count < 1:
        raise GenomeError(f"a brood needs at least one child, got {count}")
    rng = random.Random(seed)
    out = []
    for _ in range(count):
        a, b = (0, 0) if parents == 1 else rng.sample(range(parents), 2)
        out.append(Pick(a, b, rng.randrange(SEED_RANGE)))
    return out


def bare_noken(genome: Genome, template: Template, length: int) -> Genome:
    """The genome's noken alone (start, noken padded to `length`, end, padding): what noken-mode
    children are bred from, so crossover and mutation touch only what fills the slot."""
    if genome.length == 0:
        raise GenomeError(f"genome {genome.id} has no tokens to breed in noken mode")
    embeds = template.assemble(pad_noken(genome.noken(), length), bare=True)
    return replace(genome, embeds=tuple(e.clone() for e in embeds), pool=((length + 1, 1.0),), length=length)


def breed_brood(
    parents: Sequence[Genome],
    count: int,
    *,
    seed: int,
    mutation: float = 0.0,
    table_std: tuple[float, ...] | None = None,
    template: Template | None = None,
) -> list[Genome]:
    """`count` children of `parents`; each lists the (one or two) parent ids it came from and
    carries the brood's seed. The same inputs give the same children."""
    plan = picks(len(parents), count, seed)
    if template is not None:
        length = max(p.length for p in parents)
        parents = [bare_noken(p, template, length) for p in parents]
    children = []
    for pick in plan:
        a, b = parents[pick.a], parents[pick.b]
        child = breed(a, b, seed=pick.seed, mutation=mutation, table_std=table_std)
        children.append(replace(child, parents=tuple(dict.fromkeys((a.id, b.id))), seed=seed))
    return children


def child_scene(child: Genome, template: Template | None = None) -> Scene:
    """The scene that shows one child: the child at every corner (in noken mode, in the template)."""
    return Scene((child, child, child, child), template)


__all__ = ["MAX_PARENTS", "Pick", "bare_noken", "breed_brood", "child_scene", "picks"]
