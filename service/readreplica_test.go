package service_test

import (
	"context"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/tenancyhq/tenancy/internal/auth"
	"github.com/tenancyhq/tenancy/internal/pgtest"
)

// TestReadsOnAReplicaWaitForTheWritesOfThePrimary runs the service with its
// queries on a real streaming standby (DATABASE_READ_URL): a command is
// answered by the primary; a read with its consistency token (or with no
// header at all, read-your-writes) waits until the standby has replayed
// the change and returns it; with the standby's replay paused the read
// answers 503 with Retry-After after its bounded wait, never the stale
// row; once resumed, reads answer again. Readiness reports the standby's
// lag meanwhile.
func TestReadsOnAReplicaWaitForTheWritesOfThePrimary(t *testing.T) {
	t.Parallel()
	primary := pgtest.StartCluster(t)
	standby := primary.StartStandby()
	const wait = 4 * time.Second
	s := startService(t, serviceOptions{auth: true, databaseURL: primary.DatabaseURL("tenancy"),
		readDatabaseURL: standby.DatabaseURL("tenancy"), consistencyWait: wait})
	admin := token(t, "replica-reader", nil, auth.ScopeAdmin)
	// The database was made on the primary: the standby has it once it
	// has replayed that far.
	replica := connect(t, standby.DatabaseURL("tenancy"))
	pause := func(on bool) {
		t.Helper()
		fn := "pg_wal_replay_resume()"
		if on {
			fn = "pg_wal_replay_pause()"
		}
		if _, err := replica.Exec(context.Background(), "SELECT "+fn); err != nil {
			t.Fatalf("%s on the standby: %v", fn, err)
		}
	}
	// statusOnStandby is the tenant's status as the standby's read model
	// holds it right now ("" when it has no row).
	statusOnStandby := func(id string) string {
		t.Helper()
		var st string
		err := replica.QueryRow(context.Background(), `SELECT status::text FROM tenants WHERE id = $1`, uuid.MustParse(id)).Scan(&st)
		if err != nil && err != pgx.ErrNoRows {
			t.Fatalf("standby: %v", err)
		}
		return st
	}
	tenant := createTenant(s, admin, "Replica "+uuid.NewString()[:8])
	id := tenant["id"].(string)
	path := "/api/v1/tenants/" + id

	t.Run("a read with the token waits until the standby has the change", func(t *testing.T) {
		pause(true)
		suspended := s.must(http.StatusOK, admin, "POST", path+"/suspend", map[string]any{"reason": "admin_action"})
		tok := suspended.header.Get("X-Consistency-Token")
		if got := statusOnStandby(id); got != "ACTIVE" {
			t.Fatalf("the paused standby already shows %q; the test needs it behind", got)
		}
		withToken, ownWrite := make(chan response, 1), make(chan response, 1)
		go func() { withToken <- s.do(admin, "GET", path, nil, "X-Consistency-Token", tok) }()
		go func() { ownWrite <- s.do(admin, "GET", path, nil) }()
		// The reads are in flight on a standby that lacks the change;
		// resuming lets it replay, and both must answer with the change.
		time.Sleep(300 * time.Millisecond)
		pause(false)
		for name, ch := range map[string]chan response{"with the token": withToken, "with no header": ownWrite} {
			r := <-ch
			if r.status != http.StatusOK || r.json(t)["status"] != "SUSPENDED" {
				t.Errorf("GET %s after the suspend: %d %s, want 200 SUSPENDED", name, r.status, r.body)
			}
		}
		if got := statusOnStandby(id); got != "SUSPENDED" {
			t.Fatalf("after the reads the standby shows %q", got)
		}
	})

	t.Run("with the standby paused the read answers 503 after its wait, never stale data", func(t *testing.T) {
		pause(true)
		resumed := false
		defer func() {
			if !resumed {
				pause(false)
			}
		}()
		r := s.must(http.StatusOK, admin, "POST", path+"/resume", map[string]any{})
		tok := r.header.Get("X-Consistency-Token")
		for _, req := range []struct {
			name    string
			path    string
			headers []string
		}{
			{"tenant with the token", path, []string{"X-Consistency-Token", tok}},
			{"tenant, read-your-writes", path, nil},
			{"events with the token", path + "/events", []string{"X-Consistency-Token", tok}},
			{"entitlements with the token", path + "/entitlements", []string{"X-Consistency-Token", tok}},
		} {
			start := time.Now()
			got := s.do(admin, "GET", req.path, nil, req.headers...)
			took := time.Since(start)
			if got.status != http.StatusServiceUnavailable || got.header.Get("Retry-After") == "" ||
				got.header.Get("Content-Type") != "application/problem+json" {
				t.Errorf("GET %s with the standby paused: %d %v %s, want 503 problem+json with Retry-After", req.name, got.status, got.header, got.body)
			}
			if took < wait {
				t.Errorf("GET %s answered after %s, before its wait (%s) ended", req.name, took, wait)
			}
		}
		// The standby really is behind: only an explicit opt-out reads it.
		if got := s.must(http.StatusOK, admin, "GET", path, nil, "Consistency", "eventual").json(t)["status"]; got != "SUSPENDED" {
			t.Fatalf("Consistency: eventual on the paused standby read %v, want the stale SUSPENDED", got)
		}
		ready := s.must(http.StatusOK, "", "GET", "/health/ready", nil).json(t)
		rep, _ := ready["replica"].(map[string]any)
		if ready["status"] != "degraded" || rep["status"] != "paused" || rep["replay_paused"] != true || rep["lag_bytes"].(float64) <= 0 {
			t.Fatalf("readiness with the standby paused: %v, want degraded with the replica paused and lagging", ready)
		}

		metrics := string(s.must(http.StatusOK, "", "GET", "/metrics", nil).body)
		if !regexp.MustCompile(`(?m)^tenancy_read_replica_lag_bytes [1-9]`).MatchString(metrics) {
			t.Fatalf("/metrics with the standby paused has no positive tenancy_read_replica_lag_bytes:\n%s", grepLines(metrics, "replica"))
		}

		pause(false)
		resumed = true
		deadline := time.Now().Add(30 * time.Second)
		for {
			got := s.do(admin, "GET", path, nil, "X-Consistency-Token", tok)
			if got.status == http.StatusOK {
				if st := got.json(t)["status"]; st != "ACTIVE" {
					t.Fatalf("after the resume the read shows %v, want ACTIVE", st)
				}
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("30 s after the standby resumed: %d %s", got.status, got.body)
			}
			time.Sleep(100 * time.Millisecond)
		}
		for {
			ready := s.must(http.StatusOK, "", "GET", "/health/ready", nil).json(t)
			rep, _ := ready["replica"].(map[string]any)
			if rep["status"] == "ok" && rep["standby"] == true && rep["replay_paused"] == false {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("readiness 30 s after the resume: %v", ready)
			}
			time.Sleep(100 * time.Millisecond)
		}
	})
}

// connect opens a connection for the test (closed when it ends), trying
// for up to 30 s: a standby has a database only once it has replayed its
// creation.
func connect(t *testing.T, url string) *pgx.Conn {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		conn, err := pgx.Connect(ctx, url)
		cancel()
		if err == nil {
			t.Cleanup(func() { conn.Close(context.Background()) })
			return conn
		}
		if time.Now().After(deadline) {
			t.Fatalf("connect %s: %v", url, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// grepLines are the lines of s that contain substr.
func grepLines(s, substr string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, substr) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
