package service_test

import (
	"context"
	_ "embed"
	"encoding/json"
	"flag"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"
	"github.com/google/uuid"

	"github.com/tenancyhq/tenancy/internal/auth"
)

// updateScreenshots makes the console test write its screenshots into
// docs/console/, where the README shows them.
var updateScreenshots = flag.Bool("update-screenshots", false, "write the console's screenshots (PNG) to docs/console/")

// axeSource is axe-core (testdata/axe), injected into each page to check
// its accessibility; it is never served.
//
//go:embed testdata/axe/axe.min.js
var axeSource string

// TestConsoleInABrowser drives the operator console in Debian's Chromium
// against the real service (Postgres, NATS, authentication on): sign in,
// find a tenant by external id, suspend it and see the status and the
// timeline change, travel back to before the suspension, get the 412
// message on a stale page, run a policy evaluation, follow the live event
// feed and a rebuild to its end; a read-only token cannot act; a
// tenant-bound token cannot see another tenant. Every page passes axe-core
// with no serious or critical violation, and fits a 390 px phone.
func TestConsoleInABrowser(t *testing.T) {
	t.Parallel()
	chromium := chromiumPath(t)
	s := startService(t, serviceOptions{auth: true, logLevel: slog.LevelWarn})
	admin := token(t, "ops@example.com", nil, auth.ScopeAdmin)
	seed := seedConsole(t, s, admin)
	b := startBrowser(t, chromium)

	// ---- an operator with an admin token ----
	p := b.page(t, s.base)
	p.do("open the console", chromedp.Navigate(s.base+"/console"))
	p.waitJS("the sign-in form", `document.querySelector("textarea[name=token]") !== null`)
	p.axe("sign-in")
	p.shot("signin")
	p.signIn(admin)
	p.waitJS("the tenants list", `document.querySelectorAll("main table tbody tr a").length >= 6`)
	p.waitJS("the counts", `(document.querySelector(".counts")?.textContent || "").includes("7 in all")`)
	p.axe("tenants")
	p.shot("tenants")

	// Filters go to the API: status SUSPENDED lists Hooli alone.
	p.do("filter by status", chromedp.SetValue(chromedp.CSS("select[name=status]"), "SUSPENDED"),
		chromedp.Click(chromedp.CSS("form.filters .row button[type=submit]")))
	p.waitJS("the filtered list", `location.hash.includes("status=SUSPENDED") && [...document.querySelectorAll("main tbody tr")].length === 1 &&
		document.querySelector("main tbody tr a")?.textContent === "Hooli"`)

	// Find a tenant by its external id.
	p.do("search by external id", chromedp.SetValue(chromedp.CSS("input[type=search]"), strings.ToLower(seed.acme.externalID)),
		chromedp.Click(chromedp.CSS(".search-row button")))
	p.waitJS("Acme's page", `document.querySelector("h1")?.textContent === "Acme Corp" && document.getElementById("tenant-status")?.textContent === "ACTIVE"`)
	p.waitJS("contacts masked", `!document.querySelector("main").textContent.includes("ada@acme.example") && document.querySelector("main").textContent.includes("a•••@acme.example")`)
	p.axe("tenant")

	// By keyboard: a command's dialog opens with Enter, takes the focus,
	// keeps it on Tab and closes with Escape.
	p.do("open a dialog by keyboard", chromedp.Focus(chromedp.CSS(`button[data-cmd="change-edition"]`)), chromedp.KeyEvent(kb.Enter))
	p.waitJS("the focus in the dialog", `document.querySelector("dialog[open]")?.contains(document.activeElement)`)
	p.do("Tab in the dialog", chromedp.KeyEvent(kb.Tab))
	p.waitJS("the focus still in the dialog", `document.querySelector("dialog[open]")?.contains(document.activeElement) && document.activeElement.tagName === "BUTTON"`)
	p.do("close it", chromedp.KeyEvent(kb.Escape))
	p.waitJS("the dialog closed", `document.querySelector("dialog") === null && document.getElementById("tenant-status")?.textContent === "ACTIVE"`)

	// Suspend it, with a double click on the dialog's button: applied once.
	p.do("open the suspend form", chromedp.Focus(chromedp.CSS(`button[data-cmd="suspend"]`)), chromedp.KeyEvent(kb.Enter))
	p.waitJS("the suspend dialog", `document.querySelector("dialog[open] select[name=reason]") !== null`)
	p.axe("suspend dialog")
	p.do("fill the suspend form", chromedp.SetValue(chromedp.CSS("dialog[open] select[name=reason]"), "payment_failed"),
		chromedp.SetValue(chromedp.CSS("dialog[open] textarea[name=note]"), "card declined twice"),
		chromedp.DoubleClick(chromedp.CSS(`dialog[open] button[data-submit="suspend"]`)))
	p.waitJS("SUSPENDED and the timeline", `document.getElementById("tenant-status")?.textContent === "SUSPENDED" &&
		document.querySelector("#timeline li[data-type=TenantSuspended]") !== null`)
	if n := countEvents(t, s, admin, seed.acme.id, "TenantSuspended"); n != 1 {
		t.Errorf("the double click suspended %d times, want once", n)
	}
	p.waitJS("the actor in the timeline", `document.querySelector("#timeline li[data-type=TenantSuspended]").textContent.includes("ops@example.com")`)
	p.do("reveal the contacts", chromedp.Click(chromedp.CSS(`button[aria-pressed]`)))
	p.waitJS("contacts revealed", `document.querySelector("main").textContent.includes("ada@acme.example")`)
	p.do("mask the contacts", chromedp.Click(chromedp.CSS(`button[aria-pressed]`)))
	p.do("open the history's changes", chromedp.Evaluate[chromedp.Void](`document.querySelector("#timeline li[data-type=TenantSuspended] details").open = true`))
	p.axe("tenant, suspended")
	p.shot("tenant")

	// May it do this now? The evaluation says deny while suspended hard... or soft: a read is evaluated.
	p.do("evaluate a policy", chromedp.SetValue(chromedp.CSS("form.eval select[name=action]"), "webhook.create"),
		chromedp.Click(chromedp.CSS("form.eval button[type=submit]")))
	p.waitJS("the decision", `["allow","deny","warn"].includes(document.getElementById("decision")?.textContent) &&
		document.querySelectorAll(".eval-out tbody tr").length > 0`)

	// Time travel to before the suspension.
	before := seed.acme.versionBeforeSuspension
	p.do("travel to before the suspension", chromedp.Click(chromedp.CSS(fmt.Sprintf(`a[data-travel="%d"]`, before))))
	p.waitJS("the state then", fmt.Sprintf(`document.getElementById("timetravel") !== null && document.getElementById("tenant-status")?.textContent === "ACTIVE" &&
		document.getElementById("tenant-version")?.textContent === "%d" && document.querySelectorAll("button[data-cmd]").length === 0`, before))
	p.axe("tenant, time travel")
	p.shot("tenant-time-travel")

	// A stale page: the tenant changes behind its back; its action gets the 412 message.
	p.do("back to now", chromedp.Click(chromedp.CSS("#timetravel a")))
	p.waitJS("the present", `document.getElementById("timetravel") === null && document.getElementById("tenant-status")?.textContent === "SUSPENDED"`)
	s.read(s.must(200, admin, "POST", "/api/v1/tenants/"+seed.acme.id+"/resume", map[string]any{"note": "paid by phone"}))
	p.do("change the edition on the stale page", chromedp.Click(chromedp.CSS(`button[data-cmd="change-edition"]`)))
	p.waitJS("the edition dialog", `document.querySelector("dialog[open] select[name=edition]") !== null`)
	p.do("submit it", chromedp.SetValue(chromedp.CSS("dialog[open] select[name=edition]"), "professional"),
		chromedp.Click(chromedp.CSS(`dialog[open] button[data-submit="change-edition"]`)))
	p.waitJS("the 412 message", `(document.querySelector("dialog[open] [role=alert]")?.textContent || "").includes("changed meanwhile")`)
	p.do("reload from the message", chromedp.Click(chromedp.CSS("dialog[open] [role=alert] button")))
	p.waitJS("the fresh state", `document.querySelector("dialog[open]") === null && document.getElementById("tenant-status")?.textContent === "ACTIVE"`)
	if got := s.must(200, admin, "GET", "/api/v1/tenants/"+seed.acme.id, nil).json(t)["edition"]; got != "essentials" {
		t.Errorf("the stale page's change applied: edition %v", got)
	}

	// Operations: projections, the live feed, a rebuild followed to its end.
	p.do("open the operations", chromedp.Navigate(s.base+"/console/#/ops"))
	p.waitJS("the projections", `document.querySelectorAll("tr[data-projection]").length === 3 && document.getElementById("feed-state")?.textContent === "live"`)
	created := s.must(201, admin, "POST", "/api/v1/tenants", map[string]any{"name": "Feed Watchers", "edition": "free", "region": "eu-central-1"}).json(t)
	p.waitJS("the event in the live feed", fmt.Sprintf(`[...document.querySelectorAll("#feed li")].some(li => li.textContent.includes("TenantCreated") && li.querySelector("a").getAttribute("href").includes(%q))`, created["id"]))
	p.do("watch the job", chromedp.Evaluate[chromedp.Void](`window.jobStates = []; new MutationObserver(() => {
		const s = document.getElementById("job-state"); if (s) window.jobStates.push(s.textContent + " " + document.getElementById("job-progress").value);
	}).observe(document.getElementById("job"), {childList: true, subtree: true, characterData: true})`))
	p.do("rebuild the read model", chromedp.Click(chromedp.CSS(`button[data-rebuild="read-model"]`)))
	p.waitJS("the rebuild's end", `document.getElementById("job-state")?.textContent === "succeeded" && document.getElementById("job-progress").value === 100`)
	states := run(p, "the job's states", chromedp.Evaluate[[]string](`window.jobStates`))
	if len(states) < 2 || !strings.HasPrefix(states[0], "running") || states[len(states)-1] != "succeeded 100" {
		t.Errorf("the rebuild's progress went %q, want running … succeeded 100", states)
	}
	p.waitJS("the job's detail", `/\d+\/\d+ events/.test(document.getElementById("job-detail").textContent)`)
	p.axe("operations")
	p.shot("operations")

	// A 390 px phone: nothing wider than the screen.
	p.do("a phone", chromedp.EmulateViewport(390, 844, chromedp.EmulateScale(1), chromedp.EmulateMobile))
	for _, route := range []string{"#/tenants", "#/tenants/" + seed.acme.id, "#/ops"} {
		p.do("open "+route, chromedp.Navigate(s.base+"/console/"+route))
		p.waitJS(route+" loaded", `document.querySelector("main h1") !== null && document.querySelector("main [aria-busy=true]") === null && document.querySelectorAll("main table").length > 0`)
		wide := run(p, route+" at 390 px", chromedp.Evaluate[[]string](`[...document.querySelectorAll("body *")]
			.filter(e => e.getBoundingClientRect().right > 391 && !e.parentElement.closest(".table-wrap, .feed, pre") && !e.closest(".sr-only, .toast"))
			.slice(0, 8).map(e => e.tagName + "." + e.className + " " + Math.round(e.getBoundingClientRect().right) + "px: " + (e.textContent || "").slice(0, 60))
			.concat(document.documentElement.scrollWidth > 391 ? ["the page scrolls sideways: " + document.documentElement.scrollWidth + "px in " + innerWidth + "px"] : [])`))
		if len(wide) > 0 {
			t.Errorf("%s is wider than a 390 px phone: %q", route, wide)
		}
	}
	p.do("the tenants on a phone", chromedp.Navigate(s.base+"/console/#/tenants"))
	p.waitJS("the list on a phone", `document.querySelectorAll("main tbody tr a").length >= 7`)
	p.screen("tenants-phone")
	p.do("Acme on a phone", chromedp.Navigate(s.base+"/console/#/tenants/"+seed.acme.id))
	p.waitJS("Acme's page on a phone", `document.getElementById("tenant-status") !== null && document.querySelector("#timeline li") !== null`)
	p.screen("tenant-phone")
	p.checkConsole()

	// ---- a read-only token: everything visible, nothing to press ----
	ro := b.page(t, s.base)
	ro.do("open the console", chromedp.Navigate(s.base+"/console/#/tenants/"+seed.acme.externalID))
	ro.signIn(token(t, "auditor@example.com", nil, auth.ScopeRead))
	ro.waitJS("Acme, read-only", `document.querySelector("h1")?.textContent === "Acme Corp" && document.querySelectorAll("button[data-cmd]").length > 0`)
	disabled := run(ro, "the action buttons", chromedp.Evaluate[bool](`[...document.querySelectorAll("button[data-cmd]")].every(b => b.disabled && b.getAttribute("aria-describedby") === "readonly-reason")`))
	if !disabled {
		t.Errorf("a read-only token has an action button enabled")
	}
	ro.waitJS("the reason", `document.getElementById("readonly-reason").textContent.includes("tenancy:write")`)
	ro.axe("tenant, read-only")
	ro.shot("tenant-read-only")
	ro.do("open the operations", chromedp.Navigate(s.base+"/console/#/ops"))
	ro.waitJS("no operations", `document.querySelector("main").textContent.includes("tenancy:admin") && document.querySelector("button[data-rebuild]") === null`)
	ro.checkConsole()

	// ---- a token bound to Globex: Globex only ----
	globex := uuid.MustParse(seed.globex.id)
	gb := b.page(t, s.base)
	gb.do("open the console", chromedp.Navigate(s.base+"/console/"))
	gb.signIn(token(t, "admin@globex.example", &globex, auth.ScopeWrite))
	gb.waitJS("Globex alone", `[...document.querySelectorAll("main tbody tr a")].map(a => a.textContent).join() === "Globex"`)
	gb.waitJS("its counts", `(document.querySelector(".counts")?.textContent || "").includes("1 in all")`)
	gb.do("search Acme's external id", chromedp.SetValue(chromedp.CSS("input[type=search]"), seed.acme.externalID),
		chromedp.Click(chromedp.CSS(".search-row button")))
	gb.waitJS("not found", `(document.querySelector("main [role=alert]")?.textContent || "").includes("No tenant")`)
	gb.do("open Acme by id", chromedp.Navigate(s.base+"/console/#/tenants/"+seed.acme.id))
	gb.waitJS("Acme hidden", `document.querySelector("h1")?.textContent === "Tenant not found" && !document.querySelector("main").textContent.includes("Acme Corp")`)
	gb.axe("tenant not found")
	gb.do("open Globex", chromedp.Navigate(s.base+"/console/#/tenants/"+seed.globex.id))
	gb.waitJS("Globex's actions", `document.querySelector("h1")?.textContent === "Globex" && [...document.querySelectorAll("button[data-cmd]")].some(b => !b.disabled)`)
	gb.checkConsole()
}

