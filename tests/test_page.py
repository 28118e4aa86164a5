"""The browser pad (static/): a real tiny-model server and a real Chromium, driven by playwright.

Every test saves a screenshot under artifacts/screenshots/<test-name>.png. Chromium is the
system one (Debian `chromium`, or $BREEDER_CHROMIUM); without it the module is skipped.
"""

from __future__ import annotations

import base64
import io
import json
import re
import time
from dataclasses import asdict, fields
from typing import Any, Iterator

import numpy as np
import pytest
from PIL import Image

from tests.page_helpers import LAUNCH_ARGS, SCREENSHOTS, PadServer, find_chromium, wait_until

sync_api = pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed")
expect = sync_api.expect

pytestmark = pytest.mark.timeout(120)
TIMEOUT_MS = 20000  # one frame of the tiny model takes ~0.1-0.5 s on a CPU; leave room for slow CI
TEMPLATE = "a drawing in the style of [noken] of a whippet sleeping"


# --------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PadServer]:
    srv = PadServer(tmp_path_factory.mktemp("pad") / "data").start()
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    path = find_chromium()
    if path is None:
        pytest.skip("no Chromium found (install the Debian `chromium` package or set BREEDER_CHROMIUM)")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=path, args=LAUNCH_ARGS)
        yield b
        b.close()


def poll(page: Any, expr: str, arg: Any = None, timeout: int = TIMEOUT_MS) -> Any:
    """Evaluate `expr` until it is truthy; its value."""
    deadline = time.monotonic() + timeout / 1000
    while not (value := page.evaluate(expr, arg)):
        if time.monotonic() > deadline:
            raise TimeoutError(f"waited {timeout} ms for {expr}")
        page.wait_for_timeout(50)
    return value


class Pad:
    """One open page plus what it logged and what it sent on its websocket."""

    def __init__(self, page: Any) -> None:
        self.page = page
        self.errors: list[str] = []
        self.sent: list[Any] = []
        page.on("console", lambda m: m.type == "error" and self.errors.append(f"console: {m.text}"))
        page.on("pageerror", lambda e: self.errors.append(f"pageerror: {e}"))
        page.on("websocket", lambda ws: ws.on("framesent", self._sent))

    def _sent(self, payload: Any) -> None:
        if isinstance(payload, str):
            self.sent.append(json.loads(payload))

    def sent_of(self, kind: str) -> list[dict[str, Any]]:
        return [m for m in self.sent if m.get("type") == kind]

    def js(self, expr: str, arg: Any = None) -> Any:
        return self.page.evaluate(expr, arg)

    def wait(self, expr: str, arg: Any = None, timeout: int = TIMEOUT_MS) -> Any:
        """Poll `expr` (an expression, or a function of `arg`) until it is truthy; its value.
        Polled with evaluate: wait_for_function evaluates strings inside the page, which the
        page's Content-Security-Policy (no 'unsafe-eval') rightly refuses."""
        return poll(self.page, expr, arg, timeout)

    def settled(self) -> None:
        """Wait until the frame for the cursor's current position is on screen (the page sends
        moves on the next animation frame, so the position is checked as well as the seq)."""
        self.wait("(() => { const h = breeder.lastHeader, s = breeder.state;"
                  " return h && h.seq === s.seq && h.x === s.x && h.y === s.y })()")

    def record_walk(self, keys: tuple[str, ...] = ("ArrowDown", "ArrowRight", "ArrowUp")) -> None:
        """Record a short walk, one settled frame per key, until the export row shows."""
        self.settled()
        record = self.page.get_by_test_id("record")
        record.click()
        expect(record).to_have_attribute("aria-pressed", "true")
        for key in keys:
            self.page.get_by_test_id("pad").press(key)
            self.settled()
        record.click()
        expect(self.page.get_by_test_id("export")).to_be_visible()


