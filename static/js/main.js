// The page's wiring: builds each part and connects them. Each part owns its own state;
// saved.js keeps what the user built across reloads; `window.breeder` is the hook tests and
// the console read.

import { api, wsUrl } from "./api.js";
import { Corners } from "./corners.js";
import { $ } from "./dom.js";
import { Evolve } from "./evolve.js";
import { Exporter } from "./exporter.js";
import { GalleryPanel } from "./gallery-panel.js";
import { Lineage } from "./lineage.js";
import { Pad } from "./pad.js";
import * as P from "./protocol.js";
import { Readouts } from "./readouts.js";
import { Recorder } from "./recorder.js";
import { loadSaved, saver } from "./saved.js";
import { Session } from "./session.js";
import { Settings } from "./settings.js";
import { Snapshot } from "./snapshot.js";
import { Stream } from "./stream.js";
import { toast } from "./toasts.js";

const ERRORS_KEPT = 50;
let limits = P.Limits; // the server's, from hello
let hellos = 0;

const session = new Session(wsUrl());
const readouts = new Readouts(session.connection);
const settings = new Settings({ session });
const panel = new GalleryPanel({ session, limits: () => limits, useAsCorner: (i, id) => corners.useGenome(i, id) });
const corners = new Corners({ session, gallery: panel.gallery, limits: () => limits });
const exporter = new Exporter({ sizes: () => P.sizeChoices(limits), limits: () => limits });
const recorder = new Recorder({ session, exporter });
const pad = new Pad({ root: $("pad"), canvas: $("frame"), cursor: $("cursor"), onMove: (x, y) => {
  showPosition(x, y);
  stream.moveTo(x, y);
  save();
} });
const stream = new Stream({ session, pad, readouts });
const evolve = new Evolve({ session, gallery: panel.gallery, limits: () => limits, frameUrl: () => $("frame").toDataURL("image/jpeg"),
  useAsCorner: (i, id) => corners.useGenome(i, id) });
const lineage = new Lineage({ gallery: panel.gallery });
evolve.addEventListener("kept", (e) => e.detail.forEach((info) => panel.gallery.add(info)));
panel.gallery.addEventListener("lineage", (e) => lineage.show(e.detail));
new Snapshot(() => {
  const shown = stream.lastHeader;
  const reply = corners.reply;
  if (!shown || !reply) return null;
  return { corners: reply.corners.map((c) => ({ genome: c.genome })), template: reply.template,
    x: shown.x, y: shown.y, settings: { ...settings.values, seed: shown.seed, width: shown.width, height: shown.height } };
});

function showPosition(x, y) {
  $("pad-pos").textContent = `x ${x.toFixed(2)} · y ${y.toFixed(2)}`;
}

// ------------------------------------------------------------------ what a reload keeps
const save = saver(() => ({
  corners: corners.corners, template: corners.template, x: stream.x, y: stream.y,
  settings: { ...settings.values, sizeChosen: settings.sizeChosen },
}));
const saved = loadSaved();
if (saved?.corners) corners.restore(saved);
if (saved?.settings) settings.restore(saved.settings);
if (saved && "x" in saved) {
  pad.setPosition(saved.x, saved.y);
  [stream.x, stream.y] = [saved.x, saved.y];
  showPosition(saved.x, saved.y);
}
corners.addEventListener("change", save);
settings.addEventListener("change", save);

// ------------------------------------------------------------------ the socket
session.addEventListener("hello", (e) => {
  const msg = e.detail;
  hellos += 1;
  limits = P.limitsFrom(msg);
  if (msg.version !== P.PROTOCOL_VERSION) toast(`The server speaks protocol v${msg.version}; this page v${P.PROTOCOL_VERSION}`, "error");
  readouts.hello(msg.model, msg.warning || null);
  panel.hello(limits);
  evolve.hello(limits);
  // (re)establish the whole session: settings, corners (with the template), then the cursor
  settings.hello(limits, msg.model);
  corners.send();
  stream.sendMove();
  if (hellos === 1) panel.refresh();
});
session.addEventListener("state", (e) => {
  const state = e.detail;
  readouts.connectionState(state);
  for (const id of ["keep", "record"]) $(id).disabled = state !== "open";
  if (state !== "open") recorder.lost();
});
session.addEventListener("frame", (e) => (e.detail.header.brood ? evolve.frame(e.detail) : stream.frame(e.detail)));
session.addEventListener("garbled", (e) => toast(`A garbled frame was dropped: ${e.detail.message}`, "error"));
session.addEventListener("error", (e) => {
  const msg = e.detail;
  breeder.errors.push(msg);
  if (breeder.errors.length > ERRORS_KEPT) breeder.errors.shift();
  toast(msg.message || msg.code, "error", msg.code);
});
stream.addEventListener("undecodable", () => toast("A frame could not be decoded", "error"));
stream.addEventListener("shown", () => ($("download-png").disabled = false), { once: true });
corners.addEventListener("accepted", () => panel.refreshSoon());
corners.dropTarget($("pad"), (e) => {
  const r = $("pad").getBoundingClientRect();
  return (e.clientY - r.top >= r.height / 2 ? 2 : 0) + (e.clientX - r.left >= r.width / 2 ? 1 : 0);
});

// ------------------------------------------------------------------ the debug hook
const breeder = (window.breeder = {
  errors: [],
  api, // for poking at the server from the console
  connection: session.connection,
  get hellos() { return hellos; },
  get framesShown() { return stream.framesShown; },
  get framesReceived() { return stream.framesReceived; },
  get lastHeader() { return stream.lastHeader; },
  get corners() { return corners.reply; },
  evolve,
  lineage,
  get sent() { return session.sent; },
  state: {
    get settings() { return settings.values; },
    get corners() { return corners.corners; },
    get template() { return corners.template; },
    get x() { return stream.x; },
    get y() { return stream.y; },
    get seq() { return stream.seq; },
  },
});

readouts.connectionState("connecting");
session.start();
