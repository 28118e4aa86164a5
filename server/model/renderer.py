"""The renderer owns the SDXL pipeline: prompts → genomes, conditionings → images.

The only module that touches diffusers. One render is one batch: B conditionings (each with its
own seed) go through both text encoders, one UNet call at t = 999 and one VAE decode. It follows
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
from sdxl_breeder.model.scene import Conditioning, Scene, Template, split_template
from sdxl_breeder.spec import LIMITS, FrameSettings

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

    def conditioning(self) -> Conditioning:
        return self.scene.conditioning(self.x, self.y, self.settings)


def compile_pipeline(pipe: Any, device: torch.device) -> tuple[dict[str, Any], Callable[[], None]]:
    """Wrap the UNet and the VAE decoder in `torch.compile` with static shapes: one graph per
    batch size and frame size (CUDA graphs on CUDA). Returns (what was done, undo)."""
    import torch._dynamo as dynamo

    mode = "reduce-overhead" if device.type == "cuda" else "max-autotune-no-cudagraphs"
    for attr in ("cache_size_limit", "recompile_limit"):  # one graph per batch size
        if hasattr(dynamo.config, attr):
            setattr(dynamo.config, attr, max(64, getattr(dynamo.config, attr)))
    unet, decoder = pipe.unet, pipe.vae.decoder
    pipe.unet = torch.compile(unet, mode=mode, dynamic=False)
    pipe.vae.decoder = torch.compile(decoder, mode=mode, dynamic=False)

    def undo() -> None:
        pipe.unet = unet
        pipe.vae.decoder = decoder
        dynamo.reset()

    return {"mode": mode, "dynamic": False, "modules": ["unet", "vae.decoder"]}, undo


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
        # Frames per VAE decode call: 0 means the whole batch.
        self.vae_chunk = (CPU_VAE_CHUNK if self.device.type == "cpu" else 0) if vae_chunk is None else vae_chunk

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

    # ------------------------------------------------------------------ frames
    def check_size(self, width: int, height: int) -> None:
        multiple = self.vae_scale_factor * 8
        for name, v in (("width", width), ("height", height)):
            if v % multiple or v <= 0:
                raise RenderError(f"{name} {v} must be a positive multiple of {multiple}")

    def noise(self, seed: int, height: int, width: int) -> Tensor:
        """Initial latents for one frame, drawn exactly as diffusers' `prepare_latents` draws them
        for `generator=torch.Generator(device).manual_seed(seed)` (before sigma scaling)."""
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

    def _frame_noise(self, c: Conditioning) -> Tensor:
        if c.corner_seeds is None:
            return self.noise(c.seed, c.height, c.width)
        corners = [self.noise(s, c.height, c.width) for s in c.corner_seeds]
        return blend_noise(corners, c.x, c.y)

    @torch.inference_mode()
    def encode(self, frames: Sequence[FrameRequest]) -> tuple[Tensor, Tensor]:
        """Both text encoders on the frames' blended token vectors: (prompt_embeds, pooled)."""
        return self._encode([f.conditioning() for f in frames])

    def _encode(self, conds: Sequence[Conditioning]) -> tuple[Tensor, Tensor]:
        e1 = torch.stack([c.embeds[0] for c in conds]).to(self.device, self.dtype)
        e2 = torch.stack([c.embeds[1] for c in conds]).to(self.device, self.dtype)
        w = torch.stack([c.pool_weights for c in conds]).to(self.device)
        return sdxl_conditioning(self.encoders[0], self.encoders[1], e1, e2, w)

    @torch.inference_mode()
    def render(self, frames: Sequence[FrameRequest]) -> list[np.ndarray]:
        """B frames of one size → B uint8 images `[H, W, 3]`, in one batch."""
        if not frames:
            return []
        conds = [f.conditioning() for f in frames]
        width, height = conds[0].width, conds[0].height
        if any((c.width, c.height) != (width, height) for c in conds):
            raise RenderError("one batch renders one size; group conditionings by size")
        self.check_size(width, height)
        pipe = self.pipe

        # 1. Conditioning: both text encoders on the blended token vectors, one batch.
        prompt_embeds, pooled = self._encode(conds)
        batch = prompt_embeds.shape[0]

        # 2. Initial noise, one seed per frame, scaled as the scheduler expects.
        pipe.scheduler.set_timesteps(1, device=self.device)
        if hasattr(pipe.scheduler, "set_begin_index"):
            pipe.scheduler.set_begin_index(0)
        t = pipe.scheduler.timesteps[0]
        latents = torch.cat([self._frame_noise(c) for c in conds]) * pipe.scheduler.init_noise_sigma

        # 3. Micro-conditioning: original size, crop (0, 0), target size.
        time_ids = torch.tensor([[height, width, 0, 0, height, width]], dtype=prompt_embeds.dtype, device=self.device)

        # 4. One UNet step at t = 999, no classifier-free guidance (SDXL Turbo).
        model_in = pipe.scheduler.scale_model_input(latents, t)
        noise_pred = pipe.unet(
            model_in,
            t,
            encoder_hidden_states=prompt_embeds,
            added_cond_kwargs={"text_embeds": pooled, "time_ids": time_ids.repeat(batch, 1)},
            return_dict=False,
        )[0]
        latents = pipe.scheduler.step(noise_pred, t, latents, return_dict=False)[0]

        # 5. VAE decode, in the VAE's own dtype (fp32 when the model runs in fp16). AutoencoderKL
        # or AutoencoderTiny (TAESDXL: no post_quant_conv, scaling_factor 1.0, output in [-1, 1]).
        vae = pipe.vae
        decoder_part = getattr(vae, "post_quant_conv", None) or vae.decoder
        latents = latents.to(next(decoder_part.parameters()).dtype)
        mean = getattr(vae.config, "latents_mean", None)
        std = getattr(vae.config, "latents_std", None)
        if mean is not None and std is not None:
            mean_t = torch.tensor(mean).view(1, -1, 1, 1).to(latents)
            std_t = torch.tensor(std).view(1, -1, 1, 1).to(latents)
            latents = latents * std_t / vae.config.scaling_factor + mean_t
        else:
            latents = latents / vae.config.scaling_factor
        # On a CPU the decoder's full-resolution activations outgrow the caches above a few
        # frames, so it decodes in chunks (measured in docs/benchmarks.md); GPUs take the batch.
        chunk = self.vae_chunk or batch
        image = torch.cat([vae.decode(part, return_dict=False)[0] for part in latents.split(chunk)])

        # 6. To uint8 exactly as diffusers' image processor does.
        image = (image / 2 + 0.5).clamp(0, 1).permute(0, 2, 3, 1).float().cpu().numpy()
        frames = (image * 255).round().astype(np.uint8)
        return list(frames)
