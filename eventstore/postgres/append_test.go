package postgres_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/tenancyhq/tenancy/eventstore"
	"github.com/tenancyhq/tenancy/eventstore/eventstoretest"
	"github.com/tenancyhq/tenancy/eventstore/postgres"
)

func testContext(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func mustAppend(t *testing.T, s *postgres.Store, stream string, exp eventstore.ExpectedVersion, evs []eventstore.EventData) eventstore.AppendResult {
	t.Helper()
	res, err := s.Append(testContext(t), stream, exp, evs)
	if err != nil {
		t.Fatalf("append %d events to %s at %s: %v", len(evs), stream, exp, err)
	}
	return res
}

func streamLength(t *testing.T, s *postgres.Store, stream string) int {
	t.Helper()
	evs, err := s.ReadStream(testContext(t), stream, eventstore.Forward, 0, 0)
	if errors.Is(err, eventstore.ErrStreamNotFound) {
		return 0
	}
	if err != nil {
		t.Fatal(err)
	}
	for i, e := range evs {
		if e.Version != uint64(i) {
			t.Fatalf("%s: event %d has version %d", stream, i, e.Version)
		}
	}
	return len(evs)
}

// waitUntilBlocked waits until a session of the test database waits on a
// lock: the append started in the background has reached the unique index.
func waitUntilBlocked(t *testing.T, pool *pgxpool.Pool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		var n int
		err := pool.QueryRow(testContext(t), `SELECT count(*) FROM pg_stat_activity
			WHERE datname = current_database() AND wait_event_type = 'Lock'`).Scan(&n)
		if err != nil {
			t.Fatal(err)
		}
		if n > 0 {
			return
		}
	}
	t.Fatal("no append blocked on the unique index")
}

func TestRetriedAppendReturnsOriginalResult(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	tests := []struct {
		name     string
		before   int // events in the stream before the append
		expected func(before int) eventstore.ExpectedVersion
	}{
		{"no stream", 0, func(int) eventstore.ExpectedVersion { return eventstore.NoStream }},
		{"exact", 2, func(b int) eventstore.ExpectedVersion { return eventstore.Exact(uint64(b - 1)) }},
		{"any", 3, func(int) eventstore.ExpectedVersion { return eventstore.Any }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			stream := "tenant-" + uuid.NewString()
			if tc.before > 0 {
				mustAppend(t, s, stream, eventstore.NoStream, eventstoretest.Events(tc.before))
			}
			evs := eventstoretest.Events(3)
			first := mustAppend(t, s, stream, tc.expected(tc.before), evs)
			again := mustAppend(t, s, stream, tc.expected(tc.before), evs)
			// Even after the stream moved on, the retry lands where the first did.
			mustAppend(t, s, stream, eventstore.Any, eventstoretest.Events(1))
			late := mustAppend(t, s, stream, tc.expected(tc.before), evs)
			if again != first || late != first {
				t.Errorf("retries = %+v and %+v, want %+v", again, late, first)
			}
			if n := streamLength(t, s, stream); n != tc.before+4 {
				t.Errorf("stream has %d events, want %d", n, tc.before+4)
			}
		})
	}
}

