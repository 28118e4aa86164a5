"""A render worker: one replica per GPU, with its own model copy and batched latest-wins loop.

The front end places a pad session on a worker when the pad's corners are set; the session's
frames then stream back over one long call (`session`), and its moves arrive as short calls
(`move`) routed to the same worker (routing.py). Everything else (prompts, breeding, REST
renders, thumbnails) is stateless and may run on any worker. Genomes come from the Gallery by id
and are cached with the scenes built from them.
"""

from __future__ import annotations

import asyncio
import collections
import json
import logging
import os
import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, AsyncIterator

import numpy as np
from ray import serve
from ray.serve.handle import DeploymentHandle

from sdxl_breeder import protocol as p
from sdxl_breeder.cluster.gallery import GalleryClient
from sdxl_breeder.engine.loop import FrameJob, FrameOutput, LoopStopped, Outbox, RenderFailure, RenderLoop
from sdxl_breeder.model.genome import Genome
from sdxl_breeder.model.scene import Scene
from sdxl_breeder.spec import Corner, FrameSettings
from sdxl_breeder.web.serve import ServeOptions
from sdxl_breeder.web.ws import frame_message

log = logging.getLogger("sdxl_breeder.cluster")

SCENE_CACHE = 128  # scenes a worker keeps built (each holds four genomes)
REPORT_S = 1.0  # how often a worker reports its statistics to the Gallery
FPS_WINDOW_S = 5.0


@dataclass(frozen=True)
class SceneRef:
    """A scene by its corner genome ids (and noken template): what travels between processes."""

    genomes: tuple[str, str, str, str]
    template: str | None = None


@dataclass(frozen=True)
class Want:
    """A pad's newest wanted frame, as the front end sends it to the session's worker."""

    scene: SceneRef
    x: float
    y: float
    seq: int
    settings: FrameSettings


class WorkerSession:
    """A pad session on this worker: its frames become frame messages here, header and all, and
    wait in a one-frame outbox (newest wins) for the session's stream to take them; errors for
    the pad (a failed render, a deleted corner genome) wait there too, as JSON text."""

    def __init__(self, worker: str, loop: RenderLoop) -> None:
        self.outbox = Outbox()
        self.session = loop.open_session()
        self._extra = {"worker": worker}

    async def pump(self) -> None:
        """Move the loop session's results into the outbox, as the front end will send them."""
        while True:
            out = await self.session.next()
            if isinstance(out, FrameOutput):
                self.outbox.put(frame_message(out, self._extra))
                self.session.sent(out)
            elif isinstance(out, RenderFailure):
                self.outbox.put(json.dumps(p.error_message(p.ErrorCode.RENDER_FAILED, out.message)))


