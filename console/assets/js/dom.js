// Small DOM helpers. Text always goes in as text (never as HTML), so a
// tenant's name or a label cannot inject markup.

/**
 * h("tag.class#id", {attr: value, onclick: fn}, ...children) makes an element.
 * Children are nodes, strings (as text), arrays, or null/false (skipped).
 */
export function h(spec, attrs, ...children) {
  const m = /^([a-z0-9-]+)?((?:[.#][\w-]+)*)$/i.exec(spec);
  const el = document.createElement((m && m[1]) || "div");
  if (m && m[2]) {
    for (const part of m[2].match(/[.#][\w-]+/g)) {
      if (part[0] === ".") el.classList.add(part.slice(1));
      else el.id = part.slice(1);
    }
  }
  if (attrs && (typeof attrs !== "object" || attrs instanceof Node || Array.isArray(attrs))) {
    children.unshift(attrs);
    attrs = null;
  }
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on") && typeof v === "function") el.addEventListener(k.slice(2), v);
    else if (k === "class") el.className = v;
    else if (k === "value") el.value = v;
    else if (k === "checked" || k === "selected" || k === "disabled") el[k] = Boolean(v);
    else el.setAttribute(k, v === true ? "" : String(v));
  }
  append(el, children);
  return el;
}

/** Appends children to el as h does (arrays flattened, null and false skipped). */
export function add(el, ...children) {
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children) {
    if (c === null || c === undefined || c === false) continue;
    if (Array.isArray(c)) append(el, c);
    else el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
}

/** Replaces el's content. */
export function fill(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

let seq = 0;
/** A unique element id, for label/for and aria-describedby. */
export const uid = (p = "c") => `${p}-${++seq}`;

const pad = (n) => String(n).padStart(2, "0");

/** A time as operators read it here: UTC, to the second. */
export function fmtTime(v) {
  if (!v) return "—";
  const d = v instanceof Date ? v : new Date(v);
  if (Number.isNaN(d.getTime())) return String(v);
  return `${d.getUTCFullYear()}-${pad(d.getUTCMonth() + 1)}-${pad(d.getUTCDate())} ${pad(d.getUTCHours())}:${pad(d.getUTCMinutes())}:${pad(d.getUTCSeconds())} UTC`;
}

/** A time element showing fmtTime, the exact instant in its datetime. */
export function time(v) {
  if (!v) return h("span.muted", "—");
  return h("time", { datetime: String(v), title: String(v) }, fmtTime(v));
}

/** A status badge; colours by status (CSS classes st-<STATUS>). */
export function statusBadge(status, extra) {
  return h(`span.badge.st-${status || "unknown"}`, extra || {}, (status || "unknown").replace(/_/g, " "));
}

export function billingBadge(b) {
  return h(`span.badge.bill-${b || "none"}`, (b || "none").replace(/_/g, " "));
}

/** Shows a short message in the live region. */
export function toast(msg, kind = "info") {
  const t = document.getElementById("toast");
  fill(t, h(`div.toast-msg.${kind}`, msg));
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => fill(t), 6000);
}

/** A problem (ApiError) as a block of text for an alert. */
export function problemText(err) {
  const p = err.problem || {};
  const parts = [p.title || err.message];
  if (p.detail && p.detail !== p.title) parts.push(p.detail);
  return parts.join(": ");
}

/** An alert box; role=alert so screen readers announce it. */
export function alertBox(text, kind = "error", ...more) {
  return h(`div.alert.${kind}`, { role: kind === "error" ? "alert" : "status" }, h("p", text), ...more);
}

/** A definition list from [term, value] pairs (values may be nodes). */
export function dl(pairs, cls = "") {
  return h(`dl.kv${cls}`, pairs.filter(Boolean).map(([k, v]) => [h("dt", k), h("dd", v === undefined || v === null || v === "" ? h("span.muted", "—") : v)]));
}

/** A table in a focusable, labelled scrolling region (narrow screens scroll it). */
export function table(label, head, rows, empty = "Nothing here.") {
  return h(
    "div.table-wrap",
    { role: "region", "aria-label": label, tabindex: "0" },
    h(
      "table",
      h("caption.sr-only", label),
      h("thead", h("tr", head.map((c) => h("th", { scope: "col" }, c)))),
      h("tbody", rows.length ? rows : h("tr", h("td.muted", { colspan: String(head.length) }, empty))),
    ),
  );
}
