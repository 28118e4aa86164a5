// Recording a walk (the cursor's path) and exporting it as a video, at the fps and size the
// export options name (GET /api/walks/{id}/video.mp4?fps=&width=&height=).

import { videoUrl } from "./api.js";
import { $, el } from "./dom.js";
import { encodeRecord } from "./protocol.js";
import { toast } from "./toasts.js";

const FPS_CHOICES = [6, 12, 24, 30];
const DEFAULT_FPS = 12;

export class Recorder {
  constructor({ session, sizes }) {
    this.session = session;
    this.sizes = sizes; // () => square sizes the server allows
    this.recording = false;
    this.walk = null; // the last walk reply
    $("export-fps").replaceChildren(...FPS_CHOICES.map((f) => el("option", { value: String(f) }, `${f} fps`)));
    $("export-fps").value = String(DEFAULT_FPS);
    $("record").addEventListener("click", () => this.toggle());
    $("export-fps").addEventListener("change", () => this._link());
    $("export-size").addEventListener("change", () => this._link());
    this._show();
  }

  toggle() {
    if (this.recording) return this.stop();
    if (!this.session.send(encodeRecord("start"))) return;
    this.recording = true;
    this.walk = null;
    $("export-box").hidden = true;
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
    this.walk = msg;
    const sizes = this.sizes();
    $("export-size").replaceChildren(el("option", { value: "" }, "as recorded"),
      ...sizes.map((s) => el("option", { value: String(s) }, `${s} × ${s}`)));
    this._link();
    $("export-box").hidden = false;
    toast(`Walk saved (${msg.points} points, ${Number(msg.seconds).toFixed(1)} s): Export MP4 renders it`);
  }

  _link() {
    if (!this.walk) return;
    const size = Number($("export-size").value) || null;
    const fps = Number($("export-fps").value) || DEFAULT_FPS;
    const a = $("export");
    a.href = videoUrl(this.walk.walk, fps, size);
    a.setAttribute("download", `walk-${this.walk.walk}.mp4`);
    const frames = Math.round(this.walk.seconds * fps);
    a.title = `${this.walk.points} points, ${Number(this.walk.seconds).toFixed(1)} s: ${frames} frames to render`;
  }

  _show() {
    const b = $("record");
    b.setAttribute("aria-pressed", String(this.recording));
    b.textContent = this.recording ? "■ Stop recording" : "● Record";
    b.classList.toggle("on", this.recording);
    $("pad").classList.toggle("recording", this.recording);
  }
}
