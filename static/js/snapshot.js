// "Download this frame": the frame under the cursor rendered again as a lossless PNG
// (POST /api/render with the accepted corners, the settings and the position), saved as a file.

import { renderImage } from "./api.js";
import { $ } from "./dom.js";
import { toast } from "./toasts.js";

export class Snapshot {
  /** `scene()` gives {corners, template, x, y, settings} for the frame on screen, or null. */
  constructor(scene) {
    this.scene = scene;
    this.busy = false;
    $("download-png").addEventListener("click", () => this.download());
  }

  async download() {
    const s = this.scene();
    if (!s || this.busy) return;
    const button = $("download-png");
    this.busy = true;
    button.setAttribute("aria-busy", "true");
    try {
      const { width, height, seed, blend } = s.settings;
      const blob = await renderImage({ corners: s.corners, template: s.template, x: s.x, y: s.y,
        seed, blend, width, height, format: "png" });
      const url = URL.createObjectURL(blob);
      const a = document.createElement("a");
      a.href = url;
      a.download = `frame-x${s.x.toFixed(2)}-y${s.y.toFixed(2)}-seed${seed}.png`;
      document.body.append(a);
      a.click();
      a.remove();
      setTimeout(() => URL.revokeObjectURL(url), 60000);
    } catch (e) {
      toast(`Download: ${e.message}`, "error", e.code);
    } finally {
      this.busy = false;
      button.removeAttribute("aria-busy");
    }
  }
}
