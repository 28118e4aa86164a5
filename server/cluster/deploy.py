"""`sdxl-breeder serve --ray`: start or join Ray and deploy the Gallery, render workers and front ends."""

from __future__ import annotations

import logging
import signal
import time
from dataclasses import dataclass, fields
from pathlib import Path

from sdxl_breeder.web.serve import ServeError, ServeOptions, bind, check_security

log = logging.getLogger("sdxl_breeder.cluster")

APP_NAME = "sdxl-breeder"
REQUEST_HEADROOM = 32  # a worker's ongoing requests beyond its sessions' streams and moves (REST)
FRONT_END_REQUESTS = 4096  # a front end's ongoing requests: one per open websocket, plus REST
# Pad sessions are long-lived requests that never finish on their own: a replica being stopped
# waits this long, then its sockets and sessions are cut (clients reconnect or are re-placed).
SHUTDOWN = {"graceful_shutdown_timeout_s": 2.0, "graceful_shutdown_wait_loop_s": 0.5}
QUIET = {"logging_config": {"enable_access_log": False}}  # not a log line per move


@dataclass(frozen=True)
class ClusterOptions:
    address: str | None = None  # a Ray cluster to join; None starts a local Ray instance
    replicas: int | None = None  # render workers; None: one per GPU (one where there is none)
    gpus_per_replica: float | None = None  # None: 1 where the cluster has GPUs, else 0
    cpus_per_replica: float = 1.0
    front_ends: int = 1
    sessions_per_replica: int = 32

    def check(self) -> None:
        if self.replicas is not None and self.replicas < 1:
            raise ServeError("--replicas must be at least 1")
        if self.gpus_per_replica is not None and self.gpus_per_replica < 0:
            raise ServeError("--gpus-per-replica must be 0 or more")
        if self.cpus_per_replica < 0:
            raise ServeError("--cpus-per-replica must be 0 or more")
        if self.front_ends < 1:
            raise ServeError("--front-ends must be at least 1")
        if self.sessions_per_replica < 1:
            raise ServeError("--sessions-per-replica must be at least 1")

    def placement(self, cluster_gpus: float) -> tuple[int, float]:
        """(render workers, GPUs each) for a cluster with `cluster_gpus` GPUs."""
        gpus = self.gpus_per_replica if self.gpus_per_replica is not None else (1.0 if cluster_gpus else 0.0)
        replicas = self.replicas if self.replicas is not None else max(1, int(cluster_gpus // gpus) if gpus else 1)
        return replicas, gpus


def application(opts: ServeOptions, copts: ClusterOptions, cluster_gpus: float = 0.0):  # -> ray.serve.Application
    """The deployment graph: FrontEnd → RenderWorker (sticky routing) → Gallery."""
    from ray import serve
    from ray.serve.config import RequestRouterConfig

    from sdxl_breeder.cluster.front import FrontEnd
    from sdxl_breeder.cluster.gallery import GalleryDeployment
    from sdxl_breeder.cluster.routing import StickyRouter
    from sdxl_breeder.cluster.worker import RenderWorker

    replicas, gpus = copts.placement(cluster_gpus)
    gallery = GalleryDeployment.options(**QUIET).bind(str(Path(opts.data_dir).resolve()))
    render = serve.deployment(RenderWorker, name="RenderWorker").options(
        num_replicas=replicas,
        # Each pad session holds one streaming request on its worker and has at most one move in
        # flight: the limit must let every session's stream and move through, plus REST calls.
        max_ongoing_requests=2 * copts.sessions_per_replica + REQUEST_HEADROOM,
        ray_actor_options={"num_cpus": copts.cpus_per_replica, "num_gpus": gpus},
        request_router_config=RequestRouterConfig(request_router_class=StickyRouter),
        **SHUTDOWN, **QUIET,
    ).bind(gallery, opts, copts.sessions_per_replica)
    front = serve.deployment(FrontEnd, name="FrontEnd").options(
        num_replicas=copts.front_ends,
        max_ongoing_requests=FRONT_END_REQUESTS,
        ray_actor_options={"num_cpus": 0},
        **SHUTDOWN, **QUIET,
    ).bind(render, gallery, opts)
    return front


def build_app(args: dict[str, str]):  # -> ray.serve.Application
    """For `serve run sdxl_breeder.cluster.deploy:build_app model=… replicas=…` and KubeRay's
    RayService: the same application from `key=value` arguments named like serve's options."""
    serve_fields = {f.name: f.type for f in fields(ServeOptions)}
    cluster_fields = {f.name: f.type for f in fields(ClusterOptions)}
    values: dict[str, dict[str, object]] = {"serve": {}, "cluster": {}}
    for key, raw in args.items():
        name = key.replace("-", "_")
        kind = "serve" if name in serve_fields else "cluster" if name in cluster_fields and name != "address" else None
        if kind is None:
            raise ValueError(f"unknown argument {key!r}; use serve's option names ({', '.join(sorted({*serve_fields, *cluster_fields} - {'address'}))})")
        values[kind][name] = _parse(name, str(raw), (serve_fields if kind == "serve" else cluster_fields)[name])
    opts, copts = ServeOptions(**values["serve"]), ClusterOptions(**values["cluster"])  # type: ignore[arg-type]
    copts.check()
    import ray

    gpus = ray.cluster_resources().get("GPU", 0.0) if ray.is_initialized() else 0.0
    return application(opts, copts, gpus)


def _parse(name: str, raw: str, kind: str) -> object:
    try:
        if name == "data_dir":
            return Path(raw)
        if name == "allow_origins":
            return tuple(o for o in raw.split(",") if o)
        if "bool" in kind:
            return raw.lower() in ("1", "true", "yes", "on")
        if "int" in kind:
            return int(raw)
        if "float" in kind:
            return float(raw)
    except ValueError:
        raise ValueError(f"{name}={raw!r} is not a valid {kind.split('|')[0].strip()}") from None
    return raw


def deploy(opts: ServeOptions, copts: ClusterOptions) -> None:
    """Deploy onto the Ray instance this process is connected to; returns when all replicas are up."""
    import ray
    from ray import serve

    cluster_gpus = ray.cluster_resources().get("GPU", 0.0)
    replicas, gpus = copts.placement(cluster_gpus)
    if gpus * replicas > cluster_gpus and copts.address is None:
        raise ServeError(f"{replicas} render workers × {gpus:g} GPUs need {replicas * gpus:g} GPUs; this machine has {cluster_gpus:g}")
    log.info("deploying %d render worker(s) (%g GPU, %g CPU each), %d front end(s) …",
             replicas, gpus, copts.cpus_per_replica, copts.front_ends)
    serve.start(http_options={"host": opts.host, "port": opts.port})
    serve.run(application(opts, copts, cluster_gpus), name=APP_NAME, route_prefix="/")


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def serve_ray(opts: ServeOptions, copts: ClusterOptions) -> None:
    check_security(opts)
    copts.check()
    if not 1 <= opts.max_batch <= 64:
        raise ServeError("--max-batch must be within [1, 64]")
    if opts.threads is not None and opts.threads < 1:
        raise ServeError("--threads must be at least 1")
    bind(opts.host, opts.port).close()  # a taken port or a wrong --host fails now, not after Ray starts
    try:
        import ray
        from ray import serve
    except ImportError:
        raise ServeError("--ray needs Ray Serve: pip install 'sdxl-breeder[ray]'") from None
    try:
        ray.init(address=copts.address)
    except (ConnectionError, RuntimeError, ValueError) as e:
        raise ServeError(f"cannot start or reach Ray ({copts.address or 'local'}): {str(e).splitlines()[0]}") from None
    # SIGTERM (a service manager, `kill`) stops it as Ctrl-C does: the application and a local
    # Ray instance are shut down, not left running.
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        deploy(opts, copts)
        shown = "localhost" if opts.host in ("127.0.0.1", "::1") else opts.host
        log.info("SDXL Breeder on http://%s:%d/ (Ray Serve; data in %s); Ctrl-C stops it", shown, opts.port, opts.data_dir)
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        if copts.address is None:
            serve.shutdown()
        else:
            serve.delete(APP_NAME)
        ray.shutdown()
