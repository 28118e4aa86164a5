// The Evolve view: choose parents (gallery genomes or the cursor), breed a brood, mark the
// survivors, then keep them or breed the next generation from them. "Around the cursor" shows
// eight small variations of where you stand around the frame itself; click one to keep it.

import { thumbUrl } from "./api.js";
import { $, el } from "./dom.js";
import { GENOME_MIME, shortId } from "./gallery.js";
import * as P from "./protocol.js";
import { toast } from "./toasts.js";

const NEIGHBOURS = 8; // the ring around the cursor: a 3×3 grid with the frame in the middle
const NEIGHBOUR_MUTATION = 0.06;

export class Evolve extends EventTarget {
  /** Events: "kept" (detail: the stored genomes). `frameUrl()` gives the pad's frame as an image URL. */
  constructor({ session, gallery, limits, frameUrl, useAsCorner }) {
    super();
    this.session = session;
    this.gallery = gallery;
    this.limits = limits;
    this.frameUrl = frameUrl;
    this.useAsCorner = useAsCorner;
    this.parents = []; // genome ids and P.CURSOR
    this.brood = null; // {msg, ring, cells: [{button, img, url}], survivors: Set}
    this.lastKept = null;
    this.framesIn = 0;
    $("evolve-add-selected").addEventListener("click", () => this.gallery.selected.forEach((id) => this.addParent(id)));
    $("evolve-add-cursor").addEventListener("click", () => this.addParent(P.CURSOR));
    $("evolve-mutation").addEventListener("input", (e) => ($("evolve-mutation-out").textContent = Number(e.target.value).toFixed(2)));
    $("evolve-breed").addEventListener("click", () => this.breed(this.parents));
    $("evolve-around").addEventListener("click", () => this.around());
    $("evolve-keep").addEventListener("click", () => this.keep());
    $("evolve-next").addEventListener("click", () => this.nextGeneration());
    document.querySelectorAll("#evolve-corner button").forEach((b) =>
      b.addEventListener("click", () => this.lastKept && this.useAsCorner(Number(b.dataset.corner), this.lastKept)));
    this._dropTarget($("evolve-parents"));
    this._showParents();
    this._showBrood();
  }

  /** From hello: the limits of the controls. */
  hello(limits) {
    $("evolve-mutation").max = String(limits.max_brood_mutation);
    $("evolve-seed").max = String(limits.max_seed);
    for (const option of $("evolve-count").options) option.disabled = Number(option.value) > limits.max_brood_children;
  }

  addParent(id) {
    if (this.parents.includes(id)) return;
    const max = this.limits().max_brood_parents;
    if (this.parents.length >= max) {
      toast(`A brood has at most ${max} parents`, "error");
      return;
    }
    this.parents.push(id);
    this._showParents();
  }

  removeParent(id) {
    this.parents = this.parents.filter((p) => p !== id);
    this._showParents();
  }

  /** Breed a brood of the chosen size from `parents`; its frames arrive through `frame()`. */
  async breed(parents, { count = Number($("evolve-count").value), mutation = Number($("evolve-mutation").value), ring = false } = {}) {
    if (!parents.length) {
      toast("Choose parents first: select genomes in the gallery and press “+ selected”, or add the cursor", "error");
      return null;
    }
    const seedText = $("evolve-seed").value.trim();
    const seed = seedText === "" || ring ? null : Number.parseInt(seedText, 10);
    const max = this.limits().max_seed;
    if (seed !== null && !(Number.isInteger(seed) && seed >= 0 && seed <= max)) {
      toast(`The brood seed must be blank (random) or a whole number from 0 to ${max}`, "error");
      return null;
    }
    let msg;
    try {
      msg = await this.session.request("evolve", P.encodeEvolve(parents, { count, mutation, seed }));
    } catch {
      return null; // the refusal's toast says why
    }
    this._clear();
    this.brood = { msg, ring, survivors: new Set(), cells: [] };
    this._showBrood();
    return msg;
  }

  /** Eight variations of the blend under the cursor, around the frame itself. */
  around() {
    return this.breed([P.CURSOR], { count: NEIGHBOURS, mutation: NEIGHBOUR_MUTATION, ring: true });
  }

  /** A brood child's frame (its header names the brood and the child). */
  frame({ header, blob }) {
    const b = this.brood;
    if (!b || header.brood !== b.msg.brood) return; // an older brood's late frame
    const cell = b.cells[header.child];
    if (!cell) return;
    if (cell.url) URL.revokeObjectURL(cell.url);
    cell.url = URL.createObjectURL(blob);
    cell.img.src = cell.url;
    cell.button.classList.remove("waiting");
    this.framesIn += 1;
  }

  toggle(i) {
    const b = this.brood;
    if (b.ring) {
      this._keepOne(i);
      return;
    }
    if (b.survivors.has(i)) b.survivors.delete(i);
    else b.survivors.add(i);
    b.cells[i].button.setAttribute("aria-pressed", String(b.survivors.has(i)));
    this._showActions();
  }