@pytest.fixture
def open_pad(browser: Any, server: PadServer, request: pytest.FixtureRequest) -> Iterator[Any]:
    contexts: list[Any] = []
    pads: list[Pad] = []
    failed_before = request.session.testsfailed

    def open_(viewport: tuple[int, int] = (1280, 900), **options: Any) -> Pad:
        ctx = browser.new_context(viewport={"width": viewport[0], "height": viewport[1]}, **options)
        contexts.append(ctx)
        pad = Pad(ctx.new_page())
        pad.page.set_default_timeout(TIMEOUT_MS)
        pad.page.goto(server.url + "/")
        pad.wait("window.breeder && window.breeder.framesShown > 0")
        pads.append(pad)
        return pad

    yield open_
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    name = re.sub(r"[^\w.-]+", "_", request.node.name)
    for i, pad in enumerate(pads):
        pad.page.screenshot(path=str(SCREENSHOTS / f"{name}{'' if i == 0 else f'-{i}'}.png"), full_page=True)
    if request.session.testsfailed > failed_before:  # this test failed: show what the page and the server said
        capman = request.config.pluginmanager.getplugin("capturemanager")
        with capman.global_and_fixture_disabled():
            for pad in pads:
                print(f"\n--- page errors ({name}) ---\n" + "\n".join(pad.errors))
            print(f"\n--- server log ({name}) ---\n{server.log_tail()}")
    for ctx in contexts:
        ctx.close()


@pytest.fixture
def pad(open_pad: Any) -> Pad:
    return open_pad()


# --------------------------------------------------------------------------- tests
def test_loads_with_first_frame_and_no_errors(pad: Pad) -> None:
    page = pad.page
    expect(page.get_by_test_id("model-name")).to_have_text("tiny")
    expect(page.get_by_test_id("warning")).to_be_visible()
    expect(page.get_by_test_id("warning")).to_contain_text("TINY")
    expect(page.get_by_test_id("connection")).to_have_attribute("data-state", "open")
    header = pad.js("breeder.lastHeader")
    assert header["width"] == header["height"] == 256  # the tiny model gets the small default size
    assert pad.js("document.getElementById('frame').width") == 256
    # the page opened with settings, then corners, then a move to the centre
    kinds = [m["type"] for m in pad.sent]
    assert kinds[:3] == ["settings", "corners", "move"], kinds
    assert pad.sent[2]["x"] == pad.sent[2]["y"] == 0.5
    for i in range(4):  # the corner thumbnails load
        pad.wait("i => { const im = document.querySelector(`[data-testid=corner-thumb-${i}]`);"
                 " return im.complete && im.naturalWidth > 0 }", i)
    assert pad.errors == []


def test_drag_streams_frames(pad: Pad) -> None:
    page = pad.page
    pad.settled()
    box = page.get_by_test_id("pad").bounding_box()
    start = pad.js("breeder.framesShown")
    points = [(0.5, 0.5), (0.35, 0.4), (0.2, 0.3), (0.3, 0.7), (0.7, 0.8), (0.85, 0.2)]
    page.mouse.move(box["x"] + box["width"] * points[0][0], box["y"] + box["height"] * points[0][1])
    page.mouse.down()
    for x, y in points[1:]:
        page.mouse.move(box["x"] + box["width"] * x, box["y"] + box["height"] * y, steps=3)
        pad.settled()  # the frame for this position arrived
        header = pad.js("breeder.lastHeader")
        assert header["x"] == pytest.approx(x, abs=0.02) and header["y"] == pytest.approx(y, abs=0.02)
    page.mouse.up()
    assert pad.js("breeder.framesShown") - start >= 3
    pad.wait("document.querySelector('[data-testid=fps]').textContent !== '0'")
    expect(page.get_by_test_id("latency")).to_contain_text("ms")
    assert pad.errors == []


def test_editing_a_corner_changes_its_thumbnail(pad: Pad) -> None:
    page = pad.page
    thumb = page.get_by_test_id("corner-thumb-1")
    pad.wait("document.querySelector('[data-testid=corner-thumb-1]').naturalWidth > 0")
    old = thumb.get_attribute("src")
    field = page.get_by_test_id("corner-input-1")
    field.fill("a purple jellyfish drifting in deep water")
    field.press("Enter")
    new_id = pad.wait("old => { const r = breeder.corners && breeder.corners.corners[1];"
                      " return r && r.prompt.startsWith('a purple jellyfish') && r.genome }", old)
    assert re.fullmatch(r"[0-9a-f]{16}", new_id)
    pad.wait("([old, id]) => { const im = document.querySelector('[data-testid=corner-thumb-1]');"
             " return im.src !== old && im.src.includes(id) && im.complete && im.naturalWidth > 0 }", [old, new_id])
    assert new_id not in (old or "")
    expect(page.get_by_test_id("corner-tile-1")).to_contain_text("a purple jellyfish")
    sent = pad.sent_of("corners")[-1]
    assert sent["corners"][1] == {"prompt": "a purple jellyfish drifting in deep water"}
    assert pad.errors == []


