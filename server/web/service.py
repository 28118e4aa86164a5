"""What the server does, independent of HTTP: genomes, scenes, breeding, keeping, walks, health.

Shared by the websocket endpoint and the REST routes, and the only user of the store and the render
loop. Anything that touches the model runs on the render thread through `RenderLoop.run`; store
access runs in worker threads.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from prometheus_client import GCCollector, PlatformCollector, ProcessCollector
from prometheus_client.exposition import choose_encoder
from prometheus_client.registry import CollectorRegistry

from sdxl_breeder.engine.loop import FrameJob, RenderLoop, Session, encode_image
from sdxl_breeder.model.genome import Genome, GenomeError, breed, textual_inversion_bytes
from sdxl_breeder.protocol import PROTOCOL_VERSION, Corner, ErrorCode, Limits, ProtocolError
from sdxl_breeder.model.renderer import Renderer
from sdxl_breeder.model.scene import Scene, SceneError, scene_from_corners
from sdxl_breeder.spec import FrameSettings
from sdxl_breeder.store import NotFound, Store, StoreFull
from sdxl_breeder.walks.paths import WalkPoint
from sdxl_breeder.walks.walkfile import Walk
from sdxl_breeder.web.quotas import GenomeQuota

log = logging.getLogger("sdxl_breeder.service")

THUMBNAIL_SIZE = 256


@dataclass(frozen=True)
class ResolvedScene:
    scene: Scene
    corners: list[dict[str, Any]]  # [{"genome": id, "prompt": ...}] as replied to clients
    template: str | None


class Service:
    """What the routes ask of the store, in terms of a few model-side methods; a cluster's front
    end shares it (cluster/front.py), answering those methods from its workers."""

    store: Store
    limits: Limits
    model_name: str
    warning: str | None

    async def genome_for_prompt(self, prompt: str, quota: GenomeQuota | None = None) -> Genome:
        raise NotImplementedError

    async def get_genome(self, genome_id: str) -> Genome:
        raise NotImplementedError

    async def scene(self, corners: Sequence[Corner], template: str | None, quota: GenomeQuota | None = None) -> ResolvedScene:
        raise NotImplementedError

    async def render(self, resolved: Any, x: float, y: float, settings: FrameSettings) -> np.ndarray:
        raise NotImplementedError

    def config(self) -> dict[str, Any]:
        return {"model": self.model_name, "warning": self.warning, "limits": self.limits.to_json(), "version": PROTOCOL_VERSION}

    # ------------------------------------------------------------------ genomes
    async def create_genome(self, prompt: str, quota: GenomeQuota | None = None) -> dict[str, Any]:
        genome = await self.genome_for_prompt(prompt, quota)
        return await self.genome_info(genome.id)

    async def list_genomes(self, limit: int, offset: int) -> list[dict[str, Any]]:
        return await asyncio.to_thread(self.store.list_genomes, limit, offset)

    async def genome_info(self, genome_id: str) -> dict[str, Any]:
        try:
            return await asyncio.to_thread(self.store.genome_info, genome_id)
        except NotFound:
            raise ProtocolError(ErrorCode.UNKNOWN_GENOME, f"no genome {genome_id}") from None

    async def delete_genome(self, genome_id: str) -> None:
        try:
            await asyncio.to_thread(self.store.delete_genome, genome_id)
        except NotFound:
            raise ProtocolError(ErrorCode.UNKNOWN_GENOME, f"no genome {genome_id}") from None

    # ------------------------------------------------------------------ walks
    async def save_walk(self, walk: Walk, source: str) -> dict[str, Any]:
        """Store a walk whose genome corners all exist."""
        for gid in walk.genome_ids():
            await self.get_genome(gid)
        try:
            return await asyncio.to_thread(self.store.put_walk, walk, source=source)
        except StoreFull as e:
            raise ProtocolError(ErrorCode.STORE_FULL, str(e)) from None

    async def list_walks(self) -> list[dict[str, Any]]:
        return await asyncio.to_thread(self.store.list_walks)

    async def get_walk(self, walk_id: str) -> Walk:
        try:
            return await asyncio.to_thread(self.store.get_walk, walk_id)
        except NotFound:
            raise ProtocolError(ErrorCode.UNKNOWN_WALK, f"no walk {walk_id}") from None

    async def walk_info(self, walk_id: str) -> dict[str, Any]:
        walk = await self.get_walk(walk_id)
        try:
            info = await asyncio.to_thread(self.store.walk_info, walk_id)
        except NotFound:
            raise ProtocolError(ErrorCode.UNKNOWN_WALK, f"no walk {walk_id}") from None
        return {**info, "walk": walk.to_json()}


class Breeder(Service):
    """The service of one server: its renderer, render loop and store."""

    def __init__(self, renderer: Renderer, loop: RenderLoop, store: Store, limits: Limits, warning: str | None = None) -> None:
        self.renderer = renderer
        self.loop = loop
        self.store = store
        self.limits = limits
        self.warning = warning
        from sdxl_breeder.web.broods import Evolution  # broods.py names this class only for types

        self.evolution = Evolution(self)

        self.metrics_registry = CollectorRegistry()
        self.metrics_registry.register(loop.metrics.registry)  # type: ignore[arg-type]  # a registry is a collector
        for collector in (ProcessCollector, PlatformCollector, GCCollector):
            collector(registry=self.metrics_registry)

    @property
    def model_name(self) -> str:
        return self.renderer.name

    @property
    def video_dir(self) -> Path:
        """Where rendered walk videos are kept (web/videos.py)."""
        return self.store.data_dir / "videos"

    # ------------------------------------------------------------------ service
    def health(self) -> dict[str, Any]:
        ok = self.loop.error is None
        return {"status": "ok" if ok else "failed", "model": self.model_name,
                "sessions": self.loop.session_count(), "warning": self.warning}

    def metrics(self, accept: str | None) -> tuple[bytes, str]:
        """The loop's metrics and the process's and Python's, as Prometheus text or, when `accept`
        asks for it, OpenMetrics."""
        encoder, content_type = choose_encoder(accept or "")
        return encoder(self.metrics_registry), content_type

    # ------------------------------------------------------------------ genomes
    async def _store_genome(self, genome: Genome, quota: GenomeQuota | None) -> dict[str, Any]:
        try:
            info = await asyncio.to_thread(self.store.put_genome, genome)
        except StoreFull as e:
            raise ProtocolError(ErrorCode.STORE_FULL, str(e)) from None
        if quota is not None:
            quota.spend()
        return info

    async def genome_for_prompt(self, prompt: str, quota: GenomeQuota | None = None) -> Genome:
        # A prompt is embedded and stored once; the store finds it again (also after a restart).
        known = await asyncio.to_thread(self.store.find_prompt, prompt)
        if known is not None:
            try:
                genome = await asyncio.to_thread(self.store.get_genome, known)
                self.renderer.check_genome(genome)
                return genome
            except (NotFound, GenomeError):
                pass  # deleted meanwhile, or made by another model: embed anew
        if quota is not None:
            quota.check()
        try:
            genome = await self.loop.run(lambda: self.renderer.genome_from_prompt(prompt))
        except GenomeError as e:
            raise ProtocolError(ErrorCode.BAD_PROMPT, str(e)) from None
        await self._store_genome(genome, quota)
        return genome

    async def get_genome(self, genome_id: str) -> Genome:
        try:
            genome = await asyncio.to_thread(self.store.get_genome, genome_id)
        except NotFound:
            raise ProtocolError(ErrorCode.UNKNOWN_GENOME, f"no genome {genome_id}") from None
        try:
            self.renderer.check_genome(genome)
        except GenomeError as e:
            raise ProtocolError(ErrorCode.UNKNOWN_GENOME, str(e)) from None
        return genome

    async def resolve_corner(self, corner: Corner, quota: GenomeQuota | None = None) -> Genome:
        if corner.genome is not None:
            return await self.get_genome(corner.genome)
        assert corner.prompt is not None
        return await self.genome_for_prompt(corner.prompt, quota)

    async def scene(self, corners: Sequence[Corner], template: str | None, quota: GenomeQuota | None = None) -> ResolvedScene:
        genomes = [await self.resolve_corner(c, quota) for c in corners]  # stored, or embedded and stored
        try:
            scene = await self.loop.run(lambda: scene_from_corners(self.renderer, corners, template, genomes))
        except (SceneError, GenomeError) as e:
            code = ErrorCode.BAD_TEMPLATE if template is not None else ErrorCode.BAD_PROMPT
            raise ProtocolError(code, str(e)) from None
        replies = [{"genome": g.id, "prompt": g.prompt} for g in genomes]
        return ResolvedScene(scene, replies, template)

    async def breed(self, parents: tuple[str, str], seed: int | None, mutation: float,
                    quota: GenomeQuota | None = None) -> dict[str, Any]:
        if quota is not None:
            quota.check()
        a, b = [await self.get_genome(p) for p in parents]
        try:
            child = breed(a, b, seed=seed, mutation=mutation, table_std=self.renderer.table_std)
        except GenomeError as e:
            raise ProtocolError(ErrorCode.BAD_VALUE, str(e)) from None
        return await self._store_genome(child, quota)

    async def keep(self, scene: Scene, x: float, y: float, blend: str, label: str | None,
                   quota: GenomeQuota | None = None) -> dict[str, Any]:
        if quota is not None:
            quota.check()
        genome = scene.genome_at(x, y, blend, prompt=label)
        return await self._store_genome(genome, quota)

    async def textual_inversion(self, genome_id: str) -> bytes:
        genome = await self.get_genome(genome_id)
        if genome.length == 0:
            raise ProtocolError(ErrorCode.BAD_VALUE, f"genome {genome_id} has no tokens to export")
        return textual_inversion_bytes(genome.noken(), token=f"<{genome_id}>")

    # ------------------------------------------------------------------ frames
    def open_session(self) -> Session:
        """A pad's session with the render loop (close it when the pad goes)."""
        return self.loop.open_session()

    async def render(self, resolved: Scene, x: float, y: float, settings: FrameSettings) -> np.ndarray:
        job = FrameJob(resolved, x, y, seq=0, settings=settings)
        try:
            return await self.loop.render_once(job)
        except RuntimeError as e:
            raise ProtocolError(ErrorCode.RENDER_FAILED, str(e)) from None

    async def thumbnail(self, genome_id: str) -> bytes:
        """The genome's own frame (seed 0), rendered once through the loop and then stored."""
        genome = await self.get_genome(genome_id)
        cached = await asyncio.to_thread(self.store.thumbnail, genome_id)
        if cached:
            return cached
        scene = Scene((genome, genome, genome, genome))
        frame = await self.render(scene, 0.0, 0.0, FrameSettings(width=THUMBNAIL_SIZE, height=THUMBNAIL_SIZE))
        jpeg = await asyncio.to_thread(encode_image, frame, "jpeg", 85)
        try:
            await asyncio.to_thread(self.store.set_thumbnail, genome_id, jpeg)
        except NotFound:
            pass  # deleted meanwhile: still answer this request
        return jpeg


class LoopFrames:
    """A walk's frames rendered through the server's loop (a walks.render.FrameSource); half a
    batch at a time, to leave room in each batch for the live pads."""

    def __init__(self, breeder: Service) -> None:
        self.breeder = breeder
        self.batch = max(1, breeder.limits.max_batch // 2)

    async def prepare(self, walk: Walk, settings: FrameSettings) -> None:
        self.scene = (await self.breeder.scene(walk.corners, walk.template)).scene
        self.settings = settings

    async def render(self, points: Sequence[WalkPoint]) -> list[np.ndarray]:
        return list(await asyncio.gather(*(self.breeder.render(self.scene, p.x, p.y, self.settings) for p in points)))
