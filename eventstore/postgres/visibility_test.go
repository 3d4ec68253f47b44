package postgres_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/tenancyhq/tenancy/eventstore"
	"github.com/tenancyhq/tenancy/eventstore/eventstoretest"
	"github.com/tenancyhq/tenancy/eventstore/postgres"
)

// heldAppend appends evs to a new stream in a transaction it leaves open; the
// caller commits or rolls back.
func heldAppend(t *testing.T, s *postgres.Store, begin func(context.Context) (pgx.Tx, error), evs []eventstore.EventData) pgx.Tx {
	t.Helper()
	ctx := testContext(t)
	tx, err := begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tx.Rollback(context.Background()) })
	if _, err := s.AppendInTx(ctx, tx, "tenant-"+uuid.NewString(), eventstore.NoStream, evs); err != nil {
		t.Fatal(err)
	}
	return tx
}

// rollbackAfter rolls tx back after d, from another goroutine; the test waits
// for it before its other clean-ups.
func rollbackAfter(t *testing.T, tx pgx.Tx, d time.Duration) {
	done := make(chan struct{})
	time.AfterFunc(d, func() {
		defer close(done)
		tx.Rollback(context.Background())
	})
	t.Cleanup(func() { <-done })
}

func ids(evs []eventstore.RecordedEvent) []uuid.UUID {
	out := make([]uuid.UUID, len(evs))
	for i, e := range evs {
		out[i] = e.ID
	}
	return out
}

func dataIDs(evs []eventstore.EventData) []uuid.UUID {
	out := make([]uuid.UUID, len(evs))
	for i, e := range evs {
		out[i] = e.ID
	}
	return out
}

func equalIDs(a, b []uuid.UUID) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// TestFeedStopsBelowOldestRunningTransaction: an event committed after an
// older transaction took its position is not in the feed, Head or
// CountAfter until that transaction ends; then it comes after that
// transaction's events.
func TestFeedStopsBelowOldestRunningTransaction(t *testing.T) {
	t.Parallel()
	pool := newPool(t, 4)
	strict := postgres.New(pool, postgres.WithSettle(0))
	s := postgres.New(pool, postgres.WithSettle(10*time.Second))
	ctx := testContext(t)

	// Transactions of other tests on the server hold the feed back too: let
	// the first event through before holding one open here.
	first := eventstoretest.Events(1)
	res := mustAppend(t, s, "tenant-"+uuid.NewString(), eventstore.NoStream, first)
	if head, err := s.Head(ctx); err != nil || head != res.Position {
		t.Fatalf("head = %v (err %v), want %v", head, err, res.Position)
	}
	older := eventstoretest.Events(2)
	tx := heldAppend(t, s, pool.Begin, older)
	newer := eventstoretest.Events(1)
	newerRes := mustAppend(t, s, "tenant-"+uuid.NewString(), eventstore.NoStream, newer)

	all, err := strict.ReadAll(ctx, eventstore.Start, eventstore.Filter{}, 0)
	if err != nil {
		t.Fatal(err)
	}
	if !equalIDs(ids(all), dataIDs(first)) {
		t.Fatalf("feed while the older transaction runs = %v, want only %v", ids(all), dataIDs(first))
	}
	if head, err := strict.Head(ctx); err != nil || head != res.Position {
		t.Fatalf("head = %v (err %v), want %v", head, err, res.Position)
	}
	if n, err := strict.CountAfter(ctx, eventstore.Start, eventstore.Filter{}); err != nil || n != 1 {
		t.Fatalf("count = %d (err %v), want 1", n, err)
	}

	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	all, err = s.ReadAll(ctx, eventstore.Start, eventstore.Filter{}, 0)
	if err != nil {
		t.Fatal(err)
	}
	want := dataIDs(append(append(append([]eventstore.EventData{}, first...), older...), newer...))
	if !equalIDs(ids(all), want) {
		t.Fatalf("feed after commit = %v, want %v", ids(all), want)
	}
	if head, err := s.Head(ctx); err != nil || head != newerRes.Position {
		t.Fatalf("head = %v (err %v), want %v", head, err, newerRes.Position)
	}
	n, err := s.CountAfter(ctx, all[0].Position, eventstore.Filter{StreamPrefixes: []string{"tenant-"}})
	if err != nil || n != 3 {
		t.Fatalf("count after the first = %d (err %v), want 3", n, err)
	}
	if n, err := s.CountAfter(ctx, eventstore.Start, eventstore.Filter{StreamPrefixes: []string{"other-"}}); err != nil || n != 0 {
		t.Fatalf("count of other- = %d (err %v), want 0", n, err)
	}
}

