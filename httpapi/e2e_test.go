package httpapi_test

import (
	"fmt"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tenancyhq/tenancy/aggregate"
	"github.com/tenancyhq/tenancy/eventstore"
	"github.com/tenancyhq/tenancy/service"
)

var externalIDPattern = regexp.MustCompile(`^ORG-[0-9A-F]{8}$`)

// TestOriginalServiceExampleCreatesAnOrganization is the original service's
// README example, unchanged, against the new service in its default
// configuration (it provisions tenants itself).
func TestOriginalServiceExampleCreatesAnOrganization(t *testing.T) {
	t.Parallel()
	s := startServiceWith(t, service.Config{})
	r := s.must(201, "POST", "/organizations", `{"name": "Test Corp", "edition": "professional", "region": "us-east-1"}`)
	org := r.json(t)
	id, _ := org["id"].(string)
	if id == "" {
		t.Fatalf("no id: %s", r.body)
	}
	if ext, _ := org["external_id"].(string); !externalIDPattern.MatchString(ext) {
		t.Errorf("external_id %q does not match %s", ext, externalIDPattern)
	}
	for k, want := range map[string]string{"name": "Test Corp", "edition": "professional", "status": "PROVISIONING", "region": "us-east-1"} {
		if org[k] != want {
			t.Errorf("%s = %v, want %s", k, org[k], want)
		}
	}
	got := s.must(200, "GET", "/organizations/"+id, nil, "X-Consistency-Token", r.header.Get("X-Consistency-Token")).json(t)
	for _, k := range []string{"id", "external_id", "name", "edition", "region"} {
		if got[k] != org[k] {
			t.Errorf("GET %s = %v, POST said %v", k, got[k], org[k])
		}
	}
	// The service provisions the tenant by itself: it may already be in its trial.
	if got["status"] != "PROVISIONING" && got["status"] != "TRIAL" {
		t.Errorf("GET status %v", got["status"])
	}
	waitFor(t, 10*time.Second, "automatic provisioning", func() bool {
		return s.must(200, "GET", "/organizations/"+id, nil).json(t)["status"] == "TRIAL"
	})
}

// tenantClient drives one tenant through the API and checks every command
// response: status code, the body's status and version, ETag and
// X-Consistency-Token.
type tenantClient struct {
	t       *testing.T
	s       *testService
	id      string
	version int
	// token is the consistency token of the last command.
	token string
}

// command sends a command and checks its response; it returns the body.
func (c *tenantClient) command(method, path string, body any, wantStatus string, wantVersion int) map[string]any {
	c.t.Helper()
	want := 200
	if path == "/api/v1/tenants" {
		want = 201
	}
	r := c.s.must(want, method, path, body)
	tn := r.json(c.t)
	if c.id == "" {
		c.id, _ = tn["id"].(string)
	}
	if tn["id"] != c.id {
		c.t.Fatalf("%s %s answered tenant %v, want %s", method, path, tn["id"], c.id)
	}
	if tn["status"] != wantStatus {
		c.t.Fatalf("%s %s: status %v, want %s: %s", method, path, tn["status"], wantStatus, r.body)
	}
	if v := int(tn["version"].(float64)); v != wantVersion {
		c.t.Fatalf("%s %s: version %d, want %d", method, path, v, wantVersion)
	}
	if et := r.header.Get("ETag"); et != fmt.Sprintf(`W/"%d"`, wantVersion) {
		c.t.Fatalf("%s %s: ETag %q, want W/\"%d\"", method, path, et, wantVersion)
	}
	tok := r.header.Get("X-Consistency-Token")
	pos, err := eventstore.ParsePosition(tok)
	if err != nil {
		c.t.Fatalf("%s %s: X-Consistency-Token %q: %v", method, path, tok, err)
	}
	if c.token != "" {
		prev, _ := eventstore.ParsePosition(c.token)
		if pos.Compare(prev) <= 0 {
			c.t.Fatalf("%s %s: consistency token %s does not move past %s", method, path, pos, prev)
		}
	}
	c.version, c.token = wantVersion, tok
	return tn
}

// read GETs path waiting for the last command (read your writes).
func (c *tenantClient) read(path string) map[string]any {
	c.t.Helper()
	return c.s.must(200, "GET", path, nil, "X-Consistency-Token", c.token).json(c.t)
}

