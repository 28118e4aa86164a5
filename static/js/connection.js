// The websocket: connect, reconnect with exponential backoff (up to ~5 s), split text and
// binary messages. Events: "state" (detail: connecting|open|closed), "hello", "message"
// (detail: the parsed JSON), "frame" (detail: {header, blob}), "garbled" (detail: an Error).

import { decodeFrame } from "./protocol.js";

const BASE_DELAY_MS = 250;
const MAX_DELAY_MS = 5000;

export class Connection extends EventTarget {
  constructor(url) {
    super();
    this.url = url;
    this.ws = null;
    this.state = "closed";
    this.attempt = 0;
    this.retryTimer = null;
    this.retryAt = 0;
    this.closeReason = "";
    this.closeCode = null;
  }

  start() {
    clearTimeout(this.retryTimer);
    this.retryTimer = null;
    this._set("connecting");
    let ws;
    try {
      ws = new WebSocket(this.url);
    } catch (e) {
      this.closeReason = e.message;
      this._retry();
      return;
    }
    ws.binaryType = "arraybuffer";
    this.ws = ws;
    ws.onmessage = (ev) => {
      if (ws !== this.ws) return;
      if (typeof ev.data === "string") {
        let msg;
        try {
          msg = JSON.parse(ev.data);
        } catch {
          return;
        }
        if (msg && msg.type === "hello") {
          this.attempt = 0; // a real session: the next drop starts the backoff afresh
          this._set("open");
          this._emit("hello", msg);
        } else {
          this._emit("message", msg);
        }
      } else {
        let frame;
        try {
          frame = decodeFrame(ev.data);
        } catch (e) {
          this._emit("garbled", e);
          return;
        }
        this._emit("frame", frame);
      }
    };
    ws.onclose = (ev) => {
      if (ws !== this.ws) return;
      this.ws = null;
      this.closeCode = ev.code;
      this.closeReason = ev.reason || (ev.code === 1006 ? "connection lost" : `code ${ev.code}`);
      this._retry();
    };
    ws.onerror = () => {}; // onclose follows and handles it
  }

  /** Send a text message if the socket is open; returns whether it went out. */
  send(text) {
    if (this.state !== "open" || !this.ws || this.ws.readyState !== WebSocket.OPEN) return false;
    this.ws.send(text);
    return true;
  }

  get isOpen() {
    return this.state === "open";
  }

  /** Reconnect now (e.g. the user clicked the connection pill). */
  reconnectNow() {
    if (this.state === "closed") {
      this.attempt = 0;
      this.start();
    }
  }

  /** Drop the socket (tests and debugging); it reconnects by itself. */
  drop() {
    if (this.ws) this.ws.close(4000, "dropped by the page");
  }

  _retry() {
    const delay = Math.min(MAX_DELAY_MS, BASE_DELAY_MS * 2 ** this.attempt) * (0.8 + 0.4 * Math.random());
    this.attempt += 1;
    this.retryAt = performance.now() + delay;
    this._set("closed");
    this.retryTimer = setTimeout(() => this.start(), delay);
  }

  _set(state) {
    if (state === this.state) return;
    this.state = state;
    this._emit("state", state);
  }

  _emit(type, detail) {
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }
}
