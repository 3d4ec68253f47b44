package readmodel_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/tenancyhq/tenancy/aggregate"
	"github.com/tenancyhq/tenancy/commands"
	"github.com/tenancyhq/tenancy/eventstore"
	"github.com/tenancyhq/tenancy/eventstore/postgres"
	"github.com/tenancyhq/tenancy/internal/pgtest"
	"github.com/tenancyhq/tenancy/projections"
	"github.com/tenancyhq/tenancy/projections/readmodel"
	"github.com/tenancyhq/tenancy/tenantlog"
)

// TestReadModelSurvivesCrashesUnderTraffic runs the read-model projection on
// the Postgres event store while commands keep arriving, cancelling the
// runner at random moments (mid-batch, mid-commit) and starting it again.
// At the end the read model equals a fresh fold of the event store: nothing
// applied twice, nothing missing.
func TestReadModelSurvivesCrashesUnderTraffic(t *testing.T) {
	t.Parallel()
	crashUnderTraffic(t)
}

// TestReadModelSurvivesCrashesWhileAnotherDatabaseHoldsATransaction is the
// same while a transaction stays open in another database of the server, as
// other tests' (or services') do on a loaded machine: the cause of this
// test's old flakiness, when the feed's horizon was the server-wide xmin and
// Head answered a stale head (the read model then looked ahead of it).
func TestReadModelSurvivesCrashesWhileAnotherDatabaseHoldsATransaction(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
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
	defer func() {
		_ = tx.Rollback(ctx)
		_ = conn.Close(ctx)
	}()
	crashUnderTraffic(t)
}

