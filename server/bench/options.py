"""What `sdxl-breeder bench` measures: its options, their check, and the command line that repeats a run."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from sdxl_breeder.bench.brood import check_broods
from sdxl_breeder.bench.clients import BenchError
from sdxl_breeder.model.options import VAES, ModelOptions


@dataclass(frozen=True)
class BenchOptions(ModelOptions):
    """The model to load (ModelOptions; the built-in tiny one unless named) and what to measure."""

    model: str = "tiny"
    size: int | None = None  # None: 256 for tiny, 512 otherwise
    vae: tuple[str, ...] = ("full",)
    tiny_vae_path: str | None = None
    compile: bool = False
    compile_backend: str = "inductor"
    compile_buckets: tuple[int, ...] | None = None  # None: every bucket up to the largest batch
    channels_last: bool = True  # as serve runs; applied after the naive phase
    batches: tuple[int, ...] = (1, 2, 4, 8, 16)
    clients: tuple[int, ...] = (1, 8, 32)
    seconds: float = 5.0
    max_batch: int = 8
    quality: int = 80
    ws_deflate: bool = False  # websocket permessage-deflate; `serve` turns it off (frames are JPEG)
    vae_chunk: int | None = None  # frames per VAE decode call; None: the renderer's default (4 on CPU)
    budget: float | None = None  # seconds for the whole run
    layout_ab: bool = False
    json_path: Path | None = None
    seed: int = 0
    server: str | None = None  # the end-to-end phase against this running server's websocket URL
    broods: tuple[int, ...] = ()  # brood sizes for the brood phase (none: no brood phase)

    def resolved_size(self) -> int:
        return self.size if self.size is not None else (256 if self.model == "tiny" else 512)

    def command(self) -> str:
        """The command line that repeats this run (minus --json)."""
        parts = ["sdxl-breeder bench", f"--model {self.model}", f"--device {self.device}", f"--dtype {self.dtype}",
                 f"--size {self.resolved_size()}", f"--vae {','.join(self.vae)}"]
        if self.model_config:
            parts.append(f"--model-config {self.model_config}")
        if self.tiny_vae_path:
            parts.append(f"--tiny-vae-path {self.tiny_vae_path}")
        if self.compile:
            parts.append("--compile" + ("" if self.compile_backend == "inductor" else f" --compile-backend {self.compile_backend}"))
            if self.compile_buckets:
                parts.append(f"--compile-buckets {','.join(map(str, self.compile_buckets))}")
        if not self.channels_last:
            parts.append("--no-channels-last")
        parts += [f"--batches {','.join(map(str, self.batches))}", f"--clients {','.join(map(str, self.clients))}",
                  f"--seconds {self.seconds:g}", f"--max-batch {self.max_batch}"]
        if self.ws_deflate:
            parts.append("--ws-deflate")
        if self.vae_chunk is not None:
            parts.append(f"--vae-chunk {self.vae_chunk}")
        if self.budget is not None:
            parts.append(f"--budget {self.budget:g}")
        if self.layout_ab:
            parts.append("--layout-ab")
        if self.server is not None:
            parts.append(f"--server {self.server}")
        if self.broods:
            parts.append(f"--broods {','.join(map(str, self.broods))}")
        return " ".join(parts)

    def check(self) -> None:
        if self.seconds <= 0:
            raise BenchError("--seconds must be positive")
        if not self.batches or min(self.batches) < 1:
            raise BenchError("--batches: give positive batch sizes, e.g. 1,2,4,8")
        if not self.clients or min(self.clients) < 1:
            raise BenchError("--clients: give positive client counts, e.g. 1,8")
        if not 1 <= self.max_batch <= 64:
            raise BenchError("--max-batch must be within [1, 64]")
        if self.vae_chunk is not None and self.vae_chunk < 0:
            raise BenchError("--vae-chunk must be 0 (off) or a positive number of frames")
        if not self.vae or any(v not in VAES for v in self.vae) or len(set(self.vae)) != len(self.vae):
            raise BenchError(f"--vae: a list of {', '.join(VAES)}, e.g. full,tiny")
        if "full" in self.vae and self.vae[0] != "full":
            raise BenchError("--vae: list full first (the model loads with its own VAE), e.g. full,tiny")
        if self.budget is not None and self.budget <= 0:
            raise BenchError("--budget must be a positive number of seconds")
        check_broods(self.broods)
