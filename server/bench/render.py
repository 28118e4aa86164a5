"""The renderer and naive-pipeline phases of `sdxl-breeder bench`, and what they record about
the machine: CPU share used by other processes, versions, device."""

from __future__ import annotations

import os
import platform
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch

from sdxl_breeder.bench.clients import PROMPTS, _r, pad_point, percentile
from sdxl_breeder.model.renderer import FrameRequest
from sdxl_breeder.spec import FrameSettings

class CpuMeter:
    """The share of the machine's CPU time other processes used while a phase ran (Linux; None
    elsewhere): benchmarks on a shared machine say how shared it was."""

    def __init__(self) -> None:
        self.start = self._read()

    @staticmethod
    def _read() -> tuple[int, int, int] | None:
        try:
            cpu = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
            own = Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()
            return sum(cpu), cpu[3] + cpu[4], int(own[11]) + int(own[12])  # total, idle+iowait, utime+stime
        except (OSError, ValueError, IndexError):
            return None

    def other_load(self) -> float | None:
        end = self._read()
        if self.start is None or end is None:
            return None
        total, idle, own = (b - a for a, b in zip(self.start, end))
        return _r(max(0.0, (total - idle - own) / total), 2) if total > 0 else None


def synchronizer(device: torch.device) -> Callable[[], None]:
    if device.type == "cuda":
        return lambda: torch.cuda.synchronize(device)
    if device.type == "mps":
        return lambda: torch.mps.synchronize()
    return lambda: None


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _version(module: str) -> str | None:
    try:
        from importlib.metadata import version

        return version(module)
    except Exception:  # noqa: BLE001
        return None


