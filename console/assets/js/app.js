// The console's shell: sign-in, the header, and a hash router over the views.
import { ApiError, call, principal, setToken, token } from "./api.js";
import { alertBox, fill, h, problemText, uid } from "./dom.js";
import { renderOps } from "./ops.js";
import { renderTenant } from "./tenant.js";
import { renderTenants } from "./tenants.js";

const main = document.getElementById("main");
let cleanup = null;

/** The route in the hash: "#/tenants/ORG-1?version=3" → {path: ["tenants","ORG-1"], query}. */
function route() {
  const raw = location.hash.replace(/^#/, "") || "/tenants";
  const [p, q] = raw.split("?");
  return { path: p.split("/").filter(Boolean).map(decodeURIComponent), query: new URLSearchParams(q || ""), raw };
}

function header() {
  const signedIn = Boolean(token());
  document.getElementById("nav").hidden = !signedIn;
  document.getElementById("who").hidden = !signedIn;
  if (!signedIn) return;
  const p = principal();
  const scopes = p.known ? p.scopes.join(" ") || "no scope" : "scopes unknown";
  const bits = [p.subject || "token", ` · ${scopes}`];
  if (p.tenantId) bits.push(" · bound to one tenant");
  fill(document.getElementById("who-text"), ...bits);
  const r = route();
  for (const a of document.querySelectorAll("[data-nav]")) {
    if (a.dataset.nav === (r.path[0] || "tenants")) a.setAttribute("aria-current", "page");
    else a.removeAttribute("aria-current");
  }
}

async function show() {
  if (cleanup) cleanup();
  cleanup = null;
  const r = route();
  header();
  if (!token() && r.path[0] !== "signin") {
    sessionStorage.setItem("tenancy.console.after", r.raw);
    location.replace("#/signin");
    return;
  }
  main.replaceChildren();
  main.removeAttribute("aria-busy");
  let view;
  switch (r.path[0]) {
    case "signin":
      view = renderSignIn;
      break;
    case "ops":
      view = renderOps;
      break;
    case "tenants":
      view = r.path[1] ? renderTenant : renderTenants;
      break;
    default:
      view = () => main.append(h("h1", "Not found"), h("p", h("a", { href: "#/tenants" }, "Go to the tenants")));
  }
  try {
    cleanup = (await view(main, r)) || null;
  } catch (err) {
    if (err instanceof ApiError && err.status === 401) {
      signOut("Your token was refused (invalid or expired). Sign in again.");
      return;
    }
    main.append(alertBox(err instanceof ApiError ? problemText(err) : String(err)));
  }
  const h1 = main.querySelector("h1");
  if (h1 && document.activeElement === document.body) {
    h1.setAttribute("tabindex", "-1");
    h1.focus({ preventScroll: true });
  }
}

function signOut(message) {
  setToken("");
  sessionStorage.setItem("tenancy.console.message", message || "Signed out.");
  location.hash = "#/signin";
  show();
}

function renderSignIn(el) {
  document.title = "Sign in · Tenancy console";
  const id = uid("token");
  const hint = uid("hint");
  const status = h("div", { "aria-live": "polite" });
  const msg = sessionStorage.getItem("tenancy.console.message");
  sessionStorage.removeItem("tenancy.console.message");
  const input = h("textarea.mono", {
    id,
    name: "token",
    rows: "5",
    required: true,
    autocomplete: "off",
    spellcheck: "false",
    "aria-describedby": hint,
  });
  const form = h(
    "form.card.signin",
    {
      async onsubmit(e) {
        e.preventDefault();
        const t = input.value.trim().replace(/^Bearer\s+/i, "");
        if (!t) return;
        const button = form.querySelector("button");
        button.disabled = true;
        setToken(t);
        try {
          // Any read the token may make proves it is accepted.
          await call("GET", "/api/v1/tenants", { query: { limit: 1 } });
          const after = sessionStorage.getItem("tenancy.console.after") || "/tenants";
          sessionStorage.removeItem("tenancy.console.after");
          location.hash = `#${after === "/signin" ? "/tenants" : after}`;
        } catch (err) {
          setToken("");
          button.disabled = false;
          fill(status, alertBox(err.status === 401 ? "This token was refused: it is invalid or expired." : problemText(err)));
        }
      },
    },
    h("h1", "Sign in"),
    msg && alertBox(msg, "info"),
    h("label", { for: id }, "Bearer token"),
    input,
    h(
      "p.hint",
      { id: hint },
      "Paste a token (JWT): with ",
      h("code", "make run"),
      ", the one in ",
      h("code", "data/admin.token"),
      "; or a short-lived one from ",
      h("code", "tenancy token --subject you@example.com --scope tenancy:admin --ttl 1h"),
      ". It is kept in this tab only (sessionStorage) and sent to this service's API only.",
    ),
    status,
    h("button.primary", { type: "submit" }, "Sign in"),
  );
  el.append(form);
  input.focus();
}

document.getElementById("sign-out").addEventListener("click", () => signOut());
window.addEventListener("hashchange", show);
show();

