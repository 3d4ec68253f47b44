package httpapi_test

import (
	"context"
	"testing"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
)

// TestProjectionFailuresAreListedRetriedAndSkippedOverHTTP: the failures
// an operator decides on, through the admin routes; unknown projections
// and events are 404.
func TestProjectionFailuresAreListedRetriedAndSkippedOverHTTP(t *testing.T) {
	t.Parallel()
	s := startService(t)
	s.createTenant("Failure Co")
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, s.dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	// Two failures recorded as the runner records them, with a prior
	// checkpoint the live one is not at (so skipping moves nothing).
	halted, retried := uuid.New(), uuid.New()
	for i, id := range []uuid.UUID{halted, retried} {
		if _, err := conn.Exec(ctx, `INSERT INTO projection_failures (projection, event_id, position_commit, position_prepare,
			prior_commit, prior_prepare, stream, event_type, error, attempts, first_failed_at, last_failed_at, status)
			VALUES ('scheduler', $1, 1, $2, 1, 0, 'tenant-x', 'TenantCreated', 'boom', 5, now(), now(), 'halted')`, id, i+1); err != nil {
			t.Fatal(err)
		}
	}
	list := s.must(200, "GET", "/api/v1/admin/projections/scheduler/failures", nil).json(t)
	fs, _ := list["failures"].([]any)
	if len(fs) != 2 || fs[0].(map[string]any)["status"] != "halted" || fs[0].(map[string]any)["error"] != "boom" {
		t.Fatalf("failures %v", list)
	}
	if got := s.must(200, "POST", "/api/v1/admin/projections/scheduler/failures/"+halted.String()+"/skip", nil).json(t); got["skipped"] != halted.String() {
		t.Errorf("skip answered %v", got)
	}
	if got := s.must(200, "POST", "/api/v1/admin/projections/scheduler/retry", nil).json(t); got["retried"] != 1.0 {
		t.Errorf("retry answered %v (the skipped one stays skipped)", got)
	}
	list = s.must(200, "GET", "/api/v1/admin/projections/scheduler/failures", nil).json(t)
	status := map[string]any{}
	for _, f := range list["failures"].([]any) {
		status[f.(map[string]any)["event_id"].(string)] = f.(map[string]any)["status"]
	}
	if status[halted.String()] != "skipped" || status[retried.String()] != "retry" {
		t.Errorf("statuses after skip and retry: %v", status)
	}
	checkProblem(t, s.do("GET", "/api/v1/admin/projections/bogus/failures", nil), 404, "name", "projection")
	checkProblem(t, s.do("POST", "/api/v1/admin/projections/scheduler/failures/"+uuid.NewString()+"/skip", nil), 404, "event", "recorded_failure")
	checkProblem(t, s.do("POST", "/api/v1/admin/projections/scheduler/failures/not-a-uuid/skip", nil), 400, "event", "uuid")
}
