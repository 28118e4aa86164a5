// The pad: a square that shows the live frame and a cursor you drag (mouse, pen, touch) or nudge
// with the arrow keys. It knows nothing about the socket: it calls onMove(x, y) and draws frames.

const NUDGE = 0.02;
const NUDGE_BIG = 0.1;
const clamp = (v) => Math.min(1, Math.max(0, v));

export class Pad {
  constructor({ root, canvas, cursor, onMove }) {
    this.root = root;
    this.canvas = canvas;
    this.ctx = canvas.getContext("2d", { alpha: false });
    this.cursor = cursor;
    this.onMove = onMove;
    this.x = 0.5;
    this.y = 0.5;
    this.dragging = null; // pointerId while a drag is on
    this.hasFrame = false;

    root.addEventListener("pointerdown", (e) => this._down(e));
    root.addEventListener("pointermove", (e) => this._drag(e));
    root.addEventListener("pointerup", (e) => this._up(e));
    root.addEventListener("pointercancel", (e) => this._up(e));
    root.addEventListener("lostpointercapture", () => this._end());
    root.addEventListener("keydown", (e) => this._key(e));
    this._placeCursor();
  }

  /** Move the cursor without telling anyone (e.g. restoring state). */
  setPosition(x, y) {
    this.x = clamp(x);
    this.y = clamp(y);
    this._placeCursor();
  }

  /** Draw a decoded frame (ImageBitmap) at its own size; CSS scales the canvas to the pad. */
  show(bitmap) {
    if (this.canvas.width !== bitmap.width || this.canvas.height !== bitmap.height) {
      this.canvas.width = bitmap.width;
      this.canvas.height = bitmap.height;
    }
    this.ctx.drawImage(bitmap, 0, 0);
    if (!this.hasFrame) {
      this.hasFrame = true;
      this.root.classList.add("has-frame");
    }
  }

  _placeCursor() {
    this.cursor.style.left = `${this.x * 100}%`;
    this.cursor.style.top = `${this.y * 100}%`;
    this.root.setAttribute("aria-valuetext", `x ${this.x.toFixed(2)}, y ${this.y.toFixed(2)}`);
  }

  _fromEvent(e) {
    const r = this.root.getBoundingClientRect();
    return [clamp((e.clientX - r.left) / r.width), clamp((e.clientY - r.top) / r.height)];
  }

  _set(x, y) {
    x = clamp(x);
    y = clamp(y);
    if (x === this.x && y === this.y) return;
    this.x = x;
    this.y = y;
    this._placeCursor();
    this.onMove(x, y);
  }

  _down(e) {
    if (e.button !== 0 || this.dragging !== null) return;
    e.preventDefault(); // no text selection, no native drag
    this.root.focus({ preventScroll: true });
    this.dragging = e.pointerId;
    try {
      this.root.setPointerCapture(e.pointerId);
    } catch {
      /* a synthetic pointer that cannot be captured */
    }
    this.root.classList.add("dragging");
    this._set(...this._fromEvent(e));
  }

  _drag(e) {
    if (e.pointerId !== this.dragging) return;
    // coalesced events would add positions the server skips anyway (latest wins)
    this._set(...this._fromEvent(e));
  }

  _up(e) {
    if (e.pointerId !== this.dragging) return;
    this._set(...this._fromEvent(e));
    try {
      this.root.releasePointerCapture(e.pointerId);
    } catch {
      /* already released */
    }
    this._end();
  }

  _end() {
    this.dragging = null;
    this.root.classList.remove("dragging");
  }

  _key(e) {
    if (e.altKey || e.ctrlKey || e.metaKey) return;
    const step = e.shiftKey ? NUDGE_BIG : NUDGE;
    const moves = { ArrowLeft: [-step, 0], ArrowRight: [step, 0], ArrowUp: [0, -step], ArrowDown: [0, step] };
    if (e.key in moves) {
      const [dx, dy] = moves[e.key];
      // round so repeated nudges land on the 0.02 grid instead of drifting by float error
      this._set(Math.round((this.x + dx) * 1000) / 1000, Math.round((this.y + dy) * 1000) / 1000);
    } else if (e.key === "Home") {
      this._set(0.5, 0.5);
    } else {
      return;
    }
    e.preventDefault();
  }
}
