package httpapi_test

import (
	"bytes"
	"context"
	"mime"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/tenancyhq/tenancy/aggregate"
	"github.com/tenancyhq/tenancy/internal/pgtest"
	"github.com/tenancyhq/tenancy/service"
)

// fuzzRoutes are the routes with a request body or parameters to decode, with
// one valid body each. {id} is a tenant of the fuzz target's database, {new}
// a PROVISIONING one, {ext} an external id.
var fuzzRoutes = []struct {
	method, path, valid string
}{
	{"POST", "/api/v1/tenants", `{"name": "Fuzz Co", "edition": "enterprise", "region": "eu-west-1", "trial": true, "trial_days": 30, "labels": {"team": "a"}, "metadata": {"k": "v"}, "contacts": [{"role": "primary", "email": "a@example.com", "name": "A"}], "compliance_standards": ["GDPR"]}`},
	{"GET", "/api/v1/tenants?status=ACTIVE&edition=free,enterprise&region=eu-west-1&label=team%3Da&name_prefix=fu&sort=name&order=desc&limit=5", ""},
	{"GET", "/api/v1/tenants/{id}", ""},
	{"GET", "/api/v1/tenants/{ext}", ""},
	{"PATCH", "/api/v1/tenants/{id}", `{"name": "Fuzz Renamed", "labels": {"team": "b"}, "metadata": {"x": "y"}, "compliance_standards": ["SOC2"], "contacts": []}`},
	{"POST", "/api/v1/tenants/{new}/complete-provisioning", `{"steps": ["db"]}`},
	{"POST", "/api/v1/tenants/{new}/fail-provisioning", `{"reason": "capacity"}`},
	{"POST", "/api/v1/tenants/{id}/activate", `{}`},
	{"POST", "/api/v1/tenants/{id}/suspend", `{"reason": "payment_failed", "severity": "soft", "note": "n", "auto_resume_at": "2099-01-01T00:00:00Z"}`},
	{"POST", "/api/v1/tenants/{id}/resume", `{"note": "ok"}`},
	{"POST", "/api/v1/tenants/{id}/extend-trial", `{"days": 7}`},
	{"POST", "/api/v1/tenants/{id}/convert-trial", `{}`},
	{"POST", "/api/v1/tenants/{id}/cancel", `{"effective_at": "2099-01-01T00:00:00Z", "reason": "r"}`},
	{"POST", "/api/v1/tenants/{id}/revert-cancellation", `{}`},
	{"POST", "/api/v1/tenants/{id}/migrate-region", `{"target_region": "us-west-2"}`},
	{"POST", "/api/v1/tenants/{id}/complete-migration", `{}`},
	{"POST", "/api/v1/tenants/{id}/fail-migration", `{"reason": "r"}`},
	{"POST", "/api/v1/tenants/{id}/rollback-migration", `{"reason": "r"}`},
	{"POST", "/api/v1/tenants/{id}/terminate", `{"reason": "r", "retention_days": 30}`},
	{"POST", "/api/v1/tenants/{id}/restore", `{}`},
	{"POST", "/api/v1/tenants/{id}/purge", `{}`},
	{"POST", "/api/v1/tenants/{id}/change-edition", `{"edition": "professional"}`},
	{"POST", "/api/v1/tenants/{id}/billing-status", `{"status": "past_due", "provider": "stripe", "provider_event_id": "evt_1", "occurred_at": "2026-01-01T00:00:00Z"}`},
	{"PUT", "/api/v1/tenants/{id}/policies/ip_allowlist", `{"enforced": true, "settings": {"cidrs": ["10.0.0.0/8"]}}`},
	{"PUT", "/api/v1/tenants/{id}/policies/access_hours", `{"settings": {"start_hour": 8, "end_hour": 18, "days": ["mon"]}}`},
	{"DELETE", "/api/v1/tenants/{id}/policies/ip_allowlist", ""},
	{"PUT", "/api/v1/tenants/{id}/overrides/max_users", `{"value": 100}`},
	{"PUT", "/api/v1/tenants/{id}/overrides/sso", `{"enabled": false}`},
	{"DELETE", "/api/v1/tenants/{id}/overrides/max_users", ""},
	{"GET", "/api/v1/tenants/{id}/events?type=TenantCreated&limit=3&after=2020-01-01T00:00:00Z", ""},
	{"GET", "/api/v1/tenants/{id}/entitlements", ""},
	{"GET", "/api/v1/tenants/{id}/transitions", ""},
	{"POST", "/api/v1/tenants/{id}/policy/evaluate", `{"action": "user.create", "resource": "users", "context": {"region": "eu-west-1", "source_ip": "10.0.0.1", "usage": {"max_users": 3}, "time": "2026-01-01T12:00:00Z"}}`},
	{"GET", "/api/v1/editions", ""},
	{"POST", "/organizations", `{"name": "Legacy Fuzz", "edition": "free", "region": "us-east-1"}`},
	{"GET", "/organizations/{ext}", ""},
	{"PUT", "/organizations/{id}/suspend", `{"reason": "admin_action"}`},
	{"PUT", "/organizations/{id}/activate", ""},
	{"POST", "/organizations/{id}/policies", `{"action": "data.read"}`},
	{"GET", "/health", ""},
	{"GET", "/health/dependencies", ""},
	{"GET", "/openapi.json", ""},
}