def test_breeding_two_gallery_genomes(pad: Pad) -> None:
    page = pad.page
    items = page.get_by_test_id("gallery-item")
    pad.wait("document.querySelectorAll('[data-testid=gallery-item]').length >= 2")
    a, b = items.nth(0).get_attribute("data-id"), items.nth(1).get_attribute("data-id")
    items.nth(0).get_by_test_id("gallery-select").check()
    items.nth(1).get_by_test_id("gallery-select").check()
    expect(page.get_by_test_id("breed")).to_be_enabled()
    page.get_by_test_id("mutation").fill("0.5")
    page.get_by_test_id("breed-seed").fill("1234")
    page.get_by_test_id("breed").click()
    child = page.locator("[data-testid=gallery-item]", has=page.locator(f"[data-testid=parent][data-id='{a}']")) \
        .filter(has=page.locator(f"[data-testid=parent][data-id='{b}']"))
    expect(child).to_have_count(1)
    expect(child.get_by_test_id("lineage")).to_contain_text("child of")
    expect(child).to_contain_text("seed 1234")
    sent = pad.sent_of("breed")[-1]
    assert sent["parents"] == [a, b] and sent["seed"] == 1234 and sent["mutation"] == 0.5
    child_id = child.get_attribute("data-id")
    info = pad.js("id => breeder.api(`/api/genomes/${id}`)", child_id)
    assert info["parents"] == [a, b]
    assert pad.errors == []


def drag(page: Any, source: Any, target: Any, fx: float = 0.5, fy: float = 0.5) -> None:
    """HTML5 drag and drop with real mouse moves. Chromium starts a drag only after the mouse
    moves a little, and hands dragover to the page asynchronously: before letting go, nudge the
    mouse by a pixel until the target says it would take the drop (or fail after a deadline)."""
    a, b = source.bounding_box(), target.bounding_box()
    sx, sy = a["x"] + a["width"] / 2, a["y"] + min(40, a["height"] / 2)
    tx, ty = b["x"] + b["width"] * fx, b["y"] + b["height"] * fy
    page.mouse.move(sx, sy)
    page.mouse.down()
    page.mouse.move(sx + 15, sy + 15, steps=4)
    poll(page, "document.body.classList.contains('dragging-genome')")  # the drag began
    page.mouse.move(tx, ty, steps=6)
    deadline = time.monotonic() + TIMEOUT_MS / 1000
    nudge = 0
    while not target.evaluate("t => t.matches('.drop-target') || t.querySelector('.drop-target') !== null"):
        if time.monotonic() > deadline:
            page.mouse.up()
            raise AssertionError("the drop target never saw the drag")
        nudge += 1
        page.mouse.move(tx + nudge % 2, ty)
    page.mouse.up()


def test_gallery_genome_as_corner_by_button_and_by_drag(open_pad: Any) -> None:
    pad = open_pad((1280, 1500))  # tall, so the pad, the corner cards and the gallery all show at once
    page = pad.page
    pad.wait("document.querySelectorAll('[data-testid=gallery-item]').length >= 3")
    items = page.get_by_test_id("gallery-item")
    a, b, c = (items.nth(i).get_attribute("data-id") for i in range(3))
    # keyboard/click way: select, then "use as corner ↙"
    items.nth(0).get_by_test_id("gallery-select").check()
    page.get_by_test_id("use-corner-2").click()
    pad.wait("id => breeder.corners && breeder.corners.corners[2].genome === id", a)
    assert pad.sent_of("corners")[-1]["corners"][2] == {"genome": a}
    pad.wait("id => document.querySelector('[data-testid=corner-thumb-2]').src.includes(id)", a)
    # drag onto the pad's bottom-right quadrant, then onto the top-left corner card
    drag(page, items.nth(1), page.get_by_test_id("pad"), 0.8, 0.8)
    pad.wait("id => breeder.corners && breeder.corners.corners[3].genome === id", b)
    assert pad.sent_of("corners")[-1]["corners"][3] == {"genome": b}
    drag(page, items.nth(2), page.get_by_test_id("corner-0"))
    pad.wait("id => breeder.corners && breeder.corners.corners[0].genome === id", c)
    corners = pad.sent_of("corners")[-1]["corners"]
    assert corners[0] == {"genome": c} and corners[2:] == [{"genome": a}, {"genome": b}]
    expect(page.get_by_test_id("corner-input-0")).not_to_have_value("")
    noken = page.get_by_test_id("corner-noken-3")
    assert noken.get_attribute("href") == f"/api/genomes/{b}/embedding.safetensors"
    res = page.request.get(pad.js("document.querySelector('[data-testid=corner-noken-3]').href"))
    assert res.ok and len(res.body()) > 8  # a safetensors file
    # dropping one gallery genome onto another breeds them
    count = items.count()
    drag(page, page.locator(f"[data-testid=gallery-item][data-id='{b}']"), page.locator(f"[data-testid=gallery-item][data-id='{a}']"))
    expect(items).to_have_count(count + 1)
    assert pad.sent_of("breed")[-1]["parents"] == [b, a]
    assert pad.errors == []