  /** Store the marked survivors as genomes (they appear in the gallery). */
  async keep() {
    const kept = await this._select([...this.brood.survivors].sort((a, b) => a - b));
    if (kept) toast(`Kept ${kept.length} ${kept.length === 1 ? "child" : "children"} in the gallery`);
    return kept;
  }

  /** Keep the survivors and breed them into the next brood. */
  async nextGeneration() {
    const kept = await this._select([...this.brood.survivors].sort((a, b) => a - b));
    if (!kept) return;
    const ids = kept.map((g) => g.id).slice(0, this.limits().max_brood_parents);
    this.parents = ids;
    this._showParents();
    await this.breed(ids);
  }

  // ---------------------------------------------------------------- internals
  async _keepOne(i) {
    const kept = await this._select([i]);
    if (!kept) return;
    this.lastKept = kept[0].id;
    $("evolve-corner").hidden = false;
    $("evolve-corner-note").textContent = `Kept ${shortId(this.lastKept)}: put it on a corner`;
    this.brood.cells[i].button.setAttribute("aria-pressed", "true");
  }

  async _select(children) {
    const b = this.brood;
    if (!b || !children.length) return null;
    try {
      const replies = await this.session.requestMany("select", P.encodeSelect(b.msg.brood, children), children.length);
      const kept = replies.map((m) => m.genome);
      this.dispatchEvent(new CustomEvent("kept", { detail: kept }));
      return kept;
    } catch {
      return null; // the refusal's toast says why
    }
  }

  _clear() {
    for (const cell of this.brood?.cells || []) if (cell.url) URL.revokeObjectURL(cell.url);
    this.brood = null;
    this.lastKept = null;
    $("evolve-corner").hidden = true;
  }

  _showParents() {
    const box = $("evolve-parents");
    box.replaceChildren(...this.parents.map((id) => el("span", { class: "parent evolve-parent", dataset: { testid: "evolve-parent", id } },
      id === P.CURSOR ? el("span", { class: "cursor-mark", "aria-hidden": "true" }, "⌖")
        : el("img", { class: "parent-thumb", src: thumbUrl(id), alt: "" }),
      el("code", {}, id === P.CURSOR ? "cursor" : shortId(id)),
      el("button", { type: "button", class: "icon", "aria-label": `Remove parent ${id}`, onclick: () => this.removeParent(id) }, "×"))));
    if (!this.parents.length) box.append(el("span", { class: "hint" }, "Drop genomes here, or use the buttons"));
    $("evolve-breed").disabled = !this.parents.length;
  }

  _showBrood() {
    const grid = $("brood");
    const b = this.brood;
    grid.replaceChildren();
    grid.classList.toggle("ring", Boolean(b?.ring));
    $("brood-info").textContent = b
      ? `${b.ring ? "Around the cursor" : `Generation ${b.msg.generation}`} · ${b.msg.count} children · seed ${b.msg.seed}`
      : "No brood yet.";
    if (!b) return this._showActions();
    b.cells = Array.from({ length: b.msg.count }, (_, i) => {
      const img = el("img", { alt: `child ${i}`, draggable: "false" });
      const button = el("button", { type: "button", class: "child waiting", "aria-pressed": "false", dataset: { testid: "child", child: String(i) },
        title: b.ring ? "Keep this variation as a genome" : "Mark as a survivor", onclick: () => this.toggle(i) },
        img, el("span", { class: "child-index" }, String(i)));
      return { button, img, url: null };
    });
    const nodes = b.cells.map((c) => c.button);
    if (b.ring) { // the frame under the cursor in the middle of its eight neighbours
      const centre = el("div", { class: "child centre", "data-testid": "brood-centre", title: "The frame under the cursor" },
        el("img", { src: this.frameUrl() || "", alt: "the current frame" }));
      nodes.splice(NEIGHBOURS / 2, 0, centre);
    }
    grid.append(...nodes);
    this._showActions();
  }

  _showActions() {
    const n = this.brood && !this.brood.ring ? this.brood.survivors.size : 0;
    $("evolve-keep").disabled = n === 0;
    $("evolve-next").disabled = n === 0;
    $("evolve-survivors").textContent = this.brood?.ring ? "Click a variation to keep it." :
      n ? `${n} survivor${n === 1 ? "" : "s"} marked` : "Click children to mark survivors.";
  }

  _dropTarget(node) {
    node.addEventListener("dragover", (e) => {
      if (!e.dataTransfer.types.includes(GENOME_MIME)) return;
      e.preventDefault();
      node.classList.add("drop-target");
    });
    node.addEventListener("dragleave", () => node.classList.remove("drop-target"));
    node.addEventListener("drop", (e) => {
      node.classList.remove("drop-target");
      const id = e.dataTransfer.getData(GENOME_MIME);
      if (!id) return;
      e.preventDefault();
      this.addParent(id);
    });
  }
}
