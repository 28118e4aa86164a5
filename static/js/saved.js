// What the user built — corners, template, settings, cursor position — kept in localStorage,
// so a reload (or a new tab) carries on where they were. The server checks it all again on use.

const KEY = "sdxl-breeder.pad";
const VERSION = 1;
const SAVE_DELAY_MS = 250;

const isUnit = (v) => typeof v === "number" && v >= 0 && v <= 1;
const isCorner = (c) => c && (typeof c.prompt === "string" || typeof c.genome === "string");

/** The saved state ({corners, template, settings, x, y}, each optional), or null. */
export function loadSaved() {
  let data;
  try {
    data = JSON.parse(localStorage.getItem(KEY));
  } catch {
    return null; // storage off, or not JSON: start afresh
  }
  if (!data || data.version !== VERSION) return null;
  const out = {};
  if (Array.isArray(data.corners) && data.corners.length === 4 && data.corners.every(isCorner)) {
    out.corners = data.corners.map((c) => (typeof c.genome === "string" ? { genome: c.genome } : { prompt: c.prompt }));
    out.template = typeof data.template === "string" ? data.template : null;
  }
  if (data.settings && typeof data.settings === "object") out.settings = { ...data.settings };
  if (isUnit(data.x) && isUnit(data.y)) Object.assign(out, { x: data.x, y: data.y });
  return out;
}

/** A function to call on every change: it saves `read()` soon (once per burst of changes),
 * and at the latest when the page is hidden or closed. */
export function saver(read) {
  let timer = null;
  const write = () => {
    clearTimeout(timer);
    try {
      localStorage.setItem(KEY, JSON.stringify({ version: VERSION, ...read() }));
    } catch {
      /* storage full or off: the page works, it just won't remember */
    }
  };
  addEventListener("pagehide", write);
  return () => {
    clearTimeout(timer);
    timer = setTimeout(write, SAVE_DELAY_MS);
  };
}
