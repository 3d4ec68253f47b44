package service_test

import (
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/google/uuid"

	"github.com/tenancyhq/tenancy/internal/auth"
)

// TestClientsReadTheirOwnWrites: with no header at all, a GET straight
// after a create answers 200 (never 404) and a GET straight after a
// command shows the command's effect, 1,000 times in a row, from
// concurrent clients: on one replica, and on two replicas on one database
// behind a round-robin client (the second runs no projection).
func TestClientsReadTheirOwnWrites(t *testing.T) {
	t.Parallel()
	one := startService(t, serviceOptions{auth: true})
	other := startService(t, serviceOptions{auth: true, databaseURL: one.dbURL, holder: "replica-b", noProjections: true})
	for _, tc := range []struct {
		name     string
		replicas []*testService
	}{
		{"one replica", []*testService{one}},
		{"two replicas", []*testService{one, other}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tok := token(t, "rw-client", nil, auth.ScopeAdmin)
			const clients, each = 8, 125
			run := uuid.NewString()[:8]
			var wg sync.WaitGroup
			for c := range clients {
				wg.Go(func() {
					for i := range each {
						at := func(k int) *testService { return tc.replicas[(c+i+k)%len(tc.replicas)] }
						off := false
						created := at(0).do(tok, "POST", "/api/v1/tenants", map[string]any{"name": fmt.Sprintf("RYW %s %d %d", run, c, i),
							"edition": "free", "region": "eu-west-1", "trial": &off})
						if created.status != http.StatusCreated {
							t.Errorf("create: %d %s", created.status, created.body)
							return
						}
						id := created.json(t)["id"].(string)
						if got := at(1).do(tok, "GET", "/api/v1/tenants/"+id, nil); got.status != http.StatusOK {
							t.Errorf("GET straight after the create (client %d, #%d): %d %s", c, i, got.status, got.body)
							return
						}
						if r := at(2).do(tok, "POST", "/api/v1/tenants/"+id+"/complete-provisioning", map[string]any{}); r.status != http.StatusOK {
							t.Errorf("complete-provisioning: %d %s", r.status, r.body)
							return
						}
						if got := at(3).do(tok, "GET", "/organizations/"+id, nil); got.status != http.StatusOK || got.json(t)["status"] != "ACTIVE" {
							t.Errorf("GET straight after a command (client %d, #%d): %d %s, want ACTIVE", c, i, got.status, got.body)
							return
						}
					}
				})
			}
			wg.Wait()
		})
	}
}

// TestMetricsWhereTheOriginalServedThem: /api/v1/metrics is /metrics.
func TestMetricsWhereTheOriginalServedThem(t *testing.T) {
	t.Parallel()
	s := startService(t, serviceOptions{noProjections: true})
	r := s.must(http.StatusOK, "", "GET", "/api/v1/metrics", nil)
	if !strings.Contains(string(r.body), "tenancy_idempotency_replays_total") {
		t.Fatalf("/api/v1/metrics does not look like the metrics: %.200s", r.body)
	}
}

// TestListsShowTheCallersOwnWrites: a list straight after the caller's
// create holds the new tenant, with no header: on the replica that took the
// write (it remembers the caller's last write), and on another replica when
// the client sends back the cookie the write's answer set (as a client with
// a cookie jar does). Another principal's reads do not wait for it: with no
// projection running anywhere, the writer's own list answers 503 after its
// bounded wait, another caller's list answers 200 at once, and the writer
// opting out (Consistency: eventual) answers 200 too.
func TestListsShowTheCallersOwnWrites(t *testing.T) {
	t.Parallel()
	one := startService(t, serviceOptions{auth: true})
	other := startService(t, serviceOptions{auth: true, databaseURL: one.dbURL, holder: "replica-b", noProjections: true})
	tok := token(t, "list-writer", nil, auth.ScopeAdmin)
	run := uuid.NewString()[:8]
	listHas := func(s *testService, prefix, id string, headers ...string) bool {
		r := s.do(tok, "GET", "/api/v1/tenants?name_prefix="+strings.ReplaceAll(prefix, " ", "+"), nil, headers...)
		if r.status != http.StatusOK {
			t.Fatalf("list: %d %s", r.status, r.body)
		}
		for _, it := range r.json(t)["items"].([]any) {
			if it.(map[string]any)["id"] == id {
				return true
			}
		}
		return false
	}
	for i := range 100 {
		for _, tc := range []struct {
			name        string
			write, read *testService
			sendCookie  bool
		}{
			{"same replica", one, one, false},
			{"the replica without projections", other, other, false},
			{"another replica, with the cookie", one, other, true},
		} {
			name := fmt.Sprintf("List RYW %s %d %s", run, i, tc.name)
			off := false
			created := tc.write.do(tok, "POST", "/api/v1/tenants", map[string]any{"name": name, "edition": "free", "region": "eu-west-1", "trial": &off})
			if created.status != http.StatusCreated {
				t.Fatalf("create: %d %s", created.status, created.body)
			}
			var headers []string
			if tc.sendCookie {
				var cookies []string
				for _, c := range (&http.Response{Header: created.header}).Cookies() {
					cookies = append(cookies, c.Name+"="+c.Value)
				}
				if len(cookies) == 0 {
					t.Fatalf("the create's answer set no cookie: %v", created.header)
				}
				headers = []string{"Cookie", strings.Join(cookies, "; ")}
			}
			if !listHas(tc.read, name, created.json(t)["id"].(string), headers...) {
				t.Fatalf("%s, #%d: the list straight after the create does not hold the tenant", tc.name, i)
			}
		}
	}

	alone := startService(t, serviceOptions{auth: true, noProjections: true})
	writer, bystander := token(t, "writer", nil, auth.ScopeAdmin), token(t, "bystander", nil, auth.ScopeAdmin)
	if r := alone.do(writer, "POST", "/api/v1/tenants", map[string]any{"name": "Unprojected " + run, "edition": "free", "region": "eu-west-1"}); r.status != http.StatusCreated {
		t.Fatalf("create: %d %s", r.status, r.body)
	}
	if r := alone.do(bystander, "GET", "/api/v1/tenants", nil); r.status != http.StatusOK {
		t.Errorf("another principal's list: %d %s; want 200 without waiting for the writer's write", r.status, r.body)
	}
	if r := alone.do(writer, "GET", "/api/v1/tenants", nil, "Consistency", "eventual"); r.status != http.StatusOK {
		t.Errorf("the writer's list with Consistency: eventual: %d %s", r.status, r.body)
	}
	if r := alone.do(writer, "GET", "/api/v1/tenants", nil); r.status != http.StatusServiceUnavailable || r.header.Get("Retry-After") == "" {
		t.Errorf("the writer's list with no projection running: %d %s; want 503 with Retry-After after the bounded wait", r.status, r.body)
	}
}
