// Command forms, generated from the API's own document: each lifecycle
// command's request schema (enums, ranges, required fields, descriptions)
// becomes a labelled form, so the console asks for what the API takes.
import { call, newKey } from "./api.js";
import { alertBox, fill, h, problemText, uid } from "./dom.js";

const TENANT = "/api/v1/tenants/{id}";

/** The commands run from the actions panel, beyond the lifecycle verbs. */
const PROFILE_COMMANDS = {
  rename: { method: "PATCH", summary: "Rename the tenant (its name is unique)", fields: ["name"] },
  "update-profile": { method: "PATCH", summary: "Replace the tenant's labels and metadata", fields: ["labels", "metadata"] },
};

/** Commands the service's own timers send; shown apart from the operator's. */
export const TIMER_COMMANDS = new Set(["expire-trial", "complete-cancellation"]);

/** Commands that destroy or end something; their button is marked as such. */
export const DANGER = new Set(["terminate", "purge", "fail-provisioning", "fail-migration", "suspend"]);

/** Commands listed in allowed_commands that have their own panel instead of a button. */
export const PANEL_COMMANDS = new Set(["set-override", "clear-override", "set-policy", "remove-policy"]);

export function humanize(name) {
  const s = String(name).replace(/[-_]/g, " ");
  return s.charAt(0).toUpperCase() + s.slice(1);
}

/** The spec of command cmd: {method, path, summary, props, required}, or null when the console has no form for it. */
export function commandSpec(doc, cmd) {
  const verb = doc.paths[`${TENANT}/${cmd}`];
  if (verb && verb.post) {
    const schema = verb.post.requestBody?.content?.["application/json"]?.schema || {};
    return {
      cmd,
      method: "POST",
      path: `${TENANT}/${cmd}`,
      summary: verb.post.summary,
      props: schema.properties || {},
      required: schema.required || [],
    };
  }
  const prof = PROFILE_COMMANDS[cmd];
  if (prof) {
    const schema = doc.paths[TENANT].patch.requestBody.content["application/json"].schema;
    const props = {};
    for (const f of prof.fields) props[f] = schema.properties[f];
    return { cmd, method: prof.method, path: TENANT, summary: prof.summary, props, required: cmd === "rename" ? ["name"] : [] };
  }
  return null;
}

/** One labelled control for a property of a request schema. */
function field(name, prop, required, tenant) {
  const id = uid(`f-${name}`);
  const hintId = uid("hint");
  const label = h("label", { for: id }, humanize(name), required ? h("span.req", { "aria-hidden": "true" }, " *") : null);
  const common = { id, name, required: required || null, "aria-describedby": prop.description ? hintId : null };
  let control;
  if (prop.enum) {
    control = h(
      "select",
      common,
      h("option", { value: "" }, required ? "Choose…" : "Default"),
      prop.enum.map((v) => h("option", { value: v }, v)),
    );
  } else if (prop.type === "integer") {
    control = h("input", { ...common, type: "number", inputmode: "numeric", min: prop.minimum, max: prop.maximum, step: "1" });
  } else if (prop.format === "date-time") {
    control = h("input", { ...common, type: "datetime-local", step: "1", "data-kind": "date-time" });
    label.append(h("span.muted", " (UTC)"));
  } else if (prop.type === "array") {
    control = h("input", { ...common, type: "text", "data-kind": "list", placeholder: "comma-separated" });
  } else if (prop.type === "object") {
    // labels and metadata: one key=value a line, prefilled with the tenant's.
    const cur = (tenant && tenant[name]) || {};
    control = h("textarea.mono", { ...common, rows: "4", "data-kind": "map", placeholder: "key=value, one a line" });
    control.value = Object.entries(cur)
      .map(([k, v]) => `${k}=${v}`)
      .join("\n");
  } else if ((prop.maxLength || 0) > 200) {
    control = h("textarea", { ...common, rows: "3", maxlength: prop.maxLength });
  } else {
    control = h("input", { ...common, type: "text", maxlength: prop.maxLength, autocomplete: "off" });
    if (name === "name" && tenant) control.value = tenant.name;
  }
  return h("div.field", label, control, prop.description ? h("p.hint", { id: hintId }, prop.description) : null);
}

