// The wire contract, mirrored from server/protocol.py (docs/protocol.md).
// Names match the Python ones so a test can compare them; keep the two in step.

export const PROTOCOL_VERSION = 1;
export const CORNER_NAMES = Object.freeze(["top-left", "top-right", "bottom-left", "bottom-right"]);
export const BLEND_MODES = Object.freeze(["lerp", "slerp"]);
export const NOKEN = "[noken]";
export const MAX_SEQ = 2 ** 53; // the largest integer a JavaScript number holds exactly

/** Every limit the server enforces (defaults; the real ones arrive in `hello.limits`). */
export const Limits = Object.freeze({
  max_message_bytes: 16384,
  max_prompt_chars: 1000,
  min_size: 64,
  max_size: 1024,
  size_multiple: 64,
  max_seed: 2 ** 32 - 1,
  min_quality: 1,
  max_quality: 100,
  max_mutation: 2.0,
  max_json_depth: 6,
  max_batch: 8,
  max_record_points: 36000,
  max_body_bytes: 4 * 1024 * 1024,
  max_fps: 120.0,
  max_video_jobs: 2,
  max_video_cache_bytes: 2 ** 30,
  max_video_frames: 3600,
  max_gif_frames: 600,
  max_gif_fps: 50.0,
  max_brood_children: 16,
  max_brood_parents: 4,
  max_brood_mutation: 1.0,
  max_broods: 16,
  max_api_broods: 64,
  max_sessions: 256,
  max_messages_per_second: 300,
  max_over_rate_seconds: 5.0,
  max_queued_replies: 32,
  drain_timeout_seconds: 30.0,
  max_genomes_per_minute: 120,
  max_store_bytes: 10 * 2 ** 30,
});

/** The `code` of an error message: stable strings clients may switch on. */
export const ErrorCode = Object.freeze({
  BAD_JSON: "bad_json",
  BINARY_NOT_SUPPORTED: "binary_not_supported",
  TOO_LARGE: "too_large",
  TOO_DEEP: "too_deep",
  NOT_AN_OBJECT: "not_an_object",
  UNKNOWN_TYPE: "unknown_type",
  MISSING_FIELD: "missing_field",
  UNKNOWN_FIELD: "unknown_field",
  BAD_VALUE: "bad_value",
  UNKNOWN_GENOME: "unknown_genome",
  UNKNOWN_WALK: "unknown_walk",
  UNKNOWN_BROOD: "unknown_brood",
  NO_CORNERS: "no_corners",
  BAD_PROMPT: "bad_prompt",
  BAD_TEMPLATE: "bad_template",
  RENDER_FAILED: "render_failed",
  NOT_RECORDING: "not_recording",
  UNAUTHORIZED: "unauthorized",
  BUSY: "busy",
  RATE_LIMITED: "rate_limited",
  STORE_FULL: "store_full",
  INTERNAL: "internal",
});

/** Message `type`s a client sends, with their required and optional fields. */
export const CLIENT_MESSAGES = Object.freeze({
  settings: { required: [], optional: ["width", "height", "seed", "blend", "quality", "corner_seeds"] },
  corners: { required: ["corners"], optional: ["template"] },
  move: { required: ["x", "y", "seq"], optional: [] },
  breed: { required: ["parents"], optional: ["seed", "mutation"] },
  record: { required: ["action"], optional: [] },
  keep: { required: [], optional: ["prompt"] },
  evolve: { required: ["parents"], optional: ["count", "mutation", "seed"] },
  select: { required: ["brood", "children"], optional: [] },
});

/** Message `type`s the server sends as JSON text (frames come as binary). */
export const SERVER_MESSAGES = Object.freeze(["hello", "settings", "corners", "genome", "walk", "brood", "error"]);

/** How a genome came to be (its `origin`): embedded from a prompt, bred, kept from the pad, or a
 * brood's child selected from an evolve. */
export const GENOME_ORIGINS = Object.freeze(["prompt", "breed", "keep", "evolve"]);

/**
 * The request type a server message answers: `settings` and `corners` replies their own type, a
 * `genome` its `origin` (breed or keep; an evolved one the select), a `brood` the evolve, a `walk`
 * the record stop, an error its `in_reply_to` (absent for input that was not a message of a known
 * type). null: it answers nothing.
 */
export function answers(msg) {
  switch (msg.type) {
    case "settings":
    case "corners":
      return msg.type;
    case "genome":
      return msg.genome?.origin === "evolve" ? "select" : msg.genome?.origin ?? null;
    case "brood":
      return "evolve";
    case "walk":
      return "record";
    case "error":
      return msg.in_reply_to ?? null;
    default:
      return null;
  }
}

/** The fields of a binary frame's JSON header (FrameHeader). */
export const FRAME_HEADER_FIELDS = Object.freeze(["seq", "x", "y", "seed", "width", "height", "render_ms", "batch"]);
const FRAME_INT_FIELDS = new Set(["seq", "seed", "width", "height", "batch"]);

// ------------------------------------------------------------------ builders
const pick = (obj, keys) => {
  const out = {};
  for (const k of keys) if (obj[k] !== undefined) out[k] = obj[k];
  return out;
};