// TestRetryWhileOriginalInFlight retries an append whose first attempt is
// still running (the caller timed out, the server did not): the retry waits
// on the unique index and then returns the first attempt's result, or, if
// the first attempt rolls back, writes the events itself.
func TestRetryWhileOriginalInFlight(t *testing.T) {
	t.Parallel()
	for _, commit := range []bool{true, false} {
		name := map[bool]string{true: "original commits", false: "original rolls back"}[commit]
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			pool := newPool(t, 4)
			s := postgres.New(pool)
			ctx := testContext(t)
			stream := "tenant-" + uuid.NewString()
			mustAppend(t, s, stream, eventstore.NoStream, eventstoretest.Events(1))
			evs := eventstoretest.Events(2)

			tx, err := pool.Begin(ctx)
			if err != nil {
				t.Fatal(err)
			}
			defer tx.Rollback(ctx)
			original, err := s.AppendInTx(ctx, tx, stream, eventstore.Exact(0), evs)
			if err != nil {
				t.Fatal(err)
			}
			type result struct {
				res eventstore.AppendResult
				err error
			}
			retried := make(chan result, 1)
			go func() {
				res, err := s.Append(ctx, stream, eventstore.Exact(0), evs)
				retried <- result{res, err}
			}()
			waitUntilBlocked(t, pool)
			if commit {
				err = tx.Commit(ctx)
			} else {
				err = tx.Rollback(ctx)
			}
			if err != nil {
				t.Fatal(err)
			}
			r := <-retried
			if r.err != nil {
				t.Fatalf("retry: %v", r.err)
			}
			if commit && r.res != original {
				t.Errorf("retry = %+v, want the original %+v", r.res, original)
			}
			if r.res.NextExpectedVersion != 2 {
				t.Errorf("retry next expected version = %d, want 2", r.res.NextExpectedVersion)
			}
			if n := streamLength(t, s, stream); n != 3 {
				t.Errorf("stream has %d events, want 3", n)
			}
		})
	}
}

func TestEventIDStoredElsewhereIsRefused(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	stream := "tenant-" + uuid.NewString()
	stored := eventstoretest.Events(2)
	mustAppend(t, s, stream, eventstore.NoStream, stored)
	mustAppend(t, s, stream, eventstore.Exact(1), eventstoretest.Events(2))
	fresh := eventstoretest.Events(1)[0]
	tests := []struct {
		name     string
		stream   string
		expected eventstore.ExpectedVersion
		events   []eventstore.EventData
	}{
		{"in another stream", "tenant-" + uuid.NewString(), eventstore.NoStream, stored},
		{"at another version of the stream", stream, eventstore.Exact(3), stored},
		{"in another order", stream, eventstore.NoStream, []eventstore.EventData{stored[1], stored[0]}},
		{"mixed with new events", stream, eventstore.NoStream, []eventstore.EventData{stored[0], stored[1], fresh}},
		{"after a new event", stream, eventstore.Exact(3), []eventstore.EventData{fresh, stored[0]}},
		{"twice in one append", stream, eventstore.Exact(3), []eventstore.EventData{fresh, fresh}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := s.Append(testContext(t), tc.stream, tc.expected, tc.events)
			if !errors.Is(err, eventstore.ErrDuplicateEventID) {
				t.Fatalf("err = %v, want ErrDuplicateEventID", err)
			}
		})
	}
	if n := streamLength(t, s, stream); n != 4 {
		t.Errorf("stream has %d events, want 4", n)
	}
}

func TestWrongExpectedVersionSaysWhatWasFound(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	stream := "tenant-" + uuid.NewString()
	mustAppend(t, s, stream, eventstore.NoStream, eventstoretest.Events(3))
	missing := "tenant-" + uuid.NewString()
	tests := []struct {
		stream   string
		expected eventstore.ExpectedVersion
		actual   int64
	}{
		{stream, eventstore.NoStream, 2},
		{stream, eventstore.Exact(1), 2},
		{stream, eventstore.Exact(3), 2},
		{missing, eventstore.Exact(0), -1},
	}
	for _, tc := range tests {
		_, err := s.Append(testContext(t), tc.stream, tc.expected, eventstoretest.Events(1))
		var wev *eventstore.WrongExpectedVersionError
		if !errors.As(err, &wev) || !errors.Is(err, eventstore.ErrWrongExpectedVersion) {
			t.Fatalf("append at %s: err = %v, want *WrongExpectedVersionError", tc.expected, err)
		}
		want := eventstore.WrongExpectedVersionError{Stream: tc.stream, Expected: tc.expected, Actual: tc.actual}
		if *wev != want {
			t.Errorf("append at %s: %+v, want %+v", tc.expected, *wev, want)
		}
	}
}