/** The form's values as the request body the schema wants. */
function bodyOf(form, spec) {
  const body = {};
  for (const name of Object.keys(spec.props)) {
    const el = form.elements.namedItem(name);
    if (!el) continue;
    const raw = el.value.trim();
    const prop = spec.props[name];
    if (el.dataset.kind === "map") {
      const m = {};
      for (const line of el.value.split("\n")) {
        const l = line.trim();
        if (!l) continue;
        const i = l.indexOf("=");
        if (i < 0) m[l] = "";
        else m[l.slice(0, i).trim()] = l.slice(i + 1).trim();
      }
      body[name] = m;
      continue;
    }
    if (raw === "") continue;
    if (prop.type === "integer") body[name] = Number(raw);
    else if (el.dataset.kind === "date-time") body[name] = new Date(`${raw}Z`).toISOString();
    else if (el.dataset.kind === "list")
      body[name] = raw
        .split(",")
        .map((s) => s.trim())
        .filter(Boolean);
    else body[name] = raw;
  }
  return body;
}

/**
 * Opens the dialog of command spec for tenant (as loaded, with its version)
 * and sends it when submitted: If-Match the loaded version, and one
 * Idempotency-Key for this intended action, reused by its retries, so a
 * double click or a retry after a lost answer applies once.
 * onDone(response) runs after success.
 */
export function openCommand(spec, tenant, onDone, onReload) {
  const titleId = uid("dlg");
  let key = newKey();
  const status = h("div.dialog-status", { "aria-live": "assertive" });
  const submit = h(`button.${DANGER.has(spec.cmd) ? "danger" : "primary"}`, { type: "submit", "data-submit": spec.cmd }, humanize(spec.cmd));
  const fields = Object.entries(spec.props).map(([n, p]) => field(n, p, spec.required.includes(n), tenant));
  let confirm = null;
  if (spec.cmd === "purge") {
    const cid = uid("confirm");
    confirm = h(
      "div.field",
      h("label", { for: cid }, `Type the tenant's name (${tenant.name}) to confirm`),
      h("input", { id: cid, name: "confirm-name", type: "text", autocomplete: "off", required: true }),
    );
  }
  const form = h(
    "form",
    { method: "dialog", novalidate: null },
    h("h2", { id: titleId }, `${humanize(spec.cmd)} · ${tenant.name}`),
    h("p.muted", spec.summary),
    fields.length ? fields : h("p", "This command takes no input."),
    confirm,
    status,
    h(
      "div.row.end",
      h("button.quiet", { type: "button", value: "cancel", onclick: () => dlg.close() }, "Cancel"),
      submit,
    ),
  );
  const dlg = h("dialog.cmd", { "aria-labelledby": titleId }, form);
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    if (submit.disabled) return;
    if (!form.reportValidity()) return;
    if (confirm && form.elements.namedItem("confirm-name").value.trim() !== tenant.name) {
      fill(status, alertBox("The name does not match."));
      return;
    }
    submit.disabled = true;
    fill(status, h("p.muted", "Sending…"));
    const body = bodyOf(form, spec);
    try {
      const res = await call(spec.method, spec.path.replace("{id}", encodeURIComponent(tenant.id)), {
        body: spec.method === "PATCH" || Object.keys(spec.props).length ? body : {},
        ifMatch: tenant.version,
        key,
      });
      dlg.close();
      onDone(res);
    } catch (err) {
      submit.disabled = false;
      fill(status, failure(err, onReload ? () => (dlg.close(), onReload()) : null));
      // Nothing was applied for a refusal: the next try is a new action.
      if (!err.retryable) key = newKey();
    }
  });
  dlg.addEventListener("close", () => dlg.remove());
  document.body.append(dlg);
  dlg.showModal();
  (form.querySelector("select, input, textarea") || submit).focus();
}

/** What a failed command says to the operator. */
export function failure(err, reload) {
  const p = err.problem || {};
  if (err.status === 412) {
    return alertBox(
      "This tenant changed meanwhile: someone or something acted on it after this page loaded. Reload to see its current state, then decide again.",
      "error",
      reload ? h("button.primary", { type: "button", onclick: reload }, "Reload") : null,
    );
  }
  if (err.status === 403) return alertBox(`Not allowed with this token: ${p.detail || "it lacks the scope this needs."}`);
  const more = [];
  if (p.errors && p.errors.length) more.push(h("ul", p.errors.map((fe) => h("li", `${fe.field}: ${fe.message}`))));
  if (p.conflicts && p.conflicts.length)
    more.push(h("p", "Conflicts:"), h("ul.conflicts", p.conflicts.map((c) => h("li", typeof c === "string" ? c : JSON.stringify(c)))));
  if (p.allowed_commands && p.allowed_commands.length) more.push(h("p.muted", `Allowed now: ${p.allowed_commands.join(", ")}`));
  if (err.retryable) more.push(h("p.muted", "Try again: the retry carries the same Idempotency-Key, so it cannot apply twice."));
  return alertBox(problemText(err), "error", ...more);
}