// TestReadAllAndHeadWaitForOlderTransaction: within the settle time, ReadAll
// and Head wait for an older transaction to end, so a reader reads its own
// append.
func TestReadAllAndHeadWaitForOlderTransaction(t *testing.T) {
	t.Parallel()
	pool := newPool(t, 4)
	s := postgres.New(pool, postgres.WithSettle(10*time.Second))
	ctx := testContext(t)
	tx := heldAppend(t, s, pool.Begin, eventstoretest.Events(1))
	mine := eventstoretest.Events(1)
	res := mustAppend(t, s, "tenant-"+uuid.NewString(), eventstore.NoStream, mine)
	rollbackAfter(t, tx, 200*time.Millisecond)

	all, err := s.ReadAll(ctx, eventstore.Start, eventstore.Filter{}, 0)
	if err != nil {
		t.Fatal(err)
	}
	if !equalIDs(ids(all), dataIDs(mine)) {
		t.Fatalf("feed = %v, want %v", ids(all), dataIDs(mine))
	}
	if head, err := s.Head(ctx); err != nil || head != res.Position {
		t.Fatalf("head = %v (err %v), want %v", head, err, res.Position)
	}
}

// TestLiveSubscriptionNeedsNoPolling: with a poll interval far longer than
// the test, a live subscription gets a new event through its notification,
// and gets an event whose older transaction rolled back (which notifies
// nobody) by looking again soon.
func TestLiveSubscriptionNeedsNoPolling(t *testing.T) {
	t.Parallel()
	pool := newPool(t, 4)
	s := postgres.New(pool, postgres.WithPollInterval(time.Hour))
	ctx := testContext(t)
	sub, err := s.SubscribeAll(ctx, eventstore.Start, eventstore.Filter{})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	next := func(want []eventstore.EventData) {
		t.Helper()
		c, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		got, err := sub.Next(c)
		if err != nil {
			t.Fatalf("next: %v", err)
		}
		if !equalIDs(ids(got), dataIDs(want)) {
			t.Fatalf("next = %v, want %v", ids(got), dataIDs(want))
		}
	}
	// Idle and caught up, the subscription waits for a notification.
	notified := eventstoretest.Events(2)
	time.AfterFunc(300*time.Millisecond, func() {
		if _, err := s.Append(context.Background(), "tenant-"+uuid.NewString(), eventstore.NoStream, notified); err != nil {
			t.Error(err)
		}
	})
	next(notified)

	// Notified while an older transaction runs, it looks again until that
	// one ends, here without a notification of its own.
	tx := heldAppend(t, s, pool.Begin, eventstoretest.Events(1))
	waiting := eventstoretest.Events(1)
	mustAppend(t, s, "tenant-"+uuid.NewString(), eventstore.NoStream, waiting)
	rollbackAfter(t, tx, 300*time.Millisecond)
	next(waiting)
}

func TestCloseEndsNext(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	sub, err := s.SubscribeAll(testContext(t), eventstore.Start, eventstore.Filter{})
	if err != nil {
		t.Fatal(err)
	}
	time.AfterFunc(200*time.Millisecond, func() { sub.Close() })
	start := time.Now()
	if _, err := sub.Next(context.Background()); err == nil || errors.Is(err, context.Canceled) {
		t.Fatalf("next after close: err = %v, want the subscription's closed error", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("next took %v to notice close", d)
	}
	if _, err := sub.Next(context.Background()); err == nil {
		t.Fatal("next on a closed subscription succeeded")
	}
}

// TestSubscriptionSurvivesLostConnection: when the server ends the
// subscription's connection, the subscription connects again and goes on
// where it was.
func TestSubscriptionSurvivesLostConnection(t *testing.T) {
	t.Parallel()
	pool := newPool(t, 4)
	s := postgres.New(pool, postgres.WithPollInterval(100*time.Millisecond))
	ctx := testContext(t)
	sub, err := s.SubscribeAll(ctx, eventstore.Start, eventstore.Filter{})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	stream := "tenant-" + uuid.NewString()
	before := eventstoretest.Events(2)
	mustAppend(t, s, stream, eventstore.NoStream, before)
	got := collectN(t, sub, 2)

	var killed int
	err = pool.QueryRow(ctx, `SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
		WHERE datname = current_database() AND pid <> pg_backend_pid() AND query LIKE '%AS last_xid%'`).Scan(&killed)
	if err != nil || killed != 1 {
		t.Fatalf("terminated %d subscription connections (err %v), want 1", killed, err)
	}
	after := eventstoretest.Events(3)
	mustAppend(t, s, stream, eventstore.Exact(1), after)
	got = append(got, collectN(t, sub, 3)...)
	if want := dataIDs(append(before, after...)); !equalIDs(ids(got), want) {
		t.Fatalf("got %v, want %v", ids(got), want)
	}
}

// collectN reads n events from sub, tolerating errors from a lost
// connection, which the next call repairs.
func collectN(t *testing.T, sub eventstore.Subscription, n int) []eventstore.RecordedEvent {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var got []eventstore.RecordedEvent
	for len(got) < n {
		evs, err := sub.Next(ctx)
		if ctx.Err() != nil {
			t.Fatalf("after %d of %d events: %v", len(got), n, err)
		}
		got = append(got, evs...)
	}
	return got
}
