// The gallery: saved genomes with thumbnails and lineage. Click (or the checkbox) selects up to
// two; drag one item onto another to breed them; drag an item onto the pad or a corner to use it.

import { nokenUrl, thumbUrl } from "./api.js";
import { el } from "./dom.js";

export const GENOME_MIME = "application/x-breeder-genome";
const MAX_SELECTED = 2;

export const shortId = (id) => String(id).slice(0, 6);

/** A bred child (origin "breed") has two parents; a kept frame (origin "keep") lists the corners it blended. */
export const isChild = (info) => info.origin === "breed";

/**
 * Whether the genome's noken, loaded as a textual inversion, reproduces its frame exactly: true
 * when it pools at one position (prompts, noken-mode keeps, blends of prompts that end at the same
 * token). A plain-mode blend of prompts that end at different positions pools at several; a
 * textual inversion cannot. null: not known.
 */
export const exportsExactly = (info) => (Array.isArray(info.pool) ? info.pool.length === 1 : null);

/** A one-line name for a genome: its prompt, or its lineage. */
export function describe(info, byId = new Map()) {
  if (!info) return "";
  if (info.prompt) return info.prompt;
  const parents = info.parents || [];
  const name = (id) => byId.get(id)?.prompt || shortId(id);
  if (isChild(info)) return `child of ${name(parents[0])} × ${name(parents[1])}`;
  if (info.origin === "evolve") return `evolved from ${parents.map(name).join(" × ")}`;
  if (info.origin === "keep") return `kept from ${parents.map(name).join(", ")}`;
  return `genome ${shortId(info.id)}`;
}


function thumbImg(id, alt, cls) {
  // thumbnails render on the server the first time they are asked for: shimmer until they come
  const img = el("img", { class: `${cls} loading`, src: thumbUrl(id), alt, loading: "lazy", decoding: "async", draggable: "false" });
  img.addEventListener("load", () => img.classList.remove("loading"), { once: true });
  img.addEventListener("error", () => img.classList.replace("loading", "missing"), { once: true });
  return img;
}

function trashIcon() {
  const svg = document.createElementNS("http://www.w3.org/2000/svg", "svg");
  svg.setAttribute("viewBox", "0 0 16 16");
  svg.setAttribute("class", "ico");
  svg.setAttribute("aria-hidden", "true");
  svg.innerHTML = '<path d="M2.5 4h11M6 4V2.5h4V4M4 4l.7 9.5h6.6L12 4M6.7 6.5v5M9.3 6.5v5" fill="none" stroke="currentColor" stroke-width="1.3" stroke-linecap="round" stroke-linejoin="round"/>';
  return svg;
}

/** A chip saying whether the noken export reproduces the frame (see exportsExactly). */
function exactness(info) {
  const exact = exportsExactly(info);
  if (exact === null) return null;
  return el("p", { class: `ti ${exact ? "exact" : "approx"}`, "data-testid": "export-exact", dataset: { exact: String(exact) },
    title: exact
      ? "Its ⬇ noken, used as a word in a stock SDXL pipeline, reproduces this frame exactly"
      : "Its ⬇ noken holds the blended tokens, but this frame pools where its parents' prompts end, at several token positions; a textual inversion pools at one, so it comes out close, not exact" },
    exact ? "= exact noken" : "≈ approximate noken");
}

export class Gallery extends EventTarget {
  /** Events: "select" (detail: ids), "breed" (detail: [a, b]), "delete" (detail: id), "lineage" (detail: id). */
  constructor(list, emptyNote) {
    super();
    this.list = list;
    this.emptyNote = emptyNote;
    this.items = new Map(); // id → {info, node}
    this.selected = []; // ids, oldest first
    this.dragId = null;
  }

  get byId() {
    return new Map([...this.items].map(([id, it]) => [id, it.info]));
  }

  info(id) {
    return this.items.get(id)?.info || null;
  }

  /** Show these genomes (newest first), reusing the nodes of ones already shown. */
  setAll(infos) {
    const keep = new Set(infos.map((i) => i.id));
    for (const [id, it] of this.items) {
      if (!keep.has(id)) {
        it.node.remove();
        this.items.delete(id);
      }
    }
    for (const info of infos) this._upsert(info);
    // reorder in place: appending an existing node moves it
    infos.forEach((info, i) => {
      const node = this.items.get(info.id).node;
      if (this.list.children[i] !== node) this.list.insertBefore(node, this.list.children[i] || null);
    });
    this._pruneSelection();
    this._refreshCaptions();
  }

  /** Put a new genome first (a kept frame or a bred child) and flash it. */
  add(info) {
    const fresh = !this.items.has(info.id);
    const node = this._upsert(info);
    this.list.prepend(node);
    this._refreshCaptions();
    if (fresh) {
      node.classList.add("fresh");
      setTimeout(() => node.classList.remove("fresh"), 2000);
    }
    node.scrollIntoView({ block: "nearest", behavior: "smooth" });
    return node;
  }

  remove(id) {
    const it = this.items.get(id);
    if (!it) return;
    it.node.remove();
    this.items.delete(id);
    this._pruneSelection();
    this._refreshCaptions();
  }

  toggle(id, on) {
    const was = this.selected.includes(id);
    on = on === undefined ? !was : on;
    if (on && !was) {
      this.selected.push(id);
      while (this.selected.length > MAX_SELECTED) this.selected.shift();
    } else if (!on && was) {
      this.selected = this.selected.filter((s) => s !== id);
    }
    this._syncSelection();
  }

  clearSelection() {
    this.selected = [];
    this._syncSelection();
  }

