// The public API, called with the operator's bearer token. The token lives
// in sessionStorage: it is gone when the tab closes, and no other tab sees it.

const TOKEN_KEY = "tenancy.console.token";

/** A refused or failed API call, with its RFC 9457 problem when it has one. */
export class ApiError extends Error {
  constructor(status, problem, headers) {
    super((problem && (problem.detail || problem.title)) || `HTTP ${status}`);
    this.status = status;
    this.problem = problem || {};
    this.headers = headers;
  }
  /** Whether retrying the very same request may succeed (and is safe with its Idempotency-Key). */
  get retryable() {
    return this.status === 0 || this.status >= 500;
  }
}

export function token() {
  return sessionStorage.getItem(TOKEN_KEY) || "";
}

export function setToken(t) {
  if (t) sessionStorage.setItem(TOKEN_KEY, t);
  else sessionStorage.removeItem(TOKEN_KEY);
}

/**
 * What the token says about its bearer (subject, scopes, tenant binding), read
 * from its claims for the page's hints only: the server decides.
 */
export function principal(t = token()) {
  const out = { subject: "", scopes: [], tenantId: "", expiresAt: null, known: false };
  const parts = t.split(".");
  if (parts.length !== 3) return out;
  try {
    const json = atob(parts[1].replace(/-/g, "+").replace(/_/g, "/").padEnd(Math.ceil(parts[1].length / 4) * 4, "="));
    const c = JSON.parse(json);
    out.subject = String(c.sub || "");
    out.scopes = String(c.scope || "").split(" ").filter(Boolean);
    out.tenantId = String(c.tenant_id || "");
    out.expiresAt = typeof c.exp === "number" ? new Date(c.exp * 1000) : null;
    out.known = true;
  } catch {
    // Not a JWT we can read: the server will say what it may do.
  }
  return out;
}

const RANK = { "tenancy:read": 1, "tenancy:write": 2, "tenancy:admin": 3 };

/** Whether the token holds scope (or a broader one); true when its claims cannot be read. */
export function can(scope, p = principal()) {
  if (!p.known) return true;
  return p.scopes.some((s) => (RANK[s] || 0) >= RANK[scope]);
}

/** A fresh Idempotency-Key: one per action the operator means to take. */
export function newKey() {
  const b = crypto.getRandomValues(new Uint8Array(16));
  b[6] = (b[6] & 0x0f) | 0x40;
  b[8] = (b[8] & 0x3f) | 0x80;
  const hex = [...b].map((x) => x.toString(16).padStart(2, "0")).join("");
  return `console-${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}

/**
 * Calls the API. opts: query (object), body (JSON), ifMatch (a version),
 * key (Idempotency-Key), consistency (X-Consistency-Token), signal.
 * Resolves to { status, headers, body }; rejects with ApiError.
 */
export async function call(method, path, opts = {}) {
  const url = new URL(path, location.origin);
  for (const [k, v] of Object.entries(opts.query || {})) {
    if (Array.isArray(v)) v.forEach((x) => url.searchParams.append(k, x));
    else if (v !== undefined && v !== null && v !== "") url.searchParams.set(k, v);
  }
  const headers = { Accept: "application/json, application/problem+json" };
  const t = token();
  if (t) headers.Authorization = `Bearer ${t}`;
  if (opts.body !== undefined) headers["Content-Type"] = "application/json";
  if (opts.ifMatch !== undefined && opts.ifMatch !== null) headers["If-Match"] = `W/"${opts.ifMatch}"`;
  if (opts.key) headers["Idempotency-Key"] = opts.key;
  if (opts.consistency) headers["X-Consistency-Token"] = opts.consistency;
  let res;
  try {
    res = await fetch(url, {
      method,
      headers,
      body: opts.body === undefined ? undefined : JSON.stringify(opts.body),
      signal: opts.signal,
      cache: "no-store",
      credentials: "omit",
    });
  } catch (err) {
    if (err.name === "AbortError") throw err;
    throw new ApiError(0, { title: "Network error", detail: "The service could not be reached. Try again." });
  }
  let body = null;
  const text = await res.text();
  if (text) {
    try {
      body = JSON.parse(text);
    } catch {
      body = { detail: text };
    }
  }
  if (!res.ok) throw new ApiError(res.status, body, res.headers);
  return { status: res.status, headers: res.headers, body };
}

export const get = (path, opts) => call("GET", path, opts).then((r) => r.body);

/** The API's own document, read once: the vocabularies and command forms come from it. */
let documentPromise = null;
export function apiDocument() {
  if (!documentPromise) {
    documentPromise = fetch("/openapi.json", { cache: "no-store", credentials: "omit" }).then((r) => {
      if (!r.ok) throw new ApiError(r.status, { title: "Could not load /openapi.json" });
      return r.json();
    });
    documentPromise.catch(() => (documentPromise = null));
  }
  return documentPromise;
}

/**
 * Follows GET /api/v1/admin/events/stream (server-sent events) with the
 * bearer token, which EventSource cannot send: fetch and a stream reader.
 * onOpen runs once the stream is subscribed (its response began), onEvent
 * gets each event's JSON; resolves (to the last event id) when the stream
 * ends, rejects when signal aborts.
 */
export async function followEvents(onOpen, onEvent, signal, after = "") {
  const headers = { Accept: "text/event-stream", Authorization: `Bearer ${token()}` };
  if (after) headers["Last-Event-ID"] = after;
  const res = await fetch("/api/v1/admin/events/stream", { headers, signal, cache: "no-store", credentials: "omit" });
  if (!res.ok) {
    let problem = null;
    try {
      problem = await res.json();
    } catch {
      // no problem body
    }
    throw new ApiError(res.status, problem, res.headers);
  }
  onOpen();
  const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
  let buf = "";
  let last = after;
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return last;
    buf += value;
    let i;
    while ((i = buf.indexOf("\n\n")) >= 0) {
      const block = buf.slice(0, i);
      buf = buf.slice(i + 2);
      let data = "";
      for (const line of block.split("\n")) {
        if (line.startsWith("data:")) data += line.slice(5).trim();
        else if (line.startsWith("id:")) last = line.slice(3).trim();
      }
      if (data) onEvent(JSON.parse(data));
    }
  }
}
