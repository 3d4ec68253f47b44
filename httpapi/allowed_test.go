package httpapi_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/tenancyhq/tenancy/aggregate"
)

// TestEveryListedCommandHasARoute brings a tenant into every status and
// calls every command its allowed_commands and its transitions list, as
// POST /api/v1/tenants/{id}/<name>: whatever the answer (done, refused,
// invalid body), it is never 404 or 405 — a client can call what it is told.
func TestEveryListedCommandHasARoute(t *testing.T) {
	t.Parallel()
	s := startService(t)
	steps := map[aggregate.Status][][2]string{
		aggregate.StatusProvisioning:        nil,
		aggregate.StatusTrial:               {{"complete-provisioning", `{}`}},
		aggregate.StatusActive:              {{"complete-provisioning", `{}`}, {"activate", `{}`}},
		aggregate.StatusSuspended:           {{"complete-provisioning", `{}`}, {"suspend", `{"reason": "admin_action"}`}},
		aggregate.StatusPendingCancellation: {{"complete-provisioning", `{}`}, {"cancel", `{}`}},
		aggregate.StatusMigrating:           {{"complete-provisioning", `{}`}, {"activate", `{}`}, {"migrate-region", `{"target_region": "eu-west-1"}`}},
		aggregate.StatusTerminated:          {{"complete-provisioning", `{}`}, {"terminate", `{}`}},
		aggregate.StatusPurged:              {{"complete-provisioning", `{}`}, {"terminate", `{}`}, {"purge", `{}`}},
	}
	for _, status := range aggregate.Statuses() {
		created := s.must(201, "POST", "/api/v1/tenants", map[string]any{"name": "Routes " + string(status), "edition": "professional", "region": "us-east-1"})
		path := "/api/v1/tenants/" + created.json(t)["id"].(string)
		last := created
		for _, st := range steps[status] {
			last = s.must(200, "POST", path+"/"+st[0], st[1])
		}
		token := last.header.Get("X-Consistency-Token")
		tn := s.must(200, "GET", path, nil, "X-Consistency-Token", token).json(t)
		if tn["status"] != string(status) {
			t.Fatalf("tenant in %v, want %s", tn["status"], status)
		}
		names := map[string]bool{}
		for _, c := range tn["allowed_commands"].([]any) {
			names[c.(string)] = true
		}
		tr := s.must(200, "GET", path+"/transitions", nil, "X-Consistency-Token", token).json(t)
		for _, c := range tr["allowed_commands"].([]any) {
			names[c.(string)] = true
		}
		for _, x := range tr["transitions"].([]any) {
			names[x.(map[string]any)["command"].(string)] = true
		}
		if status != aggregate.StatusPurged && len(names) == 0 {
			t.Errorf("%s lists no command", status)
		}
		for name := range names {
			r := s.do("POST", path+"/"+name, `{}`)
			if r.status == http.StatusNotFound || r.status == http.StatusMethodNotAllowed {
				t.Errorf("%s lists %s, but POST %s/%s answers %d: %s", status, name, path, name, r.status, strings.TrimSpace(string(r.body)))
			}
		}
	}
}
