// The four corners: their cards (prompt fields, noken downloads), their thumbnails around the
// pad, and the template that turns on noken mode. What the page asks for is `corners` and
// `template`; what the server last accepted is `accepted`; a refused request goes back to it.

import { nokenUrl, thumbUrl } from "./api.js";
import { $, el } from "./dom.js";
import { GENOME_MIME, describe } from "./gallery.js";
import * as P from "./protocol.js";
import { toast } from "./toasts.js";

export const DEFAULT_PROMPTS = Object.freeze([
  "a watercolor fox in a forest",
  "a neon city at night",
  "an oil painting of a whippet sleeping",
  "a golden sunset over the sea",
]);
const ARROWS = ["↖", "↗", "↙", "↘"];
const TEMPLATE_DEBOUNCE_MS = 700;
const copy = (corners) => corners.map((c) => ({ ...c }));

export class Corners extends EventTarget {
  /** Events: "change" (what the page asks for changed), "accepted" (detail: the corners reply). */
  constructor({ session, gallery, limits }) {
    super();
    this.session = session;
    this.gallery = gallery;
    this.limits = limits; // () => the server's limits
    this.corners = DEFAULT_PROMPTS.map((prompt) => ({ prompt }));
    this.template = null; // null: normal mode
    this.resolved = [null, null, null, null]; // the last reply's corners: {genome, prompt}
    this.accepted = null; // the last request the server accepted: {corners, template}
    this.reply = null; // the last corners reply
    this.tiles = [];
    this.cards = [];
    this.templateTimer = null;
    P.CORNER_NAMES.forEach((name, i) => this._build(name, i));
    this._bindTemplate();
    this._showMode();
  }

  /** Start from a saved state (before the first send). */
  restore({ corners, template }) {
    this.corners = copy(corners);
    this.template = template;
    $("template").value = template || "";
    this.cards.forEach(({ input }, i) => (input.value = this._text(i)));
    this._showMode();
  }

  /** Put a gallery genome on corner i. */
  useGenome(i, genomeId) {
    this.corners[i] = { genome: genomeId };
    this.cards[i].input.value = this._text(i);
    this.send();
  }

  /** Ask the server for the corners and template the page holds now. */
  send() {
    const asked = { corners: copy(this.corners), template: this.template };
    this._showMode();
    this.dispatchEvent(new Event("change"));
    const reply = this.session.request("corners", P.encodeCorners(asked.corners, asked.template));
    this.cards.forEach(({ card }) => card.classList.add("pending"));
    reply.then((msg) => this._accept(asked, msg), (err) => this._refused(asked, err)).finally(() => {
      if (!this.session.pending("corners")) this.cards.forEach(({ card }) => card.classList.remove("pending"));
    });
  }

  /** Mark corner i (or none: -1) as where a dragged genome would go. */
  highlight(i) {
    this.tiles.forEach(({ tile }, j) => tile.classList.toggle("drop-target", i === j));
    this.cards.forEach(({ card }, j) => card.classList.toggle("drop-target", i === j));
  }

  /** Take gallery genomes dropped on `node`; `which(event)` names the corner. */
  dropTarget(node, which) {
    node.addEventListener("dragover", (e) => {
      if (!e.dataTransfer.types.includes(GENOME_MIME)) return;
      e.preventDefault();
      e.dataTransfer.dropEffect = "copy";
      this.highlight(which(e));
      node.classList.add("drop-target");
    });
    node.addEventListener("dragleave", () => {
      this.highlight(-1);
      node.classList.remove("drop-target");
    });
    node.addEventListener("drop", (e) => {
      this.highlight(-1);
      node.classList.remove("drop-target");
      const id = e.dataTransfer.getData(GENOME_MIME);
      if (!id) return;
      e.preventDefault();
      e.stopPropagation();
      this.useGenome(which(e), id);
    });
  }

  // ---------------------------------------------------------------- replies
  _accept(asked, msg) {
    this.accepted = asked;
    this.reply = msg;
    this.resolved = copy(msg.corners);
    $("template").removeAttribute("aria-invalid");
    msg.corners.forEach((c, i) => {
      const { img, caption, tile } = this.tiles[i];
      const src = thumbUrl(c.genome);
      if (img.getAttribute("src") !== src) {
        img.classList.add("loading");
        img.src = src;
      }
      img.dataset.genome = c.genome;
      const text = c.prompt || describe(this.gallery.info(c.genome) || { id: c.genome }, this.gallery.byId);
      img.alt = `${P.CORNER_NAMES[i]} corner: ${text}`;
      caption.textContent = text;
      tile.title = text;
      const { input, noken, card } = this.cards[i];
      noken.href = nokenUrl(c.genome);
      noken.setAttribute("download", `noken-${c.genome}.safetensors`);
      card.dataset.genome = c.genome;
      card.classList.toggle("is-genome", !this.corners[i].prompt);
      if (document.activeElement !== input) input.value = this._text(i);
    });
    this.dispatchEvent(new CustomEvent("accepted", { detail: msg }));
  }

