"""Shared fixtures: the real tiny SDXL pipeline (built once per test session)."""

from __future__ import annotations

import logging

import pytest

from sdxl_breeder.cli import _quiet_libraries

_quiet_libraries()
logging.getLogger("sdxl_breeder").setLevel(logging.INFO)

PROMPTS = ("a cat", "a red fox in the snow", "a drawing of a whippet sleeping", "neon city at night")


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