def test_keep_record_and_delete(pad: Pad) -> None:
    page = pad.page
    pad.settled()
    items = page.get_by_test_id("gallery-item")
    pad.wait("document.querySelectorAll('[data-testid=gallery-item]').length >= 1")
    # keep this frame: a new genome, kept from the corners around the cursor
    page.get_by_test_id("pad").press("Shift+ArrowRight")
    pad.settled()
    before = items.count()
    page.get_by_test_id("keep").click()
    expect(items).to_have_count(before + 1)
    kept = items.first
    expect(kept.get_by_test_id("lineage")).to_contain_text("kept from")
    kept_id = kept.get_attribute("data-id")
    # record a short walk: the export row appears (tests/test_page_export.py exports it)
    pad.record_walk(("ArrowDown", "ArrowDown", "ArrowLeft"))
    expect(page.get_by_test_id("record")).to_have_attribute("aria-pressed", "false")
    expect(page.get_by_test_id("export")).to_have_text("⬇ Export MP4")
    # delete, with a confirmation dialog: cancel keeps it, confirm deletes it
    kept.get_by_test_id("delete").click()
    dialog = page.get_by_test_id("confirm-dialog")
    expect(dialog).to_be_visible()
    page.get_by_test_id("confirm-cancel").click()
    expect(dialog).to_be_hidden()
    expect(page.locator(f"[data-testid=gallery-item][data-id='{kept_id}']")).to_have_count(1)
    kept.get_by_test_id("delete").click()
    page.get_by_test_id("confirm-ok").click()
    expect(page.locator(f"[data-testid=gallery-item][data-id='{kept_id}']")).to_have_count(0)
    res = page.request.get(server_url(page) + f"/api/genomes/{kept_id}")
    assert res.status == 404
    assert pad.errors == []


def server_url(page: Any) -> str:
    return page.evaluate("location.origin")


def test_noken_mode_switches_on_and_off(pad: Pad) -> None:
    page = pad.page
    badge = page.get_by_test_id("noken-badge")
    expect(badge).to_be_hidden()
    pad.settled()
    field = page.get_by_test_id("template")
    field.fill(TEMPLATE)
    field.press("Enter")
    expect(badge).to_be_visible()
    expect(badge).to_have_text("noken mode")
    wait_until(page, lambda: any(m.get("template") == TEMPLATE for m in pad.sent_of("corners")),
               what="a corners message with the template")
    pad.wait("t => breeder.corners && breeder.corners.template === t", TEMPLATE)
    # frames still come in noken mode
    shown = pad.js("breeder.framesShown")
    page.get_by_test_id("pad").press("ArrowDown")
    pad.settled()
    assert pad.js("breeder.framesShown") > shown
    # a template the server refuses: an error toast, and the page stays in the accepted mode
    field.fill("two [noken] and [noken]")
    field.press("Enter")
    expect(page.locator("[data-testid=toast][data-code=bad_template]")).to_be_visible()
    expect(field).to_have_attribute("aria-invalid", "true")
    expect(badge).to_be_visible()
    # cleared: back to normal
    field.fill("")
    field.press("Enter")
    expect(badge).to_be_hidden()
    pad.wait("() => breeder.corners && breeder.corners.template === null")
    assert pad.sent_of("corners")[-1]["template"] is None
    shown = pad.js("breeder.framesShown")
    page.get_by_test_id("pad").press("ArrowUp")
    pad.settled()
    assert pad.js("breeder.framesShown") > shown
    assert [e for e in pad.errors if "bad_template" not in e] == []