  _refused(asked, err) {
    if (err.code === P.ErrorCode.BAD_TEMPLATE) $("template").setAttribute("aria-invalid", "true");
    if (err.code === "closed" || this.session.pending("corners")) return; // a reconnect resends; a newer request decides
    // go back to what the server shows; with nothing accepted yet (a saved genome was deleted), to the defaults
    const defaults = { corners: DEFAULT_PROMPTS.map((prompt) => ({ prompt })), template: null };
    const back = this.accepted || defaults;
    const retry = !this.accepted && JSON.stringify(asked) !== JSON.stringify(defaults);
    this.corners = copy(back.corners);
    this.template = back.template;
    this.cards.forEach(({ input }, i) => (input.value = this._text(i)));
    if (retry) this.send();
    else {
      this._showMode();
      this.dispatchEvent(new Event("change"));
    }
  }

  // ---------------------------------------------------------------- the page
  _build(name, i) {
    const img = el("img", { class: "loading", alt: "", "data-testid": `corner-thumb-${i}`, draggable: "false" });
    img.addEventListener("load", () => img.classList.remove("loading"));
    img.addEventListener("error", () => img.classList.remove("loading"));
    const caption = el("span", { class: "corner-caption", "data-testid": `corner-caption-${i}` });
    const tile = el("div", { class: `corner-tile c${i}`, "data-testid": `corner-tile-${i}` }, img, caption);
    $(i < 2 ? "corner-tiles-top" : "corner-tiles-bottom").append(tile);
    this.tiles.push({ tile, img, caption });
    this.dropTarget(tile, () => i);

    const input = el("input", {
      id: `corner-input-${i}`, type: "text", "data-testid": `corner-input-${i}`, autocomplete: "off", spellcheck: "false",
      enterkeyhint: "done", maxlength: String(P.Limits.max_prompt_chars), value: this._text(i),
    });
    input.addEventListener("keydown", (e) => {
      if (e.key === "Enter") {
        e.preventDefault();
        this._commit(i);
      } else if (e.key === "Escape") {
        input.value = this._text(i);
      }
    });
    input.addEventListener("change", () => this._commit(i));
    const noken = el("a", { class: "noken-link", "data-testid": `corner-noken-${i}`, download: "",
      title: "Download this corner as a textual inversion (a noken)", "aria-label": `Download the ${name} corner as a noken` }, "⬇ noken");
    const card = el("div", { class: `corner-card c${i}`, "data-testid": `corner-${i}`, dataset: { corner: String(i) } },
      el("div", { class: "corner-head" },
        el("label", { for: `corner-input-${i}` }, el("span", { class: "arrow", "aria-hidden": "true" }, ARROWS[i]), ` ${name}`,
          el("span", { class: "noken-tag" }, "noken")),
        noken),
      input);
    $("corner-cards").append(card);
    this.cards.push({ card, input, noken });
    this.dropTarget(card, () => i);
  }

  /** What corner i's field shows: its prompt, or the genome's prompt or lineage. */
  _text(i) {
    const c = this.corners[i];
    if (c.prompt) return c.prompt;
    const r = this.resolved[i];
    if (r && r.genome === c.genome && r.prompt) return r.prompt;
    return describe(this.gallery.info(c.genome) || { id: c.genome }, this.gallery.byId);
  }

  _commit(i) {
    const input = this.cards[i].input;
    const text = input.value.trim();
    if (!text) {
      input.value = this._text(i);
      return;
    }
    if (text === this._text(i)) return; // unchanged (a genome corner shows its prompt or lineage)
    const max = this.limits().max_prompt_chars;
    if (text.length > max) {
      toast(`A prompt has at most ${max} characters`, "error");
      return;
    }
    this.corners[i] = { prompt: text };
    this.send();
  }

  _bindTemplate() {
    const field = $("template");
    field.addEventListener("keydown", (e) => {
      if (e.key === "Enter") {
        e.preventDefault();
        this._commitTemplate();
      }
    });
    field.addEventListener("change", () => this._commitTemplate());
    field.addEventListener("input", () => {
      clearTimeout(this.templateTimer);
      this.templateTimer = setTimeout(() => this._commitTemplate(), TEMPLATE_DEBOUNCE_MS);
    });
  }

  _commitTemplate() {
    clearTimeout(this.templateTimer);
    const text = $("template").value.trim();
    const next = text.includes(P.NOKEN) ? text : null;
    $("template").classList.toggle("unused", Boolean(text) && next === null);
    if (next === this.template) return;
    this.template = next;
    this.send();
  }

  _showMode() {
    const on = this.template !== null;
    $("noken-badge").hidden = !on;
    document.body.classList.toggle("noken-mode", on);
    this.cards.forEach(({ input, card }, i) => {
      input.placeholder = on ? "a word or prompt, blended into [noken]" : "a prompt";
      input.setAttribute("aria-label", `${P.CORNER_NAMES[i]} corner ${on ? "noken" : "prompt"}`);
      card.classList.toggle("is-genome", !this.corners[i].prompt);
    });
  }
}
