package projections_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/tenancyhq/tenancy/eventstore"
	"github.com/tenancyhq/tenancy/eventstore/memory"
	"github.com/tenancyhq/tenancy/eventstore/postgres"
	"github.com/tenancyhq/tenancy/internal/pgtest"
	"github.com/tenancyhq/tenancy/projections"
)

// runnerTestStore is what the runner tests need of an event store: a feed
// for the runner and appends for the test.
type runnerTestStore interface {
	projections.Feed
	eventstore.Appender
}

// runnerFeedCase makes a fresh, empty store on the test's database.
type runnerFeedCase struct {
	name string
	open func(t *testing.T, pool *pgxpool.Pool) runnerTestStore
}

// runnerFeeds are the stores the runner tests run against: the memory store
// (fast; Status counts its lag by reading) and the Postgres adapter (a
// projections.FeedCounter, and visible to the child processes of the kill -9
// test). Add the EventStoreDB adapter here when it exists.
func runnerFeeds() []runnerFeedCase {
	return []runnerFeedCase{
		{"memory", func(*testing.T, *pgxpool.Pool) runnerTestStore { return memory.New() }},
		{"postgres", func(_ *testing.T, pool *pgxpool.Pool) runnerTestStore { return newPostgresFeed(pool) }},
	}
}

// newPostgresFeed is the Postgres adapter with small batches (more batches,
// more places to crash) and quick polling.
func newPostgresFeed(pool *pgxpool.Pool) *postgres.Store {
	return postgres.New(pool, postgres.WithBatchSize(100), postgres.WithPollInterval(50*time.Millisecond))
}

// forEachFeed runs fn as a parallel sub-test per feed, each on its own
// migrated database.
func forEachFeed(t *testing.T, fn func(t *testing.T, pool *pgxpool.Pool, store runnerTestStore)) {
	t.Helper()
	for _, fc := range runnerFeeds() {
		t.Run(fc.name, func(t *testing.T) {
			t.Parallel()
			pool, _ := pgtest.NewMigrated(t)
			fn(t, pool, fc.open(t, pool))
		})
	}
}

// recorder is the test projection: it inserts each event into its own table,
// whose primary key makes a second application of an event fail, so tests
// can check exactly-once by count and by set.
type recorder struct {
	name   string
	filter eventstore.Filter
	// by is stored with each row: which runner applied it.
	by string
	// inFlight and maxInFlight, shared between the runners of one test,
	// catch two Apply calls running at once.
	inFlight, maxInFlight *atomic.Int32
	// fail, when set, may fail the batch for one of its events.
	fail func(ev eventstore.RecordedEvent) error
	// hook, when set, runs before and after the inserts ("before", "after").
	hook func(ctx context.Context, stage string) error
	// delay is slept inside the transaction, to widen the window for
	// crashes and overlaps.
	delay time.Duration
	calls atomic.Int64
}

func newRecorder(name string) *recorder {
	return &recorder{
		name:        name,
		filter:      eventstore.Filter{StreamPrefixes: []string{"tenant-"}},
		by:          "runner",
		inFlight:    new(atomic.Int32),
		maxInFlight: new(atomic.Int32),
	}
}

func (p *recorder) Name() string              { return p.name }
func (p *recorder) Filter() eventstore.Filter { return p.filter }
func (p *recorder) table() string             { return pgx.Identifier{"applied_" + p.name}.Sanitize() }

