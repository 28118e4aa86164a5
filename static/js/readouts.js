// The top bar: the model, the connection pill, fps / latency / batch, and the server's warning.

import { api } from "./api.js";
import { $ } from "./dom.js";
import { toast } from "./toasts.js";

const LATENCY_WINDOW = 30; // frames the median latency covers
const TICK_MS = 250;

function median(values) {
  if (!values.length) return null;
  const s = [...values].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

export class Readouts {
  constructor(connection) {
    this.connection = connection;
    this.received = []; // arrival times (ms) of frames in the last second
    this.latencies = []; // ms, the last LATENCY_WINDOW
    this.lastLatency = null;
    this.lastBatch = null;
    this.warningShown = false;
    this.asked = false; // whether the server was asked why the socket closed
    $("warning-close").addEventListener("click", () => ($("warning").hidden = true));
    $("conn").addEventListener("click", () => connection.reconnectNow());
    setInterval(() => this.update(), TICK_MS);
  }

  /** A frame arrived; `latency` is ms since its move went out (null if unknown). */
  frame(latency, batch) {
    this.received.push(performance.now());
    if (latency !== null) {
      this.lastLatency = latency;
      this.latencies.push(latency);
      if (this.latencies.length > LATENCY_WINDOW) this.latencies.shift();
    }
    this.lastBatch = batch;
  }

  update() {
    const now = performance.now();
    while (this.received.length && now - this.received[0] > 1000) this.received.shift();
    $("fps").textContent = String(this.received.length);
    $("latency").textContent = this.lastLatency === null ? "–"
      : `${Math.round(this.lastLatency)} ms · med ${Math.round(median(this.latencies))}`;
    $("batch").textContent = this.lastBatch === null ? "–" : String(this.lastBatch);
    if (this.connection.state === "closed") {
      const s = Math.max(0, Math.ceil((this.connection.retryAt - now) / 1000));
      $("conn").textContent = `closed · retry in ${s} s`;
    }
  }

  /** The pill: connecting | open | closed. */
  connectionState(state) {
    const b = $("conn");
    b.dataset.state = state;
    b.textContent = state === "open" ? "open" : state === "connecting" ? "connecting…" : "closed";
    b.setAttribute("aria-label", `Connection ${state}${state === "closed" ? "; click to reconnect now" : ""}`);
    if (state === "closed") {
      this.update();
      this._askWhy();
    }
  }

  _askWhy() {
    // a refused socket looks like any dropped one (HTTP 403 before the handshake): ask REST why,
    // once, so the retries don't repeat it every few seconds
    if (this.asked) return;
    this.asked = true;
    api("/api/config").then(
      () => (this.asked = false),
      (e) => {
        if (e.status === 401) {
          toast("The server wants a token: open this page as /?token=YOUR_TOKEN (the one `serve --token` was given)", "error", "unauthorized");
        } else {
          this.asked = false;
        }
      });
  }

  /** From hello: the model's name and the server's warning (a dismissed one stays dismissed). */
  hello(model, warning) {
    $("model-name").textContent = model;
    $("warning-text").textContent = warning || "";
    if (!this.warningShown || !warning) $("warning").hidden = !warning;
    this.warningShown = true;
  }
}
