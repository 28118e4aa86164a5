// Exporting a recorded walk as an MP4 or a GIF, at the fps and size the export options name:
// POST /api/walks/{id}/video starts the server's render job, its status_url is polled for
// frames_done / frames_total, and the finished file (video_url) is downloaded and linked.

import { api, videoJobPath, withToken } from "./api.js";
import { $, el } from "./dom.js";

const FPS_CHOICES = [6, 12, 24, 30];
const DEFAULT_FPS = 12;
const FORMATS = { mp4: "MP4", gif: "GIF" };
const POLL_MS = 250;

const sleep = (ms) => new Promise((done) => setTimeout(done, ms));

function megabytes(bytes) {
  return bytes >= 1e6 ? `${(bytes / 1e6).toFixed(1)} MB` : `${Math.max(1, Math.round(bytes / 1e3))} kB`;
}

export class Exporter {
  constructor({ sizes, limits }) {
    this.sizes = sizes; // () => square sizes the server allows
    this.limits = limits; // () => the server's limits
    this.walk = null; // the walk reply being exported
    this.running = null; // the export in progress ({}), so a new walk or a second click does not mix with it
    $("export-format").replaceChildren(...Object.entries(FORMATS).map(([v, name]) => el("option", { value: v }, name)));
    $("export-fps").replaceChildren(...FPS_CHOICES.map((f) => el("option", { value: String(f) }, `${f} fps`)));
    $("export-fps").value = String(DEFAULT_FPS);
    for (const id of ["export-format", "export-fps", "export-size"]) $(id).addEventListener("change", () => this._label());
    $("export").addEventListener("click", () => this.start());
  }

  /** Offer `walk` (the `record` stop reply) for export; forgets the last export's progress. */
  show(walk) {
    this.walk = walk;
    this.running = null;
    $("export-size").replaceChildren(el("option", { value: "" }, "as recorded"),
      ...this.sizes().map((s) => el("option", { value: String(s) }, `${s} × ${s}`)));
    $("export-progress").hidden = true;
    $("export").disabled = false;
    this._label();
    $("export-box").hidden = false;
  }

  hide() {
    this.walk = null;
    this.running = null;
    $("export-box").hidden = true;
  }

  get options() {
    return {
      format: $("export-format").value || "mp4",
      fps: Number($("export-fps").value) || DEFAULT_FPS,
      size: Number($("export-size").value) || null,
    };
  }

  _label() {
    if (!this.walk) return;
    const { format, fps } = this.options;
    const frames = Math.max(1, Math.round(this.walk.seconds * fps));
    const limits = this.limits();
    const limit = format === "gif" ? limits.max_gif_frames : limits.max_video_frames;
    const b = $("export");
    b.textContent = `⬇ Export ${FORMATS[format]}`;
    b.title = `${this.walk.points} points, ${Number(this.walk.seconds).toFixed(1)} s: ${frames} frames to render` +
      (frames > limit ? ` (over the ${limit}-frame limit for ${FORMATS[format]}: choose a lower fps)` : "");
  }

  /** Start (or join) the render job, show its progress, and download the file when it is done. */
  async start() {
    if (this.running || !this.walk) return; // one export at a time: the button is disabled meanwhile
    const run = (this.running = {});
    const { format, fps, size } = this.options;
    const name = FORMATS[format];
    $("export").disabled = true;
    this._progress("rendering", `Starting the ${name}…`, 0, 1);
    try {
      let job = await api(videoJobPath(this.walk.walk, { format, fps, size }), { method: "POST" });
      while (job.status === "rendering") {
        if (this.running !== run) return; // a new walk replaced this one; the server finishes it anyway
        this._progress("rendering", `Rendering the ${name}: ${job.frames_done} / ${job.frames_total} frames`,
          job.frames_done, job.frames_total);
        await sleep(POLL_MS);
        job = await api(job.status_url);
      }
      if (this.running !== run) return;
      if (job.status === "done") this._done(job, name);
      else this._progress("failed", `${name} export failed: ${job.error || "the server no longer has this render; export again"}`);
    } catch (e) {
      if (this.running !== run) return;
      if (e.status === 429) this._progress("busy", `The server is busy: ${e.message}`);
      else this._progress("failed", `${name} export failed: ${e.message}`);
    } finally {
      if (this.running === run) {
        this.running = null;
        $("export").disabled = false;
      }
    }
  }

  _done(job, name) {
    this._progress("done", `${name} ready: ${job.frames_total} frames, ${megabytes(job.bytes)}`, 1, 1);
    const link = $("export-file");
    link.href = withToken(job.video_url);
    link.setAttribute("download", `walk-${job.walk}.${job.format}`);
    link.textContent = `⬇ walk-${job.walk}.${job.format}`;
    link.hidden = false;
    link.click(); // what "Export" asked for; the link stays for another copy
  }

  /** Show the export's state: rendering (with a bar), done, failed or busy (the text says why). */
  _progress(state, text, done = 0, total = 0) {
    const box = $("export-progress");
    box.hidden = false;
    box.dataset.state = state;
    box.setAttribute("role", state === "failed" || state === "busy" ? "alert" : "status");
    const bar = $("export-bar");
    bar.hidden = state === "failed" || state === "busy";
    bar.max = Math.max(total, 1);
    bar.value = done;
    $("export-text").textContent = text;
    $("export-file").hidden = state !== "done";
  }
}
