"""The brood phase of `sdxl-breeder bench`: a brood of N children drawn through the server, against
the naive pipeline drawing the same children one by one.

For each brood size in `--broods`, with the four bench prompts stored as the parents:

- engine: a websocket client sends `evolve` (parents, count N, a fixed seed and mutation) to a
  real server in this process (the app of `serve`, sharing the bench's render loop, otherwise
  idle) and waits for the N child frames: the path the page and `BreederClient.evolve` take
  (breeding, the loop's backlog batched up to `--max-batch`, JPEG, send). Time to the last child
  is client-measured, from sending `evolve` to the last child's frame.
- naive: the same N children (bred from the same parents, seed and mutation, as the server breeds
  them), each conditioned by the text encoders on its own token vectors and drawn by the stock
  `StableDiffusionXLPipeline.__call__` (`prompt_embeds`, one step, guidance 0, the seed the
  server draws with): one child per call, as the original breeder drew one image per request.

Both alternate for `rounds` rounds after a warm-up of each; the figures are the medians. Every
child's frame is checked (its header names the brood and the child, every index comes once, the
frames differ) and compared with the naive image of the same child, so the two sides draw the
same children.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import logging
import statistics
import time
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from sdxl_breeder.bench.clients import FRAME_TIMEOUT_S, PROMPTS, BenchError, BenchServer, _r
from sdxl_breeder.bench.render import CpuMeter, synchronizer
from sdxl_breeder.bench.report import ROUNDS, say
from sdxl_breeder.spec import LIMITS

if TYPE_CHECKING:
    from sdxl_breeder.bench.main import Budget
    from sdxl_breeder.bench.options import BenchOptions

BROOD_SEED = 7
BROOD_MUTATION = 0.2  # evolve's default
FRAME_SEED = 0  # a session's default settings.seed: the noise every child is drawn with


def check_broods(counts: tuple[int, ...]) -> None:
    if any(not 1 <= n <= LIMITS.max_brood_children for n in counts):
        raise BenchError(f"--broods: brood sizes from 1 to {LIMITS.max_brood_children} (max_brood_children), e.g. 9,16")


class NaiveChildren:
    """The stock pipeline drawing given children one by one (their conditioning from their token
    vectors, through both text encoders, since a child has no prompt)."""

    def __init__(self, pipe: Any, children: list[Any], size: int, device: torch.device) -> None:
        from sdxl_breeder.model.brood import child_scene

        self.pipe, self.size, self.device = pipe, size, device
        self.scenes = [child_scene(c) for c in children]
        self.sync = synchronizer(device)

    @torch.inference_mode()
    def draw(self, i: int) -> np.ndarray:
        from sdxl_breeder.patches.clip_embeds import sdxl_conditioning

        pipe = self.pipe
        (e1, e2), pool_weights, _ = self.scenes[i].blend(0.0, 0.0)
        dtype = pipe.text_encoder.dtype
        prompt_embeds, pooled = sdxl_conditioning(
            pipe.text_encoder, pipe.text_encoder_2, e1[None].to(self.device, dtype), e2[None].to(self.device, dtype),
            pool_weights[None].to(self.device))
        gen = torch.Generator(self.device).manual_seed(FRAME_SEED)
        image = pipe(prompt_embeds=prompt_embeds, pooled_prompt_embeds=pooled, num_inference_steps=1, guidance_scale=0.0,
                     height=self.size, width=self.size, generator=gen).images[0]
        self.sync()
        return np.asarray(image)

    def draw_all(self) -> tuple[float, list[np.ndarray]]:
        """Every child, one call each: (seconds to the last child, the images)."""
        t = time.perf_counter()
        images = [self.draw(i) for i in range(len(self.scenes))]
        return time.perf_counter() - t, images


def _decoded(jpeg: bytes) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.open(io.BytesIO(jpeg)).convert("RGB")).astype(np.int16)


def _frame_checks(frames: list[Any], count: int, size: int, naive: list[np.ndarray], quality: int) -> dict[str, Any]:
    """What the client got: every child once, in its own frame, at the size asked, and the same
    picture as the naive pipeline's of that child (both as the server's JPEG encoder writes them)."""
    from sdxl_breeder.engine.loop import encode_image

    indices = sorted(f.child for f in frames)
    ours = {f.child: _decoded(f.jpeg) for f in frames}
    right_size = all(im.shape == (size, size, 3) for im in ours.values())
    diffs = [float(np.abs(ours[i] - _decoded(encode_image(im, quality=quality))).mean()) for i, im in enumerate(naive)
             if i in ours] if right_size else []
    return {
        "children_received": len(frames),
        "child_indices": indices,
        "all_children": len(frames) == count and indices == list(range(count)),
        "distinct_frames": len({hashlib.sha256(f.jpeg).digest() for f in frames}),
        "right_size": right_size,
        "batches": _batch_runs([f.header.batch for f in sorted(frames, key=lambda f: f.child)]),
        "naive_vs_engine_mean_abs_diff_max": _r(max(diffs), 3) if diffs else None,
    }


async def _brood_rows(opts: BenchOptions, renderer: Any, loop: Any, model: Any, budget: Budget, run: dict[str, Any],
                      label: str, uri: str, parents: list[Any], rows: list[dict[str, Any]]) -> None:
    from sdxl_breeder.client.aio import BreederClient
    from sdxl_breeder.model.brood import breed_brood

    size, max_batch, quality, rounds = opts.resolved_size(), opts.max_batch, opts.quality, ROUNDS
    naive_fps = run.get("naive", {}).get("fps")
    per_frame_s = 1 / naive_fps if naive_fps else 0.5  # for the budget: if phase 1 was skipped, a guess
    async with BreederClient(uri, timeout=FRAME_TIMEOUT_S) as client:
        await client.settings(width=size, height=size, seed=FRAME_SEED, quality=quality)
        ids = [p.id for p in parents]

        async def evolve(count: int, seed: int) -> tuple[float, list[Any]]:
            t = time.perf_counter()
            brood = await client.evolve(ids, count, mutation=BROOD_MUTATION, seed=seed)
            return time.perf_counter() - t, brood.frames

        for count in opts.broods:
            if not budget.fits(f"brood of {count} ({label})", (2 * rounds + 3) * count * per_frame_s + 5):
                continue
            say(f"[bench] brood of {count} ({label}, {size}×{size}, max batch {max_batch}): evolve through the server "
                f"vs the naive pipeline one child at a time, {rounds} rounds …")
            children = breed_brood(parents, count, seed=BROOD_SEED, mutation=BROOD_MUTATION, table_std=renderer.table_std)
            naive = NaiveChildren(model.pipeline, children, size, model.device)
            meter = CpuMeter()
            await evolve(count, BROOD_SEED + 1)  # warm-ups: a brood of another seed, one naive child
            await loop.run(lambda: naive.draw(0))
            engine_s: list[float] = []
            naive_s: list[float] = []
            jpegs: list[list[bytes]] = []
            for _ in range(rounds):  # alternating, so a load that comes and goes hits both alike
                seconds, naive_images = await loop.run(naive.draw_all)
                naive_s.append(seconds)
                seconds, frames = await evolve(count, BROOD_SEED)
                engine_s.append(seconds)
                jpegs.append([f.jpeg for f in sorted(frames, key=lambda f: f.child)])
            checks = _frame_checks(frames, count, size, naive_images, quality)
            if not checks["all_children"]:
                raise BenchError(f"brood of {count}: got children {checks['child_indices']}, wanted 0 to {count - 1}")
            engine, base = statistics.median(engine_s), statistics.median(naive_s)
            row = {
                "children": count, "size": size, "max_batch": max_batch, "rounds": rounds,
                "seed": BROOD_SEED, "mutation": BROOD_MUTATION, "parents": len(parents),
                "engine_s_to_last_child": _r(engine), "engine_s_rounds": [_r(s) for s in engine_s],
                "engine_children_per_s": _r(count / engine),
                "naive_s_to_last_child": _r(base), "naive_s_rounds": [_r(s) for s in naive_s],
                "naive_children_per_s": _r(count / base),
                "engine_over_naive": _r(base / engine),
                # against phase 1's frames/s (the stock pipeline on prompts, before channels_last or
                # compile), as the bench's other ratios are
                "engine_over_naive_frames": _r(count / engine / naive_fps) if naive_fps else None,
                **checks,
                "identical_across_rounds": all(j == jpegs[0] for j in jpegs),
                "other_cpu": meter.other_load(),
            }
            rows.append(row)
            budget.write()
            say(f"[bench]   brood of {count:2d}: last child after {1000 * engine:.0f} ms ({row['engine_children_per_s']:.2f} "
                f"children/s, batches {'+'.join(map(str, checks['batches']))}); naive one by one {1000 * base:.0f} ms "
                f"({row['naive_children_per_s']:.2f} children/s): {row['engine_over_naive']:.2f}× naive")


def run_broods(opts: BenchOptions, renderer: Any, loop: Any, model: Any, budget: Budget, run: dict[str, Any], label: str) -> None:
    """Each brood size in `opts.broods`, a row in `run["broods"]` (the JSON written) as each finishes."""
    rows: list[dict[str, Any]] = []
    run["broods"] = rows
    with BenchServer(renderer, loop, opts.max_batch, model.warning, opts.ws_deflate) as server:
        parents = loop.call(lambda: [renderer.genome_from_prompt(p) for p in PROMPTS]).result()
        for genome in parents:
            server.store.put_genome(genome)
        client_log = logging.getLogger("sdxl_breeder.client")
        level = client_log.level
        client_log.setLevel(logging.ERROR)  # the server's hello warning (e.g. the tiny model) was said at load
        try:
            asyncio.run(_brood_rows(opts, renderer, loop, model, budget, run, label,
                                    f"ws://127.0.0.1:{server.port}/ws", parents, rows))
        finally:
            client_log.setLevel(level)


def _batch_runs(batches: list[int]) -> list[int]:
    """The batch sizes a brood rendered in, from its children's frame headers ([8]*8 + [1] → [8, 1])."""
    out, i = [], 0
    while i < len(batches):
        out.append(batches[i])
        i += max(1, batches[i])
    return out


__all__ = ["NaiveChildren", "check_broods", "run_broods"]
