"""Per-stage timing of one render batch (blend, text encoders, UNet, VAE, to host), off by default.

On CUDA the marks are CUDA events, read after the batch's one host wait, so timing adds no sync;
on a CPU they are `perf_counter` readings.
"""

from __future__ import annotations

import time

import torch

STAGES = ("blend", "text_encoders", "unet", "vae", "to_host")


class StageClock:
    """Set `enabled`; after each batch `last` maps each stage to its milliseconds."""

    def __init__(self, device: torch.device) -> None:
        self.enabled = False
        self.cuda = device.type == "cuda"
        self.last: dict[str, float] = {}
        self._marks: list[tuple[str, object]] = []

    def _now(self) -> object:
        if self.cuda:
            event = torch.cuda.Event(enable_timing=True)
            event.record()
            return event
        return time.perf_counter()

    def start(self) -> None:
        if self.enabled:
            self._marks = [("", self._now())]

    def mark(self, stage: str) -> None:
        if self.enabled:
            self._marks.append((stage, self._now()))

    def stop(self) -> None:
        """Call after the batch's host wait: every event has completed by then."""
        if not self.enabled or not self._marks:
            return
        last: dict[str, float] = {}
        for (_, a), (stage, b) in zip(self._marks, self._marks[1:]):
            if self.cuda:
                ms = a.elapsed_time(b)  # type: ignore[attr-defined]
            else:
                ms = (b - a) * 1000  # type: ignore[operator]
            last[stage] = last.get(stage, 0.0) + ms
        self.last = last
        self._marks = []
