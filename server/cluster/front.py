"""The front end: the app of `serve` (the page, REST, /ws) as a Serve ingress, backed by workers.

REST requests go to any render worker (the least loaded); websocket sessions are sticky
(pad.py). `/healthz` and `/metrics` add up what each worker reports to the Gallery.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from ray import serve
from ray.serve.handle import DeploymentHandle
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Mount, Route

from sdxl_breeder import protocol as p
from sdxl_breeder.cluster.gallery import GalleryClient
from sdxl_breeder.cluster.pad import ClusterPad
from sdxl_breeder.cluster.remote import call
from sdxl_breeder.cluster.worker import SceneRef
from sdxl_breeder.model.genome import Genome
from sdxl_breeder.spec import Corner, FrameSettings
from sdxl_breeder.web.app import Security, create_app, error
from sdxl_breeder.web.serve import ServeOptions
from sdxl_breeder.web.quotas import GenomeQuota, counted
from sdxl_breeder.web.service import ResolvedScene, Service

ALIVE_S = 5.0  # a worker that reported within this many seconds counts as up


class FrontMetrics:
    """What this front end counts itself (the workers count frames and batches)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.dropped = Counter("breeder_dropped_frames", "Frames replaced by a newer one before the socket took them",
                               registry=self.registry)
        self.sessions = Gauge("breeder_front_sessions", "Open websocket sessions on this front end", registry=self.registry)


class ClusterBreeder(Service):
    """The service the routes call (web/service.py's Breeder), answered by the render workers."""

    def __init__(self, render: DeploymentHandle, gallery: DeploymentHandle, info: dict[str, Any]) -> None:
        self.render_workers = render
        self.gallery = gallery
        self.store = GalleryClient(gallery)
        self.limits = p.Limits(max_batch=info["max_batch"])
        self.model_name: str = info["model"]
        self.warning: str | None = info["warning"]
        self.metrics = FrontMetrics()

    async def genome_for_prompt(self, prompt: str, quota: GenomeQuota | None = None) -> Genome:
        return await counted(quota, lambda: call(self.render_workers.genome_for_prompt.remote(prompt)))

    async def get_genome(self, genome_id: str) -> Genome:
        return await call(self.render_workers.get_genome.remote(genome_id))

    async def scene(self, corners: Sequence[Corner], template: str | None, quota: GenomeQuota | None = None) -> ResolvedScene:
        # the workers store new corner prompts without saying which were new: not counted here
        ref, replies = await call(self.render_workers.resolve.remote(list(corners), template))
        return ResolvedScene(ref, replies, template)  # the scene by reference: workers build it

    async def breed(self, parents: tuple[str, str], seed: int | None, mutation: float,
                    quota: GenomeQuota | None = None) -> dict[str, Any]:
        return await counted(quota, lambda: call(self.render_workers.breed.remote(parents, seed, mutation)))

    async def keep(self, scene: SceneRef, x: float, y: float, blend: str, label: str | None,
                   quota: GenomeQuota | None = None) -> dict[str, Any]:
        return await counted(quota, lambda: call(self.render_workers.keep.remote(scene, x, y, blend, label)))

    async def textual_inversion(self, genome_id: str) -> bytes:
        return await call(self.render_workers.textual_inversion.remote(genome_id))

    async def render(self, scene: SceneRef, x: float, y: float, settings: FrameSettings) -> np.ndarray:
        return await call(self.render_workers.render.remote(scene, x, y, settings))

    async def thumbnail(self, genome_id: str) -> bytes:
        return await call(self.render_workers.thumbnail.remote(genome_id))


class WorkerCollector:
    """Prometheus metrics from the workers' newest reports, one series per worker."""

    def __init__(self, stats: list[dict[str, Any]]) -> None:
        self.stats = stats

    def collect(self) -> Any:
        families = [
            (GaugeMetricFamily, "breeder_worker_sessions", "Pad sessions on the worker", "sessions"),
            (CounterMetricFamily, "breeder_worker_frames", "Frames the worker rendered", "frames"),
            (CounterMetricFamily, "breeder_worker_batches", "Batches the worker rendered", "batches"),
            (GaugeMetricFamily, "breeder_worker_mean_batch", "Mean frames per batch on the worker", "mean_batch"),
            (GaugeMetricFamily, "breeder_worker_fps", "Frames per second on the worker, last 5 s", "fps"),
            (CounterMetricFamily, "breeder_worker_render_failures", "Batches whose render raised", "failures"),
            (GaugeMetricFamily, "breeder_worker_up", "1 if the worker reported within 5 s", "up"),
        ]
        for kind, name, doc, key in families:
            family = kind(name, doc, labels=["worker"])
            for s in self.stats:
                family.add_metric([s["worker"]], float(s.get(key) or 0))
            yield family


def _with_up(stats: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{**s, "up": s["age_s"] <= ALIVE_S and s.get("error") is None} for s in stats]


def create_cluster_app(breeder: ClusterBreeder, security: Security) -> Starlette:
    """The app of `serve`, its pad sessions on the workers, /healthz and /metrics for the cluster."""

    async def worker_stats() -> list[dict[str, Any]]:
        return _with_up(await call(breeder.gallery.worker_stats.remote()))

    async def healthz(request: Request) -> Response:
        workers = await worker_stats()
        up = [w for w in workers if w["up"]]
        status = "ok" if up and len(up) == len(workers) else "degraded" if up else "failed"
        keys = ("worker", "up", "sessions", "fps", "mean_batch", "frames", "device", "node", "pid", "error")
        return JSONResponse(
            {"status": status, "model": breeder.model_name, "sessions": sum(w["sessions"] for w in up),
             "warning": breeder.warning, "workers": [{k: w.get(k) for k in keys} for w in workers]},
            status_code=200 if up else 503,
        )

    async def metrics(request: Request) -> Response:
        if not security.token_ok(request):
            return error(p.ErrorCode.UNAUTHORIZED, "missing or wrong token (use ?token= or Authorization: Bearer)")
        workers = CollectorRegistry()
        workers.register(WorkerCollector(await worker_stats()))
        return Response(generate_latest(breeder.metrics.registry) + generate_latest(workers), media_type=CONTENT_TYPE_LATEST)

    app = create_app(breeder, security, pad_socket=ClusterPad)  # type: ignore[arg-type] — duck-typed service
    return Starlette(routes=[Route("/healthz", healthz), Route("/metrics", metrics), Mount("/", app=app)])


@serve.ingress()
class FrontEnd:
    """The ingress deployment: as many replicas as wanted; each websocket is one of its requests."""

    async def __init__(self, render: DeploymentHandle, gallery: DeploymentHandle, opts: ServeOptions) -> None:
        info = await call(render.info.remote())
        self.breeder = ClusterBreeder(render, gallery, info)
        self.security = Security.for_bind(opts.host, opts.token, opts.allow_hosts, opts.allow_origins)

    def __serve_build_asgi_app__(self) -> Starlette:
        return create_cluster_app(self.breeder, self.security)

