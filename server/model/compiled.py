"""torch.compile for the renderer: a few bucketed batch sizes, warmed up, cached on disk, and a
fall-back to eager that never takes the server down.

The renderer's three model stages (text encoders, UNet step, VAE decode to uint8) are each
compiled with static shapes; batches are padded up to a bucket (1, 2, 4, 8, 16), so each stage
holds at most one graph per bucket and frame size. On CUDA the mode is `reduce-overhead` (CUDA
graphs), so `compile_renderer` must run on the thread that renders afterwards. The compiled
artifacts are saved with `torch.compiler.save_cache_artifacts` and loaded on the next start.
"""

from __future__ import annotations

import collections
import hashlib
import logging
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from sdxl_breeder.patches.clip_embeds import drop_output_capture_hooks

from sdxl_breeder.model.renderer import FrameRequest, Renderer
from sdxl_breeder.model.scene import Scene
from sdxl_breeder.spec import FrameSettings

log = logging.getLogger("sdxl_breeder.compile")

BUCKETS = (1, 2, 4, 8, 16)
WARMUPS = 3  # calls per bucket before a graph counts as ready (CUDA graphs record on the 3rd)
GRAPHS_PER_STAGE = 8  # dynamo's per-function graph limit: the buckets at one or two frame sizes


def buckets_for(max_batch: int) -> tuple[int, ...]:
    """The bucket sizes a server with `max_batch` uses: every bucket up to the first that holds
    `max_batch` (batches above 16 are cut into 16s)."""
    if max_batch < 1:
        raise ValueError("max_batch must be at least 1")
    out = []
    for b in BUCKETS:
        out.append(b)
        if b >= max_batch:
            break
    return tuple(out)


@dataclass
class CompileReport:
    """What `compile_renderer` did; `ok` False means the renderer runs eager."""

    ok: bool
    mode: str
    backend: str
    buckets: tuple[int, ...]
    size: tuple[int, int]
    seconds: float = 0.0
    warmup_s: dict[str, float] = field(default_factory=dict)  # per bucket, all warm-up calls
    cache_file: str | None = None
    cache_loaded: bool = False
    cache_saved: bool = False
    error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in self.__dict__.items()}


def _first_line(e: BaseException) -> str:
    inner = getattr(e, "inner_exception", None)  # dynamo's BackendCompilerFailed wraps the cause
    if isinstance(inner, BaseException):
        e = inner
    text = str(e).strip()
    return f"{type(e).__name__}: {text.splitlines()[0][:300] if text else ''}"


def cache_key(renderer: Renderer, mode: str, backend: str, buckets: tuple[int, ...], size: tuple[int, int]) -> str:
    where = torch.cuda.get_device_name(renderer.device) if renderer.device.type == "cuda" else renderer.device.type
    parts = (torch.__version__, where, renderer.name, str(renderer.dtype), type(renderer.pipe.vae).__name__,
             mode, backend, buckets, size, renderer.vae_chunk)
    return hashlib.sha256(repr(parts).encode()).hexdigest()[:16]


def reset_compiled_state() -> None:
    """Forget every compiled graph in this process (renderers compiled before recompile on their
    next call) and the CUDA-graph trees recorded on this thread."""
    import torch._dynamo as dynamo

    dynamo.reset()
    if torch.cuda.is_available():
        try:
            from torch._inductor import cudagraph_trees
        except ImportError:  # an older torch without CUDA-graph trees
            return
        # The trees keep per-thread state, set up on the thread that first imported the module;
        # torch 2.11 asserts on any other thread (a second render thread), so set it up here.
        if not hasattr(cudagraph_trees.local, "tree_manager_containers") and not torch._C._is_key_in_tls("tree_manager_containers"):
            local = cudagraph_trees.local
            local.tree_manager_containers = {}
            local.tree_manager_locks = collections.defaultdict(threading.Lock)
            torch._C._stash_obj_in_tls("tree_manager_containers", local.tree_manager_containers)
            torch._C._stash_obj_in_tls("tree_manager_locks", local.tree_manager_locks)
        cudagraph_trees.reset_cudagraph_trees()


def use_eager(renderer: Renderer) -> None:
    """Back to the uncompiled stages (and no padding)."""
    renderer.use_eager()


