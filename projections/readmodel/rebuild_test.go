package readmodel_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tenancyhq/tenancy/commands"
	"github.com/tenancyhq/tenancy/eventstore/postgres"
	"github.com/tenancyhq/tenancy/internal/pgtest"
	"github.com/tenancyhq/tenancy/projections"
	"github.com/tenancyhq/tenancy/projections/readmodel"
	"github.com/tenancyhq/tenancy/queries"
	"github.com/tenancyhq/tenancy/tenantlog"
)

// TestRebuildUnderTrafficKeepsServingAndEndsEqual rebuilds the read model
// while commands keep arriving, the live projection keeps running and queries
// keep reading; no query fails or comes back empty, an interrupted rebuild
// resumes, a second rebuild at once is refused, and at the end the read model
// equals a fresh fold of the events.
func TestRebuildUnderTrafficKeepsServingAndEndsEqual(t *testing.T) {
	t.Parallel()
	pool, _ := pgtest.NewMigrated(t)
	store := postgres.New(pool)
	h := commands.NewHandler(store, commands.Options{})
	ctx := context.Background()
	bg, stopAll := context.WithCancel(ctx)
	defer stopAll()

	var wg sync.WaitGroup
	// The live projection.
	live := projections.NewRunner(pool, store, readmodel.New(cat), projections.Options{LockPollInterval: 20 * time.Millisecond, Decode: tenantlog.Decode})
	wg.Add(1)
	go func() { defer wg.Done(); _ = live.Run(bg) }()
	// Some history before the rebuild starts, then traffic throughout.
	seed, stopSeed := context.WithTimeout(bg, 1500*time.Millisecond)
	traffic(seed, t, h, 100)
	stopSeed()
	trafficCtx, stopTraffic := context.WithCancel(bg)
	for w := 0; w < 2; w++ {
		wg.Add(1)
		go func() { defer wg.Done(); traffic(trafficCtx, t, h, uint64(200+w)) }()
	}
	waitCaughtUp(t, pool, store, 30*time.Second)
	// Queries throughout: never an error, never an empty list.
	reader := queries.NewReader(pool)
	var reads, failures atomic.Int64
	queryCtx, stopQueries := context.WithCancel(bg)
	wg.Add(1)
	go func() {
		defer wg.Done()
		for queryCtx.Err() == nil {
			page, err := reader.List(queryCtx, queries.ListFilter{Limit: 5})
			if queryCtx.Err() != nil {
				return
			}
			reads.Add(1)
			if err != nil || len(page.Tenants) == 0 {
				failures.Add(1)
				t.Errorf("query during rebuild: %d tenants, err %v", len(page.Tenants), err)
			}
		}
	}()

	indexes := func() []string {
		var names []string
		rows, err := pool.Query(ctx, `SELECT tablename || '.' || indexname FROM pg_indexes WHERE tablename IN ('tenants', 'tenant_events') ORDER BY 1`)
		if err != nil {
			t.Fatal(err)
		}
		for rows.Next() {
			var n string
			_ = rows.Scan(&n)
			names = append(names, n)
		}
		rows.Close()
		return names
	}
	before := indexes()

	// An interrupted rebuild (once it has built something: a fixed delay
	// could end it before its first batch on a loaded machine)…
	interrupted, cancel := context.WithCancel(ctx)
	var phases []string
	err := readmodel.Rebuild(interrupted, pool, postgres.New(pool, postgres.WithBatchSize(50)), cat, readmodel.RebuildOptions{ProgressEvery: 50 * time.Millisecond,
		Progress: func(p readmodel.Progress) {
			if p.Phase == "building" && p.Processed > 0 {
				cancel()
			}
		}})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("interrupted rebuild: %v", err)
	}
	// …resumes; a second one at the same time is refused.
	second := make(chan error, 1)
	var resumed atomic.Bool
	err = readmodel.Rebuild(ctx, pool, postgres.New(pool, postgres.WithBatchSize(50)), cat, readmodel.RebuildOptions{
		ProgressEvery: 50 * time.Millisecond,
		Progress: func(p readmodel.Progress) {
			if p.Resumed {
				resumed.Store(true)
			}
			if len(phases) == 0 || phases[len(phases)-1] != p.Phase {
				phases = append(phases, p.Phase)
			}
			if len(phases) == 1 && len(second) == 0 {
				second <- readmodel.Rebuild(ctx, pool, store, cat, readmodel.RebuildOptions{})
			}
		},
	})
	if err != nil {
		t.Fatalf("rebuild: %v", err)
	}
	if err := <-second; !errors.Is(err, readmodel.ErrRebuildRunning) {
		t.Fatalf("a second rebuild at once: %v, want ErrRebuildRunning", err)
	}
	if after := indexes(); fmt.Sprint(after) != fmt.Sprint(before) {
		t.Errorf("indexes after the rebuild %v, before %v", after, before)
	}
	if !resumed.Load() {
		t.Errorf("the rebuild after an interruption did not resume")
	}
	if len(phases) < 3 || phases[len(phases)-1] != "done" {
		t.Errorf("progress phases %v", phases)
	}
	// Traffic goes on a little after the switch; the live runner continues
	// from where the rebuilt tables stand.
	time.Sleep(300 * time.Millisecond)
	stopTraffic()
	stopQueries()
	waitCaughtUp(t, pool, store, 30*time.Second)
	// A command cancelled with the traffic may still commit after the wait:
	// stop everything, then compare the read model with the fold up to
	// where it stands.
	stopAll()
	wg.Wait()
	at, err := projections.ReadCheckpoint(ctx, pool, readmodel.Name)
	if err != nil {
		t.Fatal(err)
	}
	diffs, err := readmodel.Verify(ctx, pool, store, cat, at, readmodel.LiveTables)
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range diffs {
		t.Errorf("drift after rebuild: %s", d)
	}
	if reads.Load() < 10 || failures.Load() > 0 {
		t.Fatalf("%d reads, %d failed", reads.Load(), failures.Load())
	}
}
