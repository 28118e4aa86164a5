// The settings panel: blend, size, seed, new noise, JPEG quality. Every change goes to the
// server at once; its `settings` reply is what the panel then shows.

import { $, el } from "./dom.js";
import * as P from "./protocol.js";
import { toast } from "./toasts.js";

const KEYS = ["width", "height", "seed", "blend", "quality"];

export class Settings extends EventTarget {
  /** Events: "change" (the values changed). */
  constructor({ session }) {
    super();
    this.session = session;
    this.limits = P.Limits;
    this.values = { width: 512, height: 512, seed: 0, blend: "lerp", quality: 80 };
    this.sizeChosen = false; // a size the user picked (or a saved one) outlives reconnects
    this._bind();
    this._sizeOptions();
  }

  /** Start from saved values; hello checks them against the server's limits. */
  restore(saved) {
    for (const k of KEYS) if (k in saved) this.values[k] = saved[k];
    this.sizeChosen = saved.sizeChosen === true && Number.isInteger(saved.width);
    this._show();
  }

  /** A hello: take the server's limits, keep what fits them, then send the whole set. */
  hello(limits, model) {
    this.limits = limits;
    const v = this.values;
    const sizes = P.sizeChoices(limits);
    const fits = (s) => Number.isInteger(s) && s >= limits.min_size && s <= limits.max_size && s % limits.size_multiple === 0;
    if (!this.sizeChosen || !fits(v.width) || !fits(v.height)) {
      const want = model === "tiny" ? 256 : 512;
      v.width = v.height = sizes.includes(want) ? want : sizes[0] || limits.min_size;
    }
    if (!(Number.isInteger(v.seed) && v.seed >= 0 && v.seed <= limits.max_seed)) v.seed = 0;
    if (!P.BLEND_MODES.includes(v.blend)) v.blend = P.BLEND_MODES[0];
    if (!(Number.isInteger(v.quality) && v.quality >= limits.min_quality && v.quality <= limits.max_quality)) v.quality = 80;
    $("seed").max = String(limits.max_seed);
    $("quality").min = String(limits.min_quality);
    $("quality").max = String(limits.max_quality);
    this._sizeOptions();
    this.send({ ...v });
  }

  /** Send `partial` (any of width, height, seed, blend, quality). */
  send(partial) {
    Object.assign(this.values, partial);
    this._show();
    this.dispatchEvent(new Event("change"));
    this.session.request("settings", P.encodeSettings(partial)).then((msg) => {
      for (const k of KEYS) if (k in msg) this.values[k] = msg[k];
      this._show();
    }, () => {}); // a refusal is shown as a toast; the server keeps its values
  }

  _sizeOptions() {
    const sel = $("size");
    const sizes = P.sizeChoices(this.limits);
    if (!sizes.includes(this.values.width)) sizes.push(this.values.width);
    sizes.sort((a, b) => a - b);
    sel.replaceChildren(...sizes.map((s) => el("option", { value: String(s) }, `${s} × ${s}`)));
    sel.value = String(this.values.width);
  }

  _show() {
    const v = this.values;
    $("blend").value = v.blend;
    if ($("size").value !== String(v.width)) this._sizeOptions();
    if (document.activeElement !== $("seed")) $("seed").value = String(v.seed);
    $("quality").value = String(v.quality);
    $("quality-out").textContent = String(v.quality);
  }

  _bind() {
    $("blend").addEventListener("change", (e) => this.send({ blend: e.target.value }));
    $("size").addEventListener("change", (e) => {
      const size = Number(e.target.value);
      this.sizeChosen = true;
      this.send({ width: size, height: size });
    });
    $("seed").addEventListener("change", (e) => {
      const seed = Number.parseInt(e.target.value, 10);
      if (!Number.isInteger(seed) || seed < 0 || seed > this.limits.max_seed) {
        toast(`The seed must be a whole number from 0 to ${this.limits.max_seed}`, "error");
        e.target.value = String(this.values.seed);
        return;
      }
      this.send({ seed });
    });
    $("seed").addEventListener("keydown", (e) => e.key === "Enter" && e.target.dispatchEvent(new Event("change")));
    $("new-noise").addEventListener("click", () => this.send({ seed: Math.floor(Math.random() * (this.limits.max_seed + 1)) }));
    $("quality").addEventListener("input", (e) => ($("quality-out").textContent = e.target.value));
    $("quality").addEventListener("change", (e) => this.send({ quality: Number(e.target.value) }));
  }
}