// invalidBodies are sent to every route that takes a body.
var invalidBodies = []string{
	``, `{`, `[]`, `null`, `"x"`, `{"unknown": 1}`, `{} {}`, `{"name": 5}`,
	`{"name": "\u0000", "note": "\u0000", "reason": "\u0000", "steps": ["\u0000"]}`,
	`{"edition": "gold", "region": "mars-1", "reason": "boredom", "days": -1, "retention_days": 1e9, "status": "x"}`,
	`{"effective_at": "tomorrow", "auto_resume_at": "1999-01-01T00:00:00Z", "occurred_at": 5}`,
	`{"settings": [], "enforced": "yes", "value": -1, "enabled": 1}`,
	`{"action": "nuke", "context": {"usage": {"max_users": -5}, "source_ip": "x", "time": "noon"}}`,
	`{"labels": {"Bad Key": "v"}, "metadata": {"": ""}, "contacts": [{"role": "cto", "email": "not an address"}]}`,
}

// FuzzRequests sends arbitrary method, path, body and headers to the API's
// http.Handler, in process, backed by one real database for the whole run.
// Whatever comes in, the API must not panic, must not answer 5xx (but the
// documented 503 of a read whose wait for a consistency token, or for the
// caller's own last write, ran out), and
// must answer every error as application/problem+json.
func FuzzRequests(f *testing.F) {
	for _, r := range fuzzRoutes {
		f.Add(r.method, r.path, []byte(r.valid), "", "", "", "application/json")
		if r.method == "GET" || r.method == "DELETE" {
			f.Add(r.method, r.path+"?limit=-1&cursor=%ff&type=Nope&status=x", []byte(nil), `W/"1"`, "", "1/1", "")
			continue
		}
		for _, b := range invalidBodies {
			f.Add(r.method, r.path, []byte(b), "", "", "", "application/json")
		}
		f.Add(r.method, r.path, []byte(r.valid), `W/"0"`, "key-"+r.path, "", "application/json")
		f.Add(r.method, r.path, []byte(r.valid), `"x"`, strings.Repeat("k", 300), "bogus", "text/plain")
	}
	// NUL characters, which Postgres text and jsonb cannot hold, in each kind of string field.
	for _, r := range []struct{ method, path, body string }{
		{"POST", "/api/v1/tenants/{id}/suspend", `{"reason": "admin_action", "note": "a\u0000b"}`},
		{"POST", "/api/v1/tenants/{id}/terminate", `{"reason": "\u0000"}`},
		{"POST", "/api/v1/tenants/{new}/complete-provisioning", `{"steps": ["\u0000"]}`},
		{"POST", "/api/v1/tenants/{id}/billing-status", `{"status": "active", "provider_event_id": "\u0000", "provider": "\u0000"}`},
		{"PATCH", "/api/v1/tenants/{id}", `{"metadata": {"k\u0000": "\u0000"}, "contacts": [{"role": "primary", "email": "a@example.com", "name": "\u0000", "phone": "\u0000"}]}`},
		{"POST", "/api/v1/tenants", `{"name": "Nul", "edition": "free", "region": "us-east-1", "metadata": {"k": "\u0000"}}`},
		{"POST", "/api/v1/tenants/{id}/policy/evaluate", `{"action": "data.read", "resource": "\u0000"}`},
	} {
		f.Add(r.method, r.path, []byte(r.body), "", "", "", "application/json")
	}
	f.Add("GET", "/api/v1/tenants/{id}", []byte(nil), "", "", "999999999/1", "")
	f.Add("GET", "/nowhere", []byte(nil), "", "", "", "")
	f.Add("BREW", "/api/v1/tenants", []byte(nil), "", "", "", "")

	s := fuzzTarget(f)
	f.Fuzz(func(t *testing.T, method, path string, body []byte, ifMatch, idemKey, token, contentType string) {
		path = strings.NewReplacer("{id}", s.id, "{new}", s.newID, "{ext}", s.ext).Replace(path)
		req, err := http.NewRequest(method, "http://tenancy.test"+path, bytes.NewReader(body))
		if err != nil || !strings.HasPrefix(path, "/") {
			return // not a request a client could send
		}
		for name, v := range map[string]string{"If-Match": ifMatch, "Idempotency-Key": idemKey, "X-Consistency-Token": token, "Content-Type": contentType} {
			if v != "" && validHeaderValue(v) {
				req.Header.Set(name, v)
			}
		}
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		rec := httptest.NewRecorder()
		s.handler.ServeHTTP(rec, req.WithContext(ctx))
		res := response{status: rec.Code, header: rec.Header(), body: rec.Body.Bytes()}

		if res.status >= 500 {
			mt, _, _ := mime.ParseMediaType(res.header.Get("Content-Type"))
			// A read waits (20 ms here) for a consistency token or for the
			// caller's own last write: the 503 of a wait that ran out.
			consistencyWait := res.status == 503 && mt == "application/problem+json" &&
				bytes.Contains(res.body, []byte(`"type":"https://tenancy.dev/problems/read-model-behind"`))
			if !consistencyWait {
				t.Fatalf("%s %s (If-Match %q, Idempotency-Key %q, X-Consistency-Token %q, Content-Type %q)\nbody %q\nanswered %d: %s",
					method, path, ifMatch, idemKey, token, contentType, body, res.status, res.body)
			}
		}
		if res.status >= 400 && method != http.MethodHead {
			if msg := problemError(res); msg != "" {
				t.Fatalf("%s %s body %q: %s", method, path, body, msg)
			}
		}
	})
}

