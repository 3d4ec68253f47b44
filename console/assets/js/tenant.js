// One tenant: its state, what it accepts now, its history with time
// travel, its entitlements and policies, and a policy-evaluation panel.
import { ApiError, apiDocument, call, can, get, newKey, principal } from "./api.js";
import { add, alertBox, billingBadge, dl, fill, h, problemText, statusBadge, table, time, toast, uid } from "./dom.js";
import { DANGER, PANEL_COMMANDS, TIMER_COMMANDS, commandSpec, failure, humanize, openCommand } from "./forms.js";

const REDACTED = "[redacted]";

/** Masks a personal value: the first character and, for an e-mail, the domain. */
function mask(v, kind) {
  if (!v) return "";
  if (v === REDACTED) return v;
  if (kind === "email") {
    const at = v.indexOf("@");
    return at > 0 ? `${v[0]}•••${v.slice(at)}` : "•••";
  }
  if (kind === "phone") return `••• ${v.slice(-2)}`;
  return `${v[0]}•••`;
}

const short = (v) => {
  if (v === undefined || v === null) return "—";
  const s = typeof v === "string" ? v : JSON.stringify(v);
  return s.length > 140 ? `${s.slice(0, 140)}…` : s;
};

export async function renderTenant(el, r, consistency) {
  const ref = r.path[1];
  const asOf = r.query.get("as_of") || "";
  const version = r.query.get("version") || "";
  const past = Boolean(asOf || version);
  const doc = await apiDocument();
  const writeOK = can("tenancy:write");
  const readOnlyReason = "Read-only token: acting on a tenant needs the scope tenancy:write.";
  let reveal = false;

  let res;
  try {
    res = await call("GET", `/api/v1/tenants/${encodeURIComponent(ref)}`, {
      query: { as_of: asOf, version },
      consistency,
    });
  } catch (err) {
    if (err instanceof ApiError && err.status === 404) {
      document.title = "Not found · Tenancy console";
      add(el, 
        h("h1", "Tenant not found"),
        alertBox(
          past
            ? "The tenant did not exist at that point, or no such tenant."
            : `No tenant ${ref}${principal().tenantId ? " that this token may see (it is bound to another tenant)" : ""}.`,
        ),
        h("p", h("a", { href: "#/tenants" }, "Back to the tenants")),
      );
      return;
    }
    throw err;
  }
  const t = res.body;
  document.title = `${t.name} · Tenancy console`;
  const id = t.id;
  const base = `/api/v1/tenants/${id}`;
  const reload = (token) => {
    el.replaceChildren();
    return renderTenant(el, r, token);
  };
  const afterCommand = (label) => (resp) => {
    const nt = resp.body;
    toast(`${label}: ${nt.status}, version ${nt.version}${resp.headers.get("Idempotent-Replayed") ? " (replayed)" : ""}.`, "ok");
    reload(resp.headers.get("X-Consistency-Token"));
  };

  const [transitions, ents, history] = await Promise.all([
    past ? null : get(`${base}/transitions`, { consistency }).catch((e) => e),
    past ? null : get(`${base}/entitlements`, { consistency }).catch((e) => e),
    get(`${base}/history`, { query: { limit: 500 } }).catch((e) => e),
  ]);

  // ---- header ----
  const head = h(
    "div.page-head",
    h("p.crumbs", h("a", { href: "#/tenants" }, "Tenants"), " / ", t.external_id),
    h("div.title-row", h("h1", t.name), statusBadge(t.status, { id: "tenant-status" })),
    h(
      "p.muted.mono.small",
      `${t.external_id} · ${t.id} · version `,
      h("span#tenant-version", String(t.version)),
    ),
  );
  add(el, head);
  if (past) {
    const at = history instanceof Error ? null : history.items.find((e) => e.version === t.version);
    add(el, 
      h(
        "div.alert.timetravel#timetravel",
        { role: "status" },
        h(
          "p",
          h("strong", "Time travel: "),
          `the state after version ${t.version}`,
          at ? ` (${at.type}, ${new Date(at.occurred_at).toISOString().replace(".000", "")})` : "",
          asOf ? `, as of ${asOf}` : "",
          ". Folded from the event stream; actions are off.",
        ),
        h("a.button", { href: `#/tenants/${id}` }, "Back to now"),
      ),
    );
  }

  // ---- overview ----
  const lifecycle = [];
  if (t.suspension)
    lifecycle.push(
      ["Suspended", h("span", `${t.suspension.reason} (${t.suspension.severity})`)],
      ["Suspended at", time(t.suspension.at)],
      ["Suspended by", t.suspension.by],
      ["Suspension note", t.suspension.note],
      t.suspension.auto_resume_at && ["Resumes at", time(t.suspension.auto_resume_at)],
    );
  if (t.trial_ends_at && (t.status === "TRIAL" || t.billing_status === "trialing")) lifecycle.push(["Trial ends", time(t.trial_ends_at)]);
  if (t.cancellation) lifecycle.push(["Cancellation takes effect", time(t.cancellation.effective_at)], ["Cancellation reason", t.cancellation.reason]);
  if (t.migration) lifecycle.push(["Migrating", `${t.migration.from} → ${t.migration.to}`], ["Migration started", time(t.migration.started_at)]);
  if (t.termination)
    lifecycle.push(
      ["Terminated at", time(t.termination.at)],
      ["Termination reason", t.termination.reason],
      ["Data kept until", time(t.termination.data_retention_until)],
    );
  if (t.purged_at) lifecycle.push(["Purged at", time(t.purged_at)]);

  const overview = h(
    "section.card",
    { "aria-labelledby": "ov-h" },
    h("h2#ov-h", "Overview"),
    dl([
      ["Status", statusBadge(t.status)],
      ["Edition", t.edition],
      ["Region", t.region],
      ["Billing", billingBadge(t.billing_status)],
      ["Created", time(t.created_at)],
      ["Updated", time(t.updated_at)],
      ...lifecycle,
      ["Compliance", (t.compliance_standards || []).join(", ")],
    ]),
  );

  // ---- contacts ----
  const contactsBody = h("div");
  const contacts = t.contacts || [];
  const redacted = contacts.some((c) => c.email === REDACTED || c.name === REDACTED);
  const revealBtn = h(
    "button.quiet",
    {
      type: "button",
      "aria-pressed": "false",
      onclick() {
        reveal = !reveal;
        revealBtn.setAttribute("aria-pressed", String(reveal));
        revealBtn.textContent = reveal ? "Mask contacts" : "Reveal contacts";
        drawContacts();
        drawHistory();
      },
    },
    "Reveal contacts",
  );
  function drawContacts() {
    const rows = contacts.map((c) =>
      h(
        "tr",
        h("td", c.role),
        h("td", reveal ? c.name || "" : mask(c.name)),
        h("td.mono", reveal ? c.email : mask(c.email, "email")),
        h("td.mono", reveal ? c.phone || "" : mask(c.phone, "phone")),
      ),
    );
    fill(contactsBody, table("Contacts", ["Role", "Name", "E-mail", "Phone"], rows, "No contact."));
  }
  drawContacts();
  const contactsCard = h(
    "section.card",
    { "aria-labelledby": "ct-h" },
    h(
      "div.card-head",
      h("h2#ct-h", "Contacts"),
      contacts.length && !redacted ? revealBtn : null,
    ),
    redacted ? h("p.muted", "Personal data erased (purged): contacts read [redacted].") : h("p.muted.small", "Personal data: masked until revealed."),
    contactsBody,
  );

  // ---- labels and metadata ----
  const kvList = (m) =>
    Object.keys(m || {}).length
      ? h(
          "ul.tags",
          Object.entries(m).map(([k, v]) => h("li", h("span.tag", h("span.tag-k", k), v !== "" ? h("span.tag-v", v) : null))),
        )
      : h("p.muted", "None.");
  const labelsCard = h(
    "section.card",
    { "aria-labelledby": "lb-h" },
    h("h2#lb-h", "Labels and metadata"),
    h("h3.mini", "Labels"),
    kvList(t.labels),
    h("h3.mini", "Metadata"),
    kvList(t.metadata),
  );

  // ---- entitlements ----
  const entCard = h("section.card", { "aria-labelledby": "en-h" }, h("h2#en-h", "Entitlements"));
  if (past) {
    add(entCard, h("p.muted", "Shown for the current state only."));
  } else if (ents instanceof Error) {
    add(entCard, alertBox(problemText(ents)));
  } else {
    const ov = ents.overrides || {};
    const ovF = ov.features || {};
    const ovL = ov.limits || {};
    const mayOverride = writeOK && transitions && !(transitions instanceof Error) && transitions.allowed_commands.includes("clear-override");
    const clear = (key) =>
      mayOverride
        ? h(
            "button.quiet.small",
            {
              type: "button",
              "aria-label": `Clear the override of ${key}`,
              async onclick(e) {
                e.target.disabled = true;
                try {
                  const resp = await call("DELETE", `${base}/overrides/${encodeURIComponent(key)}`, { ifMatch: t.version, key: newKey() });
                  afterCommand(`Override of ${key} cleared`)(resp);
                } catch (err) {
                  e.target.disabled = false;
                  fill(entStatus, failure(err, () => reload()));
                }
              },
            },
            "Clear",
          )
        : null;
    const feats = Object.entries(ents.features || {})
      .sort()
      .map(([k, on]) =>
        h(
          "tr",
          h("td.mono", k),
          h("td", h(`span.badge.${on ? "on" : "off"}`, on ? "on" : "off")),
          h("td", k in ovF ? [h("span.badge.override", "override"), " ", clear(k)] : h("span.muted", "edition")),
        ),
      );
    const limits = Object.entries(ents.limits || {})
      .sort()
      .map(([k, n]) =>
        h(
          "tr",
          h("td.mono", k),
          h("td", n === 0 ? "unlimited" : n.toLocaleString("en")),
          h("td", k in ovL ? [h("span.badge.override", "override"), " ", clear(k)] : h("span.muted", "edition")),
        ),
      );
    const entStatus = h("div", { "aria-live": "polite" });
    add(entCard, 
      h("p.muted.small", `Edition ${ents.edition} with the tenant's overrides (marked).`),
      h(
        "div.two",
        table("Features", ["Feature", "Value", "From"], feats),
        table("Limits", ["Limit", "Value", "From"], limits),
      ),
      entStatus,
    );
  }

  // ---- policies ----
  const pols = Object.values(t.policies || {});
  const polCard = h(
    "section.card",
    { "aria-labelledby": "po-h" },
    h("h2#po-h", "Policies"),
    pols.length
      ? h(
          "ul.policies",
          pols.map((p) =>
            h(
              "li",
              h("div.row", h("strong.mono", p.type), h(`span.badge.${p.enforced ? "on" : "off"}`, p.enforced ? "enforced" : "warn only")),
              h("pre.mono", JSON.stringify(p.settings, null, 2)),
            ),
          ),
        )
      : h("p.muted", "No policy set."),
  );

  // ---- actions ----
  const actCard = h("section.card.actions", { "aria-labelledby": "ac-h" }, h("h2#ac-h", "Actions"));
  if (past) {
    add(actCard, h("p.muted", "Actions are off while viewing the past. ", h("a", { href: `#/tenants/${id}` }, "Back to now")));
  } else if (transitions instanceof Error) {
    add(actCard, alertBox(problemText(transitions)));
  } else {
    const reasonId = "readonly-reason";
    const to = Object.fromEntries(transitions.transitions.map((x) => [x.command, x.to]));
    const groups = { lifecycle: [], profile: [], timers: [] };
    for (const cmd of transitions.allowed_commands) {
      if (PANEL_COMMANDS.has(cmd)) continue;
      const spec = commandSpec(doc, cmd);
      if (!spec) continue;
      const b = h(
        `button.cmd${DANGER.has(cmd) ? ".danger-outline" : ""}`,
        {
          type: "button",
          "data-cmd": cmd,
          disabled: !writeOK,
          "aria-describedby": writeOK ? null : reasonId,
          title: spec.summary,
          onclick: () => openCommand(spec, t, afterCommand(humanize(cmd)), () => reload()),
        },
        humanize(cmd),
        to[cmd] ? h("span.to", ` → ${to[cmd].replace(/_/g, " ")}`) : null,
      );
      (TIMER_COMMANDS.has(cmd) ? groups.timers : to[cmd] ? groups.lifecycle : groups.profile).push(b);
    }
    if (!writeOK) actCard.append(h("p.alert.info", { id: reasonId }, readOnlyReason));
    add(actCard, 
      h("p.muted.small", `Accepted now in ${t.status.replace(/_/g, " ")}; each is sent with If-Match: W/"${t.version}" and its own Idempotency-Key.`),
      groups.lifecycle.length ? [h("h3.mini", "Lifecycle"), h("div.btns", groups.lifecycle)] : null,
      groups.profile.length ? [h("h3.mini", "Profile, edition and billing"), h("div.btns", groups.profile)] : null,
      groups.timers.length ? [h("h3.mini", "Normally sent by timers"), h("div.btns", groups.timers)] : null,
      !transitions.allowed_commands.length ? h("p", "No command is accepted in this status.") : null,
    );
  }

  // ---- policy evaluation ----
  const evalSchema = doc.paths[`/api/v1/tenants/{id}/policy/evaluate`].post.requestBody.content["application/json"].schema;
  const ctxProps = evalSchema.properties.context.properties;
  const limitsList = ents && !(ents instanceof Error) ? Object.keys(ents.limits || {}).sort() : [];
  const ids = { action: uid("ev"), resource: uid("ev"), region: uid("ev"), limit: uid("ev"), used: uid("ev"), at: uid("ev") };
  const evalOut = h("div.eval-out", { "aria-live": "polite" });
  const evalForm = h(
    "form.eval",
    {
      async onsubmit(e) {
        e.preventDefault();
        const f = evalForm.elements;
        const body = { action: f.namedItem("action").value, context: {} };
        if (f.namedItem("resource").value.trim()) body.resource = f.namedItem("resource").value.trim();
        if (f.namedItem("region").value) body.context.region = f.namedItem("region").value;
        if (f.namedItem("limit").value && f.namedItem("used").value !== "")
          body.context.usage = { [f.namedItem("limit").value]: Number(f.namedItem("used").value) };
        if (f.namedItem("at").value) body.context.time = new Date(`${f.namedItem("at").value}Z`).toISOString();
        try {
          const d = (await call("POST", `${base}/policy/evaluate`, { body })).body;
          fill(
            evalOut,
            h(
              "div.decision",
              h(`span.badge.dec-${d.decision}#decision`, d.decision),
              " ",
              h("span.mono", d.reason || ""),
              d.upgrade_required ? h("span.badge.override", ` upgrade to ${d.required_edition || "a higher edition"}`) : null,
              d.retry_after_seconds ? h("span.muted", ` retry after ${d.retry_after_seconds} s`) : null,
            ),
            d.violations && d.violations.length
              ? h("ul.violations", d.violations.map((v) => h("li", h("strong", `${v.rule} · ${v.code}`), `: ${v.message}`)))
              : null,
            table(
              "Rules checked, in order",
              ["Rule", "Outcome", "Explanation"],
              (d.rules || []).map((x) => h("tr", h("td.mono", x.rule), h("td", h(`span.badge.out-${x.outcome}`, x.outcome)), h("td", x.explanation))),
            ),
          );
        } catch (err) {
          fill(evalOut, failure(err));
        }
      },
    },
    h(
      "div.filter-grid",
      h(
        "div.field",
        h("label", { for: ids.action }, "Action"),
        h("select", { id: ids.action, name: "action", required: true }, evalSchema.properties.action.enum.map((a) => h("option", { value: a }, a))),
      ),
      h("div.field", h("label", { for: ids.resource }, "Resource"), h("input", { id: ids.resource, name: "resource", type: "text", placeholder: "optional" })),
      h(
        "div.field",
        h("label", { for: ids.region }, "Region"),
        h("select", { id: ids.region, name: "region" }, h("option", { value: "" }, "Any"), ctxProps.region.enum.map((x) => h("option", { value: x }, x))),
      ),
      h(
        "div.field",
        h("label", { for: ids.limit }, "Usage of"),
        h("select", { id: ids.limit, name: "limit" }, h("option", { value: "" }, "None"), limitsList.map((x) => h("option", { value: x }, x))),
      ),
      h("div.field", h("label", { for: ids.used }, "Used"), h("input", { id: ids.used, name: "used", type: "number", min: "0", step: "1" })),
      h("div.field", h("label", { for: ids.at }, "At (UTC)"), h("input", { id: ids.at, name: "at", type: "datetime-local", step: "1" })),
    ),
    h("button.primary", { type: "submit" }, "Evaluate"),
  );
  const evalCard = h(
    "section.card",
    { "aria-labelledby": "ev-h" },
    h("h2#ev-h", "May it do this now?"),
    h("p.muted.small", "POST …/policy/evaluate against the current state: status → edition → quotas → region → time."),
    evalForm,
    evalOut,
  );

  // ---- history and time travel ----
  const histCard = h("section.card.history", { "aria-labelledby": "hi-h" }, h("h2#hi-h", "History"));
  const histList = h("ol.timeline#timeline", { reversed: true });
  const ttId = uid("asof");
  const ttForm = h(
    "form.row.timetravel-form",
    {
      onsubmit(e) {
        e.preventDefault();
        const v = ttForm.elements.namedItem("as_of").value;
        if (!v) return;
        location.hash = `#/tenants/${id}?as_of=${encodeURIComponent(new Date(`${v}Z`).toISOString())}`;
      },
    },
    h("label", { for: ttId }, "State as of (UTC)"),
    h("input", { id: ttId, name: "as_of", type: "datetime-local", step: "1", required: true }),
    h("button", { type: "submit" }, "Show"),
  );
  function drawHistory() {
    if (history instanceof Error) {
      fill(histList, h("li", alertBox(problemText(history))));
      return;
    }
    const items = [...history.items].reverse();
    fill(
      histList,
      items.map((e) => {
        const later = past && e.version > t.version;
        const current = past && e.version === t.version;
        const changes = (e.changes || []).map((c) => {
          const personal = /^contacts/.test(c.field) && !reveal;
          return h(
            "tr",
            h("td.mono", c.field),
            h("td.mono", personal ? "•••" : short(c.from)),
            h("td.mono", personal ? "•••" : short(c.to)),
          );
        });
        return h(
          `li.event${later ? ".later" : ""}${current ? ".current" : ""}`,
          { "data-type": e.type, "data-version": String(e.version), "aria-current": current ? "step" : null },
          h(
            "div.event-head",
            h("span.ver", `v${e.version}`),
            h("strong", e.type),
            time(e.occurred_at),
            later ? h("span.badge.off", "later") : null,
          ),
          h(
            "p.event-meta.small",
            h("span", "by ", h("strong", e.actor || "—")),
            e.command ? h("span", " · command ", h("span.mono", e.command)) : null,
            e.correlation_id ? h("span", " · correlation ", h("span.mono", e.correlation_id)) : null,
          ),
          changes.length
            ? h("details", h("summary", `${changes.length} change${changes.length > 1 ? "s" : ""}`), table(`Changes of version ${e.version}`, ["Field", "From", "To"], changes))
            : null,
          current
            ? h("span.muted.small", "Viewing this version")
            : h("a.small", { href: `#/tenants/${id}?version=${e.version}`, "data-travel": String(e.version) }, "State after this event"),
        );
      }),
    );
  }
  drawHistory();
  add(histCard, 
    h("p.muted.small", "From the tenant's event stream, newest first: who, when, which command and what changed."),
    ttForm,
    history instanceof Error ? null : history.redacted ? h("p.muted", "Purged: personal fields read [redacted] in every event.") : null,
    histList,
  );

  add(el, h("div.tenant-grid", h("div.col-main", overview, contactsCard, labelsCard, entCard, polCard), h("div.col-side", actCard, evalCard)), histCard);
}