// TestAppendBlockedOnConcurrentAppendEndsAsWrongExpectedVersion: an append
// that waits on the unique index for a concurrent append at the same
// version fails as a wrong expected version when that one commits, and
// succeeds when it rolls back.
func TestAppendBlockedOnConcurrentAppendEndsAsWrongExpectedVersion(t *testing.T) {
	t.Parallel()
	for _, commit := range []bool{true, false} {
		name := map[bool]string{true: "other commits", false: "other rolls back"}[commit]
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			pool := newPool(t, 4)
			s := postgres.New(pool)
			ctx := testContext(t)
			stream := "tenant-" + uuid.NewString()
			mustAppend(t, s, stream, eventstore.NoStream, eventstoretest.Events(1))

			tx, err := pool.Begin(ctx)
			if err != nil {
				t.Fatal(err)
			}
			defer tx.Rollback(ctx)
			if _, err := s.AppendInTx(ctx, tx, stream, eventstore.Exact(0), eventstoretest.Events(3)); err != nil {
				t.Fatal(err)
			}
			blocked := make(chan error, 1)
			go func() {
				_, err := s.Append(ctx, stream, eventstore.Exact(0), eventstoretest.Events(1))
				blocked <- err
			}()
			waitUntilBlocked(t, pool)
			if commit {
				err = tx.Commit(ctx)
			} else {
				err = tx.Rollback(ctx)
			}
			if err != nil {
				t.Fatal(err)
			}
			err = <-blocked
			if !commit {
				if err != nil {
					t.Fatalf("append after the other rolled back: %v", err)
				}
				return
			}
			var wev *eventstore.WrongExpectedVersionError
			if !errors.As(err, &wev) || wev.Actual != 3 {
				t.Fatalf("err = %v, want *WrongExpectedVersionError with Actual 3", err)
			}
		})
	}
}

// TestStaleExpectedVersionUnderContention: sixteen writers append to one
// stream, each reading the stream's version and appending at it, and
// reading again on a conflict. Every failure is a wrong expected version,
// every success lands once, and the stream stays gap-free.
func TestStaleExpectedVersionUnderContention(t *testing.T) {
	t.Parallel()
	const writers, each = 16, 8
	pool := newPool(t, writers)
	s := postgres.New(pool)
	ctx := testContext(t)
	stream := "tenant-" + uuid.NewString()

	var (
		wg        sync.WaitGroup
		mu        sync.Mutex
		conflicts int
		written   = map[uuid.UUID]bool{}
	)
	for range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for done := 0; done < each; {
				expected := eventstore.NoStream
				last, err := s.ReadStream(ctx, stream, eventstore.Backward, -1, 1)
				switch {
				case err == nil:
					expected = eventstore.Exact(last[0].Version)
				case !errors.Is(err, eventstore.ErrStreamNotFound):
					t.Error(err)
					return
				}
				evs := eventstoretest.Events(2)
				_, err = s.Append(ctx, stream, expected, evs)
				mu.Lock()
				switch {
				case err == nil:
					done++
					for _, e := range evs {
						written[e.ID] = true
					}
				case errors.Is(err, eventstore.ErrWrongExpectedVersion):
					conflicts++
				default:
					t.Errorf("append at %s: %v", expected, err)
				}
				mu.Unlock()
				if err != nil && !errors.Is(err, eventstore.ErrWrongExpectedVersion) {
					return
				}
			}
		}()
	}
	// Appends with Any, at the same time, never conflict.
	for range writers / 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range each {
				evs := eventstoretest.Events(1)
				if _, err := s.Append(ctx, stream, eventstore.Any, evs); err != nil {
					t.Errorf("append at any: %v", err)
					return
				}
				mu.Lock()
				written[evs[0].ID] = true
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	t.Logf("%d conflicts", conflicts)
	evs, err := s.ReadStream(ctx, stream, eventstore.Forward, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	if want := writers*each*2 + writers/2*each; len(evs) != want || len(written) != want {
		t.Fatalf("stream has %d events, %d written, want %d", len(evs), len(written), want)
	}
	for i, e := range evs {
		if e.Version != uint64(i) || !written[e.ID] {
			t.Fatalf("event %d: version %d, id %s written: %v", i, e.Version, e.ID, written[e.ID])
		}
	}
}