def test_arrow_keys_nudge_the_cursor(pad: Pad) -> None:
    page = pad.page
    pad.settled()
    page.get_by_test_id("pad").focus()
    xs = [pad.js("breeder.lastHeader.x")]
    for _ in range(3):
        page.keyboard.press("ArrowRight")
        pad.settled()
        xs.append(pad.js("breeder.lastHeader.x"))
    assert xs == sorted(set(xs)), xs
    assert xs[-1] == pytest.approx(xs[0] + 0.06, abs=1e-6)
    page.keyboard.press("Shift+ArrowDown")
    pad.settled()
    assert pad.js("breeder.lastHeader.y") == pytest.approx(0.6, abs=1e-6)
    expect(page.get_by_test_id("position")).to_have_text("x 0.56 · y 0.60")
    assert pad.errors == []


def test_phone_layout(open_pad: Any) -> None:
    pad = open_pad((375, 800), is_mobile=True, has_touch=True)
    page = pad.page
    assert pad.js("document.scrollingElement.scrollWidth") <= 375 + 1
    pad_el = page.get_by_test_id("pad")
    expect(pad_el).to_be_in_viewport()
    box = pad_el.bounding_box()
    assert box["width"] >= 330 and box["x"] >= 0 and box["x"] + box["width"] <= 375
    gallery = page.get_by_test_id("gallery").bounding_box()
    assert gallery["y"] > box["y"] + box["height"]  # panels stack below the pad
    # a tap moves the cursor too
    page.touchscreen.tap(box["x"] + box["width"] * 0.25, box["y"] + box["height"] * 0.75)
    pad.settled()
    header = pad.js("breeder.lastHeader")
    assert header["x"] == pytest.approx(0.25, abs=0.02) and header["y"] == pytest.approx(0.75, abs=0.02)
    assert pad.errors == []


def test_reconnect_restores_the_session(pad: Pad) -> None:
    page = pad.page
    pad.settled()
    page.get_by_test_id("size").select_option("384")
    pad.wait("breeder.lastHeader.width === 384")
    page.get_by_test_id("pad").press("ArrowLeft")
    pad.settled()
    before, hellos = len(pad.sent), pad.js("breeder.hellos")
    pad.js("breeder.connection.drop()")
    pad.wait("n => breeder.hellos > n", hellos)  # it reconnected by itself
    expect(page.get_by_test_id("connection")).to_have_attribute("data-state", "open")
    pad.settled()
    resent = [m["type"] for m in pad.sent[before:]]
    assert resent[:3] == ["settings", "corners", "move"], resent
    settings, move = pad.sent[before], pad.sent[before + 2]
    assert settings["width"] == settings["height"] == 384
    assert move["x"] == pytest.approx(0.48) and move["y"] == pytest.approx(0.5)
    pad.wait("breeder.lastHeader.width === 384 && Math.abs(breeder.lastHeader.x - 0.48) < 1e-9")
    assert pad.errors == []


