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
    mid_request = FrameRequest(scene, 0.5, 0.5, FrameSettings(width=SIZE, height=SIZE, corner_seeds=seeds))
    mid = renderer.render([mid_request])[0]
    assert np.array_equal(mid, renderer.render([mid_request])[0])
    # Mid-pad the noise is a blend of all four seeds: unlike the frame with any one of them.
    for seed in seeds:
        single = renderer.render([FrameRequest(scene, 0.5, 0.5, FrameSettings(seed=seed, width=SIZE, height=SIZE))])[0]
        assert max_diff(mid, single) > 5
    # A NaN in the blended noise would come out as a flat (all-zero) frame.
    assert mid.std() > 5


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


def test_batch_blends_mixed_scenes_modes_and_points_on_the_device(renderer, scene):
    """One batch mixing a prompt scene and a template scene, lerp and slerp, corners and mid-pad:
    each row's conditioning is the one that frame gets alone, and a lerp row is Σ wᵢ · cornerᵢ."""
    from sdxl_breeder.model.blend import bilinear_weights
    from sdxl_breeder.patches.clip_embeds import sdxl_conditioning

    template = Scene(tuple(renderer.genome_from_prompt(n) for n in ("van gogh", "ink", "neon city", "cats")),
                     renderer.template("a drawing in the style of [noken] of a whippet sleeping"))
    frames = [
        FrameRequest(scene, 0.25, 0.75, FrameSettings(blend="lerp")),
        FrameRequest(template, 0.6, 0.3, FrameSettings(blend="slerp")),
        FrameRequest(scene, 1.0, 0.0, FrameSettings(blend="slerp")),
        FrameRequest(template, 0.5, 0.5, FrameSettings(blend="lerp")),
        FrameRequest(scene, 0.7, 0.2, FrameSettings(blend="slerp")),
    ]
    embeds, pooled = renderer.encode(frames)
    for i, f in enumerate(frames):
        alone_embeds, alone_pooled = renderer.encode([f])
        assert torch.allclose(embeds[i], alone_embeds[0], atol=1e-5), i
        assert torch.allclose(pooled[i], alone_pooled[0], atol=1e-5), i
    w = bilinear_weights(0.25, 0.75)
    by_hand = [sum(wi * g.embeds[e] for wi, g in zip(w, scene.corners)) for e in range(2)]
    pool = sum(wi * g.pool_weights() for wi, g in zip(w, scene.corners))
    with torch.inference_mode():
        ref_embeds, ref_pooled = sdxl_conditioning(*renderer.encoders, by_hand[0][None], by_hand[1][None], pool[None])
    assert torch.allclose(embeds[0], ref_embeds[0], atol=1e-5)
    assert torch.allclose(pooled[0], ref_pooled[0], atol=1e-5)
    # The slerp corner row is the corner itself, exactly.
    corner_embeds, _ = renderer.encode([FrameRequest(scene, 1.0, 0.0, FrameSettings(blend="lerp"))])
    assert torch.equal(embeds[2], corner_embeds[0])


def test_scene_goes_to_the_device_once(renderer, scene):
    renderer.render([FrameRequest(scene, 0.5, 0.5, FrameSettings(width=64, height=64))])
    pack = scene.pack(renderer.device)
    renderer.render([FrameRequest(scene, 0.1, 0.5, FrameSettings(width=64, height=64))])
    assert scene.pack(renderer.device) is pack
    assert pack.corners[0].shape == (4, 77, renderer.widths[0]) and pack.pools.shape == (4, 77)


def test_padded_buckets_drop_the_padding(tiny_model, scene):
    """With batch buckets (as when compiled), 3 frames render as a batch of 4 and come back as 3,
    equal to the unpadded frames."""
    from sdxl_breeder.model.renderer import Renderer

    r = Renderer(tiny_model)
    frames = [FrameRequest(scene, i / 3, 0.5, FrameSettings(seed=i, width=64, height=64)) for i in range(3)]
    plain = r.render(frames)
    r.buckets = (1, 2, 4)
    assert [len(p) for p in r._padded(frames)] == [4]
    assert [len(p) for p in r._padded(frames * 2)] == [4, 2]
    padded = r.render(frames)
    assert len(padded) == 3
    for a, b in zip(plain, padded):
        assert max_diff(a, b) <= 1


def test_failed_compile_falls_back_to_eager(tiny_model, scene):
    """A compile that fails (here: a backend that raises) leaves an eager renderer that works."""
    from sdxl_breeder.model.compiled import compile_renderer
    from sdxl_breeder.model.renderer import Renderer

    def broken_backend(gm, example_inputs):
        raise RuntimeError("no compiler here")

    r = Renderer(tiny_model)
    frame = FrameRequest(scene, 0.4, 0.6, FrameSettings(seed=2, width=64, height=64))
    before = r.render([frame])[0]
    report = compile_renderer(r, max_batch=2, width=64, height=64, backend=broken_backend)
    assert not report.ok and "no compiler here" in report.error
    assert r.encode_fn == r.encode_eager and r.denoise_fn == r.denoise_eager and r.decode_fn == r.decode_eager
    assert r.buckets is None
    assert np.array_equal(r.render([frame])[0], before)


def test_stage_clock_times_each_stage(tiny_model, scene):
    from sdxl_breeder.model.renderer import Renderer
    from sdxl_breeder.model.stages import STAGES

    r = Renderer(tiny_model)
    r.render([FrameRequest(scene, 0.5, 0.5, FrameSettings(width=64, height=64))])
    assert r.clock.last == {}
    r.clock.enabled = True
    r.render([FrameRequest(scene, 0.5, 0.5, FrameSettings(width=64, height=64))] * 2)
    assert set(r.clock.last) == set(STAGES)
    assert all(ms >= 0 for ms in r.clock.last.values()) and r.clock.last["unet"] > 0


def test_compiled_stage_failing_at_render_time_falls_back(tiny_model, scene):
    """A compiled stage that raises while rendering (a new shape, a runtime error) costs that
    call a retry, not the frame: the renderer goes eager and answers."""
    from sdxl_breeder.model.renderer import Renderer

    r = Renderer(tiny_model)
    frame = FrameRequest(scene, 0.4, 0.6, FrameSettings(seed=2, width=64, height=64))
    before = r.render([frame])[0]

    def broken(*args):
        raise RuntimeError("graph broke")

    r.decode_fn, r.buckets = broken, (1, 2)
    assert np.array_equal(r.render([frame])[0], before)
    assert r.buckets is None and r.decode_fn == r.decode_eager