// readStatus checks that the read model shows the tenant in status at the last version.
func (c *tenantClient) readStatus(status string) map[string]any {
	c.t.Helper()
	r := c.s.must(200, "GET", "/api/v1/tenants/"+c.id, nil, "X-Consistency-Token", c.token)
	tn := r.json(c.t)
	if tn["status"] != status || int(tn["version"].(float64)) != c.version {
		c.t.Fatalf("read model: status %v version %v, want %s version %d (read your writes)", tn["status"], tn["version"], status, c.version)
	}
	if et := r.header.Get("ETag"); et != fmt.Sprintf(`W/"%d"`, c.version) {
		c.t.Fatalf("GET ETag %q, want W/\"%d\"", et, c.version)
	}
	return tn
}

// TestTenantLivesItsWholeLifeOverHTTP walks one tenant through every status
// and most commands, checking each response, the read model after each step
// (read your writes), and finally the event history.
func TestTenantLivesItsWholeLifeOverHTTP(t *testing.T) {
	t.Parallel()
	tenantLivesItsWholeLife(t, startService(t))
}

// tenantLivesItsWholeLife is the lifecycle walk, on whichever service (and
// event store) it is given; it returns the tenant's id.
func tenantLivesItsWholeLife(t *testing.T, s *testService) string {
	c := &tenantClient{t: t, s: s}
	base := func() string { return "/api/v1/tenants/" + c.id }

	created := c.command("POST", "/api/v1/tenants", map[string]any{
		"name": "Lifecycle Co", "edition": "essentials", "region": "eu-west-1",
		"labels": map[string]string{"team": "alpha"}, "compliance_standards": []string{"GDPR"},
		"contacts": []map[string]string{{"role": "primary", "name": "Ada Lovelace", "email": "ada@example.com"}},
	}, "PROVISIONING", 0)
	ext, _ := created["external_id"].(string)
	if !externalIDPattern.MatchString(ext) {
		t.Fatalf("external_id %q", ext)
	}
	c.readStatus("PROVISIONING")

	c.command("POST", base()+"/complete-provisioning", map[string]any{"steps": []string{"database", "dns"}}, "TRIAL", 2)
	tn := c.readStatus("TRIAL")
	if tn["trial_ends_at"] == nil || tn["billing_status"] != "trialing" {
		t.Errorf("trial fields: trial_ends_at %v billing_status %v", tn["trial_ends_at"], tn["billing_status"])
	}
	c.command("POST", base()+"/activate", nil, "ACTIVE", 3)
	c.readStatus("ACTIVE")

	// PATCH: a rename, a profile change, and both at once.
	tn = c.command("PATCH", base(), map[string]any{"name": "Lifecycle Company"}, "ACTIVE", 4)
	if tn["name"] != "Lifecycle Company" {
		t.Errorf("rename: name %v", tn["name"])
	}
	tn = c.command("PATCH", base(), map[string]any{"labels": map[string]string{"team": "beta", "tier": "gold"}}, "ACTIVE", 5)
	if l, _ := tn["labels"].(map[string]any); l["team"] != "beta" || l["tier"] != "gold" {
		t.Errorf("labels %v", tn["labels"])
	}
	tn = c.command("PATCH", base(), map[string]any{"name": "Lifecycle Corp", "metadata": map[string]string{"crm": "42"}}, "ACTIVE", 7)
	if tn["name"] != "Lifecycle Corp" || tn["metadata"].(map[string]any)["crm"] != "42" {
		t.Errorf("rename and profile: name %v metadata %v", tn["name"], tn["metadata"])
	}
	tn = c.readStatus("ACTIVE")
	if tn["name"] != "Lifecycle Corp" || tn["labels"].(map[string]any)["tier"] != "gold" {
		t.Errorf("read model after PATCH: name %v labels %v", tn["name"], tn["labels"])
	}

	tn = c.command("POST", base()+"/suspend", map[string]any{"reason": "payment_failed", "note": "card declined"}, "SUSPENDED", 8)
	if susp, _ := tn["suspension"].(map[string]any); susp["reason"] != "payment_failed" || susp["severity"] == "" {
		t.Errorf("suspension %v", tn["suspension"])
	}
	c.readStatus("SUSPENDED")
	c.command("POST", base()+"/resume", map[string]any{"note": "paid"}, "ACTIVE", 9)
	c.readStatus("ACTIVE")
	tn = c.command("POST", base()+"/change-edition", map[string]any{"edition": "enterprise"}, "ACTIVE", 10)
	if tn["edition"] != "enterprise" {
		t.Errorf("edition %v", tn["edition"])
	}

	// Policies, overrides, entitlements and evaluation on an enterprise tenant.
	c.command("PUT", base()+"/policies/ip_allowlist", map[string]any{"settings": map[string]any{"cidrs": []string{"10.0.0.0/8"}}}, "ACTIVE", 11)
	c.command("PUT", base()+"/overrides/max_users", map[string]any{"value": 500}, "ACTIVE", 12)
	c.command("PUT", base()+"/overrides/sandbox_environments", map[string]any{"enabled": false}, "ACTIVE", 13)
	ent := c.read(base() + "/entitlements")
	if ent["edition"] != "enterprise" || ent["limits"].(map[string]any)["max_users"] != 500.0 ||
		ent["features"].(map[string]any)["sandbox_environments"] != false || ent["features"].(map[string]any)["ip_allowlist"] != true {
		t.Errorf("entitlements %v", ent)
	}
	if o, _ := ent["overrides"].(map[string]any); o["limits"].(map[string]any)["max_users"] != 500.0 {
		t.Errorf("entitlements overrides %v", ent["overrides"])
	}
	evaluate := func(body map[string]any) map[string]any {
		t.Helper()
		return s.must(200, "POST", base()+"/policy/evaluate", body, "X-Consistency-Token", c.token).json(t)
	}
	if d := evaluate(map[string]any{"action": "data.read", "context": map[string]any{"source_ip": "10.1.2.3"}}); d["decision"] != "allow" {
		t.Errorf("data.read from the allowlist: %v", d)
	}
	if d := evaluate(map[string]any{"action": "data.read", "context": map[string]any{"source_ip": "192.168.1.1"}}); d["decision"] != "deny" || len(d["rules"].([]any)) == 0 {
		t.Errorf("data.read from outside the allowlist: %v", d)
	}
	if d := evaluate(map[string]any{"action": "sandbox.create", "context": map[string]any{"source_ip": "10.1.2.3"}}); d["decision"] != "deny" {
		t.Errorf("sandbox.create with the feature overridden off: %v", d)
	}
	// The original route answers the same.
	if d := s.must(200, "POST", "/organizations/"+c.id+"/policies", map[string]any{"action": "data.read", "context": map[string]any{"source_ip": "10.1.2.3"}},
		"X-Consistency-Token", c.token).json(t); d["decision"] != "allow" {
		t.Errorf("legacy evaluate: %v", d)
	}
	c.command("DELETE", base()+"/overrides/sandbox_environments", nil, "ACTIVE", 14)
	c.command("DELETE", base()+"/policies/ip_allowlist", nil, "ACTIVE", 15)
	tn = c.readStatus("ACTIVE")
	if len(tn["policies"].(map[string]any)) != 0 {
		t.Errorf("policies after DELETE: %v", tn["policies"])
	}

	tn = c.command("POST", base()+"/cancel", map[string]any{"reason": "budget"}, "PENDING_CANCELLATION", 16)
	if tn["cancellation"] == nil {
		t.Errorf("no cancellation: %v", tn)
	}
	c.readStatus("PENDING_CANCELLATION")
	c.command("POST", base()+"/revert-cancellation", nil, "ACTIVE", 17)
	c.readStatus("ACTIVE")
	tn = c.command("POST", base()+"/terminate", map[string]any{"reason": "asked", "retention_days": 10}, "TERMINATED", 18)
	if term, _ := tn["termination"].(map[string]any); term["data_retention_until"] == nil {
		t.Errorf("termination %v", tn["termination"])
	}
	c.readStatus("TERMINATED")
	c.command("POST", base()+"/restore", nil, "ACTIVE", 19)
	c.readStatus("ACTIVE")
	c.command("POST", base()+"/terminate", nil, "TERMINATED", 20)
	tn = c.command("POST", base()+"/purge", nil, "PURGED", 21)
	if tn["purged_at"] == nil || len(tn["allowed_commands"].([]any)) != 0 {
		t.Errorf("purged: purged_at %v allowed_commands %v", tn["purged_at"], tn["allowed_commands"])
	}
	tn = c.readStatus("PURGED")
	if contacts, _ := tn["contacts"].([]any); len(contacts) > 0 && contacts[0].(map[string]any)["email"] == "ada@example.com" {
		t.Errorf("a purged tenant's contacts still show personal data: %v", contacts)
	}

	// By external id, on the new and the original routes.
	for _, p := range []string{"/api/v1/tenants/" + ext, "/organizations/" + ext} {
		if got := c.read(p); got["id"] != c.id || got["status"] != "PURGED" {
			t.Errorf("GET %s: id %v status %v", p, got["id"], got["status"])
		}
	}
	tr := c.read(base() + "/transitions")
	if tr["status"] != "PURGED" || len(tr["allowed_commands"].([]any)) != 0 || len(tr["transitions"].([]any)) != 0 {
		t.Errorf("transitions of a purged tenant: %v", tr)
	}

	// The history, oldest first.
	wantTypes := []string{"TenantCreated", "ProvisioningCompleted", "TrialStarted", "TenantActivated",
		"TenantRenamed", "LabelsUpdated", "TenantRenamed", "MetadataUpdated",
		"TenantSuspended", "TenantResumed", "EditionUpgraded",
		"PolicySet", "LimitOverrideSet", "FeatureOverrideSet", "FeatureOverrideCleared", "PolicyRemoved",
		"CancellationRequested", "CancellationReverted", "TenantTerminated", "TenantRestored", "TenantTerminated", "TenantPurged"}
	var gotTypes []string
	cursor := ""
	for page := 0; ; page++ {
		q := "?limit=7"
		if cursor != "" {
			q += "&cursor=" + url.QueryEscape(cursor)
		}
		ev := c.read(base() + "/events" + q)
		for i, it := range ev["items"].([]any) {
			e := it.(map[string]any)
			if int(e["version"].(float64)) != len(gotTypes) {
				t.Errorf("page %d item %d: version %v, want %d", page, i, e["version"], len(gotTypes))
			}
			gotTypes = append(gotTypes, e["type"].(string))
		}
		cursor, _ = ev["next_cursor"].(string)
		if cursor == "" {
			break
		}
	}
	if !slices.Equal(gotTypes, wantTypes) {
		t.Errorf("event types:\n got %v\nwant %v", gotTypes, wantTypes)
	}
	ev := c.read(base() + "/events?type=TenantTerminated,TenantRestored")
	if n := len(ev["items"].([]any)); n != 3 {
		t.Errorf("events filtered by type: %d items, want 3", n)
	}
	// The transitions of a live tenant come from the lifecycle table,
	// narrowed by its state: created with a trial, provisioning leads to TRIAL.
	other := s.must(201, "POST", "/api/v1/tenants", map[string]any{"name": "Transitions Co", "edition": "free", "region": "us-west-2"})
	otherID := other.json(t)["id"].(string)
	tr = s.must(200, "GET", "/api/v1/tenants/"+otherID+"/transitions", nil, "X-Consistency-Token", other.header.Get("X-Consistency-Token")).json(t)
	var cmds []string
	for _, x := range tr["transitions"].([]any) {
		cmds = append(cmds, x.(map[string]any)["command"].(string)+"->"+x.(map[string]any)["to"].(string))
	}
	if want := []string{"complete-provisioning->TRIAL", "fail-provisioning->TERMINATED"}; !slices.Equal(cmds, want) {
		t.Errorf("transitions of a PROVISIONING tenant: %v, want %v", cmds, want)
	}
	return c.id
}