def test_protocol_js_mirrors_protocol_py(pad: Pad) -> None:
    from sdxl_breeder import protocol as p
    from sdxl_breeder.protocol.parse import MESSAGES
    from sdxl_breeder.store import ORIGINS

    js = pad.js("""async () => {
        const m = await import('/js/protocol.js');
        return {PROTOCOL_VERSION: m.PROTOCOL_VERSION, CORNER_NAMES: m.CORNER_NAMES, BLEND_MODES: m.BLEND_MODES,
                NOKEN: m.NOKEN, MAX_SEQ: m.MAX_SEQ, Limits: m.Limits, ErrorCode: m.ErrorCode,
                FRAME_HEADER_FIELDS: m.FRAME_HEADER_FIELDS, CLIENT_MESSAGES: m.CLIENT_MESSAGES,
                GENOME_ORIGINS: m.GENOME_ORIGINS, SERVER_MESSAGES: m.SERVER_MESSAGES,
                answers: [{type: 'settings'}, {type: 'corners'}, {type: 'walk'}, {type: 'genome', genome: {origin: 'keep'}},
                          {type: 'genome', genome: {origin: 'breed'}}, {type: 'error', in_reply_to: 'move'}, {type: 'error'},
                          {type: 'hello'}, {type: 'brood'}, {type: 'genome', genome: {origin: 'evolve'}}].map(m.answers),
                move: JSON.parse(m.encodeMove(0.25, 1, 7)),
                corners: JSON.parse(m.encodeCorners(['a', {genome: '0123456789abcdef'}, 'c', 'd'], 'x [noken]')),
                breed: JSON.parse(m.encodeBreed(['0123456789abcdef', 'fedcba9876543210'], {mutation: 0.5}))};
    }""")
    assert js["PROTOCOL_VERSION"] == p.PROTOCOL_VERSION
    assert js["CORNER_NAMES"] == list(p.CORNER_NAMES)
    assert js["BLEND_MODES"] == list(p.BLEND_MODES)
    assert js["NOKEN"] == p.NOKEN
    assert js["MAX_SEQ"] == p.MAX_SEQ
    assert js["Limits"] == asdict(p.Limits())
    assert js["ErrorCode"] == {c.name: c.value for c in p.ErrorCode}
    assert js["FRAME_HEADER_FIELDS"] == [f.name for f in fields(p.FrameHeader)]
    # every client message, with the same required and optional fields
    assert sorted(js["CLIENT_MESSAGES"]) == sorted(p.MESSAGE_TYPES)
    for kind, (_, required, optional) in MESSAGES.items():
        assert sorted(js["CLIENT_MESSAGES"][kind]["required"]) == sorted(set(required) - {"type"}), kind
        assert sorted(js["CLIENT_MESSAGES"][kind]["optional"]) == sorted(optional), kind
    # which request each reply answers: the page pairs replies (and errors, by in_reply_to) with requests
    assert js["answers"] == ["settings", "corners", "record", "keep", "breed", "move", None, None, "evolve", "select"]
    assert sorted(js["GENOME_ORIGINS"]) == sorted(ORIGINS)
    # what the page builds, the server accepts
    assert p.parse_client_message(json.dumps(js["move"])) == p.MoveMsg(0.25, 1.0, 7)
    assert p.parse_client_message(json.dumps(js["corners"])).template == "x [noken]"
    assert p.parse_client_message(json.dumps(js["breed"])) == p.BreedMsg(("0123456789abcdef", "fedcba9876543210"), None, 0.5)
    # and what the server frames, the page decodes
    header = p.FrameHeader(seq=2**53, x=0.25, y=0.75, seed=7, width=64, height=128, render_ms=12.5, batch=3)
    frame = p.encode_frame(header, b"\xff\xd8jpeg\xff\xd9")
    decoded = pad.js("""async (b64) => {
        const m = await import('/js/protocol.js');
        const bytes = Uint8Array.from(atob(b64), c => c.charCodeAt(0));
        const {header, blob} = m.decodeFrame(bytes.buffer);
        let truncated = null;
        try { m.decodeFrame(bytes.slice(0, 10).buffer); } catch (e) { truncated = e.message; }
        return {header, size: blob.size, type: blob.type, truncated};
    }""", base64.b64encode(frame).decode())
    assert decoded["header"] == asdict(header)
    assert decoded["size"] == 8 and decoded["type"] == "image/jpeg"
    assert "truncated" in decoded["truncated"]