func (p *recorder) Apply(ctx context.Context, tx pgx.Tx, events []projections.Event) error {
	p.calls.Add(1)
	n := p.inFlight.Add(1)
	defer p.inFlight.Add(-1)
	for {
		m := p.maxInFlight.Load()
		if n <= m || p.maxInFlight.CompareAndSwap(m, n) {
			break
		}
	}
	if p.hook != nil {
		if err := p.hook(ctx, "before"); err != nil {
			return err
		}
	}
	if p.fail != nil {
		for _, ev := range events {
			if err := p.fail(ev.RecordedEvent); err != nil {
				return err
			}
		}
	}
	ids := make([]uuid.UUID, len(events))
	streams := make([]string, len(events))
	commits := make([]int64, len(events))
	prepares := make([]int64, len(events))
	for i, ev := range events {
		ids[i], streams[i] = ev.ID, ev.Stream
		commits[i], prepares[i] = int64(ev.Position.Commit), int64(ev.Position.Prepare)
	}
	if _, err := tx.Exec(ctx, `INSERT INTO `+p.table()+` (event_id, stream, position_commit, position_prepare, applied_by)
		SELECT id, s, c, pr, $5 FROM unnest($1::uuid[], $2::text[], $3::bigint[], $4::bigint[]) AS u(id, s, c, pr)`,
		ids, streams, commits, prepares, p.by); err != nil {
		return fmt.Errorf("record %d events: %w", len(events), err)
	}
	if p.delay > 0 {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(p.delay):
		}
	}
	if p.hook != nil {
		if err := p.hook(ctx, "after"); err != nil {
			return err
		}
	}
	return nil
}

// createTable makes the recorder's table.
func (p *recorder) createTable(t testing.TB, pool *pgxpool.Pool) {
	t.Helper()
	pgtest.Exec(t, pool, `CREATE TABLE `+p.table()+` (
		event_id uuid PRIMARY KEY,
		stream text NOT NULL,
		position_commit bigint NOT NULL,
		position_prepare bigint NOT NULL,
		applied_by text NOT NULL)`)
}

// testOptions are fast options for tests, logging to the test's output.
func testOptions(t testing.TB, holder string) projections.Options {
	return projections.Options{
		Logger:           slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelInfo})).With("test", t.Name()),
		Holder:           holder,
		MaxAttempts:      3,
		BackoffBase:      time.Millisecond,
		BackoffMax:       5 * time.Millisecond,
		LockPollInterval: 50 * time.Millisecond,
	}
}

// appendEvents appends n events in chunks of up to 10 per append, spread
// over streams tenant-0..tenant-<streams-1>, and returns the last position.
func appendEvents(t testing.TB, store eventstore.Appender, n, streams int) eventstore.Position {
	t.Helper()
	return appendTo(t, store, n, func(i int) string { return fmt.Sprintf("tenant-%d", i%streams) })
}

// appendTo appends n events in chunks of up to 10, chunk i to stream(i).
func appendTo(t testing.TB, store eventstore.Appender, n int, stream func(i int) string) eventstore.Position {
	t.Helper()
	last, err := appendChunks(store, n, stream)
	if err != nil {
		t.Fatal(err)
	}
	return last
}

// appendEventsErr is appendEvents for goroutines other than the test's.
func appendEventsErr(store eventstore.Appender, n, streams int) (eventstore.Position, error) {
	return appendChunks(store, n, func(i int) string { return fmt.Sprintf("tenant-%d", i%streams) })
}

func appendChunks(store eventstore.Appender, n int, stream func(i int) string) (eventstore.Position, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var last eventstore.Position
	for chunk := 0; n > 0; chunk++ {
		size := min(n, 10)
		evs := make([]eventstore.EventData, size)
		for i := range evs {
			evs[i] = eventstore.EventData{ID: uuid.New(), Type: "TestHappened", SchemaVersion: 1, Data: []byte(`{"n":1}`)}
		}
		res, err := store.Append(ctx, stream(chunk), eventstore.Any, evs)
		if err != nil {
			return last, fmt.Errorf("append: %w", err)
		}
		last = res.Position
		n -= size
	}
	return last, nil
}

// running is a Run in the background, owned by the test.
type running struct {
	cancel context.CancelFunc
	done   chan struct{}
	err    error
}

