"""Genomes from prompts, files, breeding and the noken rule, on the real tiny model."""

from __future__ import annotations

import pytest
import torch

from sdxl_breeder.model.genome import Genome, GenomeError, breed
from sdxl_breeder.model.scene import Scene, SceneError, pad_noken, split_template
from tests.conftest import PROMPTS


def test_prompt_genome_matches_tokenizer(renderer, tiny_model):
    g = renderer.genome_from_prompt("a red fox")
    ids = tiny_model.pipeline.tokenizer_2("a red fox").input_ids
    assert g.length == len(ids) - 2
    assert g.pool == ((len(ids) - 1, 1.0),)
    assert [e.shape for e in g.embeds] == [(77, 32), (77, 64)]
    table = tiny_model.pipeline.text_encoder_2.get_input_embeddings().weight
    assert torch.equal(g.embeds[1][: len(ids)], table[torch.tensor(ids)])
    # the second tokenizer pads with "!", the first with the end token
    assert not torch.equal(g.embeds[1][-1], table[tiny_model.pipeline.tokenizer_2.eos_token_id])


def test_too_long_prompt_is_an_error_not_a_cut(renderer):
    with pytest.raises(GenomeError, match="at most 75"):
        renderer.genome_from_prompt("x y " * 60)


def test_save_and_load_round_trip(renderer, tmp_path):
    g = renderer.genome_from_prompt(PROMPTS[2])
    g.save(tmp_path / "g.safetensors")
    back = Genome.load(tmp_path / "g.safetensors")
    assert all(torch.equal(a, b) for a, b in zip(g.embeds, back.embeds))
    assert back.metadata() == g.metadata()
    assert not list(tmp_path.glob(".tmp-*"))


def test_breeding_is_reproducible_and_records_lineage(renderer):
    a, b = renderer.genome_from_prompt(PROMPTS[0]), renderer.genome_from_prompt(PROMPTS[1])
    c1 = breed(a, b, seed=42, mutation=0.0)
    c2 = breed(a, b, seed=42, mutation=0.0)
    c3 = breed(a, b, seed=43, mutation=0.0)
    assert all(torch.equal(x, y) for x, y in zip(c1.embeds, c2.embeds))
    assert not all(torch.equal(x, y) for x, y in zip(c1.embeds, c3.embeds))
    assert c1.parents == (a.id, b.id) and c1.seed == 42 and c1.prompt is None
    # crossover: every element comes from one of the parents, both parents contribute
    for x, pa, pb in zip(c1.embeds, a.embeds, b.embeds):
        from_a, from_b = (x == pa), (x == pb)
        assert bool((from_a | from_b).all())
        assert bool((from_a & ~from_b).any()) and bool((from_b & ~from_a).any())
    assert abs(sum(w for _, w in c1.pool) - 1.0) < 1e-9


def test_mutation_scales_with_the_embedding_table(renderer):
    a, b = renderer.genome_from_prompt(PROMPTS[0]), renderer.genome_from_prompt(PROMPTS[1])
    plain = breed(a, b, seed=7)
    mutated = breed(a, b, seed=7, mutation=0.5, table_std=renderer.table_std)
    for i, (p, m) in enumerate(zip(plain.embeds, mutated.embeds)):
        delta = (m - p)[1 : 1 + plain.length]
        assert abs(float(delta.std()) / (0.5 * renderer.table_std[i]) - 1) < 0.35
        assert torch.equal(m[0], p[0])  # the start token is never mutated
        assert torch.equal(m[1 + plain.length :], p[1 + plain.length :])  # nor padding


def test_breeding_rejects_bad_input(renderer):
    a = renderer.genome_from_prompt("a")
    other = Genome(embeds=(torch.zeros(77, 8), torch.zeros(77, 8)), pool=((1, 1.0),), length=0)
    with pytest.raises(GenomeError, match="different models"):
        breed(a, other, seed=1)
    with pytest.raises(GenomeError, match="mutation"):
        breed(a, a, seed=1, mutation=-1)


def test_template_rules(renderer):
    assert split_template("a [noken] b") == ("a ", " b")
    for bad in ("no slot", "[noken] and [noken]"):
        with pytest.raises(SceneError, match="exactly one"):
            renderer.template(bad)
    tpl = renderer.template("a drawing in the style of [noken] of a whippet sleeping")
    short, long = renderer.genome_from_prompt("ink"), renderer.genome_from_prompt("van gogh oil painting")
    scene = Scene((short, long, long, long), tpl)
    padded = scene.nokens()[0]
    assert padded[0].shape[0] == long.length
    assert torch.equal(padded[0][-1], short.noken()[0][-1])  # padded by repeating the last vector
    with pytest.raises(SceneError, match="at most 77"):
        Scene((renderer.genome_from_prompt("x " * 70),) * 4, tpl)


def test_only_the_slot_blends_in_noken_mode(renderer):
    tpl = renderer.template("a drawing in the style of [noken] of a whippet sleeping")
    scene = Scene(tuple(renderer.genome_from_prompt(p) for p in ("van gogh", "old photo", "neon city", "dark forest")), tpl)
    a, _, _ = scene.blend(0.0, 0.0)
    b, _, _ = scene.blend(0.6, 0.3)
    start = 1 + tpl.prefix[0].shape[0]
    for x, y in zip(a, b):
        assert torch.equal(x[:start], y[:start]) and torch.equal(x[start + 2 :], y[start + 2 :])
        assert not torch.equal(x[start : start + 2], y[start : start + 2])


def test_pad_noken_keeps_equal_lengths():
    n = (torch.ones(3, 4),)
    assert pad_noken(n, 3) is n
