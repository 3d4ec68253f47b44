// Operations: projections (position, lag, holder, failures), rebuilds with
// live progress, skipping or retrying failed events, and the live event feed.
import { ApiError, call, can, followEvents, get, newKey, principal } from "./api.js";
import { alertBox, fill, h, problemText, table, time, toast } from "./dom.js";
import { failure } from "./forms.js";

const REBUILDABLE = new Set(["read-model", "scheduler"]);
const FEED_MAX = 100;

export async function renderOps(el) {
  document.title = "Operations · Tenancy console";
  const admin = can("tenancy:admin") && !principal().tenantId;
  el.append(h("div.page-head", h("h1", "Operations")));
  if (!admin) {
    el.append(
      alertBox(
        principal().tenantId
          ? "A token bound to one tenant cannot use the operations routes."
          : "Operations need the scope tenancy:admin; this token does not have it.",
        "info",
      ),
    );
    return null;
  }
  const stop = new AbortController();
  const projBody = h("div", { "aria-live": "polite" });
  const jobBox = h("div.job#job", { "aria-live": "polite" });
  const failBox = h("div#failures");
  const feedList = h("ol.feed#feed");
  const feedState = h("span.muted#feed-state", "connecting…");
  let shownFailures = "";

  el.append(
    h(
      "section.card",
      { "aria-labelledby": "pr-h" },
      h("div.card-head", h("h2#pr-h", "Projections"), h("span.muted.small", "refreshed every 2 s")),
      projBody,
      jobBox,
    ),
    failBox,
    h(
      "section.card",
      { "aria-labelledby": "fd-h" },
      h("div.card-head", h("h2#fd-h", "Live events"), feedState),
      h("p.muted.small", "GET /api/v1/admin/events/stream: every tenant event as it is stored (no event data), newest first."),
      feedList,
    ),
  );

  let running = null; // the job being followed
  async function rebuild(name, button) {
    button.disabled = true;
    try {
      const job = (await call("POST", `/api/v1/admin/projections/${encodeURIComponent(name)}/rebuild`, { key: newKey() })).body;
      follow(job);
    } catch (err) {
      button.disabled = false;
      fill(jobBox, failure(err));
    }
  }

  function drawJob(job) {
    const pct = Math.max(0, Math.min(100, job.percent || 0));
    const done = job.state !== "running";
    fill(
      jobBox,
      h(
        `div.job-card.${job.state}`,
        h("h3.mini", `Rebuild of ${job.projection}: `, h("span#job-state", job.state)),
        h("progress#job-progress", { max: "100", value: String(pct), "aria-label": `Rebuild of ${job.projection}` }, `${pct.toFixed(0)}%`),
        h(
          "p.small#job-detail",
          `${pct.toFixed(1)}% · ${job.phase || ""} · ${job.processed}/${job.total || "?"} events`,
          job.events_per_second ? ` · ${Math.round(job.events_per_second)} events/s` : "",
          !done && job.eta_seconds ? ` · about ${Math.ceil(job.eta_seconds)} s left` : "",
          job.finished_at ? [" · finished ", time(job.finished_at)] : "",
        ),
        job.error ? alertBox(job.error) : null,
      ),
    );
  }

  async function follow(job) {
    running = job;
    drawJob(job);
    while (!stop.signal.aborted && job.state === "running") {
      await new Promise((r) => setTimeout(r, 250));
      try {
        job = await get(`/api/v1/admin/jobs/${job.id}`, { signal: stop.signal });
      } catch (err) {
        if (err.name === "AbortError") return;
        fill(jobBox, alertBox(problemText(err)));
        return;
      }
      drawJob(job);
    }
    running = null;
    if (job.state === "succeeded") toast(`Rebuild of ${job.projection} finished.`, "ok");
    refresh();
  }

  async function showFailures(name) {
    shownFailures = name;
    let res;
    try {
      res = await get(`/api/v1/admin/projections/${encodeURIComponent(name)}/failures`);
    } catch (err) {
      fill(failBox, alertBox(problemText(err)));
      return;
    }
    const status = h("div", { "aria-live": "polite" });
    const act = async (button, method, path, label) => {
      button.disabled = true;
      try {
        await call(method, path, { key: newKey() });
        toast(label, "ok");
        showFailures(name);
        refresh();
      } catch (err) {
        button.disabled = false;
        fill(status, failure(err));
      }
    };
    const rows = res.failures.map((f) => {
      const skip =
        f.status === "halted" || f.status === "retry"
          ? h(
              "button.small.danger-outline",
              {
                type: "button",
                "aria-label": `Skip event ${f.event_id}`,
                onclick: (e) =>
                  act(e.target, "POST", `/api/v1/admin/projections/${name}/failures/${f.event_id}/skip`, `Event ${f.event_id} skipped.`),
              },
              "Skip",
            )
          : null;
      return h(
        "tr",
        h("td.mono", f.event_id),
        h("td", f.event_type),
        h("td.mono", f.position),
        h("td", h(`span.badge.fail-${f.status}`, f.status)),
        h("td", String(f.attempts)),
        h("td", time(f.last_failed_at)),
        h("td.err", f.error),
        h("td", skip),
      );
    });
    const retry = h(
      "button",
      {
        type: "button",
        disabled: !res.failures.some((f) => f.status === "halted"),
        onclick: (e) => act(e.target, "POST", `/api/v1/admin/projections/${name}/retry`, `Halted events of ${name} sent back for retry.`),
      },
      "Retry halted events",
    );
    fill(
      failBox,
      h(
        "section.card",
        { "aria-labelledby": "fl-h" },
        h("div.card-head", h("h2#fl-h", `Failures of ${name}`), retry),
        table(`Failures of ${name}`, ["Event", "Type", "Position", "Status", "Attempts", "Last failed", "Error", ""], rows, "No failure recorded."),
        status,
      ),
    );
  }

  async function refresh() {
    let ps;
    try {
      ps = (await get("/api/v1/admin/projections", { signal: stop.signal })).projections;
    } catch (err) {
      if (err.name === "AbortError") return;
      if (err instanceof ApiError && err.status === 403) {
        fill(projBody, alertBox("This token may not use the operations routes (403)."));
        return;
      }
      fill(projBody, alertBox(problemText(err)));
      return;
    }
    const rows = ps.map((p) => {
      const rebuildBtn = REBUILDABLE.has(p.name)
        ? h(
            "button.small",
            {
              type: "button",
              "data-rebuild": p.name,
              disabled: Boolean(running),
              onclick: (e) => rebuild(p.name, e.target),
            },
            "Rebuild",
          )
        : h("span.muted.small", "re-publish with tenancy projections reset");
      return h(
        "tr",
        { "data-projection": p.name },
        h("td", h("strong", p.name)),
        h("td", h(`span.badge.ps-${p.state}`, p.state)),
        h("td.mono", p.position),
        h("td.mono", p.head),
        h("td", h(`span${p.lag_events > 0 ? ".lagging" : ""}`, String(p.lag_events)), p.lag_seconds ? h("span.muted", ` (${p.lag_seconds.toFixed(1)} s)`) : null),
        h("td.mono.small", p.holder || "—"),
        h(
          "td",
          p.failures
            ? h("button.small.danger-outline", { type: "button", onclick: () => showFailures(p.name) }, `${p.failures} failures`, h("span.sr-only", ` of ${p.name}`))
            : h("button.small.quiet", { type: "button", onclick: () => showFailures(p.name) }, "0", h("span.sr-only", ` failures of ${p.name}`)),
        ),
        h("td", rebuildBtn),
      );
    });
    const halted = ps.filter((p) => p.last_error);
    fill(
      projBody,
      table("Projections", ["Projection", "State", "Position", "Head", "Lag (events)", "Holder", "Failures", ""], rows),
      halted.map((p) => alertBox(`${p.name}: ${p.last_error}`, p.state === "halted" ? "error" : "info")),
    );
    if (shownFailures && !running) showFailures(shownFailures);
  }

  await refresh();
  const timer = setInterval(() => {
    if (!document.hidden) refresh();
  }, 2000);

  // The live feed, reconnecting (from the last event seen) when it drops.
  (async () => {
    let after = "";
    while (!stop.signal.aborted) {
      try {
        after = await followEvents(
          () => {
            fill(feedState, "live");
            feedState.className = "badge on";
          },
          (ev) => {
            feedList.prepend(
              h(
                "li",
                h("span.mono.small", time(ev.occurred_at)),
                " ",
                h("strong", ev.type),
                " ",
                h("a.mono", { href: `#/tenants/${ev.tenant_id}` }, ev.tenant_id.slice(0, 8)),
                h("span.muted.small", ` v${ev.version} · by ${ev.actor || "—"}${ev.correlation_id ? ` · ${ev.correlation_id}` : ""}`),
              ),
            );
            while (feedList.children.length > FEED_MAX) feedList.lastChild.remove();
          },
          stop.signal,
          after,
        );
      } catch (err) {
        if (err.name === "AbortError" || stop.signal.aborted) return;
        fill(feedState, err instanceof ApiError ? `disconnected: ${problemText(err)}` : "disconnected, reconnecting…");
        feedState.className = "badge off";
      }
      await new Promise((r) => setTimeout(r, 2000));
    }
  })();

  return () => {
    stop.abort();
    clearInterval(timer);
  };
}