// consoleSeed are the tenants the console test works on.
type consoleSeed struct {
	acme, globex seededTenant
}

type seededTenant struct {
	id, externalID string
	// versionBeforeSuspension is Acme's version when the test suspends it.
	versionBeforeSuspension int
}

// seedConsole makes tenants in every shape the pages show: Acme (ACTIVE,
// contacts, labels, metadata, an override), Globex (TRIAL), Initech
// (PROVISIONING), Hooli (SUSPENDED), Umbrella (TERMINATED), Stark
// (ACTIVE, unlimited) and Wayne (PENDING_CANCELLATION).
func seedConsole(t *testing.T, s *testService, tok string) consoleSeed {
	t.Helper()
	create := func(name, edition, region string, extra map[string]any) map[string]any {
		body := map[string]any{"name": name, "edition": edition, "region": region}
		for k, v := range extra {
			body[k] = v
		}
		return s.must(201, tok, "POST", "/api/v1/tenants", body).json(t)
	}
	cmd := func(id, name string, body any) response {
		if body == nil {
			body = map[string]any{}
		}
		return s.must(200, tok, "POST", "/api/v1/tenants/"+id+"/"+name, body)
	}
	acme := create("Acme Corp", "essentials", "eu-west-1", map[string]any{
		"contacts": []map[string]any{
			{"role": "primary", "name": "Ada Lovelace", "email": "ada@acme.example", "phone": "+44 20 7946 0958"},
			{"role": "billing", "name": "Charles Babbage", "email": "billing@acme.example"},
		},
		"labels":   map[string]string{"tier": "gold", "team": "emea"},
		"metadata": map[string]string{"crm_id": "0016g00000XyZ", "csm": "Grace"},
	})
	aid := acme["id"].(string)
	cmd(aid, "complete-provisioning", nil)
	cmd(aid, "convert-trial", nil)
	last := s.must(200, tok, "PUT", "/api/v1/tenants/"+aid+"/overrides/max_users", map[string]any{"value": 250})
	version := int(last.json(t)["version"].(float64))

	globex := create("Globex", "professional", "us-east-1", nil)
	cmd(globex["id"].(string), "complete-provisioning", nil)
	create("Initech", "free", "us-west-2", nil)
	hooli := create("Hooli", "enterprise", "us-west-1", nil)
	cmd(hooli["id"].(string), "complete-provisioning", nil)
	cmd(hooli["id"].(string), "suspend", map[string]any{"reason": "security_threat", "note": "credential stuffing"})
	umbrella := create("Umbrella", "essentials", "eu-central-1", nil)
	cmd(umbrella["id"].(string), "complete-provisioning", nil)
	cmd(umbrella["id"].(string), "terminate", map[string]any{"reason": "customer left", "retention_days": 30})
	stark := create("Stark Industries", "unlimited", "ap-southeast-1", map[string]any{"labels": map[string]string{"tier": "platinum"}})
	cmd(stark["id"].(string), "complete-provisioning", nil)
	cmd(stark["id"].(string), "convert-trial", nil)
	wayne := create("Wayne Enterprises", "enterprise", "ca-central-1", nil)
	cmd(wayne["id"].(string), "complete-provisioning", nil)
	cmd(wayne["id"].(string), "convert-trial", nil)
	cmd(wayne["id"].(string), "cancel", map[string]any{"reason": "moving to a competitor"})
	s.caughtUp()
	return consoleSeed{
		acme:   seededTenant{id: aid, externalID: acme["external_id"].(string), versionBeforeSuspension: version},
		globex: seededTenant{id: globex["id"].(string), externalID: globex["external_id"].(string)},
	}
}

