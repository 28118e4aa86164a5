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


def test_save_model_writes_a_directory_and_a_single_file_that_render_the_same_frame(tmp_path):
    """`save-model tiny DIR --single-file F`: stock diffusers loads both; `--model F` renders the frame
    that `--model DIR` and the built-in tiny render."""
    from PIL import Image

    from sdxl_breeder.cli import main

    folder, single = tmp_path / "tiny", tmp_path / "tiny.safetensors"
    assert main(["save-model", "tiny", str(folder), "--single-file", str(single)]) == 0
    assert (folder / "model_index.json").exists() and single.exists()
    frames = []
    for model in (["--model", "tiny"], ["--model", str(folder)], ["--model", str(single), "--model-config", str(folder)]):
        out = tmp_path / f"frame{len(frames)}.png"
        assert main(["render", *model, "--device", "cpu", "--corners", "a cat", "a dog", "neon city", "a fox",
                     "--x", "0.3", "--y", "0.6", "--seed", "7", "--width", "128", "--height", "128", "--out", str(out)]) == 0
        frames.append(np.asarray(Image.open(out)))
    assert frames[0].std() > 1  # a real picture, not a blank
    assert np.array_equal(frames[0], frames[1]) and np.array_equal(frames[0], frames[2])


def test_single_file_checkpoint_loads_with_stock_diffusers(tiny_model, tmp_path):
    from diffusers import StableDiffusionXLPipeline

    from sdxl_breeder.model.checkpoint import save_single_file

    tiny_model.pipeline.save_pretrained(tmp_path / "tiny")
    save_single_file(tiny_model.pipeline, tmp_path / "tiny.safetensors")
    stock = StableDiffusionXLPipeline.from_single_file(str(tmp_path / "tiny.safetensors"), config=str(tmp_path / "tiny"),
                                                       local_files_only=True)
    for name in ("unet", "vae", "text_encoder", "text_encoder_2"):
        ours, theirs = getattr(tiny_model.pipeline, name).state_dict(), getattr(stock, name).state_dict()
        assert set(ours) == set(theirs)
        assert all(torch.equal(ours[k], theirs[k]) for k in ours), name


def test_files_that_are_not_sdxl_checkpoints_get_one_clear_line(tmp_path, monkeypatch):
    from safetensors.torch import save_file

    sd1 = tmp_path / "sd15.safetensors"
    save_file({"cond_stage_model.transformer.x": torch.zeros(1), "model.diffusion_model.input_blocks.0.0.weight": torch.zeros(1)}, str(sd1))
    other = tmp_path / "lora.safetensors"
    save_file({"lora_unet_down.weight": torch.zeros(1)}, str(other))
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"not a safetensors file at all")
    for path, text in ((sd1, "Stable Diffusion 1.x/2.x"), (other, "not a diffusion checkpoint"), (junk, "not a readable safetensors")):
        with pytest.raises(ModelLoadError, match="SDXL|readable") as e:
            load_model(str(path), device="cpu")
        assert text in str(e.value) and "\n" not in str(e.value)
    with pytest.raises(ModelLoadError, match="only .safetensors"):
        (tmp_path / "old.ckpt").write_bytes(b"x")
        load_model(str(tmp_path / "old.ckpt"), device="cpu")
    with pytest.raises(ModelLoadError, match="no such checkpoint"):
        load_model(str(tmp_path / "missing.safetensors"), device="cpu")


def test_single_file_without_configs_offline_says_how_to_get_them(tiny_model, tmp_path, monkeypatch):
    from sdxl_breeder.model.checkpoint import save_single_file

    save_single_file(tiny_model.pipeline, tmp_path / "tiny.safetensors")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    with pytest.raises(ModelLoadError, match="hf download stabilityai/sdxl-turbo .*--model-config"):
        load_model(str(tmp_path / "tiny.safetensors"), device="cpu", model_config="stabilityai/sdxl-turbo")
