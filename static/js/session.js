// One pad session over the socket. Requests that get a reply are paired with it: the server
// answers in order, and its reply (or error, by `in_reply_to`) names the request type it answers.
// Events: "state", "hello", "frame", "garbled" (as Connection), "error" (every error message),
// "message" (a message no request waits for).

import { Connection } from "./connection.js";
import { answers } from "./protocol.js";

const SENT_KEPT = 50; // the debug log of sent text messages

/** A request the server refused (`code` is its error code) or that never went out ("closed"). */
export class RequestError extends Error {
  constructor(code, message) {
    super(message);
    this.code = code;
  }
}

export class Session extends EventTarget {
  constructor(url) {
    super();
    this.connection = new Connection(url);
    this.waiting = new Map(); // request type → [{resolve, reject}], oldest first
    this.sent = [];
    const forward = (type) => this.connection.addEventListener(type, (e) => this._emit(type, e.detail));
    ["hello", "frame", "garbled"].forEach(forward);
    this.connection.addEventListener("state", (e) => {
      if (e.detail === "closed") this._failAll("the connection closed");
      this._emit("state", e.detail);
    });
    this.connection.addEventListener("message", (e) => this._route(e.detail));
  }

  get state() {
    return this.connection.state;
  }

  start() {
    this.connection.start();
  }

  /** Send a message nothing waits for (move, record start); returns whether it went out. */
  send(text) {
    const ok = this.connection.send(text);
    if (ok) {
      this.sent.push(text);
      if (this.sent.length > SENT_KEPT) this.sent.shift();
    }
    return ok;
  }

  /** Send a `type` request; resolves with its reply, rejects with a RequestError. */
  request(type, text) {
    if (!this.send(text)) return Promise.reject(new RequestError("closed", "not connected to the server"));
    return new Promise((resolve, reject) => {
      if (!this.waiting.has(type)) this.waiting.set(type, []);
      this.waiting.get(type).push({ resolve, reject });
    });
  }

  /** Send a `type` request answered by `n` replies (a select: one genome per child); resolves
   * with all of them, or rejects with the first refusal (the server refuses before any reply). */
  requestMany(type, text, n) {
    if (!this.send(text)) return Promise.reject(new RequestError("closed", "not connected to the server"));
    if (!this.waiting.has(type)) this.waiting.set(type, []);
    const queue = this.waiting.get(type);
    const mine = [];
    const replies = Array.from({ length: n }, () => new Promise((resolve, reject) => {
      const waiter = { resolve, reject };
      mine.push(waiter);
      queue.push(waiter);
    }));
    return Promise.all(replies).catch((e) => {
      this.waiting.set(type, (this.waiting.get(type) || []).filter((w) => !mine.includes(w))); // they will not come
      throw e;
    });
  }

  /** How many `type` requests still wait for their reply. */
  pending(type) {
    return this.waiting.get(type)?.length || 0;
  }

  _route(msg) {
    if (!msg || typeof msg !== "object") return;
    const queue = this.waiting.get(answers(msg));
    const request = queue?.shift();
    if (msg.type === "error") {
      this._emit("error", msg);
      request?.reject(new RequestError(msg.code, msg.message || msg.code));
    } else if (request) {
      request.resolve(msg);
    } else {
      this._emit("message", msg);
    }
  }

  _failAll(why) {
    const all = [...this.waiting.values()].flat();
    this.waiting.clear();
    for (const request of all) request.reject(new RequestError("closed", why));
  }

  _emit(type, detail) {
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }
}
