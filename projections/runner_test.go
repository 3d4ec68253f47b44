package projections_test

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/tenancyhq/tenancy/internal/pgtest"
	"github.com/tenancyhq/tenancy/projections"
)

func TestRunnerCatchesUpThenFollowsLive(t *testing.T) {
	t.Parallel()
	forEachFeed(t, func(t *testing.T, pool *pgxpool.Pool, store runnerTestStore) {
		p := newRecorder("catchup")
		p.createTable(t, pool)
		appendEvents(t, store, 700, 7) // more than one subscription batch
		appendTo(t, store, 15, func(int) string { return "tenantname-x" })

		run := start(t, projections.NewRunner(pool, store, p, testOptions(t, "replica-1")))
		for range 5 { // live: while the runner follows
			time.Sleep(20 * time.Millisecond)
			appendTo(t, store, 15, func(int) string { return "tenantname-y" }) // filtered out
			appendEvents(t, store, 40, 3)
		}
		last := appendEvents(t, store, 1, 1)
		waitCaughtUp(t, pool, p.name, last, 15*time.Second)
		if err := run.stop(); err != nil {
			t.Fatalf("Run: %v", err)
		}

		assertAppliedOnce(t, pool, store, p)
		ctx := context.Background()
		cp, err := projections.ReadCheckpoint(ctx, pool, p.name)
		if err != nil {
			t.Fatal(err)
		}
		if cp != last {
			t.Fatalf("checkpoint %s, want the last event's position %s", cp, last)
		}
		st, err := projections.Status(ctx, pool, store, p.name)
		if err != nil {
			t.Fatal(err)
		}
		if st.EventsProcessed != 901 || st.Holder != "replica-1" || st.State != projections.StateIdle || st.LagEvents != 0 {
			t.Fatalf("status after stop: %+v", st)
		}
	})
}

func TestOnlyOneRunnerProjectsAndAnotherTakesOver(t *testing.T) {
	t.Parallel()
	forEachFeed(t, func(t *testing.T, pool *pgxpool.Pool, store runnerTestStore) {
		ctx := context.Background()
		a, b := newRecorder("pair"), newRecorder("pair")
		a.by, b.by = "replica-a", "replica-b"
		b.inFlight, b.maxInFlight = a.inFlight, a.maxInFlight
		a.delay, b.delay = 2*time.Millisecond, 2*time.Millisecond
		a.createTable(t, pool)

		runs := map[string]*running{
			"replica-a": start(t, projections.NewRunner(pool, store, a, testOptions(t, "replica-a"))),
			"replica-b": start(t, projections.NewRunner(pool, store, b, testOptions(t, "replica-b"))),
		}
		var last = appendEvents(t, store, 100, 5)
		for range 4 {
			time.Sleep(15 * time.Millisecond)
			last = appendEvents(t, store, 100, 5)
		}
		waitCaughtUp(t, pool, a.name, last, 15*time.Second)

		st, err := projections.Status(ctx, pool, store, a.name)
		if err != nil {
			t.Fatal(err)
		}
		leader := st.Holder
		if st.State != projections.StateRunning || runs[leader] == nil {
			t.Fatalf("status while leading: %+v", st)
		}
		other := "replica-a"
		if leader == other {
			other = "replica-b"
		}
		if n := countAppliedBy(t, pool, a, leader); n != 500 {
			t.Fatalf("leader %s applied %d of 500 events; the other %d", leader, n, countAppliedBy(t, pool, a, other))
		}

		stopped := time.Now()
		if err := runs[leader].stop(); err != nil {
			t.Fatalf("Run of %s: %v", leader, err)
		}
		last = appendEvents(t, store, 200, 5)
		waitCaughtUp(t, pool, a.name, last, 5*time.Second)
		t.Logf("%s took over from %s within %s", other, leader, time.Since(stopped))

		st, err = projections.Status(ctx, pool, store, a.name)
		if err != nil {
			t.Fatal(err)
		}
		if st.Holder != other || st.State != projections.StateRunning {
			t.Fatalf("status after takeover: %+v", st)
		}
		if n := countAppliedBy(t, pool, a, other); n != 200 {
			t.Fatalf("%s applied %d events after takeover, want 200", other, n)
		}
		if m := a.maxInFlight.Load(); m != 1 {
			t.Fatalf("%d Apply calls ran at once", m)
		}
		assertAppliedOnce(t, pool, store, a)
	})
}