/** Any subset of width, height, seed, blend, quality, corner_seeds (null clears them). */
export function encodeSettings(settings) {
  const fields = pick(settings, CLIENT_MESSAGES.settings.optional);
  if (!Object.keys(fields).length) throw new Error("settings needs at least one field");
  return JSON.stringify({ type: "settings", ...fields });
}

/** One corner: a prompt string, a {prompt} or a {genome} object. */
export function corner(value) {
  if (typeof value === "string") return { prompt: value };
  if (value && typeof value.genome === "string") return { genome: value.genome };
  if (value && typeof value.prompt === "string") return { prompt: value.prompt };
  throw new Error("a corner needs a prompt or a genome id");
}

/** All four corners in CORNER_NAMES order; `template` (with one [noken]) or null. */
export function encodeCorners(corners, template = null) {
  if (!Array.isArray(corners) || corners.length !== CORNER_NAMES.length) {
    throw new Error(`corners must be a list of ${CORNER_NAMES.length}`);
  }
  return JSON.stringify({ type: "corners", corners: corners.map(corner), template: template ?? null });
}

const unit = (v) => Math.min(1, Math.max(0, Number(v) || 0));

/** A cursor position in [0, 1]² (0, 0 = top-left); `seq` comes back in the frame header. */
export function encodeMove(x, y, seq) {
  if (!Number.isInteger(seq) || seq < 0 || seq > MAX_SEQ) throw new Error(`bad seq ${seq}`);
  return JSON.stringify({ type: "move", x: unit(x), y: unit(y), seq });
}

/** Breed two genomes (they may be the same); seed null/undefined = random. */
export function encodeBreed(parents, { seed = null, mutation = 0 } = {}) {
  if (!Array.isArray(parents) || parents.length !== 2) throw new Error("breed needs two parents");
  return JSON.stringify({ type: "breed", parents: [...parents], seed: seed ?? null, mutation: Number(mutation) || 0 });
}

export function encodeRecord(action) {
  if (action !== "start" && action !== "stop") throw new Error(`record action must be start or stop, got ${action}`);
  return JSON.stringify({ type: "record", action });
}

/** Save the blend at the current position as a genome, with an optional label. */
export function encodeKeep(prompt = null) {
  return JSON.stringify({ type: "keep", prompt: prompt || null });
}

/** An evolve parent that stands for the blend at the session's cursor. */
export const CURSOR = "cursor";

/** Breed a brood of `count` children from 1–4 parents (genome ids or CURSOR); seed null = random. */
export function encodeEvolve(parents, { count = 9, mutation = 0.2, seed = null } = {}) {
  if (!Array.isArray(parents) || parents.length < 1) throw new Error("evolve needs 1 to 4 parents");
  return JSON.stringify({ type: "evolve", parents: [...parents], count, mutation: Number(mutation) || 0, seed: seed ?? null });
}

/** Keep children of a brood (0-based indices) as genomes: one `genome` reply each. */
export function encodeSelect(brood, children) {
  return JSON.stringify({ type: "select", brood, children: [...children] });
}

// ------------------------------------------------------------------ frames
/**
 * Split a binary frame: [N: 4-byte big-endian][N bytes UTF-8 JSON header][JPEG].
 * Returns {header, blob}; throws on a truncated or garbled frame. Unknown header keys are kept.
 */
export function decodeFrame(buffer) {
  const bytes = buffer instanceof ArrayBuffer ? new Uint8Array(buffer) : new Uint8Array(buffer.buffer, buffer.byteOffset, buffer.byteLength);
  if (bytes.byteLength < 4) throw new Error(`frame of ${bytes.byteLength} bytes is truncated`);
  const n = new DataView(bytes.buffer, bytes.byteOffset, 4).getUint32(0, false);
  if (n > bytes.byteLength - 4) throw new Error(`frame of ${bytes.byteLength} bytes is truncated (header length ${n})`);
  const header = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(bytes.subarray(4, 4 + n)));
  if (!header || typeof header !== "object" || Array.isArray(header)) throw new Error("frame header must be a JSON object");
  for (const f of FRAME_HEADER_FIELDS) {
    const v = header[f];
    if (typeof v !== "number" || !Number.isFinite(v) || (FRAME_INT_FIELDS.has(f) && !Number.isInteger(v))) {
      throw new Error(`frame header.${f} must be a ${FRAME_INT_FIELDS.has(f) ? "integer" : "number"}, got ${JSON.stringify(v)}`);
    }
  }
  return { header, blob: new Blob([bytes.subarray(4 + n)], { type: "image/jpeg" }) };
}

// ------------------------------------------------------------------ helpers
/** The hello's limits over the defaults. */
export function limitsFrom(hello) {
  return Object.freeze({ ...Limits, ...((hello && hello.limits) || {}) });
}

/** Square frame sizes the page offers, within the limits. */
export function sizeChoices(limits = Limits, wanted = [256, 384, 512, 768, 1024]) {
  return wanted.filter((s) => s >= limits.min_size && s <= limits.max_size && s % limits.size_multiple === 0);
}

/** Whether a template turns on noken mode (exactly one [noken]). */
export function isNokenTemplate(text) {
  return typeof text === "string" && text.split(NOKEN).length === 2;
}