# --------------------------------------------------------------------------- what the page keeps and gives
def test_what_the_user_built_survives_a_reload(open_pad: Any) -> None:
    pad = open_pad((1280, 1500))
    page = pad.page
    pad.settled()
    pad.wait("document.querySelectorAll('[data-testid=gallery-item]').length >= 1")
    genome = page.get_by_test_id("gallery-item").first.get_attribute("data-id")
    page.get_by_test_id("gallery-item").first.get_by_test_id("gallery-select").check()
    page.get_by_test_id("use-corner-3").click()
    field = page.get_by_test_id("corner-input-1")
    field.fill("a purple jellyfish")
    field.press("Enter")
    page.get_by_test_id("template").fill(TEMPLATE)
    page.get_by_test_id("template").press("Enter")
    pad.wait("([t, g]) => { const c = breeder.corners; return c && c.template === t && c.corners[3].genome === g"
             " && c.corners[1].prompt === 'a purple jellyfish' }", [TEMPLATE, genome])
    page.get_by_test_id("size").select_option("384")
    page.get_by_test_id("blend").select_option("slerp")
    page.get_by_test_id("seed").fill("77")
    page.get_by_test_id("seed").press("Enter")
    page.get_by_test_id("pad").press("Shift+ArrowLeft")
    page.get_by_test_id("pad").press("ArrowUp")
    pad.wait("() => { const h = breeder.lastHeader; return h.width === 384 && h.seed === 77 }")
    pad.settled()

    before, hellos = len(pad.sent), pad.js("breeder.hellos")
    page.reload()
    pad.wait("window.breeder && breeder.framesShown > 0")
    assert pad.js("breeder.hellos") == 1 and hellos >= 1  # a new page, not a reconnect
    pad.settled()
    # the new page asked for the same session, first thing
    after = pad.sent[before:]
    assert [m["type"] for m in after[:3]] == ["settings", "corners", "move"], after[:3]
    settings, corners, move = after[:3]
    assert (settings["width"], settings["height"], settings["seed"], settings["blend"]) == (384, 384, 77, "slerp")
    assert corners["template"] == TEMPLATE
    assert corners["corners"][1] == {"prompt": "a purple jellyfish"} and corners["corners"][3] == {"genome": genome}
    assert move["x"] == pytest.approx(0.4) and move["y"] == pytest.approx(0.48)
    header = pad.js("breeder.lastHeader")
    assert (header["width"], header["seed"]) == (384, 77)
    assert header["x"] == pytest.approx(0.4) and header["y"] == pytest.approx(0.48)
    # and shows it
    expect(page.get_by_test_id("template")).to_have_value(TEMPLATE)
    expect(page.get_by_test_id("noken-badge")).to_be_visible()
    expect(page.get_by_test_id("corner-input-1")).to_have_value("a purple jellyfish")
    expect(page.get_by_test_id("size")).to_have_value("384")
    expect(page.get_by_test_id("blend")).to_have_value("slerp")
    expect(page.get_by_test_id("seed")).to_have_value("77")
    expect(page.get_by_test_id("position")).to_have_text("x 0.40 · y 0.48")
    assert pad.errors == []


def test_a_saved_corner_that_was_deleted_falls_back_to_the_default_corners(pad: Pad) -> None:
    page = pad.page
    saved = {"version": 1, "corners": [{"prompt": "a"}, {"genome": "0123456789abcdef"}, {"prompt": "c"}, {"prompt": "d"}],
             "template": None}
    # stored as the next page starts (this page saves its own state as it goes away)
    page.add_init_script(f"localStorage.setItem('sdxl-breeder.pad', {json.dumps(json.dumps(saved))})")
    before = len(pad.sent)
    page.reload()
    pad.wait("window.breeder && breeder.framesShown > 0")  # frames come: the page went back to corners that exist
    expect(page.locator("[data-testid=toast][data-code=unknown_genome]")).to_be_visible()
    asked = [m["corners"] for m in pad.sent[before:] if m["type"] == "corners"]
    assert asked[0][1] == {"genome": "0123456789abcdef"}
    defaults = pad.js("breeder.corners.corners.map(c => c.prompt)")
    assert asked[1] == [{"prompt": text} for text in defaults] and "a" not in defaults
    assert [e for e in pad.errors if "unknown_genome" not in e] == []


def frame_pixels(pad: Pad) -> np.ndarray:
    """The pixels of the frame on screen (the decoded JPEG, read back losslessly)."""
    url = pad.js("document.getElementById('frame').toDataURL('image/png')")
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))).convert("RGB"), dtype=np.float32)


def luma(rgb: np.ndarray) -> np.ndarray:
    # JPEG keeps brightness at full resolution and halves colour: compare brightness
    return rgb @ np.array([0.299, 0.587, 0.114], dtype=np.float32)


def test_download_this_frame_as_png(pad: Pad) -> None:
    page = pad.page
    page.get_by_test_id("quality").fill("100")  # frames as close to lossless as JPEG goes
    page.get_by_test_id("quality").dispatch_event("change")
    page.get_by_test_id("pad").press("Shift+ArrowRight")
    pad.wait("breeder.state.settings.quality === 100")
    pad.settled()
    header = pad.js("breeder.lastHeader")
    on_screen = frame_pixels(pad)
    with page.expect_download() as info:
        page.get_by_test_id("download-png").click()
    download = info.value
    assert download.suggested_filename == "frame-x0.60-y0.50-seed0.png"
    data = open(download.path(), "rb").read()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    png = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"), dtype=np.float32)
    assert png.shape == (header["height"], header["width"], 3) == on_screen.shape
    # it is the frame on screen, rendered again without JPEG: another position's frame is much further
    same = float(np.abs(luma(png) - luma(on_screen)).mean())
    for _ in range(6):
        page.get_by_test_id("pad").press("Shift+ArrowLeft")
    pad.settled()
    other = float(np.abs(luma(png) - luma(frame_pixels(pad))).mean())
    assert same < 1.5 and other > 4 * same, (same, other)
    assert pad.errors == []