func countAppliedBy(t testing.TB, pool *pgxpool.Pool, p *recorder, by string) int {
	t.Helper()
	var n int
	if err := pool.QueryRow(context.Background(), `SELECT count(*) FROM `+p.table()+` WHERE applied_by = $1`, by).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// TestRunnerStopsProjectingWhenLockConnectionBreaks kills the session that
// holds the leadership lock while a batch is inside Apply: the batch must be
// abandoned at once (its context cancelled), then the runner takes the lead
// again and finishes, every event applied once.
func TestRunnerStopsProjectingWhenLockConnectionBreaks(t *testing.T) {
	t.Parallel()
	pool, _ := pgtest.NewMigrated(t)
	ctx := context.Background()
	store := newPostgresFeed(pool)
	p := newRecorder("lockloss")
	p.createTable(t, pool)
	entered, cancelled := make(chan struct{}), make(chan struct{})
	blocking := true
	p.hook = func(ctx context.Context, stage string) error {
		if stage != "after" || !blocking {
			return nil
		}
		blocking = false // Apply runs on the runner's goroutine only
		close(entered)
		<-ctx.Done()
		close(cancelled)
		return ctx.Err()
	}
	last := appendEvents(t, store, 50, 5)
	start(t, projections.NewRunner(pool, store, p, testOptions(t, "replica-1")))

	<-entered
	var killed int
	if err := pool.QueryRow(ctx, `SELECT count(pg_terminate_backend(pid)) FROM pg_locks
		WHERE locktype = 'advisory' AND objsubid = 1 AND granted
		  AND database = (SELECT oid FROM pg_database WHERE datname = current_database())`).Scan(&killed); err != nil {
		t.Fatal(err)
	}
	if killed != 1 {
		t.Fatalf("terminated %d lock sessions, want 1", killed)
	}
	select {
	case <-cancelled:
	case <-time.After(2 * time.Second):
		t.Fatal("batch still running 2s after the lock connection broke")
	}
	waitCaughtUp(t, pool, p.name, last, 10*time.Second)
	assertAppliedOnce(t, pool, store, p)
	var epoch int64
	if err := pool.QueryRow(ctx, `SELECT leader_epoch FROM projection_checkpoints WHERE name = $1`, p.name).Scan(&epoch); err != nil {
		t.Fatal(err)
	}
	if epoch < 2 {
		t.Fatalf("leader epoch %d: the runner never took the lead again", epoch)
	}
}

// TestResetCheckpointRebuildsFromStart clears the projection's table and
// resets its checkpoint in one transaction while a runner is live: the
// runner is fenced off its old position and re-applies everything.
func TestResetCheckpointRebuildsFromStart(t *testing.T) {
	t.Parallel()
	forEachFeed(t, func(t *testing.T, pool *pgxpool.Pool, store runnerTestStore) {
		ctx := context.Background()
		p := newRecorder("rebuild")
		p.createTable(t, pool)
		last := appendEvents(t, store, 300, 5)
		start(t, projections.NewRunner(pool, store, p, testOptions(t, "replica-1")))
		waitCaughtUp(t, pool, p.name, last, 10*time.Second)

		err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, `DELETE FROM `+p.table()); err != nil {
				return err
			}
			return projections.ResetCheckpoint(ctx, tx, p.name)
		})
		if err != nil {
			t.Fatal(err)
		}
		last = appendEvents(t, store, 50, 5)
		waitCaughtUp(t, pool, p.name, last, 10*time.Second)
		assertAppliedOnce(t, pool, store, p)
		st, err := projections.Status(ctx, pool, store, p.name)
		if err != nil {
			t.Fatal(err)
		}
		if st.EventsProcessed != 350 {
			t.Fatalf("events processed since reset %d, want 350", st.EventsProcessed)
		}
	})
}
