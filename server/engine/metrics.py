"""What the render loop counts about itself, as Prometheus metrics (served at /metrics)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.frames = Counter("breeder_frames", "Frames rendered", registry=r)
        self.skipped = Counter("breeder_skipped_states", "Pad states replaced before they were rendered", registry=r)
        self.dropped = Counter("breeder_dropped_frames", "Frames replaced by a newer one before the socket took them", registry=r)
        self.failures = Counter("breeder_render_failures", "Batches whose render raised", registry=r)
        self.batch = Histogram("breeder_batch_size", "Frames per render batch", buckets=(1, 2, 3, 4, 6, 8, 12, 16, 32), registry=r)
        self.render = Histogram(
            "breeder_render_seconds", "Render time of one batch",
            buckets=(0.005, 0.01, 0.02, 0.04, 0.08, 0.15, 0.3, 0.6, 1.2, 2.5, 5, 10), registry=r,
        )
        self.e2e = Histogram(
            "breeder_frame_latency_seconds", "From a move's arrival to its frame being sent",
            buckets=(0.01, 0.02, 0.04, 0.08, 0.15, 0.3, 0.6, 1.2, 2.5, 5, 10, 30), registry=r,
        )
        self.sessions = Gauge("breeder_sessions", "Open websocket sessions", registry=r)
