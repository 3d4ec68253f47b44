// The tenants list: search, filters, sort, cursor paging, counts.
import { ApiError, apiDocument, call, get, principal } from "./api.js";
import { alertBox, billingBadge, fill, h, problemText, statusBadge, table, time, uid } from "./dom.js";

const EXTERNAL_ID = /^ORG-[0-9A-F]{8}$/i;
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
const FILTERS = ["status", "edition", "region", "billing_status", "label", "name_prefix", "sort", "order"];
const PAGE = 25;

/** The vocabularies, from the API's document. */
export async function vocab() {
  const doc = await apiDocument();
  const t = doc.components.schemas.Tenant.properties;
  return {
    doc,
    statuses: t.status.enum,
    editions: t.edition.enum,
    regions: t.region.enum,
    billing: t.billing_status.enum,
  };
}

export async function renderTenants(el, r) {
  document.title = "Tenants · Tenancy console";
  const v = await vocab();
  const q = r.query;
  // cursors holds the cursor of every page before this one, for "Previous".
  const cursors = q.get("back") ? q.get("back").split(",") : [];
  const bound = principal().tenantId;

  const counts = h("section.counts", { "aria-label": "Counts" });
  const results = h("section", { "aria-label": "Results", "aria-live": "polite" });
  const searchId = uid("search");
  const search = h("input", {
    id: searchId,
    type: "search",
    name: "q",
    value: q.get("name_prefix") || "",
    placeholder: "Name prefix, ORG-… or tenant id",
    autocomplete: "off",
  });
  const select = (name, label, values, current, none = "Any") => {
    const id = uid(name);
    return h(
      "div.field",
      h("label", { for: id }, label),
      h(
        "select",
        { id, name },
        h("option", { value: "" }, none),
        values.map((x) => h("option", { value: x, selected: x === current }, x.replace(/_/g, " "))),
      ),
    );
  };
  const labelId = uid("label");
  const form = h(
    "form.filters.card",
    {
      role: "search",
      "aria-label": "Find tenants",
      async onsubmit(e) {
        e.preventDefault();
        const term = search.value.trim();
        if (EXTERNAL_ID.test(term) || UUID.test(term)) {
          // An id: go straight to the tenant (404 if it does not exist or is not this token's).
          const ref = EXTERNAL_ID.test(term) ? term.toUpperCase() : term.toLowerCase();
          try {
            await call("GET", `/api/v1/tenants/${encodeURIComponent(ref)}`);
            location.hash = `#/tenants/${encodeURIComponent(ref)}`;
          } catch (err) {
            fill(results, alertBox(err.status === 404 ? `No tenant ${ref} (or not one this token may see).` : problemText(err)));
          }
          return;
        }
        const p = new URLSearchParams();
        if (term) p.set("name_prefix", term);
        for (const name of FILTERS.filter((f) => f !== "name_prefix")) {
          const val = form.elements.namedItem(name).value.trim();
          if (val) p.set(name, val);
        }
        const next = `#/tenants?${p}`;
        if (location.hash === next) load();
        else location.hash = next;
      },
    },
    h(
      "div.search-row",
      h("label.sr-only", { for: searchId }, "Search tenants"),
      search,
      h("button.primary", { type: "submit" }, "Search"),
    ),
    h(
      "div.filter-grid",
      select("status", "Status", v.statuses, q.get("status")),
      select("edition", "Edition", v.editions, q.get("edition")),
      select("region", "Region", v.regions, q.get("region")),
      select("billing_status", "Billing", v.billing, q.get("billing_status")),
      h(
        "div.field",
        h("label", { for: labelId }, "Label"),
        h("input", { id: labelId, name: "label", type: "text", value: q.get("label") || "", placeholder: "key=value" }),
      ),
      select("sort", "Sort by", ["created_at", "updated_at", "name"], q.get("sort"), "Default (created at)"),
      select("order", "Order", ["asc", "desc"], q.get("order"), "Default (asc)"),
    ),
    h(
      "div.row",
      h("button", { type: "submit" }, "Apply filters"),
      h("a.button.quiet", { href: "#/tenants" }, "Clear"),
    ),
  );

  el.append(
    h("div.page-head", h("h1", "Tenants"), bound ? h("p.muted", "This token is bound to one tenant: you see that tenant only.") : null),
    counts,
    form,
    results,
  );

  async function loadCounts() {
    try {
      const c = await get("/api/v1/tenants/stats");
      const chip = (kind, key, n) => {
        const p = new URLSearchParams();
        p.set(kind, key);
        return h(
          "li",
          h(
            `a.chip${kind === "status" ? `.st-${key}` : ""}`,
            { href: `#/tenants?${p}` },
            h("span.chip-label", key.replace(/_/g, " ")),
            h("span.chip-n", String(n)),
            h("span.sr-only", n === 1 ? " tenant" : " tenants"),
          ),
        );
      };
      fill(
        counts,
        h("h2.sr-only", "Counts"),
        h(
          "div.count-groups",
          h(
            "div",
            h("h3.mini", `By status · ${c.total} in all`),
            h(
              "ul.chips",
              v.statuses.map((s) => chip("status", s, c.by_status[s] || 0)),
            ),
          ),
          h(
            "div",
            h("h3.mini", "By edition"),
            h(
              "ul.chips",
              v.editions.map((e) => chip("edition", e, c.by_edition[e] || 0)),
            ),
          ),
        ),
      );
    } catch (err) {
      fill(counts, alertBox(`Counts unavailable: ${problemText(err)}`, "info"));
    }
  }

  async function load() {
    results.setAttribute("aria-busy", "true");
    const query = { limit: PAGE, cursor: q.get("cursor") || "" };
    for (const f of FILTERS) if (q.get(f)) query[f] = q.get(f);
    try {
      const page = await get("/api/v1/tenants", { query });
      const rows = page.items.map((t) =>
        h(
          "tr",
          h("td", h("a", { href: `#/tenants/${t.id}` }, t.name)),
          h("td.mono", t.external_id),
          h("td", statusBadge(t.status)),
          h("td", t.edition),
          h("td", t.region),
          h("td", billingBadge(t.billing_status)),
          h("td", time(t.created_at)),
          h("td", time(t.updated_at)),
        ),
      );
      const nav = h("nav.pager", { "aria-label": "Pages" });
      const here = new URLSearchParams(q);
      if (cursors.length) {
        const prev = new URLSearchParams(here);
        const back = cursors.slice(0, -1);
        const c = cursors[cursors.length - 1];
        if (c === "-") prev.delete("cursor");
        else prev.set("cursor", c);
        if (back.length) prev.set("back", back.join(","));
        else prev.delete("back");
        nav.append(h("a.button", { href: `#/tenants?${prev}`, rel: "prev" }, "← Previous page"));
      }
      if (page.next_cursor) {
        const next = new URLSearchParams(here);
        next.set("cursor", page.next_cursor);
        next.set("back", [...cursors, q.get("cursor") || "-"].join(","));
        nav.append(h("a.button", { href: `#/tenants?${next}`, rel: "next" }, "Next page →"));
      }
      fill(
        results,
        table(
          "Tenants",
          ["Name", "External id", "Status", "Edition", "Region", "Billing", "Created", "Updated"],
          rows,
          "No tenant matches.",
        ),
        h("p.muted.small", `${page.items.length} shown${page.next_cursor ? ", more on the next page" : ""}.`),
        nav,
      );
    } catch (err) {
      if (err instanceof ApiError && err.status === 401) throw err;
      fill(results, alertBox(problemText(err)));
    } finally {
      results.removeAttribute("aria-busy");
    }
  }

  await Promise.all([loadCounts(), load()]);
}