// start runs r until stop (or the test's end).
func start(t testing.TB, r *projections.Runner) *running {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	run := &running{cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(run.done)
		run.err = r.Run(ctx)
	}()
	t.Cleanup(func() { _ = run.stop() })
	return run
}

// stop cancels the run and returns Run's result.
func (r *running) stop() error {
	r.cancel()
	<-r.done
	return r.err
}

// wait returns Run's result once it returns by itself, or fails after timeout.
func (r *running) wait(t testing.TB, timeout time.Duration) error {
	t.Helper()
	select {
	case <-r.done:
		return r.err
	case <-time.After(timeout):
		t.Fatalf("Run did not return within %s", timeout)
		return nil
	}
}

// waitCaughtUp waits until the projection's checkpoint reaches pos; it
// fails at once if the projection halts.
func waitCaughtUp(t testing.TB, pool *pgxpool.Pool, name string, pos eventstore.Position, timeout time.Duration) {
	t.Helper()
	ctx := context.Background()
	deadline := time.Now().Add(timeout)
	for {
		var state, lastErr string
		err := pool.QueryRow(ctx, `SELECT state, coalesce(last_error, '') FROM projection_checkpoints WHERE name = $1`, name).Scan(&state, &lastErr)
		if err != nil && !errors.Is(err, pgx.ErrNoRows) {
			t.Fatalf("read state: %v", err)
		}
		if state == string(projections.StateHalted) {
			t.Fatalf("projection %s halted: %s", name, lastErr)
		}
		cp, err := projections.ReadCheckpoint(ctx, pool, name)
		if err != nil {
			t.Fatal(err)
		}
		if cp.Compare(pos) >= 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("projection %s at %s, not at %s after %s", name, cp, pos, timeout)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// waitFor polls cond every 10ms until it holds or timeout passes.
func waitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// assertAppliedOnce checks that the recorder's table holds exactly the
// events of feed its filter selects (minus except): each once, none missing.
func assertAppliedOnce(t testing.TB, pool *pgxpool.Pool, feed eventstore.FeedReader, p *recorder, except ...uuid.UUID) {
	t.Helper()
	ctx := context.Background()
	all, err := feed.ReadAll(ctx, eventstore.Start, p.filter, 0)
	if err != nil {
		t.Fatal(err)
	}
	want := make(map[uuid.UUID]bool, len(all))
	for _, ev := range all {
		want[ev.ID] = true
	}
	for _, id := range except {
		delete(want, id)
	}
	var rows, distinct int
	if err := pool.QueryRow(ctx, `SELECT count(*), count(DISTINCT event_id) FROM `+p.table()).Scan(&rows, &distinct); err != nil {
		t.Fatal(err)
	}
	if rows != distinct {
		t.Fatalf("%d rows for %d distinct events: some applied twice", rows, distinct)
	}
	rs, err := pool.Query(ctx, `SELECT event_id FROM `+p.table())
	if err != nil {
		t.Fatal(err)
	}
	got, err := pgx.CollectRows(rs, pgx.RowTo[uuid.UUID])
	if err != nil {
		t.Fatal(err)
	}
	missing := len(want)
	for _, id := range got {
		if !want[id] {
			t.Fatalf("event %s applied but not expected", id)
		}
		missing--
	}
	if missing != 0 || len(got) != len(want) {
		t.Fatalf("applied %d events, want %d (%d missing)", len(got), len(want), missing)
	}
}

// lockedRand is a seeded random source a test's goroutines share; the seed
// is logged so a failing run can be replayed.
type lockedRand struct {
	mu  sync.Mutex
	rng *rand.Rand
}

func newLockedRand(t testing.TB) *lockedRand {
	seed := uint64(time.Now().UnixNano())
	t.Logf("random seed %d", seed)
	return &lockedRand{rng: rand.New(rand.NewPCG(seed, seed>>1))}
}

func (r *lockedRand) intN(n int) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.rng.IntN(n)
}
