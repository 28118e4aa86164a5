"""Corners → a scene in one place (sdxl_breeder.model.scene.scene_from_corners)."""

from __future__ import annotations

import pytest
import torch

from sdxl_breeder.model.genome import GenomeError
from sdxl_breeder.model.scene import Scene, SceneError, scene_from_corners
from sdxl_breeder.spec import Corner
from tests.conftest import PROMPTS


def test_prompts_are_embedded_and_known_genomes_used(renderer):
    fox = renderer.genome_from_prompt("a red fox")
    corners = [Corner(prompt=PROMPTS[0]), Corner(genome=fox.id), Corner(prompt=PROMPTS[2]), Corner(prompt=PROMPTS[3])]
    scene = scene_from_corners(renderer, corners, "a drawing of [noken]", [None, fox, None, None])
    assert scene.corners[1] is fox and scene.template is not None and scene.template.text == "a drawing of [noken]"
    by_hand = Scene((renderer.genome_from_prompt(PROMPTS[0]), fox, renderer.genome_from_prompt(PROMPTS[2]),
                     renderer.genome_from_prompt(PROMPTS[3])), renderer.template("a drawing of [noken]"))
    for ours, theirs in zip(scene.corners, by_hand.corners):
        assert all(torch.equal(a, b) for a, b in zip(ours.embeds, theirs.embeds))


def test_what_cannot_become_a_scene_is_a_clear_error(renderer):
    prompts = [Corner(prompt=p) for p in PROMPTS]
    with pytest.raises(SceneError, match="top-right corner names genome 0123456789abcdef"):
        scene_from_corners(renderer, [prompts[0], Corner(genome="0123456789abcdef"), *prompts[2:]])
    with pytest.raises(SceneError, match="4 corners"):
        scene_from_corners(renderer, prompts[:3])
    with pytest.raises(SceneError, match="exactly one"):
        scene_from_corners(renderer, prompts, "no slot here")
    other = renderer.genome_from_prompt("a cat")
    other = type(other)(embeds=tuple(e[:, :8] for e in other.embeds), pool=other.pool, length=other.length)
    with pytest.raises(GenomeError, match="another model"):
        scene_from_corners(renderer, prompts, None, [other, None, None, None])