def machine_info(device: torch.device, dtype: torch.dtype, vae_dtype: torch.dtype) -> dict[str, Any]:
    info: dict[str, Any] = {
        "cpu": _cpu_name(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "diffusers": _version("diffusers"),
        "transformers": _version("transformers"),
        "uvicorn": _version("uvicorn"),
        "websockets": _version("websockets"),
        "device": str(device),
        "dtype": str(dtype).replace("torch.", ""),
        "vae_dtype": str(vae_dtype).replace("torch.", ""),
        "gpu": None,
    }
    try:
        pages, page = os.sysconf("SC_PHYS_PAGES"), os.sysconf("SC_PAGE_SIZE")
        info["memory_gib"] = round(pages * page / 2**30, 1)
    except (ValueError, OSError, AttributeError):
        pass
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        info["gpu"] = torch.cuda.get_device_name(device)
        info["gpu_memory_gib"] = round(props.total_memory / 2**30, 1)
        info["cuda"] = torch.version.cuda
    try:
        info["loadavg_start"] = [round(v, 2) for v in os.getloadavg()]
    except OSError:
        pass
    return info


@dataclass
class Tally:
    """Frames and seconds of one measured thing, summed over the slices (rounds) it ran in."""

    frames: int = 0
    calls: int = 0
    seconds: float = 0.0
    warmup_s: float = 0.0
    cpu: list[int] = field(default_factory=lambda: [0, 0, 0])  # total, idle, own CPU ticks

    def add(self, frames: int, calls: int, seconds: float, meter: CpuMeter) -> None:
        self.frames += frames
        self.calls += calls
        self.seconds += seconds
        end = meter._read()
        if meter.start is not None and end is not None:
            self.cpu = [c + b - a for c, a, b in zip(self.cpu, meter.start, end)]

    def other_cpu(self) -> float | None:
        total, idle, own = self.cpu
        return _r(max(0.0, (total - idle - own) / total), 2) if total > 0 else None

    def summary(self) -> dict[str, Any]:
        return {
            "frames": self.frames, "seconds": _r(self.seconds), "fps": _r(self.frames / self.seconds),
            "ms_per_call": _r(1000 * self.seconds / self.calls), "warmup_s": _r(self.warmup_s), "other_cpu": self.other_cpu(),
        }


class _Timed:
    """A phase that times repeated calls of `_one`, each producing `frames_per_call` frames."""

    tally: Tally
    frames_per_call = 1

    def _one(self) -> None:
        raise NotImplementedError

    def warm_up(self) -> None:
        t = time.perf_counter()
        self._one()
        self.tally.warmup_s = time.perf_counter() - t

    def run(self, seconds: float, min_calls: int = 1) -> None:
        meter, calls, t0 = CpuMeter(), 0, time.perf_counter()
        while True:
            self._one()
            calls += 1
            elapsed = time.perf_counter() - t0
            if elapsed >= seconds and calls >= min_calls:
                break
        self.tally.add(calls * self.frames_per_call, calls, elapsed, meter)


class NaiveBench(_Timed):
    """The stock pipeline, one frame per call, cycling the four prompts and seeds: exactly the
    call the original breeder made per frame."""

    def __init__(self, pipe: Any, size: int, device: torch.device) -> None:
        self.pipe, self.size, self.device = pipe, size, device
        self.sync = synchronizer(device)
        self.k = 0
        self.tally = Tally()

    def _one(self) -> None:
        gen = torch.Generator(self.device).manual_seed(self.k)
        self.pipe(PROMPTS[self.k % 4], num_inference_steps=1, guidance_scale=0.0, height=self.size, width=self.size, generator=gen)
        self.sync()
        self.k += 1

    def summary(self) -> dict[str, Any]:
        out = self.tally.summary()
        out["ms_per_frame"] = out.pop("ms_per_call")
        return out


class RendererBench(_Timed):
    """Repeated `renderer.render` of `batch` frames at distinct pad points. Building the
    conditionings (the token blend) is timed too, as it is in the server's render_ms."""

    def __init__(self, renderer: Any, scene: Any, size: int, batch: int, start: int = 0) -> None:
        self.renderer, self.scene, self.size, self.batch = renderer, scene, size, batch
        self.frames_per_call = batch
        self.sync = synchronizer(renderer.device)
        self.k = start
        self.tally = Tally()
        self.stages: list[dict[str, float]] = []  # the renderer's stage clock, per timed call

    def request(self, k: int) -> FrameRequest:
        x, y = pad_point(k)
        return FrameRequest(self.scene, x, y, FrameSettings(seed=k % 8, width=self.size, height=self.size))

    def _one(self) -> None:
        conds = [self.request(self.k + i) for i in range(self.batch)]
        self.k += self.batch
        frames = self.renderer.render(conds)
        self.sync()
        assert len(frames) == self.batch
        if self.renderer.clock.enabled:
            self.stages.append(dict(self.renderer.clock.last))

    def warm_up(self) -> None:
        super().warm_up()
        self.stages.clear()

    def summary(self) -> dict[str, Any]:
        out = {"batch": self.batch, **self.tally.summary()}
        out["ms_per_batch"] = out.pop("ms_per_call")
        out["stages_ms_per_frame_p50"] = stage_p50([{k: v / self.batch for k, v in s.items()} for s in self.stages])
        return out


def stage_p50(rows: list[dict[str, float]]) -> dict[str, float | None]:
    """The median of each stage over `rows` (stage → ms)."""
    names = dict.fromkeys(k for row in rows for k in row)
    return {k: _r(percentile([row[k] for row in rows if k in row], 50)) for k in names}


def layout_ab(renderer: Any, scene: Any, size: int, batch: int, seconds: float, rounds: int = 3) -> dict[str, Any]:
    """Eager renderer at `batch`, UNet and VAE channels_last vs contiguous, in alternating slices
    (GroupNorm on CUDA may not keep channels_last, so which wins is measured, not assumed)."""
    pipe = renderer.pipe
    benches = {"channels_last": RendererBench(renderer, scene, size, batch), "contiguous": RendererBench(renderer, scene, size, batch)}
    layouts = {"channels_last": torch.channels_last, "contiguous": torch.contiguous_format}
    for _ in range(rounds):
        for name, rb in benches.items():
            pipe.unet.to(memory_format=layouts[name])
            pipe.vae.to(memory_format=layouts[name])
            if not rb.tally.calls:
                rb.warm_up()
            rb.run(seconds / (2 * rounds))
    pipe.unet.to(memory_format=torch.channels_last)
    pipe.vae.to(memory_format=torch.channels_last)
    out: dict[str, Any] = {"batch": batch, **{name: rb.summary()["fps"] for name, rb in benches.items()}}
    out["channels_last_over_contiguous"] = _r(out["channels_last"] / out["contiguous"]) if out["contiguous"] else None
    return out


def apply_channels_last(pipe: Any) -> None:
    pipe.unet.to(memory_format=torch.channels_last)
    pipe.vae.to(memory_format=torch.channels_last)
