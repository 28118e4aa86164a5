// The lineage view: a genome's line, generation by generation up to the prompts it came from,
// each ancestor with its thumbnail and generation number, and its children below. Click an
// ancestor (or a child) to follow the line from there.

import { api, thumbUrl } from "./api.js";
import { $, el } from "./dom.js";
import { describe, shortId } from "./gallery.js";
import { toast } from "./toasts.js";

const MAX_ANCESTORS = 32; // a line is walked this far up at most; older ones are left out

export class Lineage {
  constructor({ gallery }) {
    this.gallery = gallery;
    this.focus = null;
    this.infos = new Map(); // id → genome info (with children), fetched once per show
    $("lineage-show").addEventListener("click", () => {
      const id = this.gallery.selected[this.gallery.selected.length - 1];
      if (id) this.show(id);
      else toast("Select a genome in the gallery to see its line", "error");
    });
  }

  /** Show `id`'s ancestors, generation by generation, and its children. */
  async show(id) {
    this.focus = id;
    this.infos = new Map();
    try {
      const line = await this._ancestors(id);
      if (this.focus !== id) return; // another genome was asked for meanwhile
      this._render(id, line);
    } catch (e) {
      toast(`Lineage: ${e.message}`, "error", e.code);
    }
  }

  async _info(id) {
    if (!this.infos.has(id)) {
      this.infos.set(id, api(`/api/genomes/${encodeURIComponent(id)}`).catch(() => ({ id, missing: true, parents: [] })));
    }
    return this.infos.get(id);
  }

  /** The genome and its ancestors (breadth first, at most MAX_ANCESTORS). */
  async _ancestors(id) {
    const seen = new Map();
    let wave = [id];
    while (wave.length && seen.size < MAX_ANCESTORS) {
      const infos = await Promise.all(wave.filter((g) => !seen.has(g)).map((g) => this._info(g)));
      const next = [];
      for (const info of infos) {
        if (seen.size >= MAX_ANCESTORS) break;
        seen.set(info.id, info);
        next.push(...(info.parents || []));
      }
      wave = [...new Set(next)];
    }
    return [...seen.values()];
  }

  _render(id, line) {
    const focus = line.find((g) => g.id === id);
    const byId = new Map([...this.gallery.byId, ...line.map((g) => [g.id, g])]);
    const generations = new Map();
    for (const info of line) {
      const g = info.generation ?? 0;
      if (!generations.has(g)) generations.set(g, []);
      generations.get(g).push(info);
    }
    const rows = [...generations.keys()].sort((a, b) => a - b).map((g) =>
      el("div", { class: "lineage-row", dataset: { testid: "lineage-row", generation: String(g) } },
        el("span", { class: "gen" }, `gen ${g}`),
        ...generations.get(g).map((info) => this._item(info, byId, info.id === id))));
    const children = (focus?.children || []).map((cid) => el("button", {
      type: "button", class: "lineage-child", dataset: { testid: "lineage-child", id: cid },
      title: `Follow the line from ${cid}`, onclick: () => this.show(cid) },
    el("img", { class: "parent-thumb", src: thumbUrl(cid), alt: "" }), el("code", {}, shortId(cid))));
    $("lineage").replaceChildren(...rows,
      children.length ? el("div", { class: "lineage-row children" }, el("span", { class: "gen" }, "children"), ...children) : "");
    $("lineage-note").textContent = focus ? `The line of “${describe(focus, byId)}”: oldest generation first.` : "";
  }

  _item(info, byId, isFocus) {
    const from = (info.parents || []).map(shortId).join(" × ");
    return el("button", { type: "button", class: `lineage-item${isFocus ? " focus" : ""}`,
      dataset: { testid: "lineage-item", id: info.id, generation: String(info.generation ?? 0) },
      title: info.missing ? `${info.id} (not in the gallery)` : `${describe(info, byId)} (${info.id}): follow the line from here`,
      onclick: () => this.show(info.id) },
    el("img", { class: "lineage-thumb", src: thumbUrl(info.id), alt: "" }),
    el("span", { class: "lineage-name" }, info.missing ? shortId(info.id) : describe(info, byId)),
    el("span", { class: "meta" }, `gen ${info.generation ?? 0}${info.origin ? ` · ${info.origin}` : ""}${from ? ` · from ${from}` : ""}`));
  }
}