func crashUnderTraffic(t *testing.T) {
	pool, _ := pgtest.NewMigrated(t)
	store := postgres.New(pool)
	h := commands.NewHandler(store, commands.Options{})
	ctx := context.Background()

	trafficCtx, stopTraffic := context.WithCancel(ctx)
	var wg sync.WaitGroup
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			traffic(trafficCtx, t, h, uint64(w))
		}()
	}

	r := rand.New(rand.NewPCG(3, 3))
	// At least 25 crashes, and on until the traffic has written enough to
	// make them count (a loaded machine writes slowly).
	enough := func() bool {
		var n int
		_ = pool.QueryRow(ctx, `SELECT count(*) FROM events WHERE stream LIKE 'tenant-%'`).Scan(&n)
		return n >= 300
	}
	deadline := time.Now().Add(60 * time.Second)
	for crash := 0; crash < 25 || (!enough() && time.Now().Before(deadline)); crash++ {
		rctx, cancel := context.WithTimeout(ctx, time.Duration(5+r.IntN(120))*time.Millisecond)
		runner := projections.NewRunner(pool, store, readmodel.New(cat), projections.Options{LockPollInterval: 20 * time.Millisecond, Decode: tenantlog.Decode})
		if err := runner.Run(rctx); err != nil && !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("run %d: %v", crash, err)
		}
		cancel()
	}
	stopTraffic()
	wg.Wait()
	// A command whose context ended after its batch reached the server may
	// still commit there (the server runs what it received and learns of
	// the closed connection only when it answers), after Head below. So the
	// read model is verified up to the checkpoint it reached, as tenancy
	// verify does, and that checkpoint must be at or past the last tenant
	// event committed now.
	var head eventstore.Position
	if err := pool.QueryRow(ctx, `SELECT transaction_id, position FROM events WHERE stream LIKE 'tenant-%'
		ORDER BY transaction_id DESC, position DESC LIMIT 1`).Scan(&head.Commit, &head.Prepare); err != nil {
		t.Fatal(err)
	}
	// A last, uninterrupted run.
	fctx, cancel := context.WithCancel(ctx)
	runner := projections.NewRunner(pool, store, readmodel.New(cat), projections.Options{LockPollInterval: 20 * time.Millisecond, Decode: tenantlog.Decode})
	done := make(chan error, 1)
	go func() { done <- runner.Run(fctx) }()
	waitCaughtUp(t, pool, store, 30*time.Second)
	for reached := time.Now().Add(30 * time.Second); time.Now().Before(reached); time.Sleep(5 * time.Millisecond) {
		if cp, err := projections.ReadCheckpoint(ctx, pool, readmodel.Name); err != nil || cp.Compare(head) >= 0 {
			break
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	upTo, err := projections.ReadCheckpoint(ctx, pool, readmodel.Name)
	if err != nil {
		t.Fatal(err)
	}
	if upTo.Compare(head) < 0 {
		t.Fatalf("read model at %v, below the head %v", upTo, head)
	}
	diffs, err := readmodel.Verify(ctx, pool, store, cat, upTo, readmodel.LiveTables)
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range diffs {
		t.Errorf("drift after crashes: %s", d)
	}
	var events int
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM tenant_events`).Scan(&events); err != nil {
		t.Fatal(err)
	}
	if events < 100 {
		t.Fatalf("only %d events: the test exercised little", events)
	}
}

// traffic creates tenants and sends them commands until ctx ends.
func traffic(ctx context.Context, t *testing.T, h *commands.Handler, seed uint64) {
	r := rand.New(rand.NewPCG(seed, 11))
	var ids []uuid.UUID
	cmds := []aggregate.Command{
		aggregate.CompleteProvisioning{}, aggregate.ConvertTrial{}, aggregate.Suspend{Reason: aggregate.ReasonAbuseDetected},
		aggregate.Resume{}, aggregate.ChangeEdition{Edition: aggregate.EditionEnterprise}, aggregate.Cancel{},
		aggregate.RevertCancellation{}, aggregate.UpdateProfile{Labels: &map[string]string{"x": "y"}},
	}
	for n := 0; ctx.Err() == nil; n++ {
		if len(ids) < 5 || r.IntN(4) == 0 {
			res, err := h.Create(ctx, aggregate.Create{Name: fmt.Sprintf("crash %d-%d", seed, n), Edition: "professional", Region: "us-east-1"}, aggregate.Metadata{})
			if err == nil {
				ids = append(ids, res.TenantID)
			} else if ctx.Err() == nil {
				t.Errorf("create: %v", err)
			}
			continue
		}
		_, err := h.Execute(ctx, commands.Request{TenantID: ids[r.IntN(len(ids))], Command: cmds[r.IntN(len(cmds))]})
		if _, domain := aggregate.AsError(err); err != nil && !domain && ctx.Err() == nil && !errors.Is(err, commands.ErrTooManyConflicts) {
			t.Errorf("command: %v", err)
		}
	}
}

// BenchmarkCatchUp reports how fast the read-model projection catches up
// from a 100,000-event backlog (events/s into tenants and tenant_events).
func BenchmarkCatchUp(b *testing.B) {
	const tenants, perTenant = 10_000, 10
	pool, _ := pgtest.NewMigrated(b)
	store := postgres.New(pool)
	ctx := context.Background()
	h := commands.NewHandler(store, commands.Options{})
	// Write the backlog with 8 writers.
	var wg sync.WaitGroup
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < tenants; i += 8 {
				res, err := h.Create(ctx, aggregate.Create{Name: fmt.Sprintf("bench %d", i), Edition: "professional", Region: "us-east-1"}, aggregate.Metadata{})
				if err != nil {
					b.Error(err)
					return
				}
				for k := 1; k < perTenant; k++ {
					var cmd aggregate.Command = aggregate.UpdateProfile{Labels: &map[string]string{"k": fmt.Sprint(k)}}
					if k == 1 {
						cmd = aggregate.CompleteProvisioning{}
					}
					if _, err := h.Execute(ctx, commands.Request{TenantID: res.TenantID, Command: cmd}); err != nil {
						b.Error(err)
						return
					}
				}
			}
		}()
	}
	wg.Wait()
	for _, size := range []int{500, 2000, 5000} {
		b.Run(fmt.Sprintf("batch=%d", size), func(b *testing.B) {
			feed := postgres.New(pool, postgres.WithBatchSize(size))
			for i := 0; i < b.N; i++ {
				b.StopTimer()
				pgtest.Exec(b, pool, `TRUNCATE tenants, tenant_events`)
				if err := projections.ResetCheckpoint(ctx, pool, readmodel.Name); err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
				start := time.Now()
				rctx, cancel := context.WithCancel(ctx)
				runner := projections.NewRunner(pool, feed, readmodel.New(cat), projections.Options{LockPollInterval: 10 * time.Millisecond, AsynchronousCommit: true, Decode: tenantlog.Decode})
				done := make(chan error, 1)
				go func() { done <- runner.Run(rctx) }()
				waitCaughtUp(b, pool, feed, 5*time.Minute)
				elapsed := time.Since(start)
				cancel()
				<-done
				b.ReportMetric(float64(tenants*perTenant)/elapsed.Seconds(), "events/s")
			}
		})
	}
}

// waitCaughtUp waits until the read-model projection has no tenant event
// left to apply. (Its checkpoint only moves on tenant events, so it may stay
// below the feed's head, which can be a name reservation.)
func waitCaughtUp(tb testing.TB, pool *pgxpool.Pool, store *postgres.Store, within time.Duration) {
	tb.Helper()
	deadline := time.Now().Add(within)
	// Caught up means: has applied everything committed when the wait
	// began. Under continuous traffic the lag itself may never read 0.
	head, err := store.Head(context.Background())
	if err != nil {
		tb.Fatal(err)
	}
	for {
		st, err := projections.Status(context.Background(), pool, store, readmodel.Name)
		if err != nil {
			tb.Fatal(err)
		}
		if st.EventsProcessed > 0 && (st.LagEvents == 0 || st.Position.Compare(head) >= 0) {
			return
		}
		if time.Now().After(deadline) {
			tb.Fatalf("read model stuck at %v with %d events to go", st.Position, st.LagEvents)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