// TestEditionCatalogIsServed checks GET /api/v1/editions against the catalog.
func TestEditionCatalogIsServed(t *testing.T) {
	t.Parallel()
	s := startService(t)
	cat := s.must(200, "GET", "/api/v1/editions", nil).json(t)
	if cat["version"] != aggregate.DefaultCatalog().Version() {
		t.Errorf("catalog version %v", cat["version"])
	}
	var names []aggregate.Edition
	for _, e := range cat["editions"].([]any) {
		names = append(names, aggregate.Edition(e.(map[string]any)["name"].(string)))
	}
	if !slices.Equal(names, aggregate.Editions()) {
		t.Errorf("editions %v, want %v", names, aggregate.Editions())
	}
}

// TestListFiltersSelectTenants checks each list filter of GET
// /api/v1/tenants over HTTP against a handful of tenants.
func TestListFiltersSelectTenants(t *testing.T) {
	t.Parallel()
	s := startService(t)
	ids := map[string]string{}
	var token string
	create := func(name string, body map[string]any, verbs ...string) {
		t.Helper()
		body["name"] = name
		r := s.must(201, "POST", "/api/v1/tenants", body)
		id := r.json(t)["id"].(string)
		ids[name], token = id, r.header.Get("X-Consistency-Token")
		for _, v := range verbs {
			token = s.must(200, "POST", "/api/v1/tenants/"+id+"/"+v, nil).header.Get("X-Consistency-Token")
		}
	}
	create("Filter Alpha", map[string]any{"edition": "free", "region": "us-east-1", "labels": map[string]string{"team": "red"}})
	create("Filter Beta", map[string]any{"edition": "professional", "region": "eu-central-1", "labels": map[string]string{"team": "blue"}}, "complete-provisioning")
	create("Filter Gamma", map[string]any{"edition": "enterprise", "region": "eu-central-1", "trial": false, "labels": map[string]string{"team": "red", "tier": "gold"}}, "complete-provisioning")
	create("Other Delta", map[string]any{"edition": "professional", "region": "ap-south-1"}, "complete-provisioning")

	list := func(query string) []string {
		t.Helper()
		page := s.must(200, "GET", "/api/v1/tenants?"+query, nil, "X-Consistency-Token", token).json(t)
		var names []string
		for _, it := range page["items"].([]any) {
			names = append(names, it.(map[string]any)["name"].(string))
		}
		slices.Sort(names)
		return names
	}
	for _, tc := range []struct {
		query string
		want  []string
	}{
		{"", []string{"Filter Alpha", "Filter Beta", "Filter Gamma", "Other Delta"}},
		{"status=PROVISIONING", []string{"Filter Alpha"}},
		{"status=TRIAL", []string{"Filter Beta", "Other Delta"}},
		{"status=ACTIVE,PROVISIONING", []string{"Filter Alpha", "Filter Gamma"}},
		{"edition=professional", []string{"Filter Beta", "Other Delta"}},
		{"edition=free&edition=enterprise", []string{"Filter Alpha", "Filter Gamma"}},
		{"region=eu-central-1", []string{"Filter Beta", "Filter Gamma"}},
		{"region=eu-central-1&status=ACTIVE", []string{"Filter Gamma"}},
		{"label=team%3Dred", []string{"Filter Alpha", "Filter Gamma"}},
		{"label=team%3Dred&label=tier%3Dgold", []string{"Filter Gamma"}},
		{"label=tier", []string{"Filter Gamma"}},
		{"name_prefix=filter", []string{"Filter Alpha", "Filter Beta", "Filter Gamma"}},
		{"name_prefix=FILTER%20%20g", []string{"Filter Gamma"}},
		{"name_prefix=nobody", nil},
		{"billing_status=active", []string{"Filter Gamma"}},
		{"sort=name&order=desc&limit=2", []string{"Filter Gamma", "Other Delta"}},
	} {
		if got := list(tc.query); !slices.Equal(got, tc.want) {
			t.Errorf("GET /api/v1/tenants?%s = %v, want %v", tc.query, got, tc.want)
		}
	}
	for _, tc := range []struct{ query, field string }{
		{"status=ALIVE", "status"},
		{"edition=gold", "edition"},
		{"region=mars-1", "region"},
		{"limit=0", "limit"},
		{"limit=x", "limit"},
		{"sort=size", "sort"},
		{"cursor=bogus", "cursor"},
		{"created_after=yesterday", "created_after"},
	} {
		r := s.do("GET", "/api/v1/tenants?"+tc.query, nil)
		if r.status != 400 {
			t.Errorf("GET /api/v1/tenants?%s: %d, want 400: %.300s", tc.query, r.status, r.body)
			continue
		}
		p := problemOf(t, r)
		if p["field"] != tc.field || p["rule"] == nil || p["rule"] == "" {
			t.Errorf("GET /api/v1/tenants?%s: field %v rule %v, want field %s and a rule", tc.query, p["field"], p["rule"], tc.field)
		}
	}
}

