package main

import (
	"context"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/tenancyhq/tenancy/eventstore/esdb/esdbtest"
)

// TestOperatorCommandsRefuseAnotherEventStore: a database whose read model
// and checkpoints were built from its Postgres event store refuses every
// command that would operate on them with another store (here an
// EventStoreDB test server, as when EVENTSTORE_URL is set by mistake),
// naming both stores and the variable to set; nothing is changed. --force
// records the new store as theirs.
func TestOperatorCommandsRefuseAnotherEventStore(t *testing.T) {
	t.Parallel()
	db, trial := opsDatabase(t)
	es := esdbtest.Start(t, esdbtest.Options{})
	wrong := append([]string{"--eventstore-url", es.URL()}, db...)
	checkpoint := func() string {
		pool, err := pgxpool.New(context.Background(), db[1])
		if err != nil {
			t.Fatal(err)
		}
		defer pool.Close()
		var pos string
		if err := pool.QueryRow(context.Background(), `SELECT string_agg(name || '=' || position_commit || '/' || position_prepare, ',' ORDER BY name) FROM projection_checkpoints`).Scan(&pos); err != nil {
			t.Fatal(err)
		}
		return pos
	}
	before := checkpoint()
	for _, args := range [][]string{
		{"verify"},
		{"projections", "rebuild", "read-model"},
		{"projections", "rebuild", "scheduler"},
		{"projections", "reset", "read-model"},
		{"projections", "status"},
		{"replay", trial},
		{"serve", "--http-addr", "127.0.0.1:0", "--nats-listen", "", "--insecure-no-auth"},
	} {
		out, err := runCLI(t, append(args, wrong...)...)
		msg := ""
		if err != nil {
			msg = err.Error()
		}
		for _, want := range []string{"postgres", "eventstoredb", "EVENTSTORE_URL", "--force", es.Addr()} {
			if !strings.Contains(msg, want) {
				t.Errorf("%v: err %q (output %q); want it to name %q", args, msg, out, want)
			}
		}
	}
	if after := checkpoint(); after != before {
		t.Errorf("checkpoints changed by refused commands: %s, were %s", after, before)
	}
	// The right store still works.
	if out, err := runCLI(t, append([]string{"verify"}, db...)...); err != nil {
		t.Fatalf("verify on the right store: %v\n%s", err, out)
	}
	// --force rebinds: the rebuild from the (empty) EventStoreDB store goes
	// ahead, and afterwards the Postgres store is the stranger.
	if out, err := runCLI(t, append([]string{"projections", "rebuild", "read-model", "--force"}, wrong...)...); err != nil {
		t.Fatalf("rebuild --force on the other store: %v\n%s", err, out)
	}
	if _, err := runCLI(t, append([]string{"verify"}, wrong...)...); err != nil {
		t.Errorf("verify on the store now recorded: %v", err)
	}
	if _, err := runCLI(t, append([]string{"verify"}, db...)...); err == nil || !strings.Contains(err.Error(), "--force") {
		t.Errorf("verify on the Postgres store after the move: %v; want it refused", err)
	}
}

// TestRebuildRefusesToEmptyTheReadModel: a store with no events (same
// identity, events gone) beside a read model holding tenants: the rebuild
// is refused without --force and the tenants stay.
func TestRebuildRefusesToEmptyTheReadModel(t *testing.T) {
	t.Parallel()
	db, _ := opsDatabase(t)
	pool, err := pgxpool.New(context.Background(), db[1])
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	if _, err := pool.Exec(context.Background(), `DELETE FROM events`); err != nil {
		t.Fatal(err)
	}
	_, err = runCLI(t, append([]string{"projections", "rebuild", "read-model"}, db...)...)
	if err == nil || !strings.Contains(err.Error(), "holds no events") || !strings.Contains(err.Error(), "--force") {
		t.Fatalf("rebuild from an empty store: %v; want a refusal asking for --force", err)
	}
	var n int
	if err := pool.QueryRow(context.Background(), `SELECT count(*) FROM tenants`).Scan(&n); err != nil || n != 2 {
		t.Fatalf("tenants after the refusal: %d, %v; want the 2 kept", n, err)
	}
	if out, err := runCLI(t, append([]string{"projections", "rebuild", "read-model", "--force"}, db...)...); err != nil {
		t.Fatalf("rebuild --force: %v\n%s", err, out)
	}
	if err := pool.QueryRow(context.Background(), `SELECT count(*) FROM tenants`).Scan(&n); err != nil || n != 0 {
		t.Fatalf("tenants after rebuild --force from the empty store: %d, %v; want 0", n, err)
	}
}
