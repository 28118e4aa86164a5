// Messages in the bottom-right corner: at most four, no repeats; they go away by themselves.

import { $, el } from "./dom.js";

const MAX_SHOWN = 4;
const INFO_MS = 4000;
const ERROR_MS = 8000;

/** Show `text`; kind "info" or "error"; `code` (an error code) lands in data-code for tests. */
export function toast(text, kind = "info", code = "") {
  const box = $("toasts");
  for (const shown of [...box.children]) if (shown.firstChild.textContent === text) shown.remove();
  const node = el("div", { class: `toast ${kind}`, "data-testid": "toast", dataset: { code } },
    el("span", {}, text),
    el("button", { type: "button", class: "icon", "aria-label": "Dismiss", onclick: () => node.remove() }, "×"));
  box.append(node);
  while (box.children.length > MAX_SHOWN) box.firstElementChild.remove();
  setTimeout(() => node.remove(), kind === "error" ? ERROR_MS : INFO_MS);
}