// countEvents counts a tenant's events of one type, from its history.
func countEvents(t *testing.T, s *testService, tok, id, typ string) int {
	t.Helper()
	var h struct {
		Items []struct {
			Type string `json:"type"`
		} `json:"items"`
	}
	if err := json.Unmarshal(s.must(200, tok, "GET", "/api/v1/tenants/"+id+"/history", nil).body, &h); err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, e := range h.Items {
		if e.Type == typ {
			n++
		}
	}
	return n
}

// chromiumPath is the browser the test drives: $CHROMIUM, or Debian's
// chromium. Without one the test fails: the console's tests are part of
// the suite, and CI installs the browser (.ci/run).
func chromiumPath(t *testing.T) string {
	t.Helper()
	for _, p := range []string{os.Getenv("CHROMIUM"), "/usr/bin/chromium", "/usr/bin/chromium-browser"} {
		if p == "" {
			continue
		}
		if path, err := exec.LookPath(p); err == nil {
			return path
		}
	}
	t.Fatal("no Chromium: the console's browser tests need Debian's chromium (apt-get install -y chromium; .ci/run installs it) or CHROMIUM=/path/to/chromium")
	return ""
}

// browser is one headless Chromium for the whole test; each page is a tab.
type browser struct {
	ctx context.Context
}

