package queries_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/tenancyhq/tenancy/eventstore"
	"github.com/tenancyhq/tenancy/internal/pgtest"
	"github.com/tenancyhq/tenancy/queries"
)

// setCheckpoint moves the read model's checkpoint row as the projection would.
func setCheckpoint(ctx context.Context, pool *pgxpool.Pool, p eventstore.Position) error {
	_, err := pool.Exec(ctx, `INSERT INTO projection_checkpoints (name, position_commit, position_prepare) VALUES ('read-model', $1, $2)
		ON CONFLICT (name) DO UPDATE SET position_commit = EXCLUDED.position_commit, position_prepare = EXCLUDED.position_prepare`,
		int64(p.Commit), int64(p.Prepare))
	return err
}

func TestCheckpointIsStartBeforeTheProjectionRuns(t *testing.T) {
	t.Parallel()
	pool, _ := pgtest.NewMigrated(t)
	r := queries.NewReader(pool)
	ctx := context.Background()
	cp, err := r.Checkpoint(ctx)
	if err != nil || cp != eventstore.Start {
		t.Fatalf("Checkpoint() = %s, %v; want Start", cp, err)
	}
	if err := r.WaitFor(ctx, eventstore.Start, 0); err != nil {
		t.Fatalf("WaitFor(Start) before the projection ran: %v", err)
	}
	if err := setCheckpoint(ctx, pool, eventstore.Position{Commit: 7, Prepare: 3}); err != nil {
		t.Fatal(err)
	}
	if cp, err := r.Checkpoint(ctx); err != nil || cp != (eventstore.Position{Commit: 7, Prepare: 3}) {
		t.Fatalf("Checkpoint() = %s, %v; want 7/3", cp, err)
	}
}

func TestWaitForReturnsAtOnceWhenReached(t *testing.T) {
	t.Parallel()
	pool, _ := pgtest.NewMigrated(t)
	r := queries.NewReader(pool)
	ctx := context.Background()
	if err := setCheckpoint(ctx, pool, eventstore.Position{Commit: 10, Prepare: 5}); err != nil {
		t.Fatal(err)
	}
	for _, p := range []eventstore.Position{{Commit: 10, Prepare: 5}, {Commit: 10, Prepare: 4}, {Commit: 9, Prepare: 99}, eventstore.Start} {
		start := time.Now()
		if err := r.WaitFor(ctx, p, time.Minute); err != nil {
			t.Fatalf("WaitFor(%s): %v", p, err)
		}
		if d := time.Since(start); d > 2*time.Second {
			t.Fatalf("WaitFor(%s) took %s for a position already reached", p, d)
		}
	}
}

func TestWaitForReturnsOnceTheProjectionMovesPastThePosition(t *testing.T) {
	t.Parallel()
	pool, _ := pgtest.NewMigrated(t)
	r := queries.NewReader(pool)
	ctx := context.Background()
	if err := setCheckpoint(ctx, pool, eventstore.Position{Commit: 1, Prepare: 1}); err != nil {
		t.Fatal(err)
	}
	want := eventstore.Position{Commit: 5, Prepare: 2}
	var moved time.Time
	var wg sync.WaitGroup
	var moveErr error
	wg.Go(func() {
		time.Sleep(50 * time.Millisecond)
		// first not far enough, then past it
		if moveErr = setCheckpoint(ctx, pool, eventstore.Position{Commit: 5, Prepare: 1}); moveErr != nil {
			return
		}
		time.Sleep(100 * time.Millisecond)
		moved = time.Now()
		moveErr = setCheckpoint(ctx, pool, eventstore.Position{Commit: 6, Prepare: 0})
	})
	err := r.WaitFor(ctx, want, 30*time.Second)
	returned := time.Now()
	wg.Wait()
	if moveErr != nil {
		t.Fatal(moveErr)
	}
	if err != nil {
		t.Fatalf("WaitFor: %v", err)
	}
	if returned.Before(moved) {
		t.Fatal("WaitFor returned before the checkpoint reached the position")
	}
	if lag := returned.Sub(moved); lag > 2*time.Second {
		t.Fatalf("WaitFor returned %s after the checkpoint moved", lag)
	}
}

func TestWaitForTimesOutWithErrNotCaughtUp(t *testing.T) {
	t.Parallel()
	pool, _ := pgtest.NewMigrated(t)
	r := queries.NewReader(pool)
	ctx := context.Background()
	if err := setCheckpoint(ctx, pool, eventstore.Position{Commit: 1, Prepare: 1}); err != nil {
		t.Fatal(err)
	}
	for _, timeout := range []time.Duration{-time.Second, 0, 80 * time.Millisecond} {
		start := time.Now()
		err := r.WaitFor(ctx, eventstore.Position{Commit: 2}, timeout)
		if !errors.Is(err, queries.ErrNotCaughtUp) {
			t.Fatalf("timeout %s: %v, want ErrNotCaughtUp", timeout, err)
		}
		if d := time.Since(start); d < timeout || d > timeout+2*time.Second {
			t.Fatalf("timeout %s: returned after %s", timeout, d)
		}
	}
}

func TestWaitForStopsWhenTheContextEnds(t *testing.T) {
	t.Parallel()
	pool, _ := pgtest.NewMigrated(t)
	r := queries.NewReader(pool)
	ctx, cancel := context.WithTimeout(context.Background(), 80*time.Millisecond)
	defer cancel()
	start := time.Now()
	err := r.WaitFor(ctx, eventstore.Position{Commit: 2}, time.Minute)
	if !errors.Is(err, context.DeadlineExceeded) || errors.Is(err, queries.ErrNotCaughtUp) {
		t.Fatalf("WaitFor with an ending context: %v, want the context's error", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("WaitFor returned %s after its context ended", d)
	}
}
