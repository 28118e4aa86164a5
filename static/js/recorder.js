// Recording a walk (the cursor's path); when it stops, the saved walk goes to the exporter.

import { $ } from "./dom.js";
import { encodeRecord } from "./protocol.js";
import { toast } from "./toasts.js";

export class Recorder {
  constructor({ session, exporter }) {
    this.session = session;
    this.exporter = exporter; // exporter.js: offers the saved walk as an MP4 or a GIF
    this.recording = false;
    $("record").addEventListener("click", () => this.toggle());
    this._show();
  }

  toggle() {
    if (this.recording) return this.stop();
    if (!this.session.send(encodeRecord("start"))) return;
    this.recording = true;
    this.exporter.hide();
    this._show();
    toast("Recording: move the cursor, then stop to export a video");
  }

  stop() {
    const reply = this.session.request("record", encodeRecord("stop"));
    this.recording = false;
    this._show();
    reply.then((msg) => this._saved(msg), () => {}); // the refusal's toast says why
  }

  /** The connection dropped: a recording in progress is lost with its session. */
  lost() {
    if (!this.recording) return;
    this.recording = false;
    this._show();
    toast("Recording stopped: the connection dropped", "error");
  }

  _saved(msg) {
    this.exporter.show(msg);
    toast(`Walk saved (${msg.points} points, ${Number(msg.seconds).toFixed(1)} s): Export renders it as an MP4 or a GIF`);
  }

  _show() {
    const b = $("record");
    b.setAttribute("aria-pressed", String(this.recording));
    b.textContent = this.recording ? "■ Stop recording" : "● Record";
    b.classList.toggle("on", this.recording);
    $("pad").classList.toggle("recording", this.recording);
  }
}