func startBrowser(t *testing.T, path string) *browser {
	t.Helper()
	alloc, cancelAlloc := chromedp.NewExecAllocator(context.Background(),
		chromedp.ExecPath(path),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-extensions", true),
		chromedp.Flag("disable-default-apps", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.Flag("force-color-profile", "srgb"),
		chromedp.Flag("hide-scrollbars", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1280, 900),
	)
	ctx, cancel := chromedp.NewContext(alloc)
	// The first Do starts the browser, for as long as ctx lasts.
	if err := chromedp.Do(ctx); err != nil {
		cancel()
		cancelAlloc()
		t.Fatalf("start %s: %v", path, err)
	}
	t.Cleanup(func() {
		cancel()
		cancelAlloc()
	})
	return &browser{ctx: ctx}
}

// page is one tab of the browser, and what its console said.
type page struct {
	t    *testing.T
	ctx  context.Context
	base string
	mu   sync.Mutex
	msgs []chromedp.ConsoleMessage
}

func (b *browser) page(t *testing.T, base string) *page {
	t.Helper()
	ctx, cancel := chromedp.NewContext(b.ctx)
	t.Cleanup(cancel)
	p := &page{t: t, ctx: ctx, base: base}
	if err := chromedp.Do(ctx, chromedp.EmulateViewport(1280, 900)); err != nil {
		t.Fatalf("new tab: %v", err)
	}
	msgs := chromedp.Console(ctx)
	go func() {
		for m, err := range msgs {
			if err != nil {
				return
			}
			p.mu.Lock()
			p.msgs = append(p.msgs, m)
			p.mu.Unlock()
		}
	}()
	return p
}

// step bounds one step of the test.
const step = 20 * time.Second

// do runs actions, failing the test with what the page shows.
func (p *page) do(what string, actions ...chromedp.Action[chromedp.Void]) {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, step)
	defer cancel()
	if err := chromedp.Do(ctx, actions...); err != nil {
		p.t.Fatalf("%s: %v\npage: %s", what, err, p.mainText())
	}
}

