// The page: wires the socket, the pad, the corners, the settings and the gallery together.
// State lives in `state`; everything the server must know is re-sent after a reconnect.

import * as P from "./protocol.js";
import { api, deleteGenome, breedGenomes, listGenomes, nokenUrl, thumbUrl, videoUrl, wsUrl } from "./api.js";
import { Connection } from "./connection.js";
import { Pad } from "./pad.js";
import { Gallery, GENOME_MIME, describe, el, shortId } from "./gallery.js";

const DEFAULT_PROMPTS = [
  "a watercolor fox in a forest",
  "a neon city at night",
  "an oil painting of a whippet sleeping",
  "a golden sunset over the sea",
];
const ARROWS = ["↖", "↗", "↙", "↘"];
const TEMPLATE_DEBOUNCE_MS = 700;
const LATENCY_WINDOW = 30;
const $ = (id) => document.getElementById(id);

// ------------------------------------------------------------------ state
const state = {
  connection: "connecting",
  model: null,
  warning: null,
  limits: P.Limits,
  settings: { width: 512, height: 512, seed: 0, blend: "lerp", quality: 80 },
  sizeChosen: false, // once the user picks a size, a reconnect keeps it
  corners: DEFAULT_PROMPTS.map((prompt) => ({ prompt })), // what the page asks for: {prompt} or {genome}
  resolved: [null, null, null, null], // the last corners reply: {genome, prompt}
  template: null, // the template sent (null: normal mode)
  x: 0.5,
  y: 0.5,
  seq: 0,
  recording: false,
  walk: null,
};
const stats = {
  received: [], // arrival times (ms) of frames in the last second
  sentAt: new Map(), // seq → when its move went out
  latencies: [], // ms, the last LATENCY_WINDOW
  lastLatency: null,
  newest: [-1, -1], // [seq, arrival index] of the frame on screen
  arrivals: 0,
  lastBatch: null,
};
const pendingCorners = []; // snapshots of corners messages awaiting their reply, oldest first
let accepted = null; // the last snapshot the server accepted: {corners, template}

/** The debug hook tests read: counts update as frames are displayed. */
const breeder = (window.breeder = {
  framesShown: 0, framesReceived: 0, hellos: 0, lastHeader: null, corners: null, errors: [], state, stats, sent: [],
});

const conn = new Connection(wsUrl());
breeder.connection = conn;

function send(text) {
  const ok = conn.send(text);
  if (ok) {
    breeder.sent.push(text);
    if (breeder.sent.length > 50) breeder.sent.shift();
  }
  return ok;
}

// ------------------------------------------------------------------ toasts
function toast(text, kind = "info", code = "") {
  const box = $("toasts");
  for (const shown of [...box.children]) if (shown.firstChild.textContent === text) shown.remove(); // no repeats
  const node = el("div", { class: `toast ${kind}`, "data-testid": "toast", dataset: { code } },
    el("span", {}, text),
    el("button", { type: "button", class: "icon", "aria-label": "Dismiss", onclick: () => node.remove() }, "×"));
  box.append(node);
  while (box.children.length > 4) box.firstElementChild.remove();
  setTimeout(() => node.remove(), kind === "error" ? 8000 : 4000);
}

// ------------------------------------------------------------------ the pad
const pad = new Pad({
  root: $("pad"),
  canvas: $("frame"),
  cursor: $("cursor"),
  onMove: (x, y) => {
    state.x = x;
    state.y = y;
    $("pad-pos").textContent = `x ${x.toFixed(2)} · y ${y.toFixed(2)}`;
    queueMove();
  },
});

let moveQueued = false;
function queueMove() {
  // at most one move per animation frame: the server is latest-wins, more would be skipped anyway
  if (moveQueued) return;
  moveQueued = true;
  requestAnimationFrame(() => {
    moveQueued = false;
    sendMove();
  });
}

function sendMove() {
  state.seq = state.seq >= P.MAX_SEQ ? 1 : state.seq + 1;
  if (send(P.encodeMove(state.x, state.y, state.seq))) {
    stats.sentAt.set(state.seq, performance.now());
    if (stats.sentAt.size > 256) stats.sentAt.delete(stats.sentAt.keys().next().value);
  }
}

