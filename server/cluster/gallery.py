"""The one owner of the store: a single-replica deployment every front end and worker calls.

SQLite and the genome files live with it (on the node that has `--data-dir`), so genomes, lineage
and walks stay consistent however many render workers and front ends run. It also keeps the
newest statistics each render worker reports, for `/healthz` and `/metrics`.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from typing import Any

from ray import serve
from ray.serve.handle import DeploymentHandle

from sdxl_breeder.cluster.remote import call_sync
from sdxl_breeder.model.genome import Genome
from sdxl_breeder.store import Store
from sdxl_breeder.walks.walkfile import Walk

WORKER_GONE_S = 30.0  # a worker silent this long is dropped from the statistics


class Gallery:
    """The deployment: the Store's methods, called remotely."""

    def __init__(self, data_dir: str) -> None:
        self.store = Store(data_dir)
        self.workers: dict[str, dict[str, Any]] = {}

    def find_prompt(self, prompt: str) -> str | None:
        return self.store.find_prompt(prompt)

    def has_genome(self, genome_id: str) -> bool:
        return self.store.has_genome(genome_id)

    def get_genome(self, genome_id: str) -> Genome:
        return self.store.get_genome(genome_id)

    def put_genome(self, genome: Genome, thumbnail: bytes | None = None) -> dict[str, Any]:
        return self.store.put_genome(genome, thumbnail)

    def genome_info(self, genome_id: str) -> dict[str, Any]:
        return self.store.genome_info(genome_id)

    def list_genomes(self, limit: int = 200, offset: int = 0) -> list[dict[str, Any]]:
        return self.store.list_genomes(limit, offset)

    def delete_genome(self, genome_id: str) -> None:
        self.store.delete_genome(genome_id)

    def thumbnail(self, genome_id: str) -> bytes | None:
        return self.store.thumbnail(genome_id)

    def set_thumbnail(self, genome_id: str, jpeg: bytes) -> None:
        self.store.set_thumbnail(genome_id, jpeg)

    def put_walk(self, walk: Walk, *, name: str | None = None, source: str = "api") -> dict[str, Any]:
        return self.store.put_walk(walk, name=name, source=source)

    def get_walk(self, walk_id: str) -> Walk:
        return self.store.get_walk(walk_id)

    def walk_info(self, walk_id: str) -> dict[str, Any]:
        return self.store.walk_info(walk_id)

    def list_walks(self, limit: int = 200, offset: int = 0) -> list[dict[str, Any]]:
        return self.store.list_walks(limit, offset)

    def delete_walk(self, walk_id: str) -> None:
        self.store.delete_walk(walk_id)

    def counts(self) -> dict[str, int]:
        return self.store.counts()

    # ------------------------------------------------------------------ worker statistics
    def report(self, stats: dict[str, Any]) -> None:
        self.workers[stats["worker"]] = {**stats, "seen": time.time()}

    def worker_stats(self) -> list[dict[str, Any]]:
        """Each worker's newest report with `age_s`, the seconds since it came."""
        now = time.time()
        for worker in [w for w, s in self.workers.items() if now - s["seen"] > WORKER_GONE_S]:
            del self.workers[worker]
        return [{**s, "age_s": round(now - s["seen"], 3)} for s in self.workers.values()]


# One replica, on the head node: `--data-dir` is a path on that machine (a volume, on Kubernetes).
GalleryDeployment = serve.deployment(
    Gallery, name="Gallery", num_replicas=1, max_ongoing_requests=256,
    ray_actor_options={"num_cpus": 0, "resources": {"node:__internal_head__": 0.001}},
)

GENOME_CACHE = 256  # genomes a process keeps (a few MB at most with SDXL's widths)


class GalleryClient:
    """The Store's interface for code that expects one (the service, the REST routes), answered
    by the Gallery deployment. Blocking, like Store: call it from worker threads. Genomes are
    cached by id (a genome's tensors never change); a cached genome is still checked to exist."""

    def __init__(self, handle: DeploymentHandle) -> None:
        self.handle = handle
        self._genomes: OrderedDict[str, Genome] = OrderedDict()

    def __getattr__(self, method: str) -> Any:
        if method.startswith("_") or not hasattr(Gallery, method):
            raise AttributeError(method)
        remote = getattr(self.handle, method)
        return lambda *args, **kwargs: call_sync(remote.remote(*args, **kwargs))

    def get_genome(self, genome_id: str) -> Genome:
        cached = self._genomes.get(genome_id)
        if cached is not None and self.has_genome(genome_id):
            self._genomes.move_to_end(genome_id)
            return cached
        genome = call_sync(self.handle.get_genome.remote(genome_id))
        self._genomes[genome_id] = genome
        while len(self._genomes) > GENOME_CACHE:
            self._genomes.popitem(last=False)
        return genome

    def close(self) -> None:
        pass  # the deployment owns the store