// run runs one action and returns its value.
func run[T any](p *page, what string, a chromedp.Action[T]) T {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, step)
	defer cancel()
	v, err := chromedp.Run(ctx, a)
	if err != nil {
		p.t.Fatalf("%s: %v\npage: %s", what, err, p.mainText())
	}
	return v
}

// waitJS waits until the expression is true in the page.
func (p *page) waitJS(what, expr string) {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, step)
	defer cancel()
	if _, err := chromedp.Run(ctx, chromedp.Poll[bool](expr, chromedp.WithPollingInterval(40*time.Millisecond), chromedp.WithPollingTimeout(step-time.Second))); err != nil {
		p.t.Fatalf("waiting for %s: %v\npage at %s: %s", what, err, p.location(), p.mainText())
	}
}

func (p *page) mainText() string {
	ctx, cancel := context.WithTimeout(p.ctx, 3*time.Second)
	defer cancel()
	s, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`(document.querySelector("dialog[open]")?.innerText || "") + "\n" + (document.querySelector("main")?.innerText || "")`))
	if len(s) > 3000 {
		s = s[:3000] + "…"
	}
	return s
}

func (p *page) location() string {
	ctx, cancel := context.WithTimeout(p.ctx, 3*time.Second)
	defer cancel()
	s, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`location.href`))
	return s
}

