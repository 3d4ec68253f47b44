package httpapi_test

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// TestShutdownLetsTheRequestInFlightFinish cancels Run's context while a
// command is blocked in Postgres: the server stops accepting connections,
// the command completes and answers, and Run returns nil.
func TestShutdownLetsTheRequestInFlightFinish(t *testing.T) {
	t.Parallel()
	s := startService(t)
	id, _ := s.createTenant("Shutdown Co")
	ctx := context.Background()

	// Hold a lock that lets reads through but makes the command's append wait.
	conn, err := pgx.Connect(ctx, s.dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	tx, err := conn.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	if _, err := tx.Exec(ctx, "LOCK TABLE events IN SHARE MODE"); err != nil {
		t.Fatal(err)
	}

	answered := make(chan response, 1)
	go func() { answered <- s.do("POST", "/api/v1/tenants/"+id+"/complete-provisioning", nil) }()
	waitFor(t, 10*time.Second, "the command to block on the events lock", func() bool {
		var n int
		err := conn.QueryRow(ctx, `SELECT count(*) FROM pg_locks WHERE NOT granted AND relation = 'events'::regclass`).Scan(&n)
		return err == nil && n > 0
	})

	s.stop()
	if err, done := s.wait(300 * time.Millisecond); done {
		t.Fatalf("Run returned (%v) while a request was in flight", err)
	}
	// No new connection is accepted once shutdown began.
	fresh := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	if res, err := fresh.Get(s.base + "/health/live"); err == nil {
		res.Body.Close()
		t.Errorf("a new connection was served during shutdown: %s", res.Status)
	}

	if err := tx.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case r := <-answered:
		if r.status != 200 || r.json(t)["status"] != "TRIAL" {
			t.Errorf("the request in flight answered %s", r)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the request in flight never answered")
	}
	err, done := s.wait(20 * time.Second)
	if !done {
		t.Fatal("Run did not return after the last request finished")
	}
	if err != nil {
		t.Errorf("Run returned %v, want nil", err)
	}
}

// waitFor polls cond until it holds, failing the test after timeout.
func waitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
