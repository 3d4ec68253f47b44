package httpapi_test

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/tenancyhq/tenancy/aggregate"
	"github.com/tenancyhq/tenancy/internal/auth"
	"github.com/tenancyhq/tenancy/sdk"
	"github.com/tenancyhq/tenancy/service"
)

// exchange is one request of the contract scenario and the status it must
// answer.
type exchange struct {
	method, path string
	body         string
	headers      []string
	want         int
	// semantic: the server refuses (400) what no schema can say (a
	// consistency token beyond the store's head, a trial end in the past).
	semantic bool
}

// TestEveryOperationAnswersAsItsDocumentSays is the contract scenario:
// every operation of the document, with valid and invalid requests and
// each error status the API uses (304, 400, 401, 403, 404, 409, 412, 413,
// 415, 422, 503), checked by a third-party OpenAPI 3.1 validator in strict
// mode (internal/contract, run on every response by testService.do). On
// top of the responses, document and server must agree on each request:
// what the document refuses the server refuses (400, 413 or 415), and what
// it allows the server does not refuse with 400 or 415, but for the few
// rules only the server can check (semantic).
func TestEveryOperationAnswersAsItsDocumentSays(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	secret := []byte(strings.Repeat("c", 40))
	v, err := auth.NewVerifier(ctx, auth.Config{Secret: secret})
	if err != nil {
		t.Fatal(err)
	}
	mint := func(scope string) string {
		tok, err := auth.Mint(secret, "contract-"+scope, []string{scope}, nil, time.Hour, "", "")
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	admin, reader := "Bearer "+mint(auth.ScopeAdmin), "Bearer "+mint(auth.ScopeRead)
	s := startServiceWith(t, service.Config{ExternalProvisioning: true, Auth: v})

	covered := map[string]bool{}
	run := func(x exchange) response {
		t.Helper()
		headers := append([]string{"Authorization", admin}, x.headers...)
		var body any
		if x.body != "" {
			body = x.body
		}
		req, err := http.NewRequest(x.method, s.base+x.path, strings.NewReader(x.body))
		if err != nil {
			t.Fatal(err)
		}
		if x.body != "" {
			req.Header.Set("Content-Type", "application/json")
		}
		for i := 0; i+1 < len(headers); i += 2 {
			if headers[i+1] == "" {
				req.Header.Del(headers[i])
			} else {
				req.Header.Set(headers[i], headers[i+1])
			}
		}
		covered[s.contract.Operation(req)] = true
		r := s.do(x.method, x.path, body, headers...)
		if r.status != x.want {
			t.Errorf("%s %s %s: status %d, want %d: %.300s", x.method, x.path, x.body, r.status, x.want, r.body)
		}
		if r.status == 400 {
			// Every 400 names each field and rule, in one shape (a[0].b).
			p := problemOf(t, r)
			errs, _ := p["errors"].([]any)
			if len(errs) == 0 || p["field"] == nil || p["rule"] == nil {
				t.Errorf("%s %s %s: a 400 without field, rule and errors[]: %s", x.method, x.path, x.body, r.body)
			}
			for _, e := range errs {
				if f, _ := e.(map[string]any)["field"].(string); fieldPathShape.MatchString(f) {
					t.Errorf("%s %s: field %q is not in the a[0].b shape", x.method, x.path, f)
				}
			}
		}
		refused := s.contract.CheckRequest(req, []byte(x.body))
		serverRefused := r.status == 400 || r.status == 413 || r.status == 415
		switch {
		case len(refused) > 0 && !serverRefused:
			t.Errorf("%s %s %s: the document refuses it (%s) but the server answered %d", x.method, x.path, x.body, refused[0], r.status)
		case len(refused) == 0 && serverRefused && !x.semantic:
			t.Errorf("%s %s %s: the document allows it but the server answered %d: %.300s", x.method, x.path, x.body, r.status, r.body)
		}
		return r
	}
	ok := func(method, path, body string, want int, headers ...string) response {
		t.Helper()
		return run(exchange{method: method, path: path, body: body, want: want, headers: headers})
	}

	// A tenant through its whole life, every command route once.
	created := ok("POST", "/api/v1/tenants", `{"name": "Contract Co", "edition": "professional", "region": "eu-west-1",
		"contacts": [{"role": "primary", "email": "a@example.com", "name": "A", "phone": "+1 555"}],
		"labels": {"team": "core"}, "metadata": {"crm": "42"}, "compliance_standards": ["GDPR"]}`, 201)
	id := created.json(t)["id"].(string)
	ext := created.json(t)["external_id"].(string)
	tenant := "/api/v1/tenants/" + id
	etag := created.header.Get("ETag")
	ok("GET", tenant, "", 200)
	ok("GET", tenant, "", 304, "If-None-Match", etag)
	ok("GET", "/api/v1/tenants/"+ext, "", 200)
	ok("GET", tenant+"?version=0", "", 200)
	ok("GET", tenant+"?as_of="+time.Now().Add(time.Hour).UTC().Format(time.RFC3339), "", 200)
	ok("POST", tenant+"/complete-provisioning", `{"steps": ["db"]}`, 200)
	ok("PATCH", tenant, `{"name": "Contract Renamed"}`, 200)
	ok("PATCH", tenant, `{"labels": {"team": "edge"}}`, 200)
	ok("POST", tenant+"/rename", `{"name": "Contract Co"}`, 200)
	ok("POST", tenant+"/update-profile", `{"metadata": {"crm": "43"}}`, 200)
	ok("POST", tenant+"/extend-trial", `{"days": 3}`, 200)
	ok("POST", tenant+"/change-edition", `{"edition": "enterprise"}`, 200)
	ok("PUT", tenant+"/policies/ip_allowlist", `{"settings": {"cidrs": ["10.0.0.0/8"]}}`, 200)
	ok("POST", tenant+"/set-policy", `{"type": "session_timeout", "settings": {"minutes": 30}}`, 200)
	ok("POST", tenant+"/remove-policy", `{"type": "session_timeout"}`, 200)
	ok("PUT", tenant+"/overrides/sandbox_environments", `{"enabled": false}`, 200)
	ok("POST", tenant+"/set-override", `{"key": "max_users", "value": 500}`, 200)
	ok("POST", tenant+"/clear-override", `{"key": "max_users"}`, 200)
	ok("GET", tenant+"/entitlements", "", 200)
	ok("GET", tenant+"/transitions", "", 200)
	ok("POST", tenant+"/policy/evaluate", `{"action": "data.read", "context": {"region": "eu-west-1", "source_ip": "10.1.1.1"}}`, 200)
	ok("POST", tenant+"/policy/evaluate", `{"action": "data.read", "context": {"source_ip": "192.168.1.1"}}`, 200)
	ok("POST", tenant+"/billing-status", `{"status": "active", "provider": "stripe", "provider_event_id": "evt_1"}`, 200)
	ok("POST", tenant+"/convert-trial", `{}`, 200)
	ok("POST", tenant+"/suspend", `{"reason": "payment_failed", "note": "n"}`, 200)
	ok("POST", tenant+"/resume", `{"note": "paid"}`, 200)
	ok("POST", tenant+"/migrate-region", `{"target_region": "us-west-2"}`, 200)
	ok("POST", tenant+"/fail-migration", `{"reason": "disk"}`, 200)
	ok("POST", tenant+"/resume", `{}`, 200)
	ok("POST", tenant+"/migrate-region", `{"target_region": "us-west-2"}`, 200)
	ok("POST", tenant+"/rollback-migration", `{"reason": "changed our mind"}`, 200)
	ok("POST", tenant+"/migrate-region", `{"target_region": "us-west-2"}`, 200)
	ok("POST", tenant+"/complete-migration", `{}`, 200)
	ok("POST", tenant+"/cancel", `{"reason": "budget"}`, 200)
	ok("POST", tenant+"/revert-cancellation", `{}`, 200)
	ok("POST", tenant+"/cancel", `{}`, 200)
	ok("POST", tenant+"/complete-cancellation", `{}`, 409) // before effective_at
	ok("POST", tenant+"/terminate", `{"reason": "asked", "retention_days": 30}`, 200)
	ok("POST", tenant+"/restore", `{}`, 200)
	ok("DELETE", tenant+"/policies/ip_allowlist", "", 200)
	ok("DELETE", tenant+"/overrides/sandbox_environments", "", 200)
	ok("POST", tenant+"/terminate", `{}`, 200)
	ok("POST", tenant+"/purge", `{}`, 200)
	ok("GET", tenant, "", 200) // the redacted contacts
	ok("GET", tenant+"/events?limit=5", "", 200)
	ok("GET", tenant+"/events?type=TenantCreated,TenantPurged", "", 200)
	ok("GET", tenant+"/history", "", 200)
	ok("GET", tenant+"/history?limit=3", "", 200)
	ok("GET", tenant+"/export", "", 200)

	// A trial that runs out, the provisioning that fails, the rest of the lifecycle.
	trial := "/api/v1/tenants/" + ok("POST", "/api/v1/tenants", `{"name": "Trial Co", "edition": "free", "trial": true}`, 201).json(t)["id"].(string)
	ok("POST", trial+"/complete-provisioning", `{}`, 200)
	ok("POST", trial+"/activate", `{}`, 200)
	ok("POST", trial+"/expire-trial", `{}`, 409)
	failed := "/api/v1/tenants/" + ok("POST", "/api/v1/tenants", `{"name": "Failed Co", "edition": "free"}`, 201).json(t)["id"].(string)
	ok("POST", failed+"/fail-provisioning", `{"reason": "capacity"}`, 200)

	// Reads of many tenants and the catalog.
	ok("GET", "/api/v1/tenants", "", 200)
	ok("GET", "/api/v1/tenants?status=ACTIVE,TRIAL&edition=free,enterprise&region=us-east-1&billing_status=active&label=team%3Dcore&name_prefix=con&sort=name&order=desc&limit=2", "", 200)
	ok("GET", "/api/v1/tenants?created_after=2020-01-01T00:00:00Z&created_before=2999-01-01T00:00:00Z", "", 200)
	ok("GET", "/api/v1/tenants/stats", "", 200)
	ok("GET", "/api/v1/editions", "", 200)

	// The original service's routes.
	org := ok("POST", "/organizations", `{"name": "Legacy Co", "edition": "professional"}`, 201).json(t)["id"].(string)
	ok("GET", "/organizations/"+org, "", 200)
	ok("PUT", "/organizations/"+org+"/activate", "", 200)
	ok("PUT", "/organizations/"+org+"/suspend", `{"note": "legacy"}`, 200)
	ok("PUT", "/organizations/"+org+"/activate", "", 200)
	ok("POST", "/organizations/"+org+"/policies", `{"action": "data.read"}`, 200)

	// Operators and probes.
	ok("GET", "/api/v1/admin/projections", "", 200)
	job := ok("POST", "/api/v1/admin/projections/read-model/rebuild", "", 202).json(t)["id"].(string)
	ok("GET", "/api/v1/admin/jobs/"+job, "", 200)
	ok("GET", "/api/v1/admin/jobs/no-such-job", "", 404)
	ok("GET", "/api/v1/admin/projections/scheduler/failures", "", 200)
	ok("POST", "/api/v1/admin/projections/scheduler/failures/00000000-0000-4000-8000-000000000000/skip", "", 404)
	ok("POST", "/api/v1/admin/projections/scheduler/retry", "", 200)
	ok("GET", "/api/v1/admin/events/stream?after=soon", "", 400)
	for _, p := range []string{"/", "/health", "/health/live", "/health/ready", "/health/startup", "/health/dependencies",
		"/api/v1/health", "/api/v1/health/live", "/api/v1/health/ready"} {
		ok("GET", p, "", 200)
	}

	// Errors: what the document refuses, the server refuses, and each
	// error status as documented.
	active := "/api/v1/tenants/" + org
	for _, x := range []exchange{
		{method: "POST", path: "/api/v1/tenants", body: `{"name": "", "edition": "free"}`, want: 400},
		{method: "POST", path: "/api/v1/tenants", body: `{"name": "   ", "edition": "free"}`, want: 400},
		{method: "POST", path: "/api/v1/tenants", body: `{"name": "X", "edition": "gold"}`, want: 400},
		{method: "POST", path: "/api/v1/tenants", body: `{"id": "nope", "name": "X", "edition": "free"}`, want: 400},
		{method: "POST", path: "/api/v1/tenants", body: `{"name": "X", "edition": "free", "contacts": [{"role": "primary", "email": "not an address"}]}`, want: 400},
		{method: "POST", path: "/api/v1/tenants", body: `{"name": "X", "edition": "free", "unknown": 1}`, want: 400},
		{method: "POST", path: "/api/v1/tenants", body: `{"name": "X"`, want: 400},
		{method: "POST", path: "/api/v1/tenants", body: `{"name": "X", "edition": "free"}`, headers: []string{"Content-Type", "text/plain"}, want: 415},
		{method: "POST", path: "/api/v1/tenants", body: `{"name": "` + strings.Repeat("x", 2<<20) + `"}`, want: 413},
		{method: "POST", path: "/api/v1/tenants", body: `{"name": "Legacy Co", "edition": "free"}`, want: 409},
		{method: "PATCH", path: active, body: `{}`, want: 400},
		{method: "PATCH", path: active, body: `{"name": ""}`, want: 400},
		{method: "POST", path: active + "/suspend", want: 400},
		{method: "POST", path: active + "/change-edition", want: 400},
		{method: "POST", path: active + "/migrate-region", want: 400},
		{method: "POST", path: active + "/billing-status", want: 400},
		{method: "POST", path: active + "/extend-trial", want: 400},
		{method: "POST", path: active + "/extend-trial", body: `{"days": 0}`, want: 400},
		{method: "POST", path: active + "/suspend", body: `{"reason": "boredom"}`, want: 400},
		{method: "POST", path: active + "/cancel", body: `{"effective_at": "tomorrow"}`, want: 400},
		{method: "POST", path: active + "/activate", body: `{}`, headers: []string{"If-Match", "abc"}, want: 400},
		{method: "POST", path: active + "/activate", body: `{}`, headers: []string{"If-Match", `W/"0"`}, want: 412},
		{method: "POST", path: active + "/restore", body: `{}`, want: 409},
		{method: "PUT", path: active + "/policies/no_such_policy", body: `{"settings": {}}`, want: 400},
		{method: "PUT", path: active + "/policies/session_timeout", body: `{"settings": {"minutes": 1}}`, want: 400, semantic: true},
		{method: "PUT", path: active + "/overrides/max_users", body: `{"value": -1}`, want: 400},
		{method: "PUT", path: active + "/overrides/no_such_key", body: `{"enabled": true}`, want: 400},
		{method: "POST", path: active + "/policy/evaluate", body: `{"action": "nuke"}`, want: 400},
		{method: "GET", path: "/api/v1/tenants?limit=abc", want: 400},
		{method: "GET", path: "/api/v1/tenants?limit=0", want: 400},
		{method: "GET", path: "/api/v1/tenants?limit=201", want: 400},
		{method: "GET", path: "/api/v1/tenants?status=ACTIV", want: 400},
		{method: "GET", path: "/api/v1/tenants?sort=size", want: 400},
		{method: "GET", path: "/api/v1/tenants?order=up", want: 400},
		{method: "GET", path: "/api/v1/tenants?created_after=yesterday", want: 400},
		{method: "GET", path: active + "/events?type=Nope", want: 400},
		{method: "GET", path: active + "?version=x", want: 400},
		{method: "GET", path: active, headers: []string{"X-Consistency-Token", "soon"}, want: 400},
		{method: "GET", path: active, headers: []string{"X-Consistency-Token", "999999999/1"}, want: 400, semantic: true},
		{method: "GET", path: "/api/v1/tenants/00000000-0000-4000-8000-000000000000", want: 404},
		{method: "GET", path: "/api/v1/tenants/nope", want: 404},
		{method: "GET", path: active, headers: []string{"Authorization", ""}, want: 401},
		{method: "GET", path: active, headers: []string{"Authorization", "Bearer nope"}, want: 401},
		{method: "POST", path: active + "/suspend", body: `{"reason": "admin_action"}`, headers: []string{"Authorization", reader}, want: 403},
	} {
		run(x)
	}
	// An Idempotency-Key replayed, then reused with another request.
	key := []string{"Idempotency-Key", "contract-key"}
	first := ok("POST", "/api/v1/tenants", `{"name": "Idem Co", "edition": "free"}`, 201, key...)
	if again := ok("POST", "/api/v1/tenants", `{"name": "Idem Co", "edition": "free"}`, 201, key...); again.header.Get("Idempotent-Replayed") != "true" ||
		!bytes.Equal(again.body, first.body) {
		t.Errorf("replay: %v %s", again.header, again.body)
	}
	ok("POST", "/api/v1/tenants", `{"name": "Other Co", "edition": "free"}`, 422, key...)

	// 503: a read that waits for a consistency token the read model does
	// not reach in time (a replica without projections).
	behind := startServiceWithProjections(t, service.Config{ExternalProvisioning: true, ConsistencyWait: 100 * time.Millisecond}, false)
	r := behind.must(201, "POST", "/api/v1/tenants", `{"name": "Behind Co", "edition": "free"}`)
	behind.must(503, "GET", "/api/v1/tenants?consistent_with="+r.header.Get("X-Consistency-Token"), nil)
	if behind.contract.Operation(mustRequest(t, "GET", behind.base+"/api/v1/tenants")) != "listTenants" {
		t.Error("the checker does not resolve listTenants")
	}

	// The Go SDK's client, its every answer checked too.
	sdkClient, err := sdk.NewClient(s.base, sdk.ClientOptions{Token: strings.TrimPrefix(admin, "Bearer "),
		HTTPClient: &http.Client{Timeout: 30 * time.Second, Transport: s.contract.Transport(http.DefaultTransport, func(v string) {
			t.Errorf("the SDK's request answered what the document does not allow: %s", v)
		})}})
	if err != nil {
		t.Fatal(err)
	}
	res, err := sdkClient.CreateTenant(ctx, sdk.CreateTenant{Name: "SDK Co", Edition: aggregate.EditionFree}, sdk.CommandOptions{IdempotencyKey: "sdk-create"})
	if err != nil || res.Tenant.Status != aggregate.StatusProvisioning || res.ConsistencyToken == "" {
		t.Fatalf("CreateTenant: %+v, %v", res, err)
	}
	sdkID := res.Tenant.ID.String()
	if res, err = sdkClient.Execute(ctx, sdkID, aggregate.CmdCompleteProvisioning, nil, sdk.CommandOptions{IfMatch: &res.Tenant.Version}); err != nil {
		t.Fatalf("complete-provisioning: %v", err)
	}
	if got, err := sdkClient.GetTenant(ctx, sdkID, sdk.ReadOptions{ConsistentWith: res.ConsistencyToken}); err != nil || got.Status != res.Tenant.Status {
		t.Errorf("GetTenant after the command: %+v, %v", got, err)
	}
	var apiErr *sdk.APIError
	if _, err := sdkClient.Execute(ctx, sdkID, aggregate.CmdRestore, nil, sdk.CommandOptions{}); !errors.As(err, &apiErr) || apiErr.Status != 409 {
		t.Errorf("restore of a live tenant: %v", err)
	}
	if _, err := sdkClient.ListTenants(ctx, sdk.ListOptions{Limit: 2}); err != nil {
		t.Errorf("ListTenants: %v", err)
	}

	for _, op := range s.contract.Operations() {
		if !covered[op] {
			t.Errorf("operation %s is not in the scenario", op)
		}
	}
	if len(covered) < 40 {
		t.Errorf("only %d operations covered", len(covered))
	}
}

// fieldPathShape matches a field path in another shape than a[0].b: an
// index after a dot (contacts.0.email) or a JSON Pointer.
var fieldPathShape = regexp.MustCompile(`\.[0-9]+(\.|$)|^/`)

func mustRequest(t *testing.T, method, url string) *http.Request {
	t.Helper()
	r, err := http.NewRequest(method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	return r
}
