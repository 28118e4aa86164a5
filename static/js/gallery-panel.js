// The gallery panel's controls: keep this frame, select, use as a corner, breed, delete, reload.
// Kept and bred genomes arrive as `genome` replies; the gallery itself is in gallery.js.

import { breedGenomes, deleteGenome, listGenomes } from "./api.js";
import { $ } from "./dom.js";
import { Gallery, describe, shortId } from "./gallery.js";
import * as P from "./protocol.js";
import { toast } from "./toasts.js";

const REFRESH_DELAY_MS = 300;

export class GalleryPanel {
  /** `useAsCorner(i, id)` puts a genome on corner i; `limits()` gives the server's limits. */
  constructor({ session, limits, useAsCorner }) {
    this.session = session;
    this.limits = limits;
    this.gallery = new Gallery($("gallery"), $("gallery-empty"));
    this.timer = null;
    const g = this.gallery;
    g.addEventListener("select", (e) => this._selection(e.detail));
    g.addEventListener("breed", (e) => this.breed(...e.detail));
    g.addEventListener("delete", (e) => this._delete(e.detail));
    document.querySelectorAll(".use-corner button").forEach((b) =>
      b.addEventListener("click", () => {
        const id = g.selected[g.selected.length - 1];
        if (id) useAsCorner(Number(b.dataset.corner), id);
      }));
    $("breed").addEventListener("click", () => g.selected.length === 2 && this.breed(...g.selected));
    $("keep").addEventListener("click", () => this.keep());
    $("mutation").addEventListener("input", (e) => ($("mutation-out").textContent = Number(e.target.value).toFixed(2)));
    $("refresh").addEventListener("click", () => this.refresh());
    this._selection([]);
  }

  /** From hello: the limits the breed controls allow. */
  hello(limits) {
    $("breed-seed").max = String(limits.max_seed);
    $("mutation").max = String(limits.max_mutation);
  }

  async refresh() {
    try {
      this.gallery.setAll(await listGenomes());
    } catch (e) {
      toast(`Gallery: ${e.message}`, "error", e.code);
    }
  }

  refreshSoon() {
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.refresh(), REFRESH_DELAY_MS);
  }

  /** Save the blend under the cursor as a genome. */
  keep() {
    this.session.request("keep", P.encodeKeep()).then((msg) => {
      this.gallery.add(msg.genome);
      toast("Kept this frame in the gallery");
    }, () => {}); // the refusal's toast says why
  }

  breed(a, b) {
    const seedText = $("breed-seed").value.trim();
    const seed = seedText === "" ? null : Number.parseInt(seedText, 10);
    const max = this.limits().max_seed;
    if (seed !== null && !(Number.isInteger(seed) && seed >= 0 && seed <= max)) {
      toast(`The breeding seed must be blank (random) or a whole number from 0 to ${max}`, "error");
      return;
    }
    const mutation = Number($("mutation").value);
    const child = this.session.state === "open"
      ? this.session.request("breed", P.encodeBreed([a, b], { seed, mutation })).then((msg) => msg.genome)
      : breedGenomes([a, b], seed, mutation).catch((e) => {
        toast(`Breed: ${e.message}`, "error", e.code);
        throw e;
      });
    child.then((info) => {
      this.gallery.add(info);
      toast(`Bred ${describe(info, this.gallery.byId)}`);
    }, () => {}); // a refusal over the socket has its toast already
  }

  _selection(ids) {
    const n = ids.length;
    document.querySelectorAll(".use-corner button").forEach((b) => (b.disabled = n === 0));
    $("breed").disabled = n !== 2;
    const names = ids.map((id) => `“${describe(this.gallery.info(id), this.gallery.byId)}”`);
    $("selection-note").textContent =
      n === 0 ? "Select one genome to put it on a corner, two to breed them. Or drag." :
      n === 1 ? `${names[0]} selected: use it as a corner, or select another to breed.` :
      `Breed ${names[0]} × ${names[1]}`;
  }

  async _delete(id) {
    const info = this.gallery.info(id);
    if (!(await confirm(`“${describe(info, this.gallery.byId)}” (${id}) will be deleted. Children keep its id among their parents.`))) return;
    try {
      await deleteGenome(id);
      this.gallery.remove(id);
      toast(`Deleted ${shortId(id)}`);
    } catch (err) {
      toast(`Delete: ${err.message}`, "error", err.code);
    }
  }
}

/** The page's confirmation dialog; resolves true when the user confirms. */
function confirm(text) {
  const dialog = $("confirm");
  $("confirm-text").textContent = text;
  dialog.returnValue = "";
  dialog.showModal();
  return new Promise((resolve) => dialog.addEventListener("close", () => resolve(dialog.returnValue === "ok"), { once: true }));
}