def compile_renderer(
    renderer: Renderer,
    *,
    max_batch: int = 8,
    width: int | None = None,
    height: int | None = None,
    cache_dir: str | Path | None = None,
    backend: Any = "inductor",
    mode: str | None = None,
    warmups: int = WARMUPS,
    buckets: tuple[int, ...] | None = None,
    fresh: bool = True,
) -> CompileReport:
    """Compile the renderer's stages and warm every bucket at one frame size, on the calling
    thread (the render thread). On any failure it returns a report with `ok=False` and the
    renderer eager, as it was. Other frame sizes compile when first rendered. `buckets` replaces
    the default ones (every bucket up to `max_batch`): fewer buckets compile sooner, and a batch
    is padded up to the next one. `fresh` first drops what earlier compiles in this process left
    (dynamo's caches and the CUDA-graph trees): one compiled renderer per process, as `serve` runs;
    the bench compiles a second renderer, for its second VAE, on a new render thread."""
    import torch._dynamo as dynamo

    if fresh:
        reset_compiled_state()

    size = (width or 512, height or width or 512)
    cuda = renderer.device.type == "cuda"
    if mode is None:
        mode = "reduce-overhead" if cuda and backend == "inductor" else "default"
    buckets = tuple(sorted(set(buckets))) if buckets else buckets_for(max_batch)
    if buckets[0] < 1:
        raise ValueError("batch buckets must be positive")
    name = backend if isinstance(backend, str) else getattr(backend, "__name__", "custom")
    report = CompileReport(ok=False, mode=mode, backend=name, buckets=buckets, size=size)
    started = time.perf_counter()
    cache_file = None
    if cache_dir is not None and isinstance(backend, str):
        cache_file = Path(cache_dir) / f"compile-{cache_key(renderer, mode, name, buckets, size)}.bin"
        report.cache_file = str(cache_file)
        if cache_file.is_file():
            try:
                torch.compiler.load_cache_artifacts(cache_file.read_bytes())
                report.cache_loaded = True
            except Exception as e:  # noqa: BLE001 — a stale or foreign cache only costs time
                log.warning("compile cache %s not used (%s)", cache_file, _first_line(e))
    for attr in ("cache_size_limit", "recompile_limit"):
        if hasattr(dynamo.config, attr):
            setattr(dynamo.config, attr, max(GRAPHS_PER_STAGE, getattr(dynamo.config, attr)))
    options: dict[str, Any] = {"backend": backend, "dynamic": False}
    if backend == "inductor":
        options["mode"] = mode
    renderer.compile_error = None
    for encoder in renderer.encoders:
        drop_output_capture_hooks(encoder)  # left by any stock forward; they would split the graph
    try:
        renderer.encode_fn = torch.compile(renderer.encode_eager, **options)
        renderer.denoise_fn = torch.compile(renderer.denoise_eager, **options)
        renderer.decode_fn = torch.compile(renderer.decode_eager, **options)
        renderer.buckets = buckets
        renderer.cudagraphs = cuda and mode == "reduce-overhead"
        genome = renderer.genome_from_prompt("a cat")
        scene = Scene((genome,) * 4)
        for b in buckets:
            frames = [FrameRequest(scene, (k + 0.5) / b, 0.5, FrameSettings(width=size[0], height=size[1], seed=k)) for k in range(b)]
            t = time.perf_counter()
            for _ in range(warmups):
                renderer.render(frames)
                if renderer.buckets is None:  # the renderer hit an error and went eager
                    raise RuntimeError(renderer.compile_error or "compiled rendering failed")
            report.warmup_s[str(b)] = round(time.perf_counter() - t, 3)
            log.info("torch.compile: batch %d at %d×%d ready (%.1f s)", b, size[0], size[1], report.warmup_s[str(b)])
    except Exception as e:  # noqa: BLE001 — compiling is an optimisation: fall back, loudly
        report.error = renderer.compile_error if renderer.buckets is None and renderer.compile_error else _first_line(e)
        use_eager(renderer)
        dynamo.reset()
        report.seconds = round(time.perf_counter() - started, 3)
        log.warning("torch.compile failed (%s); rendering uncompiled", report.error)
        return report
    report.ok = True
    report.seconds = round(time.perf_counter() - started, 3)
    if cache_file is not None:
        try:
            saved = torch.compiler.save_cache_artifacts()
            if saved is not None:
                cache_file.parent.mkdir(parents=True, exist_ok=True)
                tmp = cache_file.with_suffix(".tmp")
                tmp.write_bytes(saved[0])
                tmp.replace(cache_file)
                report.cache_saved = True
        except Exception as e:  # noqa: BLE001 — the next start just compiles again
            log.warning("compile cache not saved (%s)", _first_line(e))
    return report