// fuzzService is the service a fuzz run talks to.
type fuzzService struct {
	handler        http.Handler
	id, newID, ext string
}

// fuzzTarget opens the service once for the fuzz target (each fuzzing
// worker process makes its own), with projections running so reads and
// consistency tokens work, and a short consistency wait so tokens from the
// future do not slow the run.
func fuzzTarget(f *testing.F) *fuzzService {
	f.Helper()
	ctx := context.Background()
	a, err := service.Open(ctx, service.Config{DatabaseURL: pgtest.NewDatabase(f), HTTPAddr: "127.0.0.1:0", Migrate: true, Projections: true,
		ConsistencyWait: 20 * time.Millisecond, ExternalProvisioning: true, DataDir: f.TempDir()})
	if err != nil {
		f.Fatalf("service.Open: %v", err)
	}
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- a.Run(runCtx) }()
	f.Cleanup(func() {
		stop()
		if err := <-done; err != nil {
			f.Errorf("Run: %v", err)
		}
		a.Close()
	})
	create := func(name string, trial bool, verbs ...aggregate.Command) (string, string) {
		res, err := a.Commands.Create(ctx, aggregate.Create{Name: name, Edition: aggregate.Editions()[3], Region: "eu-west-1", Trial: &trial}, aggregate.Metadata{})
		if err != nil {
			f.Fatal(err)
		}
		last := res.Position
		for _, v := range verbs {
			r, err := a.Commands.Execute(ctx, commandsRequest(res.TenantID, v))
			if err != nil {
				f.Fatal(err)
			}
			last = r.Position
		}
		// The read model holds the targets before the first request: with
		// the short consistency wait, a read of one still being projected
		// would answer 503 (read-model-behind).
		if err := a.Reader.WaitFor(ctx, last, 30*time.Second); err != nil {
			f.Fatal(err)
		}
		return res.TenantID.String(), res.Tenant.ExternalID
	}
	id, ext := create("Fuzz Target", false, aggregate.CompleteProvisioning{})
	newID, _ := create("Fuzz New", true)
	return &fuzzService{handler: a.Handler(), id: id, newID: newID, ext: ext}
}

// validHeaderValue reports whether net/http would send v as a header value.
func validHeaderValue(v string) bool {
	for i := 0; i < len(v); i++ {
		if c := v[i]; (c < 0x20 && c != '\t') || c == 0x7f {
			return false
		}
	}
	return len(v) < 4096
}
