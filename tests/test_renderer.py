"""The renderer's exactness contracts, on the real tiny pipeline."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from safetensors.torch import load

from sdxl_breeder.model.genome import textual_inversion_bytes
from sdxl_breeder.model.renderer import RenderError
from sdxl_breeder.model.scene import Scene
from tests.conftest import PROMPTS
from sdxl_breeder.model.renderer import FrameRequest
from sdxl_breeder.spec import FrameSettings

SIZE = 128
CORNERS = {0: (0.0, 0.0), 1: (1.0, 0.0), 2: (0.0, 1.0), 3: (1.0, 1.0)}


def stock_frame(pipe, prompt: str, seed: int, size: int = SIZE) -> np.ndarray:
    out = pipe(
        prompt,
        num_inference_steps=1,
        guidance_scale=0.0,
        height=size,
        width=size,
        generator=torch.Generator("cpu").manual_seed(seed),
        output_type="np",
    ).images[0]
    return (out * 255).round().astype(np.uint8)


def max_diff(a: np.ndarray, b: np.ndarray) -> int:
    return int(np.abs(a.astype(np.int16) - b.astype(np.int16)).max())


@pytest.fixture(scope="module")
def scene(renderer):
    return Scene(tuple(renderer.genome_from_prompt(p) for p in PROMPTS))


@pytest.mark.parametrize("corner", [0, 1, 2, 3])
@pytest.mark.parametrize("mode", ["lerp", "slerp"])
def test_corner_equals_stock_pipeline_alone_and_in_mixed_batch(renderer, stock_pipeline, scene, corner, mode):
    x, y = CORNERS[corner]
    seed = 1000 + corner
    ref = stock_frame(stock_pipeline, PROMPTS[corner], seed)
    alone = renderer.render([FrameRequest(scene, x, y, FrameSettings(blend=mode, seed=seed, width=SIZE, height=SIZE))])[0]
    mixed = renderer.render(
        [
            FrameRequest(scene, 0.3, 0.6, FrameSettings(blend=mode, seed=5, width=SIZE, height=SIZE)),
            FrameRequest(scene, x, y, FrameSettings(blend=mode, seed=seed, width=SIZE, height=SIZE)),
            FrameRequest(scene, 0.9, 0.1, FrameSettings(blend=mode, seed=6, width=SIZE, height=SIZE)),
        ]
    )[1]
    assert alone.shape == (SIZE, SIZE, 3) and alone.dtype == np.uint8
    assert max_diff(alone, ref) <= 1
    assert max_diff(mixed, ref) <= 1


def test_frame_alone_equals_frame_in_batch(renderer, scene):
    conds = [FrameRequest(scene, i / 7, 1 - i / 9, FrameSettings(seed=i, width=SIZE, height=SIZE)) for i in range(4)]
    batch = renderer.render(conds)
    for cond, framed in zip(conds, batch):
        assert max_diff(renderer.render([cond])[0], framed) <= 1


def test_blend_differs_from_corners_and_is_deterministic(renderer, scene):
    mid = FrameRequest(scene, 0.5, 0.5, FrameSettings(seed=3, width=SIZE, height=SIZE))
    a, b = renderer.render([mid])[0], renderer.render([mid])[0]
    assert np.array_equal(a, b)
    corner = renderer.render([FrameRequest(scene, 0, 0, FrameSettings(seed=3, width=SIZE, height=SIZE))])[0]
    assert max_diff(a, corner) > 5


def test_seed_changes_frame(renderer, scene):
    a = renderer.render([FrameRequest(scene, 0, 0, FrameSettings(seed=1, width=SIZE, height=SIZE))])[0]
    b = renderer.render([FrameRequest(scene, 0, 0, FrameSettings(seed=2, width=SIZE, height=SIZE))])[0]
    assert max_diff(a, b) > 5


def test_corner_seeds_slerp_noise_exact_at_corners(renderer, scene):
    seeds = (11, 22, 33, 44)
    for corner, (x, y) in CORNERS.items():
        with_corners = FrameRequest(scene, x, y, FrameSettings(seed=0, width=SIZE, height=SIZE, corner_seeds=seeds))
        plain = FrameRequest(scene, x, y, FrameSettings(seed=seeds[corner], width=SIZE, height=SIZE))
        assert np.array_equal(renderer.render([with_corners])[0], renderer.render([plain])[0])
    mid = renderer.render([FrameRequest(scene, 0.5, 0.5, FrameSettings(width=SIZE, height=SIZE, corner_seeds=seeds))])[0]
    assert np.isfinite(mid).all()


def test_noise_drawn_like_diffusers(renderer):
    from diffusers.utils.torch_utils import randn_tensor

    ref = randn_tensor((1, 4, SIZE // 8, SIZE // 8), generator=torch.Generator("cpu").manual_seed(9), dtype=torch.float32)
    assert torch.equal(renderer.noise(9, SIZE, SIZE), ref)


def test_mixed_sizes_in_one_batch_rejected(renderer, scene):
    with pytest.raises(RenderError, match="one size"):
        renderer.render(
            [FrameRequest(scene, 0, 0, FrameSettings(width=128, height=128)), FrameRequest(scene, 0, 0, FrameSettings(width=192, height=128))]
        )


def test_bad_size_rejected(renderer):
    with pytest.raises(RenderError, match="multiple of 64"):
        renderer.check_size(100, 128)


def test_template_corner_equals_stock_prompt(renderer, stock_pipeline):
    template = "a drawing in the style of [noken] of a whippet sleeping"
    nokens = ["van gogh", "old photo", "neon city", "dark forest"]  # two tokens each on the tiny tokenizer
    genomes = tuple(renderer.genome_from_prompt(n) for n in nokens)
    assert len({g.length for g in genomes}) == 1
    scene = Scene(genomes, renderer.template(template))
    for corner, (x, y) in CORNERS.items():
        ours = renderer.render([FrameRequest(scene, x, y, FrameSettings(seed=4, width=SIZE, height=SIZE))])[0]
        ref = stock_frame(stock_pipeline, template.replace("[noken]", nokens[corner]), 4)
        assert max_diff(ours, ref) <= 1


def test_textual_inversion_loads_into_stock_pipeline(renderer):
    """A noken exported as SDXL textual inversion encodes in stock diffusers like the engine's template."""
    from sdxl_breeder.model.loading import load_model

    pipe = load_model("tiny", device="cpu").pipeline  # fresh: loading TI adds tokens to it
    template = "a drawing in the style of [noken] of a whippet sleeping"
    scene = Scene(tuple(renderer.genome_from_prompt(p) for p in ("van gogh", "a red fox", "ink", "cats")), renderer.template(template))
    x, y = 0.35, 0.7
    blended = scene.genome_at(x, y)
    sd = load(textual_inversion_bytes(blended.noken()))
    assert sd["clip_l"].shape == (blended.length, renderer.widths[0])
    assert sd["clip_g"].shape == (blended.length, renderer.widths[1])
    pipe.load_textual_inversion(sd["clip_l"], token="<noken>", text_encoder=pipe.text_encoder, tokenizer=pipe.tokenizer)
    pipe.load_textual_inversion(sd["clip_g"], token="<noken>", text_encoder=pipe.text_encoder_2, tokenizer=pipe.tokenizer_2)
    with torch.inference_mode():
        ref_embeds, _, ref_pooled, _ = pipe.encode_prompt(template.replace("[noken]", "<noken>"), do_classifier_free_guidance=False)
    embeds, pooled = renderer.encode([FrameRequest(scene, x, y)])
    assert (embeds - ref_embeds).abs().max() <= 1e-5
    assert (pooled - ref_pooled).abs().max() <= 1e-5
