"""The Evolve and Lineage views in a real Chromium against a real tiny-model server: a brood,
survivors kept and bred into the next generation, the ring around the cursor, a line walked back.
Screenshots land in artifacts/screenshots/ as for every page test."""

from __future__ import annotations

from typing import Any

import pytest

from tests.test_page import Pad, browser, open_pad, pad, server, sync_api  # noqa: F401 — the page tests' fixtures

expect = sync_api.expect
pytestmark = pytest.mark.timeout(180)
LOADED = "n => document.querySelectorAll('[data-testid=child]:not(.waiting)').length === n"


def api(pad: Pad, path: str) -> Any:
    return pad.js("p => breeder.api(p)", path)


def test_a_brood_survivors_kept_the_next_generation_and_the_line_back(open_pad: Any) -> None:
    pad = open_pad((1280, 2000))  # tall: the pad, the evolve panel and the gallery at once
    page = pad.page
    pad.wait("document.querySelectorAll('[data-testid=gallery-item]').length >= 2")
    items = page.get_by_test_id("gallery-item")
    a, b = items.nth(0).get_attribute("data-id"), items.nth(1).get_attribute("data-id")
    # By id: the corners' genomes are stored as the page starts, and the newest-first gallery can
    # re-order between reading the ids and clicking.
    for genome in (a, b):
        page.locator(f"[data-testid=gallery-item][data-id='{genome}']").get_by_test_id("gallery-select").check()
    page.get_by_test_id("evolve-add-selected").click()
    expect(page.get_by_test_id("evolve-parent")).to_have_count(2)
    page.get_by_test_id("evolve-seed").fill("7")
    page.get_by_test_id("evolve-breed").click()
    pad.wait(LOADED, 9)
    expect(page.get_by_test_id("brood-info")).to_contain_text("Generation 1")
    sent = pad.sent_of("evolve")[-1]
    assert sorted(sent["parents"]) == sorted([a, b]) and sent["count"] == 9 and sent["seed"] == 7
    children = page.get_by_test_id("child")
    sources = {children.nth(i).locator("img").get_attribute("src") for i in range(9)}
    assert len(sources) == 9  # one picture per child
    # mark two survivors and keep them
    children.nth(0).click()
    children.nth(4).click()
    expect(children.nth(4)).to_have_attribute("aria-pressed", "true")
    expect(page.get_by_test_id("evolve-survivors")).to_contain_text("2 survivors")
    page.get_by_test_id("evolve-keep").click()
    kept = page.locator("[data-testid=gallery-item]", has=page.locator("text=evolved from"))
    expect(kept).to_have_count(2)
    stored = [g for g in api(pad, "/api/genomes")["genomes"] if g["origin"] == "evolve"]
    assert sorted(g["child"] for g in stored) == [0, 4] and {g["generation"] for g in stored} == {1}
    # one survivor into the next generation
    children.nth(4).click()  # unmark: child 0 stays marked
    page.get_by_test_id("evolve-next").click()
    expect(page.get_by_test_id("brood-info")).to_contain_text("Generation 2")
    pad.wait(LOADED, 9)
    first = next(g["id"] for g in stored if g["child"] == 0)
    assert pad.sent_of("evolve")[-1]["parents"] == [first]
    expect(page.get_by_test_id("evolve-parent")).to_have_count(1)
    page.get_by_test_id("child").nth(3).click()
    page.get_by_test_id("evolve-keep").click()
    grandchild = page.locator("[data-testid=gallery-item]", has=page.locator("text=gen 2"))
    expect(grandchild).to_have_count(1)
    # its line: generation 2, its parent at 1, the prompts at 0; then walk back up one step
    grandchild.get_by_test_id("show-lineage").click()
    rows = page.get_by_test_id("lineage-row")
    expect(rows).to_have_count(3)
    assert [rows.nth(i).get_attribute("data-generation") for i in range(3)] == ["0", "1", "2"]
    expect(page.locator("[data-testid=lineage-item].focus")).to_have_attribute("data-generation", "2")
    expect(rows.nth(0).get_by_test_id("lineage-item")).to_have_count(2)
    rows.nth(1).get_by_test_id("lineage-item").click()
    expect(page.locator("[data-testid=lineage-item].focus")).to_have_attribute("data-id", first)
    expect(page.get_by_test_id("lineage-child")).to_have_count(1)
    page.get_by_test_id("lineage-panel").scroll_into_view_if_needed()
    assert pad.errors == []


def test_around_the_cursor_keeps_a_neighbour_and_puts_it_on_a_corner(open_pad: Any) -> None:
    pad = open_pad((1280, 1800))
    page = pad.page
    page.get_by_test_id("evolve-around").click()
    pad.wait(LOADED, 8)
    expect(page.get_by_test_id("brood-info")).to_contain_text("Around the cursor")
    grid = page.get_by_test_id("brood")
    expect(grid.locator(":scope > *")).to_have_count(9)
    assert grid.locator(":scope > *").nth(4).get_attribute("data-testid") == "brood-centre"  # the frame in the middle
    assert page.get_by_test_id("brood-centre").locator("img").get_attribute("src").startswith("data:image/jpeg")
    sent = pad.sent_of("evolve")[-1]
    assert sent["parents"] == ["cursor"] and sent["count"] == 8 and sent["mutation"] < 0.1
    page.get_by_test_id("child").nth(5).click()
    expect(page.get_by_test_id("evolve-corner-3")).to_be_visible()
    select = pad.sent_of("select")[-1]
    assert select["children"] == [5] and select["brood"] == pad.js("breeder.evolve.brood.msg.brood")
    newest = api(pad, "/api/genomes")["genomes"][0]  # newest first
    assert newest["origin"] == "evolve" and newest["child"] == 5 and newest["generation"] == 1
    page.get_by_test_id("evolve-corner-3").click()
    pad.wait("id => breeder.corners && breeder.corners.corners[3].genome === id", newest["id"])
    assert pad.errors == []


def test_bad_evolve_input_is_refused_with_a_message(pad: Pad) -> None:
    page = pad.page
    page.get_by_test_id("evolve-add-cursor").click()
    page.get_by_test_id("evolve-seed").fill("-3")
    page.get_by_test_id("evolve-breed").click()
    expect(page.get_by_test_id("toast").filter(has_text="brood seed")).to_have_count(1)
    assert pad.sent_of("evolve") == []
    assert pad.errors == []
