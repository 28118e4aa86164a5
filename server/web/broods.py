"""Evolve: broods of candidate children, drawn through the render loop, kept until selected.

A brood is bred from one to four parents (stored genomes, or the blend at a session's cursor);
its children are only candidates, held in memory (`BroodBook`) until some are selected and
stored with origin "evolve". Their frames go through the render loop as one backlog of frames,
which the loop spreads over batches so live pads keep their frame rate.
"""

from __future__ import annotations

import asyncio
import secrets
from collections import OrderedDict
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, AsyncIterator, Sequence

from sdxl_breeder.engine.loop import FrameJob, FrameOutput, RenderFailure, Session
from sdxl_breeder.model.brood import breed_brood, child_scene
from sdxl_breeder.model.genome import Genome, GenomeError, new_id
from sdxl_breeder.model.scene import Scene, SceneError, Template
from sdxl_breeder.protocol import CURSOR, ErrorCode, ProtocolError, brood_message
from sdxl_breeder.spec import FrameSettings

if TYPE_CHECKING:
    from sdxl_breeder.web.service import Breeder


@dataclass(frozen=True)
class Brood:
    """One brood: what it was bred from and its candidate children (not stored)."""

    id: str
    parents: tuple[str, ...]  # as asked: genome ids and CURSOR
    seed: int
    mutation: float
    generation: int  # of every child: one more than the highest among the parents
    children: tuple[Genome, ...]
    template: Template | None
    settings: FrameSettings
    jpegs: list[bytes | None] = field(default_factory=list)  # kept for the REST API only

    @property
    def count(self) -> int:
        return len(self.children)

    def message(self) -> dict[str, Any]:
        return brood_message(self.id, self.generation, self.seed, self.count, list(self.parents), self.mutation)

    def child(self, index: int, path: str = "child") -> Genome:
        if not 0 <= index < self.count:
            raise ProtocolError(ErrorCode.BAD_VALUE,
                                f"{path} is {index}; brood {self.id} has {self.count} children (0 to {self.count - 1})")
        return self.children[index]


class BroodBook:
    """The newest `capacity` broods by id; adding one more forgets the oldest."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._broods: OrderedDict[str, Brood] = OrderedDict()

    def add(self, brood: Brood) -> None:
        self._broods[brood.id] = brood
        while len(self._broods) > self.capacity:
            self._broods.popitem(last=False)

    def get(self, brood_id: str) -> Brood:
        brood = self._broods.get(brood_id)
        if brood is None:
            raise ProtocolError(ErrorCode.UNKNOWN_BROOD,
                                f"no brood {brood_id} (only the newest {self.capacity} are kept, and only where they were made)")
        return brood

    def __len__(self) -> int:
        return len(self._broods)


@dataclass(frozen=True)
class Cursor:
    """Where a session stands, for a CURSOR parent: its scene (None before corners) and position."""

    scene: Scene | None
    x: float
    y: float
    blend: str


class Evolution:
    """Breeds broods, draws their frames through the render loop, stores the selected children."""

    def __init__(self, breeder: Breeder) -> None:
        self.breeder = breeder
        self.api_book = BroodBook(breeder.limits.max_api_broods)  # broods made over REST

    async def template(self, text: str) -> Template:
        renderer = self.breeder.renderer
        try:
            return await self.breeder.loop.run(lambda: renderer.template(text))
        except (GenomeError, SceneError) as e:
            raise ProtocolError(ErrorCode.BAD_TEMPLATE, str(e)) from None

    async def _parents(self, asked: Sequence[str], cursor: Cursor | None) -> list[Genome]:
        genomes = []
        for i, parent in enumerate(asked):
            if parent != CURSOR:
                genomes.append(await self.breeder.get_genome(parent))
            elif cursor is None or cursor.scene is None:
                raise ProtocolError(ErrorCode.NO_CORNERS,
                                    f'parents[{i}] is "{CURSOR}": send corners and move before breeding from the cursor')
            else:
                genomes.append(cursor.scene.genome_at(cursor.x, cursor.y, cursor.blend))
        return genomes

    async def breed(
        self,
        parents: Sequence[str],
        count: int,
        mutation: float,
        seed: int | None,
        settings: FrameSettings,
        *,
        template: Template | None = None,
        cursor: Cursor | None = None,
    ) -> Brood:
        """A new brood (nothing stored). Children list the stored genomes they came from: a
        CURSOR parent stands for the corners that weigh in at the cursor."""
        genomes = await self._parents(parents, cursor)
        seed = secrets.randbelow(2**32) if seed is None else seed
        stands_for = {g.id: g.parents if p == CURSOR else (g.id,) for p, g in zip(parents, genomes)}
        renderer = self.breeder.renderer

        def make() -> list[Genome]:
            children = breed_brood(genomes, count, seed=seed, mutation=mutation, table_std=renderer.table_std,
                                   template=template)
            for child in children:  # in noken mode the slot must fit the template (it does if the parents fit)
                child_scene(child, template)
            return children

        try:
            children = await asyncio.to_thread(make)
        except (GenomeError, SceneError) as e:
            raise ProtocolError(ErrorCode.BAD_VALUE, str(e)) from None
        children = [replace(c, parents=tuple(dict.fromkeys(i for p in c.parents for i in stands_for[p])))
                    for c in children]
        every_parent = list(dict.fromkeys(i for ids in stands_for.values() for i in ids))
        generation = await asyncio.to_thread(self.breeder.store.generation, every_parent)
        return Brood(new_id(), tuple(parents), seed, mutation, generation, tuple(children), template,
                     replace(settings, corner_seeds=None))

    async def draw(self, brood: Brood, pad: Session | None = None) -> AsyncIterator[FrameOutput]:
        """Each child's frame (JPEG, at the brood's quality), in child order. The children go to
        the loop as one backlog beside `pad`, the session that asked; RuntimeError if a render fails."""
        jobs = [FrameJob(child_scene(c, brood.template), 0.0, 0.0, 0, brood.settings, brood=brood.id, child=i)
                for i, c in enumerate(brood.children)]
        with self.breeder.loop.open_backlog(pad) as session:
            session.submit_all(jobs)
            ready: dict[int, FrameOutput] = {}  # JPEG encoding may finish out of order
            for child in range(brood.count):
                while child not in ready:
                    out = await session.next()
                    if not isinstance(out, FrameOutput):
                        raise RuntimeError(out.message if isinstance(out, RenderFailure) else "render failed")
                    ready[out.job.child or 0] = out
                yield ready.pop(child)

    async def select(self, brood: Brood, children: Sequence[int], path: str = "select.children") -> list[dict[str, Any]]:
        """Store the chosen children (all indices checked first); selecting one again returns it."""
        chosen = [(i, brood.child(i, f"{path}[{k}]")) for k, i in enumerate(children)]
        store = self.breeder.store
        return [await asyncio.to_thread(store.put_genome, child, origin="evolve", child=i) for i, child in chosen]


__all__ = ["Brood", "BroodBook", "Cursor", "Evolution"]
