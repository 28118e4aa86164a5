"""patches/clip_embeds.py: token embeddings in, exactly the stock SDXL conditioning out."""

from __future__ import annotations

import pytest
import torch

from sdxl_breeder.patches.clip_embeds import (
    UnsupportedTransformers,
    check_transformers_version,
    drop_output_capture_hooks,
    sdxl_conditioning,
)
from tests.conftest import PROMPTS


def _stock_inputs(pipe, prompts):
    ids1 = pipe.tokenizer(list(prompts), padding="max_length", max_length=77, truncation=True, return_tensors="pt").input_ids
    ids2 = pipe.tokenizer_2(list(prompts), padding="max_length", max_length=77, truncation=True, return_tensors="pt").input_ids
    e1 = pipe.text_encoder.get_input_embeddings()(ids1)
    e2 = pipe.text_encoder_2.get_input_embeddings()(ids2)
    eos = (ids2 == pipe.tokenizer_2.eos_token_id).int().argmax(-1)
    return e1, e2, torch.nn.functional.one_hot(eos, 77).float()


@pytest.mark.parametrize("prompts", [PROMPTS[:1], PROMPTS], ids=["one", "batch"])
def test_equals_encode_prompt(tiny_model, prompts):
    pipe = tiny_model.pipeline
    with torch.inference_mode():
        ref_embeds, _, ref_pooled, _ = pipe.encode_prompt(list(prompts), do_classifier_free_guidance=False)
        embeds, pooled = sdxl_conditioning(pipe.text_encoder, pipe.text_encoder_2, *_stock_inputs(pipe, prompts))
    assert embeds.shape == (len(prompts), 77, 32 + 64)
    assert pooled.shape == (len(prompts), 32)
    assert (embeds - ref_embeds).abs().max() <= 1e-5
    assert (pooled - ref_pooled).abs().max() <= 1e-5


def test_pooled_is_weighted_sum_of_end_positions(tiny_model):
    """Pooling two prompts' end positions half-half equals the mean of their pooled vectors."""
    pipe = tiny_model.pipeline
    e1, e2, w = _stock_inputs(pipe, PROMPTS[:2])
    with torch.inference_mode():
        _, pooled = sdxl_conditioning(pipe.text_encoder, pipe.text_encoder_2, e1, e2, w)
        mixed_w = (w[0] + w[1])[None] / 2
        _, both = sdxl_conditioning(pipe.text_encoder, pipe.text_encoder_2, e1[:1], e2[:1], mixed_w)
        _, second_pos = sdxl_conditioning(pipe.text_encoder, pipe.text_encoder_2, e1[:1], e2[:1], w[1:2])
    # same token vectors (prompt 0), pooled half at its own end, half at prompt 1's end position
    assert torch.allclose(both, (pooled[0:1] + second_pos) / 2, atol=1e-5)


def test_encoders_untouched_after_call(tiny_model):
    pipe = tiny_model.pipeline
    e1, e2, w = _stock_inputs(pipe, PROMPTS[:1])
    with torch.inference_mode():
        sdxl_conditioning(pipe.text_encoder, pipe.text_encoder_2, torch.zeros_like(e1), torch.zeros_like(e2), w)
        again, _, _, _ = pipe.encode_prompt(PROMPTS[0], do_classifier_free_guidance=False)
        embeds, _ = sdxl_conditioning(pipe.text_encoder, pipe.text_encoder_2, e1, e2, w)
    assert (again - embeds).abs().max() <= 1e-5
    assert not pipe.text_encoder.get_input_embeddings()._forward_hooks


def test_traces_as_one_graph(tiny_model):
    """No hook or closure per call: torch.compile sees one graph (fullgraph) and the same numbers,
    also after a stock forward (once its output-capturing hooks are dropped; it reinstalls them)."""
    import torch._dynamo

    pipe = tiny_model.pipeline
    e1, e2, w = _stock_inputs(pipe, PROMPTS[:2])
    with torch.inference_mode():
        pipe.encode_prompt(PROMPTS[0], do_classifier_free_guidance=False)
    assert drop_output_capture_hooks(pipe.text_encoder) > 0 and drop_output_capture_hooks(pipe.text_encoder_2) > 0
    torch._dynamo.reset()
    compiled = torch.compile(sdxl_conditioning, fullgraph=True, backend="eager")
    with torch.inference_mode():
        ref = sdxl_conditioning(pipe.text_encoder, pipe.text_encoder_2, e1, e2, w)
        out = compiled(pipe.text_encoder, pipe.text_encoder_2, e1, e2, w)
    torch._dynamo.reset()
    assert torch.equal(out[0], ref[0]) and torch.equal(out[1], ref[1])
    with torch.inference_mode():  # the stock forward still works, and puts its hooks back
        again, _, _, _ = pipe.encode_prompt(PROMPTS[0], do_classifier_free_guidance=False)
    assert drop_output_capture_hooks(pipe.text_encoder) > 0


def test_wrong_width_is_a_clear_error(tiny_model):
    pipe = tiny_model.pipeline
    e1, e2, w = _stock_inputs(pipe, PROMPTS[:1])
    with pytest.raises(ValueError, match="wide"):
        sdxl_conditioning(pipe.text_encoder, pipe.text_encoder_2, e2, e2, w)


@pytest.mark.parametrize("version", ["3.36.0", "4.20.1", "6.0.0", "garbage"])
def test_unsupported_transformers_version(version):
    with pytest.raises(UnsupportedTransformers, match="transformers"):
        check_transformers_version(version)


def test_installed_version_supported():
    assert check_transformers_version()