// signIn pastes the token on the sign-in page and waits for the page after it.
func (p *page) signIn(tok string) {
	p.t.Helper()
	p.waitJS("the sign-in form", `document.querySelector("textarea[name=token]") !== null`)
	p.do("sign in", chromedp.SetValue(chromedp.CSS("textarea[name=token]"), tok), chromedp.Click(chromedp.CSS("form.signin button[type=submit]")))
	p.waitJS("signed in", `!location.hash.startsWith("#/signin") && document.getElementById("who").hidden === false`)
}

// axeViolation is a serious or critical accessibility violation.
type axeViolation struct {
	ID     string   `json:"id"`
	Impact string   `json:"impact"`
	Help   string   `json:"help"`
	Nodes  []string `json:"nodes"`
}

// axe runs axe-core on the page as it is and fails on a serious or
// critical violation.
func (p *page) axe(name string) {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, 30*time.Second)
	defer cancel()
	// The page's policy refuses eval; the protocol's own evaluation is not
	// the page's script, so axe-core goes in as one.
	loaded, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`typeof axe !== "undefined"`))
	if err == nil && !loaded {
		err = chromedp.Do(ctx, chromedp.Evaluate[chromedp.Void](axeSource))
	}
	if err != nil {
		p.t.Fatalf("inject axe-core: %v", err)
	}
	vs, err := chromedp.Run(ctx, chromedp.Evaluate[[]axeViolation](`axe.run(document, {resultTypes: ["violations"]}).then(r => r.violations
		.filter(v => v.impact === "serious" || v.impact === "critical")
		.map(v => ({id: v.id, impact: v.impact, help: v.help, nodes: v.nodes.slice(0, 5).map(n => n.target.join(" ") + ": " + (n.failureSummary || ""))})))`,
		chromedp.EvalAwaitPromise))
	if err != nil {
		p.t.Fatalf("axe-core on %s: %v", name, err)
	}
	for _, v := range vs {
		p.t.Errorf("axe-core, %s: %s violation %s (%s):\n  %s", name, v.Impact, v.ID, v.Help, strings.Join(v.Nodes, "\n  "))
	}
}

