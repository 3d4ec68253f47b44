package service_test

import (
	"net/http"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/tenancyhq/tenancy/internal/auth"
	"github.com/tenancyhq/tenancy/internal/pgtest"
)

// TestDatabaseOutageAnswers503: with its database stopped, the service
// answers commands and reads 503 with Retry-After (a problem, never a 500),
// readiness fails, and everything works again once the database is back,
// without a restart.
func TestDatabaseOutageAnswers503(t *testing.T) {
	t.Parallel()
	db := pgtest.StartCluster(t)
	s := startService(t, serviceOptions{auth: true, databaseURL: db.DatabaseURL("tenancy")})
	admin := token(t, "ops", nil, auth.ScopeAdmin)
	tenant := createTenant(s, admin, "Outage "+uuid.NewString()[:8])
	path := "/api/v1/tenants/" + tenant["id"].(string)

	db.Stop()
	off := false
	for _, r := range []struct{ method, path string }{
		{"POST", "/api/v1/tenants"},
		{"POST", path + "/suspend"},
		{"PATCH", path},
		{"GET", path},
		{"GET", "/api/v1/tenants"},
		{"GET", path + "/events"},
		{"GET", "/health/ready"},
	} {
		var body any
		switch {
		case r.method == "POST" && r.path == "/api/v1/tenants":
			body = map[string]any{"name": "During Outage", "edition": "free", "region": "eu-west-1", "trial": &off}
		case r.method == "POST":
			body = map[string]any{"reason": "admin_action"}
		case r.method == "PATCH":
			body = map[string]any{"labels": map[string]string{"down": "yes"}}
		}
		got := s.do(admin, r.method, r.path, body, "Idempotency-Key", "outage-"+r.method+r.path)
		if got.status != http.StatusServiceUnavailable {
			t.Errorf("%s %s with the database down: %d %s, want 503", r.method, r.path, got.status, got.body)
			continue
		}
		if r.path != "/health/ready" && (got.header.Get("Retry-After") == "" || got.header.Get("Content-Type") != "application/problem+json") {
			t.Errorf("%s %s: 503 without Retry-After or problem+json: %v", r.method, r.path, got.header)
		}
	}

	db.Start()
	deadline := time.Now().Add(15 * time.Second)
	var got response
	for {
		got = s.do(admin, "POST", path+"/suspend", map[string]any{"reason": "admin_action"}, "Idempotency-Key", "outage-POST"+path+"/suspend")
		if got.status == http.StatusOK {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("15 s after the database returned: %d %s", got.status, got.body)
		}
		time.Sleep(100 * time.Millisecond)
	}
	// The read model catches up too (an immediate shutdown may have lost
	// its last asynchronous commits, checkpoint included: they apply again).
	s.read(got)
	if st := s.must(http.StatusOK, admin, "GET", path, nil).json(t)["status"]; st != "SUSPENDED" {
		t.Fatalf("after the outage the tenant reads %v, want SUSPENDED", st)
	}
}
