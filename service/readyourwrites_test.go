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
