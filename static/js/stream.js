// The live stream: cursor moves out (at most one per animation frame, numbered by seq), frames in
// (the newest by seq wins, even when frames decode out of order) and onto the pad.

import { MAX_SEQ, encodeMove } from "./protocol.js";

const SENT_TIMES_KEPT = 256;
const older = (a, b) => a[0] < b[0] || (a[0] === b[0] && a[1] < b[1]);

export class Stream extends EventTarget {
  /** Events: "shown" (detail: the header of the frame now on screen), "undecodable". */
  constructor({ session, pad, readouts }) {
    super();
    this.session = session;
    this.pad = pad;
    this.readouts = readouts;
    this.x = 0.5;
    this.y = 0.5;
    this.seq = 0;
    this.sentAt = new Map(); // seq → when its move went out
    this.newest = [-1, -1]; // [seq, arrival index] of the frame on screen
    this.arrivals = 0;
    this.queued = false;
    this.framesReceived = 0;
    this.framesShown = 0;
    this.lastHeader = null;
  }

  /** The cursor moved: send it on the next animation frame (the server is latest-wins anyway). */
  moveTo(x, y) {
    this.x = x;
    this.y = y;
    if (this.queued) return;
    this.queued = true;
    requestAnimationFrame(() => {
      this.queued = false;
      this.sendMove();
    });
  }

  /** Send where the cursor is now, with the next seq. */
  sendMove() {
    this.seq = this.seq >= MAX_SEQ ? 1 : this.seq + 1;
    if (this.session.send(encodeMove(this.x, this.y, this.seq))) {
      this.sentAt.set(this.seq, performance.now());
      if (this.sentAt.size > SENT_TIMES_KEPT) this.sentAt.delete(this.sentAt.keys().next().value);
    }
  }

  frame({ header, blob }) {
    this.framesReceived += 1;
    const sent = this.sentAt.get(header.seq);
    if (sent !== undefined) {
      for (const seq of this.sentAt.keys()) {
        if (seq > header.seq) break;
        this.sentAt.delete(seq); // this and the moves the server skipped
      }
    }
    this.readouts.frame(sent === undefined ? null : performance.now() - sent, header.batch);
    const order = [header.seq, ++this.arrivals];
    if (older(order, this.newest)) return; // a newer frame is already on screen
    createImageBitmap(blob).then(
      (bitmap) => {
        if (older(order, this.newest)) return bitmap.close(); // decoded out of order
        this.newest = order;
        this.pad.show(bitmap);
        bitmap.close();
        this.framesShown += 1;
        this.lastHeader = header;
        this.readouts.update();
        this.dispatchEvent(new CustomEvent("shown", { detail: header }));
      },
      () => this.dispatchEvent(new CustomEvent("undecodable")),
    );
  }
}
