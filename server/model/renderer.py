"""The renderer owns the SDXL pipeline: prompts → genomes, frame requests → images.

The only module that runs diffusers models. One render is one batch: B frames (each its own
scene, point, blend mode and seed) are blended on the device, go through both text encoders, one
UNet call at t = 999 and one VAE decode, and come back as uint8 in one copy. It follows
`StableDiffusionXLPipeline.__call__` step for step, so a corner frame equals the stock pipeline's.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch import Tensor

from sdxl_breeder.patches.clip_embeds import sdxl_conditioning

from sdxl_breeder.model.blend import blend_noise
from sdxl_breeder.model.genome import MAX_TOKENS, Genome, GenomeError
from sdxl_breeder.model.loading import LoadedModel
from sdxl_breeder.model.scene import Scene, Template, blend_packs, split_template
from sdxl_breeder.model.stages import StageClock
from sdxl_breeder.spec import BLEND_MODES, LIMITS, FrameSettings

log = logging.getLogger("sdxl_breeder.renderer")

CPU_VAE_CHUNK = 4


class RenderError(RuntimeError):
    pass


@dataclass(frozen=True)
class FrameRequest:
    """One wanted frame: a scene, a point on the pad, and how to render it."""

    scene: Scene
    x: float
    y: float
    settings: FrameSettings = FrameSettings()


@dataclass(frozen=True)
class OneStep:
    """SDXL Turbo's single Euler-ancestral step from t = 999 to the image, as constants taken once
    from the scheduler (no scheduler state, no host sync per batch). At the last step
    Euler-ancestral adds no noise (sigma_up = 0)."""

    timestep: Tensor  # 0-d, on the device
    init_sigma: float
    input_scale: float  # sqrt(sigma² + 1)
    sigma: float
    dt: float  # sigma_down - sigma

    @classmethod
    def from_scheduler(cls, scheduler: Any, device: torch.device) -> OneStep | None:
        """The constants, or None where the scheduler is not a one-step epsilon Euler-ancestral
        (the renderer then drives the scheduler itself, per batch)."""
        if type(scheduler).__name__ != "EulerAncestralDiscreteScheduler" or scheduler.config.prediction_type != "epsilon":
            return None
        scheduler.set_timesteps(1, device=device)
        sigma, sigma_to = scheduler.sigmas[0], scheduler.sigmas[1]
        # The same float32 tensor arithmetic as the scheduler, so the constants match it bit for bit.
        sigma_up = (sigma_to**2 * (sigma**2 - sigma_to**2) / sigma**2) ** 0.5
        if float(sigma_up) != 0.0:
            return None
        sigma_down = (sigma_to**2 - sigma_up**2) ** 0.5
        return cls(
            timestep=scheduler.timesteps[0].clone(),
            init_sigma=float(scheduler.init_noise_sigma),
            input_scale=float((sigma**2 + 1) ** 0.5),
            sigma=float(sigma),
            dt=float(sigma_down - sigma),
        )


class Renderer:
    def __init__(self, model: LoadedModel, *, noise_cache: int = 64, vae_chunk: int | None = None) -> None:
        self.model = model
        self.pipe = model.pipeline
        self.device = model.device
        self.dtype = model.dtype
        self.tokenizers = (self.pipe.tokenizer, self.pipe.tokenizer_2)
        self.encoders = (self.pipe.text_encoder, self.pipe.text_encoder_2)
        tables = [enc.get_input_embeddings().weight for enc in self.encoders]
        self.widths = tuple(int(t.shape[1]) for t in tables)
        self.table_std = tuple(float(t.detach().float().std()) for t in tables)
        self.vae_scale_factor = 2 ** (len(self.pipe.vae.config.block_out_channels) - 1)
        self.latent_channels = int(self.pipe.unet.config.in_channels)
        self._noise: OrderedDict[tuple[int, int, int], Tensor] = OrderedDict()
        self._noise_cache = noise_cache
        self._time_ids: dict[tuple[int, int, int], Tensor] = {}
        # Frames per VAE decode call: 0 means the whole batch.
        self.vae_chunk = (CPU_VAE_CHUNK if self.device.type == "cpu" else 0) if vae_chunk is None else vae_chunk
        self.step = OneStep.from_scheduler(self.pipe.scheduler, self.device)
        self._latent_stats = self._vae_latent_stats()
        # The three model stages; `sdxl_breeder.model.compiled` swaps in compiled versions.
        self.encode_fn: Callable[[Tensor, Tensor, Tensor], tuple[Tensor, Tensor]] = self.encode_eager
        self.denoise_fn: Callable[[Tensor, Tensor, Tensor, Tensor], Tensor] = self.denoise_eager
        self.decode_fn: Callable[[Tensor], Tensor] = self.decode_eager
        self.buckets: tuple[int, ...] | None = None  # batch sizes to pad to (set when compiled)
        self.cudagraphs = False
        self.compile_error: str | None = None  # why compiled rendering last fell back to eager
        self.clock = StageClock(self.device)

    @property
    def name(self) -> str:
        return self.model.name

    # ------------------------------------------------------------------ genomes
    def _ids(self, text: str, tokenizer: Any, specials: bool) -> list[int]:
        return list(tokenizer(text, add_special_tokens=specials, truncation=False).input_ids)

    def _vectors(self, i: int, ids: list[int]) -> Tensor:
        table = self.encoders[i].get_input_embeddings()
        with torch.inference_mode():
            ids_t = torch.tensor(ids, dtype=torch.long, device=table.weight.device)
            return table(ids_t).detach().to("cpu", torch.float32).clone()

    def check_prompt(self, prompt: object) -> str:
        if not isinstance(prompt, str):
            raise GenomeError("prompt must be a string")
        if len(prompt) > LIMITS.max_prompt_chars:
            raise GenomeError(f"prompt is {len(prompt)} characters; the limit is {LIMITS.max_prompt_chars}")
        return prompt

    def genome_from_prompt(self, prompt: str) -> Genome:
        """Token vectors exactly as `encode_prompt` would embed the prompt (padded to 77, each
        tokenizer with its own padding token). Prompts over 75 tokens are an error, not cut."""
        self.check_prompt(prompt)
        embeds = []
        length = 0
        for i, tok in enumerate(self.tokenizers):
            ids = self._ids(prompt, tok, specials=True)
            if len(ids) > MAX_TOKENS:
                raise GenomeError(f"prompt is {len(ids) - 2} tokens; CLIP takes at most {MAX_TOKENS - 2}")
            length = len(ids) - 2
            ids = ids + [tok.pad_token_id] * (MAX_TOKENS - len(ids))
            embeds.append(self._vectors(i, ids))
        return Genome(embeds=tuple(embeds), pool=((length + 1, 1.0),), length=length, prompt=prompt)

    def template(self, text: str) -> Template:
        self.check_prompt(text)
        before, after = split_template(text)
        parts: dict[str, list[Tensor]] = {k: [] for k in ("bos", "prefix", "suffix", "eos", "pad")}
        for i, tok in enumerate(self.tokenizers):
            pre = self._ids(before, tok, specials=False)
            suf = self._ids(after, tok, specials=False)
            vec = self._vectors(i, [tok.bos_token_id, tok.eos_token_id, tok.pad_token_id, *pre, *suf])
            parts["bos"].append(vec[0])
            parts["eos"].append(vec[1])
            parts["pad"].append(vec[2])
            parts["prefix"].append(vec[3 : 3 + len(pre)])
            parts["suffix"].append(vec[3 + len(pre) :])
        tpl = Template(text=text, **{k: tuple(v) for k, v in parts.items()})
        if tpl.fixed_tokens + 1 > MAX_TOKENS:
            raise GenomeError(f"template is {tpl.fixed_tokens - 2} tokens; it leaves no room for a noken")
        return tpl

    def check_genome(self, genome: Genome) -> None:
        if genome.widths != self.widths:
            raise GenomeError(
                f"genome {genome.id} was made with another model (token widths {genome.widths}, this model {self.widths})"
            )

    # ------------------------------------------------------------------ per-size and per-seed state
    def check_size(self, width: int, height: int) -> None:
        multiple = self.vae_scale_factor * 8
        for name, v in (("width", width), ("height", height)):
            if v % multiple or v <= 0:
                raise RenderError(f"{name} {v} must be a positive multiple of {multiple}")

    def noise(self, seed: int, height: int, width: int) -> Tensor:
        """Initial latents for one frame, drawn exactly as diffusers' `prepare_latents` draws them
        for `generator=torch.Generator(device).manual_seed(seed)` (before sigma scaling); drawn
        once per seed and size and kept on the device."""
        key = (seed, height, width)
        cached = self._noise.get(key)
        if cached is not None:
            self._noise.move_to_end(key)
            return cached
        from diffusers.utils.torch_utils import randn_tensor

        shape = (1, self.latent_channels, height // self.vae_scale_factor, width // self.vae_scale_factor)
        gen = torch.Generator(self.device).manual_seed(seed)
        latents = randn_tensor(shape, generator=gen, device=self.device, dtype=self.dtype)
        self._noise[key] = latents
        if len(self._noise) > self._noise_cache:
            self._noise.popitem(last=False)
        return latents

    def _frame_noise(self, f: FrameRequest) -> Tensor:
        s = f.settings
        if s.corner_seeds is None:
            return self.noise(s.seed, s.height, s.width)
        return blend_noise([self.noise(seed, s.height, s.width) for seed in s.corner_seeds], f.x, f.y)

    def time_ids(self, height: int, width: int, batch: int) -> Tensor:
        """SDXL micro-conditioning (original size, crop (0, 0), target size), kept on the device."""
        key = (height, width, batch)
        ids = self._time_ids.get(key)
        if ids is None:
            ids = torch.tensor([[height, width, 0, 0, height, width]] * batch, dtype=self.dtype).to(self.device)
            self._time_ids[key] = ids
        return ids

    def _vae_latent_stats(self) -> tuple[Tensor, Tensor] | None:
        vae = self.pipe.vae
        mean = getattr(vae.config, "latents_mean", None)
        std = getattr(vae.config, "latents_std", None)
        if mean is None or std is None:
            return None
        dtype = next(self._decoder_part().parameters()).dtype
        return (torch.tensor(mean).view(1, -1, 1, 1).to(self.device, dtype), torch.tensor(std).view(1, -1, 1, 1).to(self.device, dtype))

    def _decoder_part(self) -> Any:
        # AutoencoderKL decodes through post_quant_conv then the decoder; AutoencoderTiny (TAESDXL)
        # has no post_quant_conv.
        return getattr(self.pipe.vae, "post_quant_conv", None) or self.pipe.vae.decoder

    # ------------------------------------------------------------------ the three model stages
    def encode_eager(self, embeds_1: Tensor, embeds_2: Tensor, pool_weights: Tensor) -> tuple[Tensor, Tensor]:
        """Both text encoders on token vectors: (prompt_embeds, pooled)."""
        return sdxl_conditioning(self.encoders[0], self.encoders[1], embeds_1, embeds_2, pool_weights)

    def denoise_eager(self, noise: Tensor, prompt_embeds: Tensor, pooled: Tensor, time_ids: Tensor) -> Tensor:
        """Scaled noise → one UNet call at t = 999 (no classifier-free guidance) → one scheduler step."""
        pipe, step = self.pipe, self.step
        cond = {"text_embeds": pooled, "time_ids": time_ids}
        if step is None:  # another scheduler: drive it the stock way
            pipe.scheduler.set_timesteps(1, device=self.device)
            if hasattr(pipe.scheduler, "set_begin_index"):
                pipe.scheduler.set_begin_index(0)
            t = pipe.scheduler.timesteps[0]
            latents = noise * pipe.scheduler.init_noise_sigma
            model_in = pipe.scheduler.scale_model_input(latents, t)
            eps = pipe.unet(model_in, t, encoder_hidden_states=prompt_embeds, added_cond_kwargs=cond, return_dict=False)[0]
            return pipe.scheduler.step(eps, t, latents, return_dict=False)[0]
        latents = noise * step.init_sigma
        eps = pipe.unet(latents / step.input_scale, step.timestep, encoder_hidden_states=prompt_embeds, added_cond_kwargs=cond, return_dict=False)[0]
        # EulerAncestralDiscreteScheduler.step for epsilon prediction, in float32 as it computes.
        sample = latents.to(torch.float32)
        predicted = sample - step.sigma * eps
        derivative = (sample - predicted) / step.sigma
        return (sample + derivative * step.dt).to(eps.dtype)

    def decode_eager(self, latents: Tensor) -> Tensor:
        """Latents → uint8 images `[B, H, W, 3]` on the device, rounded as diffusers' image
        processor does. In the VAE's own dtype (fp32 when the model runs in fp16)."""
        return (self.decode_float(latents) * 255).round().to(torch.uint8)

    def decode_float(self, latents: Tensor) -> Tensor:
        """Latents → float32 images `[B, H, W, 3]` in [0, 1] on the device (NaN stays NaN: the
        CUDA tests look for it before the cast to uint8 would hide it)."""
        vae = self.pipe.vae
        latents = latents.to(next(self._decoder_part().parameters()).dtype)
        if self._latent_stats is not None:
            mean, std = self._latent_stats
            latents = latents * std / vae.config.scaling_factor + mean
        else:
            latents = latents / vae.config.scaling_factor
        # On a CPU the decoder's full-resolution activations outgrow the caches above a few
        # frames, so it decodes in chunks (measured in docs/benchmarks.md); GPUs take the batch.
        chunk = self.vae_chunk or latents.shape[0]
        image = torch.cat([vae.decode(part, return_dict=False)[0] for part in latents.split(chunk)])
        return (image / 2 + 0.5).clamp(0, 1).permute(0, 2, 3, 1).float()

    # ------------------------------------------------------------------ frames
    def _points(self, frames: Sequence[FrameRequest]) -> tuple[Tensor, bool | Tensor]:
        """What crosses from host to device per frame: (x, y) and the blend mode, in one copy."""
        for f in frames:
            if f.settings.blend not in BLEND_MODES:
                raise RenderError(f"unknown blend {f.settings.blend!r}; use one of {', '.join(BLEND_MODES)}")
        host = torch.tensor([[f.x, f.y, f.settings.blend == "slerp"] for f in frames], dtype=torch.float32)
        if self.device.type == "cuda":
            host = host.pin_memory()
        points = host.to(self.device, non_blocking=True)
        modes = {f.settings.blend for f in frames}
        slerp: bool | Tensor = points[:, 2] > 0.5 if len(modes) > 1 else modes == {"slerp"}
        return points[:, :2], slerp

    def _blend(self, frames: Sequence[FrameRequest]) -> tuple[Tensor, Tensor, Tensor]:
        xy, slerp = self._points(frames)
        (e1, e2), pool_weights = blend_packs([f.scene.pack(self.device) for f in frames], xy, slerp)
        return e1.to(self.dtype), e2.to(self.dtype), pool_weights

    @torch.inference_mode()
    def encode(self, frames: Sequence[FrameRequest]) -> tuple[Tensor, Tensor]:
        """Both text encoders on the frames' blended token vectors: (prompt_embeds, pooled)."""
        return self.encode_fn(*self._blend(frames))

    def _padded(self, frames: Sequence[FrameRequest]) -> list[list[FrameRequest]]:
        """Batches at the compiled sizes: cut at the largest bucket, padded up with copies of the
        last frame (their images are dropped), so each compiled module sees few shapes."""
        if self.buckets is None:
            return [list(frames)]
        top = self.buckets[-1]
        parts = [list(frames[i : i + top]) for i in range(0, len(frames), top)]
        for part in parts:
            size = next(b for b in self.buckets if b >= len(part))
            part.extend([part[-1]] * (size - len(part)))
        return parts

    @torch.inference_mode()
    def render(self, frames: Sequence[FrameRequest]) -> list[np.ndarray]:
        """B frames of one size → B uint8 images `[H, W, 3]` (rows of one array), in one batch."""
        if not frames:
            return []
        width, height = frames[0].settings.width, frames[0].settings.height
        if any((f.settings.width, f.settings.height) != (width, height) for f in frames):
            raise RenderError("one batch renders one size; group frames by size")
        self.check_size(width, height)
        out: list[np.ndarray] = []
        for part in self._padded(frames):
            try:
                images = self._render_batch(part, height, width)
            except Exception as e:
                if self.buckets is None:
                    raise
                # Compiled code failed on a new shape or at run time: never take the server down.
                cause = getattr(e, "inner_exception", None) or e  # dynamo wraps a backend's error
                self.compile_error = f"{type(cause).__name__}: {str(cause).strip()[:300]}"
                log.warning("compiled render failed (%s); rendering uncompiled from now on", self.compile_error,
                            exc_info=True)
                self.use_eager()
                return self.render(frames)
            out.extend(images[: len(frames) - len(out)])
        return out

    def use_eager(self) -> None:
        """Back to the uncompiled stages (and no batch padding)."""
        self.encode_fn = self.encode_eager
        self.denoise_fn = self.denoise_eager
        self.decode_fn = self.decode_eager
        self.buckets = None
        self.cudagraphs = False

    def _render_batch(self, frames: list[FrameRequest], height: int, width: int) -> np.ndarray:
        clock = self.clock
        clock.start()
        if self.cudagraphs:
            torch.compiler.cudagraph_mark_step_begin()
        # 1. Blend every frame's corners on the device (any mix of scenes, points and modes).
        embeds_1, embeds_2, pool_weights = self._blend(frames)
        clock.mark("blend")
        # 2. Conditioning: both text encoders, one batch.
        prompt_embeds, pooled = self.encode_fn(embeds_1, embeds_2, pool_weights)
        clock.mark("text_encoders")
        # 3. Noise, one seed per frame (cached on the device), then one UNet step at t = 999.
        noise = torch.cat([self._frame_noise(f) for f in frames])
        latents = self.denoise_fn(noise, prompt_embeds, pooled, self.time_ids(height, width, len(frames)))
        clock.mark("unet")
        # 4. VAE decode straight to uint8 on the device.
        images = self.decode_fn(latents)
        clock.mark("vae")
        # 5. One copy to the host (into pinned memory on CUDA, then one wait).
        if self.device.type == "cuda":
            host = torch.empty(images.shape, dtype=torch.uint8, pin_memory=True)
            host.copy_(images, non_blocking=True)
            torch.cuda.current_stream(self.device).synchronize()
        else:
            host = images.to("cpu")
        clock.mark("to_host")
        clock.stop()
        return host.numpy()