// TestEventMetadataCarriesCorrelationAndTrace: the correlation id and a
// well-formed traceparent reach the event's metadata; a malformed
// traceparent does not.
func TestEventMetadataCarriesCorrelationAndTrace(t *testing.T) {
	t.Parallel()
	s := startService(t)
	const trace = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	r := s.must(201, "POST", "/api/v1/tenants", map[string]any{"name": "Trace Co", "edition": "free", "region": "us-east-1"},
		"X-Correlation-ID", "corr-123", "traceparent", trace)
	if r.header.Get("X-Correlation-ID") != "corr-123" {
		t.Errorf("X-Correlation-ID %q", r.header.Get("X-Correlation-ID"))
	}
	id := r.json(t)["id"].(string)
	r = s.must(200, "POST", "/api/v1/tenants/"+id+"/complete-provisioning", nil, "traceparent", strings.Repeat("junk", 100))
	ev := s.must(200, "GET", "/api/v1/tenants/"+id+"/events", nil, "X-Consistency-Token", r.header.Get("X-Consistency-Token")).json(t)
	items := ev["items"].([]any)
	if len(items) != 3 {
		t.Fatalf("%d events", len(items))
	}
	first := items[0].(map[string]any)["metadata"].(map[string]any)
	if first["correlation_id"] != "corr-123" || first["trace_parent"] != trace || first["actor"] == nil {
		t.Errorf("metadata of the create: %v", first)
	}
	if second := items[1].(map[string]any)["metadata"].(map[string]any); second["trace_parent"] != nil {
		t.Errorf("a malformed traceparent was kept: %v", second)
	}
}