function onFrame({ header, blob }) {
  const now = performance.now();
  breeder.framesReceived += 1;
  stats.received.push(now);
  const sent = stats.sentAt.get(header.seq);
  if (sent !== undefined) {
    stats.lastLatency = now - sent;
    stats.latencies.push(stats.lastLatency);
    if (stats.latencies.length > LATENCY_WINDOW) stats.latencies.shift();
    for (const seq of stats.sentAt.keys()) {
      if (seq > header.seq) break;
      stats.sentAt.delete(seq); // this and the moves the server skipped
    }
  }
  stats.lastBatch = header.batch;
  const order = [header.seq, ++stats.arrivals];
  const older = (a, b) => a[0] < b[0] || (a[0] === b[0] && a[1] < b[1]);
  if (older(order, stats.newest)) return; // a newer frame is already on screen
  createImageBitmap(blob).then(
    (bitmap) => {
      if (older(order, stats.newest)) return bitmap.close(); // decoded out of order
      stats.newest = order;
      pad.show(bitmap);
      bitmap.close();
      breeder.framesShown += 1;
      breeder.lastHeader = header;
      updateReadouts();
    },
    () => toast("A frame could not be decoded", "error"),
  );
}

// ------------------------------------------------------------------ readouts
function median(values) {
  if (!values.length) return null;
  const s = [...values].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

function updateReadouts() {
  const now = performance.now();
  while (stats.received.length && now - stats.received[0] > 1000) stats.received.shift();
  $("fps").textContent = String(stats.received.length);
  const med = median(stats.latencies);
  $("latency").textContent = stats.lastLatency == null ? "–" : `${Math.round(stats.lastLatency)} ms · med ${Math.round(med)}`;
  $("batch").textContent = stats.lastBatch == null ? "–" : String(stats.lastBatch);
  if (conn.state === "closed") {
    const s = Math.max(0, Math.ceil((conn.retryAt - now) / 1000));
    $("conn").textContent = `closed · retry in ${s} s`;
  }
}
setInterval(updateReadouts, 250);

let refusedShown = false;
function setConnection(s) {
  state.connection = s;
  const b = $("conn");
  b.dataset.state = s;
  b.textContent = s === "open" ? "open" : s === "connecting" ? "connecting…" : "closed";
  b.setAttribute("aria-label", `Connection ${s}${s === "closed" ? "; click to reconnect now" : ""}`);
  for (const id of ["keep", "record"]) $(id).disabled = s !== "open";
  if (s === "closed" && !refusedShown) {
    // a refused socket looks like any dropped one (HTTP 403 before the handshake): ask REST why
    refusedShown = true; // once: the retries would repeat it every few seconds
    api("/api/config").then(
      () => (refusedShown = false),
      (e) => {
        if (e.status === 401) {
          toast("The server wants a token: open this page as /?token=YOUR_TOKEN (the one `serve --token` was given)", "error", "unauthorized");
        } else {
          refusedShown = false;
        }
      });
  }
  if (s !== "open") {
    pendingCorners.length = 0; // their replies will not come
    if (state.recording) {
      state.recording = false;
      updateRecord();
      toast("Recording stopped: the connection dropped", "error");
    }
  }
}

// ------------------------------------------------------------------ corners
const cornerTiles = [];
const cornerCards = [];

function buildCorners() {
  P.CORNER_NAMES.forEach((name, i) => {
    const img = el("img", { class: "loading", alt: "", "data-testid": `corner-thumb-${i}`, draggable: "false" });
    img.addEventListener("load", () => img.classList.remove("loading"));
    img.addEventListener("error", () => img.classList.remove("loading"));
    const caption = el("span", { class: "corner-caption", "data-testid": `corner-caption-${i}` });
    const tile = el("div", { class: `corner-tile c${i}`, "data-testid": `corner-tile-${i}` }, img, caption);
    $("corner-tiles").append(tile);
    cornerTiles.push({ tile, img, caption });

    const input = el("input", {
      id: `corner-input-${i}`, type: "text", "data-testid": `corner-input-${i}`, autocomplete: "off", spellcheck: "false",
      enterkeyhint: "done", maxlength: String(P.Limits.max_prompt_chars), value: DEFAULT_PROMPTS[i],
    });
    input.addEventListener("keydown", (e) => {
      if (e.key === "Enter") {
        e.preventDefault();
        commitCorner(i);
      } else if (e.key === "Escape") {
        input.value = cornerText(i);
      }
    });
    input.addEventListener("change", () => commitCorner(i));
    const noken = el("a", { class: "noken-link", "data-testid": `corner-noken-${i}`, download: "", title: "Download this corner as a textual inversion (a noken)",
      "aria-label": `Download the ${name} corner as a noken` }, "⬇ noken");
    const card = el("div", { class: `corner-card c${i}`, "data-testid": `corner-${i}`, dataset: { corner: String(i) } },
      el("div", { class: "corner-head" },
        el("label", { for: `corner-input-${i}` }, el("span", { class: "arrow", "aria-hidden": "true" }, ARROWS[i]), ` ${name}`,
          el("span", { class: "noken-tag" }, "noken")),
        noken),
      input);
    $("corner-cards").append(card);
    cornerCards.push({ card, input, noken });
    dropTarget(card, () => i);
  });
}

function cornerText(i) {
  const c = state.corners[i];
  if (c.prompt) return c.prompt;
  const r = state.resolved[i];
  if (r && r.genome === c.genome && r.prompt) return r.prompt;
  return describe(gallery.info(c.genome) || { id: c.genome }, gallery.byId);
}

function commitCorner(i) {
  const input = cornerCards[i].input;
  const text = input.value.trim();
  if (!text) {
    input.value = cornerText(i);
    return;
  }
  if (text === cornerText(i)) return; // unchanged (a genome corner shows its prompt or lineage)
  if (text.length > state.limits.max_prompt_chars) {
    toast(`A prompt has at most ${state.limits.max_prompt_chars} characters`, "error");
    return;
  }
  state.corners[i] = { prompt: text };
  cornerCards[i].card.classList.remove("is-genome");
  sendCorners();
}

function useAsCorner(i, genomeId) {
  state.corners[i] = { genome: genomeId };
  cornerCards[i].card.classList.add("is-genome");
  cornerCards[i].input.value = cornerText(i);
  sendCorners();
}

function sendCorners() {
  const snapshot = { corners: state.corners.map((c) => ({ ...c })), template: state.template };
  if (send(P.encodeCorners(snapshot.corners, snapshot.template))) {
    pendingCorners.push(snapshot);
    cornerCards.forEach(({ card }) => card.classList.add("pending"));
  }
  updateNoken();
}

function onCornersReply(msg) {
  breeder.corners = msg;
  accepted = pendingCorners.shift() || { corners: state.corners.map((c) => ({ ...c })), template: msg.template };
  state.resolved = msg.corners.map((c) => ({ ...c }));
  $("template").removeAttribute("aria-invalid");
  msg.corners.forEach((c, i) => {
    const { img, caption, tile } = cornerTiles[i];
    const src = thumbUrl(c.genome);
    if (img.getAttribute("src") !== src) {
      img.classList.add("loading");
      img.src = src;
    }
    img.dataset.genome = c.genome;
    const text = c.prompt || describe(gallery.info(c.genome) || { id: c.genome }, gallery.byId);
    img.alt = `${P.CORNER_NAMES[i]} corner: ${text}`;
    caption.textContent = text;
    tile.title = text;
    const { input, noken, card } = cornerCards[i];
    noken.href = nokenUrl(c.genome);
    noken.setAttribute("download", `noken-${c.genome}.safetensors`);
    card.dataset.genome = c.genome;
    card.classList.toggle("is-genome", !state.corners[i].prompt);
    if (document.activeElement !== input) input.value = cornerText(i);
  });
  if (!pendingCorners.length) cornerCards.forEach(({ card }) => card.classList.remove("pending"));
  updateNoken();
  refreshGallerySoon();
}

function revertCorners() {
  // a corners message was refused: go back to what the server shows
  pendingCorners.shift();
  if (pendingCorners.length) return;
  cornerCards.forEach(({ card }) => card.classList.remove("pending"));
  if (!accepted) return;
  state.corners = accepted.corners.map((c) => ({ ...c }));
  state.template = accepted.template;
  cornerCards.forEach(({ input }, i) => (input.value = cornerText(i)));
  updateNoken();
}

// ------------------------------------------------------------------ noken mode
let templateTimer = null;

function commitTemplate() {
  clearTimeout(templateTimer);
  const text = $("template").value.trim();
  const next = text.includes(P.NOKEN) ? text : null;
  $("template").classList.toggle("unused", Boolean(text) && next === null);
  if (next === state.template) return;
  state.template = next;
  sendCorners();
}

function updateNoken() {
  const on = state.template !== null;
  $("noken-badge").hidden = !on;
  document.body.classList.toggle("noken-mode", on);
  cornerCards.forEach(({ input }, i) => {
    input.placeholder = on ? "a word or prompt, blended into [noken]" : "a prompt";
    input.setAttribute("aria-label", `${P.CORNER_NAMES[i]} corner ${on ? "noken" : "prompt"}`);
  });
}

// ------------------------------------------------------------------ settings
function sizeOptions() {
  const sel = $("size");
  const sizes = P.sizeChoices(state.limits);
  if (!sizes.includes(state.settings.width)) sizes.push(state.settings.width);
  sizes.sort((a, b) => a - b);
  sel.replaceChildren(...sizes.map((s) => el("option", { value: String(s) }, `${s} × ${s}`)));
  sel.value = String(state.settings.width);
}

function syncSettingsUI() {
  const s = state.settings;
  $("blend").value = s.blend;
  if ($("size").value !== String(s.width)) sizeOptions();
  if (document.activeElement !== $("seed")) $("seed").value = String(s.seed);
  $("quality").value = String(s.quality);
  $("quality-out").textContent = String(s.quality);
}

function sendSettings(partial) {
  Object.assign(state.settings, partial);
  syncSettingsUI();
  send(P.encodeSettings(partial));
}

function bindSettings() {
  $("blend").addEventListener("change", (e) => sendSettings({ blend: e.target.value }));
  $("size").addEventListener("change", (e) => {
    const size = Number(e.target.value);
    state.sizeChosen = true;
    sendSettings({ width: size, height: size });
  });
  $("seed").addEventListener("change", (e) => {
    const seed = Number.parseInt(e.target.value, 10);
    if (!Number.isInteger(seed) || seed < 0 || seed > state.limits.max_seed) {
      toast(`The seed must be a whole number from 0 to ${state.limits.max_seed}`, "error");
      e.target.value = String(state.settings.seed);
      return;
    }
    sendSettings({ seed });
  });
  $("seed").addEventListener("keydown", (e) => e.key === "Enter" && e.target.dispatchEvent(new Event("change")));
  $("new-noise").addEventListener("click", () => {
    const seed = Math.floor(Math.random() * (state.limits.max_seed + 1));
    sendSettings({ seed });
  });
  $("quality").addEventListener("input", (e) => {
    $("quality-out").textContent = e.target.value;
  });
  $("quality").addEventListener("change", (e) => sendSettings({ quality: Number(e.target.value) }));
}

// ------------------------------------------------------------------ keep, record, export
function updateRecord() {
  const b = $("record");
  b.setAttribute("aria-pressed", String(state.recording));
  b.textContent = state.recording ? "■ Stop recording" : "● Record";
  b.classList.toggle("on", state.recording);
  $("pad").classList.toggle("recording", state.recording);
}

function bindActions() {
  $("keep").addEventListener("click", () => {
    if (send(P.encodeKeep())) pendingKeeps += 1;
  });
  $("record").addEventListener("click", () => {
    const action = state.recording ? "stop" : "start";
    if (!send(P.encodeRecord(action))) return;
    state.recording = !state.recording;
    updateRecord();
    if (action === "start") {
      $("export").hidden = true;
      toast("Recording: move the cursor, then stop to export a video");
    }
  });
  $("warning-close").addEventListener("click", () => ($("warning").hidden = true));
  $("conn").addEventListener("click", () => conn.reconnectNow());
  $("template").addEventListener("keydown", (e) => {
    if (e.key === "Enter") {
      e.preventDefault();
      commitTemplate();
    }
  });
  $("template").addEventListener("change", commitTemplate);
  $("template").addEventListener("input", () => {
    clearTimeout(templateTimer);
    templateTimer = setTimeout(commitTemplate, TEMPLATE_DEBOUNCE_MS);
  });
}

function onWalk(msg) {
  state.walk = msg;
  const a = $("export");
  a.href = videoUrl(msg.walk, 12);
  a.setAttribute("download", `walk-${msg.walk}.mp4`);
  a.hidden = false;
  a.title = `${msg.points} points, ${Number(msg.seconds).toFixed(1)} s`;
  toast(`Walk saved (${msg.points} points, ${Number(msg.seconds).toFixed(1)} s): Export MP4 renders it`);
}

// ------------------------------------------------------------------ gallery
const gallery = new Gallery($("gallery"), $("gallery-empty"));
let pendingKeeps = 0;
let pendingBreeds = 0;
let galleryTimer = null;

async function refreshGallery() {
  try {
    gallery.setAll(await listGenomes());
  } catch (e) {
    toast(`Gallery: ${e.message}`, "error", e.code);
  }
}

function refreshGallerySoon() {
  clearTimeout(galleryTimer);
  galleryTimer = setTimeout(refreshGallery, 300);
}

function breed(a, b) {
  const seedText = $("breed-seed").value.trim();
  const seed = seedText === "" ? null : Number.parseInt(seedText, 10);
  if (seed !== null && !(Number.isInteger(seed) && seed >= 0 && seed <= state.limits.max_seed)) {
    toast(`The breeding seed must be blank (random) or a whole number from 0 to ${state.limits.max_seed}`, "error");
    return;
  }
  const mutation = Number($("mutation").value);
  if (send(P.encodeBreed([a, b], { seed, mutation }))) {
    pendingBreeds += 1;
    return;
  }
  breedGenomes([a, b], seed, mutation).then(onGenome, (e) => toast(`Breed: ${e.message}`, "error", e.code));
}

function onGenome(info) {
  const child = (info.parents || []).length === 2 && info.seed != null;
  if (child && pendingBreeds) pendingBreeds -= 1;
  else if (pendingKeeps) pendingKeeps -= 1;
  gallery.add(info);
  toast(child ? `Bred ${describe(info, gallery.byId)}` : "Kept this frame in the gallery");
}

function updateSelection(ids) {
  const n = ids.length;
  document.querySelectorAll(".use-corner button").forEach((b) => (b.disabled = n === 0));
  $("breed").disabled = n !== 2;
  const names = ids.map((id) => `“${describe(gallery.info(id), gallery.byId)}”`);
  $("selection-note").textContent =
    n === 0 ? "Select one genome to put it on a corner, two to breed them. Or drag." :
    n === 1 ? `${names[0]} selected: use it as a corner, or select another to breed.` :
    `Breed ${names[0]} × ${names[1]}`;
}

async function confirmDialog(text) {
  const dialog = $("confirm");
  $("confirm-text").textContent = text;
  dialog.returnValue = "";
  dialog.showModal();
  return new Promise((resolve) => dialog.addEventListener("close", () => resolve(dialog.returnValue === "ok"), { once: true }));
}

function bindGallery() {
  gallery.addEventListener("select", (e) => updateSelection(e.detail));
  gallery.addEventListener("breed", (e) => breed(...e.detail));
  gallery.addEventListener("delete", async (e) => {
    const id = e.detail;
    const info = gallery.info(id);
    if (!(await confirmDialog(`“${describe(info, gallery.byId)}” (${id}) will be deleted. Children keep its id among their parents.`))) return;
    try {
      await deleteGenome(id);
      gallery.remove(id);
      toast(`Deleted ${shortId(id)}`);
    } catch (err) {
      toast(`Delete: ${err.message}`, "error", err.code);
    }
  });
  document.querySelectorAll(".use-corner button").forEach((b) =>
    b.addEventListener("click", () => {
      const id = gallery.selected[gallery.selected.length - 1];
      if (id) useAsCorner(Number(b.dataset.corner), id);
    }));
  $("breed").addEventListener("click", () => {
    if (gallery.selected.length === 2) breed(...gallery.selected);
  });
  $("mutation").addEventListener("input", (e) => ($("mutation-out").textContent = Number(e.target.value).toFixed(2)));
  $("refresh").addEventListener("click", refreshGallery);
  updateSelection([]);
}

/** Accept a gallery genome dropped here; `which(event)` names the corner. */
function dropTarget(node, which) {
  node.addEventListener("dragover", (e) => {
    if (!e.dataTransfer.types.includes(GENOME_MIME)) return;
    e.preventDefault();
    e.dataTransfer.dropEffect = "copy";
    highlightCorner(which(e));
  });
  node.addEventListener("dragleave", () => highlightCorner(-1));
  node.addEventListener("drop", (e) => {
    highlightCorner(-1);
    const id = e.dataTransfer.getData(GENOME_MIME);
    if (!id) return;
    e.preventDefault();
    useAsCorner(which(e), id);
  });
}

function highlightCorner(i) {
  cornerTiles.forEach(({ tile }, j) => tile.classList.toggle("drop-target", i === j));
  cornerCards.forEach(({ card }, j) => card.classList.toggle("drop-target", i === j));
}

// ------------------------------------------------------------------ the socket
function onHello(msg) {
  const first = state.model === null;
  breeder.hellos += 1;
  state.model = msg.model;
  state.warning = msg.warning || null;
  state.limits = P.limitsFrom(msg);
  if (msg.version !== P.PROTOCOL_VERSION) toast(`The server speaks protocol v${msg.version}; this page v${P.PROTOCOL_VERSION}`, "error");
  $("model-name").textContent = msg.model;
  $("warning-text").textContent = state.warning || "";
  if (first || !state.warning) $("warning").hidden = !state.warning;
  if (!state.sizeChosen) {
    const want = msg.model === "tiny" ? 256 : 512;
    const sizes = P.sizeChoices(state.limits);
    const size = sizes.includes(want) ? want : sizes[0] || state.limits.min_size;
    state.settings.width = state.settings.height = size;
  }
  $("seed").max = String(state.limits.max_seed);
  $("breed-seed").max = String(state.limits.max_seed);
  $("quality").min = String(state.limits.min_quality);
  $("quality").max = String(state.limits.max_quality);
  $("mutation").max = String(state.limits.max_mutation);
  sizeOptions();
  syncSettingsUI();
  // (re)establish the whole session: settings, corners (with the template), then where the cursor is
  send(P.encodeSettings(state.settings));
  sendCorners();
  sendMove();
  if (first) refreshGallery();
}

function onMessage(msg) {
  switch (msg.type) {
    case "settings":
      for (const k of ["width", "height", "seed", "blend", "quality"]) if (k in msg) state.settings[k] = msg[k];
      syncSettingsUI();
      break;
    case "corners":
      onCornersReply(msg);
      break;
    case "genome":
      onGenome(msg.genome);
      break;
    case "walk":
      onWalk(msg);
      break;
    case "error":
      onError(msg);
      break;
    default:
      break; // a newer server's message: ignore it
  }
}

function onError(msg) {
  const E = P.ErrorCode;
  breeder.errors.push(msg);
  if (breeder.errors.length > 50) breeder.errors.shift();
  // Servers name the request an error answers (in_reply_to); older ones don't, so fall back to the code.
  const about = msg.in_reply_to;
  if (msg.code === E.BAD_TEMPLATE) {
    $("template").setAttribute("aria-invalid", "true");
    revertCorners();
  } else if (about ? about === "corners" : (msg.code === E.BAD_PROMPT || msg.code === E.UNKNOWN_GENOME) && pendingCorners.length && !pendingBreeds) {
    revertCorners();
  } else if (about ? about === "breed" : msg.code === E.UNKNOWN_GENOME && pendingBreeds) {
    pendingBreeds = Math.max(0, pendingBreeds - 1);
  } else if (about ? about === "record" : msg.code === E.NOT_RECORDING || (msg.code === E.BAD_VALUE && /recording/.test(msg.message))) {
    state.recording = false;
    updateRecord();
  }
  toast(msg.message || msg.code, "error", msg.code);
}

conn.addEventListener("state", (e) => setConnection(e.detail));
conn.addEventListener("hello", (e) => onHello(e.detail));
conn.addEventListener("message", (e) => onMessage(e.detail));
conn.addEventListener("frame", (e) => onFrame(e.detail));
conn.addEventListener("garbled", (e) => toast(`A garbled frame was dropped: ${e.detail.message}`, "error"));

// ------------------------------------------------------------------ start
buildCorners();
dropTarget($("pad"), (e) => {
  const r = $("pad").getBoundingClientRect();
  return (e.clientY - r.top >= r.height / 2 ? 2 : 0) + (e.clientX - r.left >= r.width / 2 ? 1 : 0);
});
bindSettings();
bindActions();
bindGallery();
updateNoken();
updateRecord();
sizeOptions();
setConnection("connecting");
conn.start();
breeder.api = api; // for poking at the server from the console