  // ---------------------------------------------------------------- internals
  _pruneSelection() {
    const before = this.selected.length;
    this.selected = this.selected.filter((id) => this.items.has(id));
    if (before !== this.selected.length) this._syncSelection();
    this.emptyNote.hidden = this.items.size > 0;
  }

  _syncSelection() {
    for (const [id, it] of this.items) {
      const on = this.selected.includes(id);
      it.node.classList.toggle("selected", on);
      it.node.querySelector("input.pick").checked = on;
      it.node.setAttribute("aria-selected", String(on));
    }
    this._emit("select", [...this.selected]);
  }

  _refreshCaptions() {
    const byId = this.byId;
    for (const { info, node } of this.items.values()) {
      const label = describe(info, byId);
      node.querySelector("input.pick").setAttribute("aria-label", `Select ${label}`);
      for (const p of node.querySelectorAll("[data-testid=parent]")) {
        const parent = byId.get(p.dataset.id);
        p.title = parent ? `${describe(parent, byId)} (${p.dataset.id})` : `${p.dataset.id} (not in the gallery)`;
      }
    }
  }

  _upsert(info) {
    const existing = this.items.get(info.id);
    if (existing) {
      existing.info = info;
      return existing.node;
    }
    const node = this._render(info);
    this.items.set(info.id, { info, node });
    this.emptyNote.hidden = true;
    return node;
  }

  _render(info) {
    const id = info.id;
    const parents = info.parents || [];
    const parentChip = (pid) =>
      el("span", { class: "parent", dataset: { testid: "parent", id: pid } }, thumbImg(pid, "", "parent-thumb"), el("code", {}, shortId(pid)));

    let lineage = null;
    if (isChild(info)) {
      lineage = el("div", { class: "lineage", "data-testid": "lineage" }, el("span", { class: "muted" }, "child of"), parentChip(parents[0]),
        el("span", { class: "times", "aria-hidden": "true" }, "×"), parentChip(parents[1]));
    } else if (info.origin === "evolve") {
      lineage = el("div", { class: "lineage", "data-testid": "lineage" }, el("span", { class: "muted" }, "evolved from"),
        ...parents.flatMap((p, i) => (i ? [el("span", { class: "times", "aria-hidden": "true" }, "×"), parentChip(p)] : [parentChip(p)])));
    } else if (info.origin === "keep") {
      lineage = el("div", { class: "lineage", "data-testid": "lineage" }, el("span", { class: "muted" }, "kept from"), ...parents.map(parentChip));
    }
    const meta = [];
    if (info.generation) meta.push(`gen ${info.generation}`);
    if (isChild(info) || info.origin === "evolve") {
      if (info.mutation != null) meta.push(`mutation ${Number(info.mutation).toFixed(2)}`);
      if (info.seed != null) meta.push(`seed ${info.seed}`);
    }

    const pick = el("input", {
      type: "checkbox", class: "pick", "data-testid": "gallery-select",
      onchange: (e) => this.toggle(id, e.target.checked),
    });
    const node = el(
      "li",
      { class: "genome", draggable: "true", "aria-selected": "false", dataset: { testid: "gallery-item", id } },
      el("label", { class: "thumb-label", title: "Click to select; drag onto the pad to use as a corner, onto another genome to breed" },
        pick, thumbImg(id, "", "thumb")),
      el("div", { class: "caption" },
        info.prompt ? el("p", { class: "prompt", title: info.prompt }, info.prompt) : null,
        lineage,
        !info.prompt && !lineage ? el("p", { class: "prompt muted" }, `genome ${shortId(id)}`) : null,
        meta.length ? el("p", { class: "meta" }, meta.join(" · ")) : null,
        exactness(info)),
      el("div", { class: "item-actions" },
        el("code", { class: "gid", title: id }, shortId(id)),
        el("a", { class: "noken-link", href: nokenUrl(id), download: `noken-${id}.safetensors`, "data-testid": "noken-link",
          title: "Download as a textual inversion (a noken)", "aria-label": `Download noken ${shortId(id)}` }, "⬇ noken"),
        el("button", { type: "button", class: "icon", "data-testid": "show-lineage", "aria-label": `Show the line of ${shortId(id)}`,
          title: "Show its line: parents, their parents, … (Lineage panel)", onclick: () => this._emit("lineage", id) }, "⤴"),
        el("button", { type: "button", class: "icon danger", "data-testid": "delete", "aria-label": `Delete genome ${shortId(id)}`,
          title: "Delete", onclick: () => this._emit("delete", id) }, trashIcon())),
    );

    node.addEventListener("dragstart", (e) => {
      this.dragId = id;
      e.dataTransfer.setData(GENOME_MIME, id); // no text/plain: text fields must not take it as typing
      e.dataTransfer.effectAllowed = "copyLink";
      node.classList.add("drag-source");
      document.body.classList.add("dragging-genome");
    });
    node.addEventListener("dragend", () => {
      this.dragId = null;
      node.classList.remove("drag-source");
      document.body.classList.remove("dragging-genome");
    });
    node.addEventListener("dragover", (e) => {
      if (!e.dataTransfer.types.includes(GENOME_MIME) || this.dragId === id) return;
      e.preventDefault();
      e.dataTransfer.dropEffect = "link";
      node.classList.add("drop-target");
    });
    node.addEventListener("dragleave", () => node.classList.remove("drop-target"));
    node.addEventListener("drop", (e) => {
      node.classList.remove("drop-target");
      const other = e.dataTransfer.getData(GENOME_MIME);
      if (!other || other === id) return;
      e.preventDefault();
      e.stopPropagation();
      this._emit("breed", [other, id]);
    });
    return node;
  }

  _emit(type, detail) {
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }
}