// shot takes a full-page PNG; with -update-screenshots it goes to docs/console/.
func (p *page) shot(name string) { p.t.Helper(); p.screenshot(name, chromedp.FullScreenshot(100)) }

// screen takes a PNG of what the screen shows (a phone's first screen).
func (p *page) screen(name string) { p.t.Helper(); p.screenshot(name, chromedp.CaptureScreenshot()) }

func (p *page) screenshot(name string, capture chromedp.Action[[]byte]) {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, step)
	defer cancel()
	// Let the toast and transitions settle, and take the focus ring off.
	_ = chromedp.Do(ctx, chromedp.Evaluate[chromedp.Void](`document.getElementById("toast").replaceChildren(); document.activeElement?.blur()`))
	png, err := chromedp.Run(ctx, capture)
	if err != nil {
		p.t.Fatalf("screenshot %s: %v", name, err)
	}
	dir := p.t.TempDir()
	if *updateScreenshots {
		dir = filepath.Join("..", "docs", "console")
		if err := os.MkdirAll(dir, 0o755); err != nil {
			p.t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, name+".png"), png, 0o644); err != nil {
		p.t.Fatal(err)
	}
}

// checkConsole fails on an uncaught exception or a Content-Security-Policy
// violation the page reported. Failed requests (a 404, a 412) are the
// console's own business and are not errors here.
func (p *page) checkConsole() {
	p.t.Helper()
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, m := range p.msgs {
		if m.IsException() || m.Source == "security" || strings.Contains(m.Text, "Content Security Policy") {
			p.t.Errorf("the page's console: %s (%s:%d)", m, m.URL, m.Line+1)
		}
	}
}

// The console's static assets are public and carry the security headers.
func TestConsoleAssetsAreServedWithTheirPolicy(t *testing.T) {
	t.Parallel()
	s := startService(t, serviceOptions{noProjections: true})
	res, err := s.client.Get(s.base + "/console")
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusOK || res.Request.URL.Path != "/console/" {
		t.Fatalf("GET /console ended at %s with %s", res.Request.URL.Path, res.Status)
	}
	if csp := res.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "frame-ancestors 'none'") || !strings.Contains(csp, "script-src 'self'") {
		t.Errorf("Content-Security-Policy %q", csp)
	}
	docs := s.must(200, "", "GET", "/openapi.json", nil)
	if !strings.Contains(string(docs.body), "(/console/)") {
		t.Errorf("the API document (shown at /docs) does not link the console")
	}
}
