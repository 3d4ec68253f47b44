package postgres_test

import (
	"context"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/tenancyhq/tenancy/eventstore"
	"github.com/tenancyhq/tenancy/eventstore/eventstoretest"
	"github.com/tenancyhq/tenancy/eventstore/postgres"
	"github.com/tenancyhq/tenancy/internal/pgtest"
)

// holdXIDElsewhere opens a transaction with a transaction id in another
// database of the same server and keeps it open until the test ends: what
// another service, another test or a psql session left open does to
// pg_snapshot_xmin, which is the server's, not the database's.
func holdXIDElsewhere(t *testing.T) {
	t.Helper()
	ctx := testContext(t)
	conn, err := pgx.Connect(ctx, pgtest.NewDatabase(t))
	if err != nil {
		t.Fatal(err)
	}
	tx, err := conn.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, `SELECT pg_current_xact_id()`); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = tx.Rollback(context.Background())
		_ = conn.Close(context.Background())
	})
}

// TestTransactionInAnotherDatabaseDoesNotHoldTheFeedBack: a transaction
// open in another database cannot add events to this one, so the feed,
// Head and CountAfter reach every event committed here at once. (They used
// to stop below the server-wide xmin: Head answered a stale head once its
// settle time ran out, and the read-model crash test verified against it.)
func TestTransactionInAnotherDatabaseDoesNotHoldTheFeedBack(t *testing.T) {
	t.Parallel()
	pool := newPool(t, 4)
	s := postgres.New(pool, postgres.WithSettle(100*time.Millisecond))
	ctx := testContext(t)
	holdXIDElsewhere(t)
	evs := eventstoretest.Events(2)
	res := mustAppend(t, s, "tenant-"+uuid.NewString(), eventstore.NoStream, evs)

	start := time.Now()
	head, err := s.Head(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if head != res.Position {
		t.Fatalf("head = %v, want %v (the last event committed)", head, res.Position)
	}
	if took := time.Since(start); took >= 100*time.Millisecond {
		t.Errorf("Head waited %v for a transaction of another database", took)
	}
	all, err := s.ReadAll(ctx, eventstore.Start, eventstore.Filter{}, 0)
	if err != nil {
		t.Fatal(err)
	}
	if !equalIDs(ids(all), dataIDs(evs)) {
		t.Fatalf("feed = %v, want %v", ids(all), dataIDs(evs))
	}
	if n, err := s.CountAfter(ctx, eventstore.Start, eventstore.Filter{}); err != nil || n != 2 {
		t.Fatalf("count = %d (err %v), want 2", n, err)
	}

	sub, err := s.SubscribeAll(ctx, eventstore.Start, eventstore.Filter{})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	nctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	got, err := sub.Next(nctx)
	if err != nil || !equalIDs(ids(got), dataIDs(evs)) {
		t.Fatalf("subscription = %v (err %v), want %v", ids(got), err, dataIDs(evs))
	}
}

// TestTransactionInThisDatabaseStillHoldsTheFeedBack: the horizon is per
// database, not gone: an older transaction here still stops the feed.
func TestTransactionInThisDatabaseStillHoldsTheFeedBack(t *testing.T) {
	t.Parallel()
	pool := newPool(t, 4)
	s := postgres.New(pool, postgres.WithSettle(0))
	ctx := testContext(t)
	holdXIDElsewhere(t)
	tx, err := pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(context.Background())
	if _, err := tx.Exec(ctx, `SELECT pg_current_xact_id()`); err != nil {
		t.Fatal(err)
	}
	mustAppend(t, s, "tenant-"+uuid.NewString(), eventstore.NoStream, eventstoretest.Events(1))
	if head, err := s.Head(ctx); err != nil || head != eventstore.Start {
		t.Fatalf("head = %v (err %v), want the start: an older transaction of this database runs", head, err)
	}
	if n, err := s.CountAfter(ctx, eventstore.Start, eventstore.Filter{}); err != nil || n != 0 {
		t.Fatalf("count = %d (err %v), want 0", n, err)
	}
}
