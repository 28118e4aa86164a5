"""`--model` resolution: the tiny model, sdxl-random's architecture, devices, dtypes, errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sdxl_breeder.model.loading import ModelLoadError, build_random_pipeline, load_model, pick_device, pick_dtypes


def test_tiny_is_deterministic_and_savable_for_stock_diffusers(tiny_model, tmp_path):
    from diffusers import StableDiffusionXLPipeline

    again = load_model("tiny", device="cpu")
    for a, b in zip(tiny_model.pipeline.unet.parameters(), again.pipeline.unet.parameters()):
        assert torch.equal(a, b)
    tiny_model.pipeline.save_pretrained(tmp_path / "tiny")
    assert (tmp_path / "tiny" / "tokenizer" / "tokenizer_config.json").exists()
    stock = StableDiffusionXLPipeline.from_pretrained(tmp_path / "tiny")
    args = dict(num_inference_steps=1, guidance_scale=0.0, height=64, width=64, output_type="np")
    ours = tiny_model.pipeline("a cat", generator=torch.Generator().manual_seed(1), **args).images
    theirs = stock("a cat", generator=torch.Generator().manual_seed(1), **args).images
    assert np.abs(ours - theirs).max() < 1e-5
    # and our loader takes the saved directory like any diffusers SDXL directory
    loaded = load_model(str(tmp_path / "tiny"), device="cpu")
    assert loaded.name == str(tmp_path / "tiny")


def test_sdxl_random_has_the_full_sdxl_architecture():
    pipe = build_random_pipeline("sdxl-random", device=torch.device("meta"))
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert 2.55e9 < count(pipe.unet) < 2.6e9
    assert pipe.text_encoder.config.hidden_size == 768 and pipe.text_encoder_2.config.hidden_size == 1280
    assert pipe.text_encoder_2.config.projection_dim == 1280
    assert pipe.unet.config.cross_attention_dim == 2048
    assert 2 ** (len(pipe.vae.config.block_out_channels) - 1) == 8
    assert pipe.vae.config.block_out_channels == [128, 256, 512, 512] or tuple(pipe.vae.config.block_out_channels) == (128, 256, 512, 512)


def test_device_and_dtype_choice():
    assert pick_device("cpu").type == "cpu"
    if not torch.cuda.is_available():
        assert pick_device("auto").type in ("cpu", "mps")
        with pytest.raises(ModelLoadError, match="CUDA"):
            pick_device("cuda")
    with pytest.raises(ModelLoadError, match="unknown device"):
        pick_device("tpu")
    assert pick_dtypes(torch.device("cpu")) == (torch.float32, torch.float32)
    # fp16 keeps the VAE in fp32: the SDXL VAE overflows to NaN in fp16
    assert pick_dtypes(torch.device("cpu"), "fp16") == (torch.float16, torch.float32)
    assert pick_dtypes(torch.device("cpu"), "bf16") == (torch.bfloat16, torch.bfloat16)


def test_unknown_and_unreachable_models_name_the_tiny_fallback(monkeypatch, tmp_path):
    with pytest.raises(ModelLoadError, match="--model tiny"):
        load_model("no-such-model", device="cpu")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelLoadError, match="--model tiny"):
        load_model("stabilityai/sdxl-turbo", device="cpu")
    with pytest.raises(ModelLoadError, match="--model tiny"):
        load_model(str(tmp_path), device="cpu")  # a directory that is no diffusers model


def test_auto_falls_back_to_tiny_offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    m = load_model("auto", device="cpu")
    assert m.name == "tiny" and "TINY" in m.warning
