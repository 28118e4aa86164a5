"""Shared fixtures: the real tiny SDXL pipeline (built once per test session)."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from sdxl_breeder.cli import _quiet_libraries

_quiet_libraries()
logging.getLogger("sdxl_breeder").setLevel(logging.INFO)

def pytest_collection_modifyitems(config, items):
    import torch

    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU (run scripts/gpu-check on a GPU machine)")
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip)


PROMPTS = ("a cat", "a red fox in the snow", "a drawing of a whippet sleeping", "neon city at night")


def coarse_diff(a: np.ndarray, b: np.ndarray, block: int = 8) -> float:
    """Mean difference of two HxWx3 frames' block×block means. The tiny model's frames are
    noise-like, and JPEG or H.264 at 64² smears them by as much as two different frames differ;
    their coarse content survives both, so a lossy frame is compared with its lossless twin here."""
    def means(f: np.ndarray) -> np.ndarray:
        h, w, c = f.shape
        return f.astype(float).reshape(h // block, block, w // block, block, c).mean(axis=(1, 3))

    return float(np.abs(means(a) - means(b)).mean())


@pytest.fixture(scope="session")
def tiny_model():
    from sdxl_breeder.model.loading import load_model

    return load_model("tiny", device="cpu")


@pytest.fixture(scope="session")
def renderer(tiny_model):
    from sdxl_breeder.model.renderer import Renderer

    return Renderer(tiny_model)


@pytest.fixture(scope="session")
def stock_pipeline():
    """A second, independent tiny pipeline for stock-diffusers comparisons (tests may mutate it)."""
    from sdxl_breeder.model.loading import load_model

    return load_model("tiny", device="cpu").pipeline