def test_corner_thumbnails_sit_beside_the_frame_not_on_it(open_pad: Any) -> None:
    for viewport in ((1280, 900), (375, 800)):
        pad = open_pad(viewport, is_mobile=viewport[0] < 500, has_touch=viewport[0] < 500)
        frame = pad.page.get_by_test_id("frame").bounding_box()
        for i in range(4):
            pad.wait("i => { const im = document.querySelector(`[data-testid=corner-thumb-${i}]`);"
                     " return im.complete && im.naturalWidth > 0 }", i)
            tile = pad.page.get_by_test_id(f"corner-tile-{i}").bounding_box()
            thumb = pad.page.get_by_test_id(f"corner-thumb-{i}").bounding_box()
            top, left = i < 2, i % 2 == 0
            # above the frame for the top corners, below it for the bottom ones: no overlap at all
            if top:
                assert tile["y"] + tile["height"] <= frame["y"], (viewport, i, tile, frame)
            else:
                assert tile["y"] >= frame["y"] + frame["height"], (viewport, i, tile, frame)
            # and at its corner's side, the thumbnail flush with the frame's edge
            if left:
                assert abs(thumb["x"] - frame["x"]) <= 4, (viewport, i, thumb, frame)
            else:
                assert abs(thumb["x"] + thumb["width"] - (frame["x"] + frame["width"])) <= 4, (viewport, i, thumb, frame)
            assert thumb["width"] >= 32 and thumb["height"] >= 32
        assert frame["width"] >= 330
        assert pad.errors == []


def test_the_gallery_says_which_kept_genomes_export_exactly(pad: Pad) -> None:
    page = pad.page
    pad.settled()
    items = page.get_by_test_id("gallery-item")
    pad.wait("document.querySelectorAll('[data-testid=gallery-item]').length >= 4")
    # a prompt genome pools where its prompt ends: its noken is exact
    prompt_item = page.locator("[data-testid=gallery-item]").filter(has_text="a neon city at night")
    expect(prompt_item.get_by_test_id("export-exact")).to_have_attribute("data-exact", "true")
    # a plain-mode keep in the middle blends prompts that end at different tokens: approximate
    before = items.count()
    page.get_by_test_id("keep").click()
    expect(items).to_have_count(before + 1, timeout=TIMEOUT_MS)  # a keep renders a thumbnail: slow on a busy CPU
    kept = items.first
    expect(kept.get_by_test_id("export-exact")).to_have_attribute("data-exact", "false")
    expect(kept.get_by_test_id("export-exact")).to_contain_text("approximate")
    kept_id = kept.get_attribute("data-id")
    info = pad.js("id => breeder.api(`/api/genomes/${id}`)", kept_id)
    assert info["origin"] == "keep" and len(info["pool"]) > 1
    # a noken-mode keep is the blended noken alone: exact
    page.get_by_test_id("template").fill(TEMPLATE)
    page.get_by_test_id("template").press("Enter")
    pad.wait("t => breeder.corners && breeder.corners.template === t", TEMPLATE)
    page.get_by_test_id("keep").click()
    expect(items).to_have_count(before + 2)
    expect(items.first.get_by_test_id("export-exact")).to_have_attribute("data-exact", "true")
    info = pad.js("id => breeder.api(`/api/genomes/${id}`)", items.first.get_attribute("data-id"))
    assert info["origin"] == "keep" and len(info["pool"]) == 1
    # after a reload, from the REST listing, the gallery still says so
    page.reload()
    pad.wait("window.breeder && breeder.framesShown > 0")
    expect(page.locator(f"[data-testid=gallery-item][data-id='{kept_id}'] [data-testid=export-exact]")
           ).to_have_attribute("data-exact", "false")
    assert pad.errors == []
