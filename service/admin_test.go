package service_test

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/tenancyhq/tenancy/internal/pgtest"
)

// TestAdminJobsAreVisibleFromEveryReplica runs two instances of the service
// on one database: a rebuild started on one is followed to its end on the
// other, a second rebuild of the same projection is refused on either while
// it runs, a finished job older than a day is pruned, and an unknown
// projection is a 404 naming the rebuildable ones. The timers survive the
// scheduler's rebuild, and the instance whose scheduler the switch-over
// fenced logs an operator's move, not a lost lead.
func TestAdminJobsAreVisibleFromEveryReplica(t *testing.T) {
	t.Parallel()
	a := startService(t, serviceOptions{holder: "replica-a"})
	b := startService(t, serviceOptions{databaseURL: a.dbURL, holder: "replica-b"})
	created := a.must(http.StatusCreated, "", "POST", "/api/v1/tenants", map[string]any{"name": "Jobs Co", "edition": "professional", "region": "us-east-1"})
	id := created.json(t)["id"].(string)
	a.read(a.must(http.StatusOK, "", "POST", "/api/v1/tenants/"+id+"/complete-provisioning", map[string]any{}))
	a.caughtUp()
	timers := func() int {
		var n int
		if err := a.app.Pool().QueryRow(t.Context(), `SELECT count(*) FROM timers WHERE kind = 'trial_expiry'`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	if timers() != 1 {
		t.Fatalf("%d trial timers before the rebuild, want 1", timers())
	}
	pgtest.Exec(t, a.app.Pool(), `INSERT INTO admin_jobs (id, kind, projection, state, holder, started_at, updated_at, finished_at)
		VALUES ('0b9e5f9a-7d3c-4a55-9c1e-2f6d8a4b1c00', 'rebuild', 'read-model', 'succeeded', 'gone', now() - interval '3 days', now() - interval '2 days', now() - interval '2 days')`)

	for _, name := range []string{"scheduler", "read-model"} {
		job := a.must(http.StatusAccepted, "", "POST", "/api/v1/admin/projections/"+name+"/rebuild", nil).json(t)
		jobID := job["id"].(string)
		if r := b.do("", "POST", "/api/v1/admin/projections/"+name+"/rebuild", nil); r.status != http.StatusConflict && r.status != http.StatusAccepted {
			t.Errorf("a second rebuild of %s on the other replica: %d %s", name, r.status, r.body)
		} else if r.status == http.StatusAccepted {
			// The first had already finished: this one is a new job; follow it instead.
			jobID = r.json(t)["id"].(string)
		}
		deadline := time.Now().Add(30 * time.Second)
		for {
			got := b.must(http.StatusOK, "", "GET", "/api/v1/admin/jobs/"+jobID, nil).json(t)
			if got["state"] == "succeeded" {
				if got["phase"] != "done" || got["percent"] != 100.0 || got["events_per_second"].(float64) <= 0 {
					t.Errorf("finished job as the other replica sees it: %v", got)
				}
				break
			}
			if got["state"] == "failed" || time.Now().After(deadline) {
				t.Fatalf("job %s: %v", jobID, got)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	if timers() != 1 {
		t.Errorf("%d trial timers after the scheduler's rebuild, want 1", timers())
	}
	if r := b.do("", "GET", "/api/v1/admin/jobs/0b9e5f9a-7d3c-4a55-9c1e-2f6d8a4b1c00", nil); r.status != http.StatusNotFound {
		t.Errorf("a job finished two days ago: %d, want pruned (404)", r.status)
	}
	r := b.do("", "POST", "/api/v1/admin/projections/bogus/rebuild", nil)
	if r.status != http.StatusNotFound || !strings.Contains(string(r.body), "read-model") || !strings.Contains(string(r.body), "scheduler") {
		t.Errorf("rebuild of an unknown projection: %d %s, want 404 naming the rebuildable ones", r.status, r.body)
	}
	// The next event meets the fence of the switch-over.
	a.read(a.must(http.StatusOK, "", "POST", "/api/v1/tenants/"+id+"/extend-trial", map[string]any{"days": 3}))
	a.caughtUp()
	for _, s := range []*testService{a, b} {
		if strings.Contains(s.logs.String(), "lost the lead") {
			t.Errorf("an instance logged a lost lead after an operator's rebuild")
		}
	}
	if !strings.Contains(a.logs.String()+b.logs.String(), "checkpoint moved by an operator") {
		t.Errorf("no instance logged the operator's move of the checkpoint")
	}
}
