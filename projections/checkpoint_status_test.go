package projections_test

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/tenancyhq/tenancy/projections"
)

// TestStatusReportsLagWhenBehindAndNoneWhenCaughtUp runs on a feed that
// counts (postgres, a FeedCounter) and one that is counted by reading (memory).
func TestStatusReportsLagWhenBehindAndNoneWhenCaughtUp(t *testing.T) {
	t.Parallel()
	forEachFeed(t, func(t *testing.T, pool *pgxpool.Pool, store runnerTestStore) {
		ctx := context.Background()
		p := newRecorder("lag")
		p.createTable(t, pool)

		st, err := projections.Status(ctx, pool, store, p.name)
		if err != nil {
			t.Fatal(err)
		}
		if st.State != projections.StateIdle || st.LagEvents != 0 || st.LagSeconds != 0 || !st.Position.IsZero() {
			t.Fatalf("status of a projection that never ran, on an empty feed: %+v", st)
		}

		first := appendEvents(t, store, 10, 2)
		run := start(t, projections.NewRunner(pool, store, p, testOptions(t, "replica-1")))
		waitCaughtUp(t, pool, p.name, first, 10*time.Second)
		if err := run.stop(); err != nil {
			t.Fatal(err)
		}

		appended := time.Now()
		last := appendEvents(t, store, 30, 3)
		time.Sleep(200 * time.Millisecond)
		head := appendTo(t, store, 5, func(int) string { return "other-1" }) // not the projection's
		// A Postgres feed shows an event once no older transaction is running,
		// in any database of the server (other tests run in parallel).
		waitFor(t, 5*time.Second, "the feed to show the last event", func() bool { return headOf(t, store) == head })
		st, err = projections.Status(ctx, pool, store, p.name)
		if err != nil {
			t.Fatal(err)
		}
		if st.Position != first || st.Head != head || st.LagEvents != 30 || st.LagCapped ||
			st.LagSeconds < 0.2 || st.LagSeconds > time.Since(appended).Seconds()+1 ||
			st.State != projections.StateIdle || st.Holder != "replica-1" || st.EventsProcessed != 10 {
			t.Fatalf("status when behind (head %s): %+v", head, st)
		}

		start(t, projections.NewRunner(pool, store, p, testOptions(t, "replica-2")))
		waitCaughtUp(t, pool, p.name, last, 10*time.Second)
		st, err = projections.Status(ctx, pool, store, p.name)
		if err != nil {
			t.Fatal(err)
		}
		if st.Position != last || st.Head != head || st.LagEvents != 0 || st.LagSeconds != 0 ||
			st.State != projections.StateRunning || st.Holder != "replica-2" || st.EventsProcessed != 40 ||
			st.LastEventAt.IsZero() || st.Failures != 0 || st.LastError != "" {
			t.Fatalf("status when caught up: %+v", st)
		}
	})
}
