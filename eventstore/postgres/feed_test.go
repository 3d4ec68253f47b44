package postgres_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/tenancyhq/tenancy/eventstore"
	"github.com/tenancyhq/tenancy/eventstore/eventstoretest"
	"github.com/tenancyhq/tenancy/eventstore/postgres"
	"github.com/tenancyhq/tenancy/internal/pgtest"
)

// newPool is a pool of up to maxConns connections on a fresh, migrated
// database, for tests with more concurrent writers than the default pool has
// connections.
func newPool(t testing.TB, maxConns int32) *pgxpool.Pool {
	t.Helper()
	_, dbURL := pgtest.NewMigrated(t)
	cfg, err := pgxpool.ParseConfig(dbURL)
	if err != nil {
		t.Fatal(err)
	}
	cfg.MaxConns = maxConns
	pool, err := pgxpool.NewWithConfig(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	return pool
}

// TestFeedNeverSkipsEventsOfLateCommits is the gap test. Sixteen writers
// append for a few seconds; a third of their appends hold the transaction
// open for a while before committing (some roll back), so positions are
// taken long before they commit and transactions commit out of position
// order. A subscriber started before the writers, one started after them,
// and a reader polling ReadAll from its checkpoint all must see every
// committed event exactly once, none that rolled back, and all in the same
// order.
func TestFeedNeverSkipsEventsOfLateCommits(t *testing.T) {
	t.Parallel()
	const (
		writers  = 16
		writeFor = 3 * time.Second
	)
	pool := newPool(t, writers+4)
	s := postgres.New(pool, postgres.WithPollInterval(100*time.Millisecond), postgres.WithBatchSize(50))
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	// want is the number of committed events, set when the writers are done:
	// the early subscriber and the polling reader stop once they have that
	// many and one more look finds nothing, or when they give up (the
	// assertions then say what is missing).
	var want, giveUp atomic.Int64
	want.Store(-1)
	done := func(n int) bool {
		w := want.Load()
		return w >= 0 && (int64(n) >= w || time.Now().UnixNano() > giveUp.Load())
	}

	early, err := s.SubscribeAll(ctx, eventstore.Start, eventstore.Filter{})
	if err != nil {
		t.Fatal(err)
	}
	defer early.Close()
	var (
		earlyGot  []eventstore.RecordedEvent
		earlyErr  error
		earlyDone = make(chan struct{})
	)
	go func() {
		defer close(earlyDone)
		for {
			c, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
			evs, err := early.Next(c)
			cancel()
			earlyGot = append(earlyGot, evs...)
			switch {
			case errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil:
				if done(len(earlyGot)) {
					return // and nothing more came for a while
				}
			case err != nil:
				earlyErr = err
				return
			}
		}
	}()

	// The polling reader: ReadAll from its checkpoint, never seeing anything
	// at or behind it.
	var (
		polled   []eventstore.RecordedEvent
		pollErr  error
		pollDone = make(chan struct{})
	)
	go func() {
		defer close(pollDone)
		checkpoint := eventstore.Start
		for {
			evs, err := s.ReadAll(ctx, checkpoint, eventstore.Filter{}, 40)
			if err != nil {
				pollErr = err
				return
			}
			for _, e := range evs {
				if e.Position.Compare(checkpoint) <= 0 {
					pollErr = fmt.Errorf("ReadAll after %v returned %s at %v", checkpoint, e.ID, e.Position)
					return
				}
				checkpoint = e.Position
			}
			polled = append(polled, evs...)
			if len(evs) == 0 {
				if done(len(polled)) {
					return
				}
				time.Sleep(time.Duration(rand.IntN(5)) * time.Millisecond)
			}
		}
	}()

	var (
		mu         sync.Mutex
		committed  = map[uuid.UUID]bool{}
		rolledBack = map[uuid.UUID]bool{}
		held       int
		wg         sync.WaitGroup
	)
	stopWriting := time.Now().Add(writeFor)
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			stream := fmt.Sprintf("tenant-gap-%02d-%s", w, uuid.NewString())
			next := eventstore.NoStream
			for time.Now().Before(stopWriting) {
				evs := eventstoretest.Events(1 + rand.IntN(3))
				var res eventstore.AppendResult
				commit := true
				if rand.IntN(3) == 0 {
					// Take positions now, commit later (or never).
					tx, err := pool.Begin(ctx)
					if err != nil {
						t.Error(err)
						return
					}
					res, err = s.AppendInTx(ctx, tx, stream, next, evs)
					if err != nil {
						t.Errorf("append in transaction: %v", err)
						tx.Rollback(ctx)
						return
					}
					time.Sleep(time.Duration(10+rand.IntN(190)) * time.Millisecond)
					if commit = rand.IntN(10) != 0; commit {
						err = tx.Commit(ctx)
					} else {
						err = tx.Rollback(ctx)
					}
					if err != nil {
						t.Errorf("end transaction: %v", err)
						return
					}
					mu.Lock()
					held++
					mu.Unlock()
				} else {
					var err error
					if res, err = s.Append(ctx, stream, next, evs); err != nil {
						t.Errorf("append: %v", err)
						return
					}
				}
				mu.Lock()
				for _, e := range evs {
					if commit {
						committed[e.ID] = true
					} else {
						rolledBack[e.ID] = true
					}
				}
				mu.Unlock()
				if commit {
					next = eventstore.Exact(res.NextExpectedVersion)
				}
			}
		}()
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	total := len(committed)
	t.Logf("%d events committed (%d transactions held open, of which some rolled back: %d events)", total, held, len(rolledBack))

	giveUp.Store(time.Now().Add(10 * time.Second).UnixNano())
	want.Store(int64(total))
	<-earlyDone
	<-pollDone
	if earlyErr != nil {
		t.Fatalf("early subscriber: %v", earlyErr)
	}
	if pollErr != nil {
		t.Fatalf("polling reader: %v", pollErr)
	}

	late, err := s.SubscribeAll(ctx, eventstore.Start, eventstore.Filter{})
	if err != nil {
		t.Fatal(err)
	}
	defer late.Close()
	var lateGot []eventstore.RecordedEvent
	for len(lateGot) < total {
		c, cancel := context.WithTimeout(ctx, 2*time.Second)
		evs, err := late.Next(c)
		cancel()
		if errors.Is(err, context.DeadlineExceeded) {
			break // the assertions say what is missing
		}
		if err != nil {
			t.Fatalf("late subscriber after %d of %d events: %v", len(lateGot), total, err)
		}
		lateGot = append(lateGot, evs...)
	}

	all, err := s.ReadAll(ctx, eventstore.Start, eventstore.Filter{}, 0)
	if err != nil {
		t.Fatal(err)
	}
	for name, got := range map[string][]eventstore.RecordedEvent{
		"early subscriber": earlyGot, "late subscriber": lateGot, "polling reader": polled, "ReadAll": all,
	} {
		assertEveryCommittedEventOnce(t, name, got, committed, rolledBack)
		if len(got) == len(lateGot) {
			for i := range got {
				if got[i].ID != lateGot[i].ID || got[i].Position != lateGot[i].Position {
					t.Errorf("%s and late subscriber differ at %d: %s at %v, %s at %v",
						name, i, got[i].ID, got[i].Position, lateGot[i].ID, lateGot[i].Position)
					break
				}
			}
		}
	}
	head, err := s.Head(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if head != all[len(all)-1].Position {
		t.Errorf("head = %v, want the last event's position %v", head, all[len(all)-1].Position)
	}
}

func assertEveryCommittedEventOnce(t *testing.T, name string, got []eventstore.RecordedEvent, committed, rolledBack map[uuid.UUID]bool) {
	t.Helper()
	errs := 0
	fail := func(format string, args ...any) {
		t.Helper()
		if errs++; errs <= 5 {
			t.Errorf(name+": "+format, args...)
		}
	}
	seen := make(map[uuid.UUID]bool, len(got))
	versions := map[string]uint64{}
	for i, e := range got {
		switch {
		case rolledBack[e.ID]:
			fail("event %s of a rolled back transaction", e.ID)
		case !committed[e.ID]:
			fail("unknown event %s", e.ID)
		case seen[e.ID]:
			fail("event %s twice", e.ID)
		}
		seen[e.ID] = true
		if i > 0 && e.Position.Compare(got[i-1].Position) <= 0 {
			fail("position %v after %v", e.Position, got[i-1].Position)
		}
		if v, ok := versions[e.Stream]; ok && e.Version != v+1 {
			fail("%s version %d after %d", e.Stream, e.Version, v)
		}
		versions[e.Stream] = e.Version
	}
	if len(seen) != len(committed) {
		fail("%d of %d committed events", len(seen), len(committed))
	}
	if errs > 5 {
		t.Errorf("%s: %d errors, 5 shown", name, errs)
	}
}