class RenderWorker:
    """The deployment class (deploy.py sets its replicas, GPUs and routing)."""

    def __init__(self, gallery: DeploymentHandle, opts: ServeOptions, max_sessions: int) -> None:
        import torch

        from sdxl_breeder.model.renderer import Renderer
        from sdxl_breeder.web.serve import compile_renderer
        from sdxl_breeder.web.service import Breeder

        self.worker = serve.get_replica_context().replica_id.unique_id
        if opts.threads is not None:
            torch.set_num_threads(opts.threads)
        model = opts.load()
        self.renderer = Renderer(model)
        self.loop = RenderLoop(self.renderer, max_batch=opts.max_batch)
        self.gallery = gallery
        self.breeder = Breeder(self.renderer, self.loop, GalleryClient(gallery), p.Limits(max_batch=opts.max_batch),  # type: ignore[arg-type]
                               model.warning)
        self.loop.start()
        if opts.compile:  # cached in --data-dir/compile-cache on this worker's node, as serve does
            compile_renderer(self.renderer, self.loop, opts.max_batch, Path(opts.data_dir) / "compile-cache")
        self.device = str(model.device)
        self.max_sessions = max_sessions
        self.sessions: dict[str, WorkerSession] = {}
        self.scenes: collections.OrderedDict[SceneRef, Scene] = collections.OrderedDict()
        self._frames: collections.deque[tuple[float, float]] = collections.deque()
        self._stopping = threading.Event()
        threading.Thread(target=self._report_forever, name="worker-stats", daemon=True).start()
        log.info("render worker %s ready (model %s on %s)", self.worker, model.name, model.device)

    # ------------------------------------------------------------------ pad sessions (sticky)
    async def session(self, key: str) -> AsyncIterator[bytes | str]:
        """A pad session's frames, for as long as the front end reads them. The first item is
        this worker's id: the front end sends the session's moves here (`worker=`)."""
        if len(self.sessions) >= self.max_sessions:
            raise p.ProtocolError(p.ErrorCode.TOO_LARGE, f"render worker {self.worker} has {len(self.sessions)} pad "
                                  "sessions, its limit (serve --sessions-per-replica)")
        ws = WorkerSession(self.worker, self.loop)
        pump = asyncio.create_task(ws.pump())
        self.sessions[key] = ws
        try:
            yield self.worker
            while True:
                yield await ws.outbox.get()
        finally:
            self.sessions.pop(key, None)
            pump.cancel()
            ws.session.close()

    async def move(self, key: str, want: Want, *, worker: str) -> bool:
        """The session's newest wanted frame (latest wins); False if the session is not here."""
        ws = self.sessions.get(key)
        if ws is None or worker != self.worker:
            return False
        try:
            scene = await self._scene(want.scene)
        except p.ProtocolError as e:  # a corner genome deleted meanwhile, say
            ws.outbox.put(json.dumps(e.to_json()))
            return True
        try:
            ws.session.submit(FrameJob(scene, want.x, want.y, want.seq, want.settings))
        except LoopStopped as e:
            ws.outbox.put(json.dumps(p.error_message(p.ErrorCode.RENDER_FAILED, str(e))))
        return True

    # ------------------------------------------------------------------ stateless (any worker)
    async def resolve(self, corners: list[Corner], template: str | None) -> tuple[SceneRef, list[dict[str, Any]]]:
        """Corners (prompts are embedded and stored) → the scene's genome ids and the corners reply."""
        resolved = await self.breeder.scene(corners, template)
        ref = SceneRef(tuple(c["genome"] for c in resolved.corners), template)  # type: ignore[arg-type]
        self._remember(ref, resolved.scene)
        return ref, resolved.corners

    async def render(self, ref: SceneRef, x: float, y: float, settings: FrameSettings) -> np.ndarray:
        return await self.breeder.render(await self._scene(ref), x, y, settings)

    async def keep(self, ref: SceneRef, x: float, y: float, blend: str, label: str | None) -> dict[str, Any]:
        return await self.breeder.keep(await self._scene(ref), x, y, blend, label)

    async def breed(self, parents: tuple[str, str], seed: int | None, mutation: float) -> dict[str, Any]:
        return await self.breeder.breed(parents, seed, mutation)

    async def genome_for_prompt(self, prompt: str) -> Genome:
        return await self.breeder.genome_for_prompt(prompt)

    async def get_genome(self, genome_id: str) -> Genome:
        return await self.breeder.get_genome(genome_id)

    async def textual_inversion(self, genome_id: str) -> bytes:
        return await self.breeder.textual_inversion(genome_id)

    async def thumbnail(self, genome_id: str) -> bytes:
        return await self.breeder.thumbnail(genome_id)

    def info(self) -> dict[str, Any]:
        return {"worker": self.worker, "model": self.renderer.name, "warning": self.breeder.warning,
                "max_batch": self.loop.max_batch}

    # ------------------------------------------------------------------ scenes
    async def _scene(self, ref: SceneRef) -> Scene:
        scene = self.scenes.get(ref)
        if scene is not None:
            self.scenes.move_to_end(ref)
            return scene
        resolved = await self.breeder.scene([Corner(genome=g) for g in ref.genomes], ref.template)
        self._remember(ref, resolved.scene)
        return resolved.scene

    def _remember(self, ref: SceneRef, scene: Scene) -> None:
        self.scenes[ref] = scene
        while len(self.scenes) > SCENE_CACHE:
            self.scenes.popitem(last=False)

    # ------------------------------------------------------------------ health and statistics
    def check_health(self) -> None:
        """Serve calls this periodically; raising makes it replace the replica."""
        if self.loop.error is not None:
            raise RuntimeError(f"the render loop stopped: {self.loop.error}")

    def stats(self) -> dict[str, Any]:
        reg = self.loop.metrics.registry
        value = lambda name: reg.get_sample_value(name) or 0.0  # noqa: E731
        now, frames = time.monotonic(), value("breeder_frames_total")
        self._frames.append((now, frames))
        while len(self._frames) > 2 and now - self._frames[0][0] > FPS_WINDOW_S:
            self._frames.popleft()
        t0, f0 = self._frames[0]
        batches = value("breeder_batch_size_count")
        return {
            "worker": self.worker,
            "pid": os.getpid(),
            "node": socket.gethostname(),
            "device": self.device,
            "sessions": self.loop.session_count(),
            "frames": int(frames),
            "batches": int(batches),
            "mean_batch": round(value("breeder_batch_size_sum") / batches, 3) if batches else None,
            "fps": round((frames - f0) / (now - t0), 3) if now > t0 else 0.0,
            "failures": int(value("breeder_render_failures_total")),
            "error": None if self.loop.error is None else str(self.loop.error),
        }

    def _report_forever(self) -> None:
        while not self._stopping.wait(REPORT_S):
            try:
                self.gallery.report.remote(self.stats()).result(timeout_s=10)
            except Exception as e:  # noqa: BLE001 — the Gallery restarting: report again later
                log.debug("worker %s could not report: %s", self.worker, e)

    def __del__(self) -> None:
        self._stopping.set()
        self.loop.stop()
