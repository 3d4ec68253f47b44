// Package eventstoretest is the conformance suite every eventstore adapter
// passes. An adapter's test calls Run with a constructor that returns a fresh,
// empty store for each sub-test.
package eventstoretest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/tenancyhq/tenancy/eventstore"
)

// NewStore returns a fresh, empty store; cleanup is registered on t.
type NewStore func(t *testing.T) eventstore.Store

// Run runs the whole conformance suite.
func Run(t *testing.T, newStore NewStore) {
	t.Helper()
	tests := []struct {
		name string
		fn   func(t *testing.T, s eventstore.Store)
	}{
		{"AppendNoStreamCreatesStream", testAppendNoStream},
		{"AppendNoStreamToExistingStreamConflicts", testAppendNoStreamConflict},
		{"AppendExactVersion", testAppendExact},
		{"AppendStaleVersionConflicts", testAppendStale},
		{"AppendAny", testAppendAny},
		{"AppendExactToMissingStreamConflicts", testAppendExactMissing},
		{"RetriedAppendIsNotDuplicated", testRetriedAppend},
		{"EventIDInAnotherStreamIsRefused", testDuplicateEventID},
		{"ReadMissingStream", testReadMissing},
		{"ReadStreamForwardAndBackward", testReadStream},
		{"ReadAllInOrderWithFilter", testReadAll},
		{"HeadFollowsAppends", testHead},
		{"SubscriptionCatchesUpThenGoesLive", testSubscribe},
		{"SubscriptionFromPositionAndFilter", testSubscribeFromPosition},
		{"ConcurrentAppendsAtOneVersionOneWins", testConcurrentAppends},
		{"EventRoundTripsUnchanged", testRoundTrip},
	}
	tests = append(tests, commitTests...)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tc.fn(t, newStore(t))
		})
	}
	RunIdentity(t, newStore)
}

func ctx(t *testing.T) context.Context {
	t.Helper()
	c, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return c
}

// Events makes n events of type "Tested" with JSON data {"n": i}.
func Events(n int) []eventstore.EventData {
	out := make([]eventstore.EventData, n)
	for i := range out {
		out[i] = eventstore.EventData{
			ID:            uuid.New(),
			Type:          "Tested",
			SchemaVersion: 1,
			Data:          []byte(fmt.Sprintf(`{"n": %d}`, i)),
			Metadata:      []byte(`{"actor": "test"}`),
		}
	}
	return out
}

func mustAppend(t *testing.T, s eventstore.Store, stream string, exp eventstore.ExpectedVersion, evs []eventstore.EventData) eventstore.AppendResult {
	t.Helper()
	res, err := s.Append(ctx(t), stream, exp, evs)
	if err != nil {
		t.Fatalf("append %d events to %s at %s: %v", len(evs), stream, exp, err)
	}
	return res
}

func stream(prefix string) string { return prefix + "-" + uuid.NewString() }

func testAppendNoStream(t *testing.T, s eventstore.Store) {
	st := stream("tenant")
	res := mustAppend(t, s, st, eventstore.NoStream, Events(3))
	if res.NextExpectedVersion != 2 {
		t.Errorf("next expected version = %d, want 2", res.NextExpectedVersion)
	}
	if res.Position.IsZero() {
		t.Errorf("position is zero")
	}
}

func testAppendNoStreamConflict(t *testing.T, s eventstore.Store) {
	st := stream("tenant")
	mustAppend(t, s, st, eventstore.NoStream, Events(1))
	_, err := s.Append(ctx(t), st, eventstore.NoStream, Events(1))
	if !errors.Is(err, eventstore.ErrWrongExpectedVersion) {
		t.Fatalf("err = %v, want ErrWrongExpectedVersion", err)
	}
	var wev *eventstore.WrongExpectedVersionError
	if !errors.As(err, &wev) || wev.Actual != 0 {
		t.Fatalf("err = %#v, want *WrongExpectedVersionError with Actual 0", err)
	}
}

func testAppendExact(t *testing.T, s eventstore.Store) {
	st := stream("tenant")
	mustAppend(t, s, st, eventstore.NoStream, Events(2))
	res := mustAppend(t, s, st, eventstore.Exact(1), Events(2))
	if res.NextExpectedVersion != 3 {
		t.Errorf("next expected version = %d, want 3", res.NextExpectedVersion)
	}
}

func testAppendStale(t *testing.T, s eventstore.Store) {
	st := stream("tenant")
	mustAppend(t, s, st, eventstore.NoStream, Events(2))
	for _, exp := range []eventstore.ExpectedVersion{eventstore.Exact(0), eventstore.Exact(2), eventstore.Exact(7)} {
		_, err := s.Append(ctx(t), st, exp, Events(1))
		if !errors.Is(err, eventstore.ErrWrongExpectedVersion) {
			t.Errorf("append at %s: err = %v, want ErrWrongExpectedVersion", exp, err)
		}
	}
	got, err := s.ReadStream(ctx(t), st, eventstore.Forward, 0, 0)
	if err != nil || len(got) != 2 {
		t.Fatalf("after refused appends: %d events, err %v; want 2", len(got), err)
	}
}

func testAppendAny(t *testing.T, s eventstore.Store) {
	st := stream("tenant")
	mustAppend(t, s, st, eventstore.Any, Events(1))
	res := mustAppend(t, s, st, eventstore.Any, Events(1))
	if res.NextExpectedVersion != 1 {
		t.Errorf("next expected version = %d, want 1", res.NextExpectedVersion)
	}
}

func testAppendExactMissing(t *testing.T, s eventstore.Store) {
	_, err := s.Append(ctx(t), stream("tenant"), eventstore.Exact(0), Events(1))
	if !errors.Is(err, eventstore.ErrWrongExpectedVersion) {
		t.Fatalf("err = %v, want ErrWrongExpectedVersion", err)
	}
}

func testRetriedAppend(t *testing.T, s eventstore.Store) {
	st := stream("tenant")
	evs := Events(2)
	first := mustAppend(t, s, st, eventstore.NoStream, evs)
	// The same ids again at the same expected version: a retry after an unknown outcome.
	again := mustAppend(t, s, st, eventstore.NoStream, evs)
	if again.NextExpectedVersion != first.NextExpectedVersion || again.Position != first.Position {
		t.Errorf("retry result = %+v, want %+v", again, first)
	}
	got, err := s.ReadStream(ctx(t), st, eventstore.Forward, 0, 0)
	if err != nil || len(got) != 2 {
		t.Fatalf("stream has %d events (err %v), want 2", len(got), err)
	}
}

func testDuplicateEventID(t *testing.T, s eventstore.Store) {
	evs := Events(1)
	mustAppend(t, s, stream("tenant"), eventstore.NoStream, evs)
	_, err := s.Append(ctx(t), stream("tenant"), eventstore.NoStream, evs)
	if err == nil {
		t.Fatal("appending an event id already stored in another stream succeeded")
	}
}

func testReadMissing(t *testing.T, s eventstore.Store) {
	_, err := s.ReadStream(ctx(t), stream("tenant"), eventstore.Forward, 0, 0)
	if !errors.Is(err, eventstore.ErrStreamNotFound) {
		t.Fatalf("err = %v, want ErrStreamNotFound", err)
	}
}

func testReadStream(t *testing.T, s eventstore.Store) {
	st := stream("tenant")
	evs := Events(5)
	mustAppend(t, s, st, eventstore.NoStream, evs)
	mustAppend(t, s, stream("tenant"), eventstore.NoStream, Events(2)) // another stream, not read

	fwd, err := s.ReadStream(ctx(t), st, eventstore.Forward, 1, 3)
	if err != nil {
		t.Fatal(err)
	}
	assertVersions(t, "forward from 1 limit 3", fwd, 1, 2, 3)
	for i, e := range fwd {
		if e.ID != evs[i+1].ID || e.Stream != st {
			t.Errorf("forward[%d] = %s in %s, want %s in %s", i, e.ID, e.Stream, evs[i+1].ID, st)
		}
	}
	all, err := s.ReadStream(ctx(t), st, eventstore.Forward, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	assertVersions(t, "forward all", all, 0, 1, 2, 3, 4)

	back, err := s.ReadStream(ctx(t), st, eventstore.Backward, -1, 2)
	if err != nil {
		t.Fatal(err)
	}
	assertVersions(t, "backward from end limit 2", back, 4, 3)
	back, err = s.ReadStream(ctx(t), st, eventstore.Backward, 2, 0)
	if err != nil {
		t.Fatal(err)
	}
	assertVersions(t, "backward from 2", back, 2, 1, 0)
	for i := 1; i < len(all); i++ {
		if all[i].Position.Compare(all[i-1].Position) <= 0 {
			t.Errorf("positions not increasing within a stream: %v then %v", all[i-1].Position, all[i].Position)
		}
	}
}

func assertVersions(t *testing.T, what string, evs []eventstore.RecordedEvent, want ...uint64) {
	t.Helper()
	got := make([]uint64, len(evs))
	for i, e := range evs {
		got[i] = e.Version
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("%s: versions %v, want %v", what, got, want)
	}
}

func testReadAll(t *testing.T, s eventstore.Store) {
	a, b, other := stream("tenant"), stream("tenant"), stream("other")
	var want []uuid.UUID
	for i := 0; i < 3; i++ {
		ea, eb, eo := Events(2), Events(1), Events(1)
		mustAppend(t, s, a, eventstore.Any, ea)
		mustAppend(t, s, other, eventstore.Any, eo)
		mustAppend(t, s, b, eventstore.Any, eb)
		want = append(want, ea[0].ID, ea[1].ID, eb[0].ID)
	}
	filter := eventstore.Filter{StreamPrefixes: []string{"tenant-"}}
	got := readAllIDs(t, s, eventstore.Start, filter, 4)
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("ReadAll (batches of 4) = %v\nwant %v", got, want)
	}
	everything, err := s.ReadAll(ctx(t), eventstore.Start, eventstore.Filter{}, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(everything) != 12 {
		t.Fatalf("ReadAll without filter: %d events, want 12", len(everything))
	}
	for i := 1; i < len(everything); i++ {
		if everything[i].Position.Compare(everything[i-1].Position) <= 0 {
			t.Fatalf("feed not in increasing position order at %d: %v then %v", i, everything[i-1].Position, everything[i].Position)
		}
	}
	// Strictly after: starting at the 5th event's position returns from the 6th.
	rest, err := s.ReadAll(ctx(t), everything[4].Position, eventstore.Filter{}, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(rest) != 7 || rest[0].ID != everything[5].ID {
		t.Fatalf("ReadAll after the 5th event: %d events starting %v, want 7 starting %v", len(rest), firstID(rest), everything[5].ID)
	}
}

func firstID(evs []eventstore.RecordedEvent) any {
	if len(evs) == 0 {
		return "none"
	}
	return evs[0].ID
}

func readAllIDs(t *testing.T, s eventstore.Store, after eventstore.Position, filter eventstore.Filter, batch int) []uuid.UUID {
	t.Helper()
	var ids []uuid.UUID
	for {
		evs, err := s.ReadAll(ctx(t), after, filter, batch)
		if err != nil {
			t.Fatal(err)
		}
		if len(evs) == 0 {
			return ids
		}
		if len(evs) > batch {
			t.Fatalf("ReadAll returned %d events, limit %d", len(evs), batch)
		}
		for _, e := range evs {
			ids = append(ids, e.ID)
		}
		after = evs[len(evs)-1].Position
	}
}

func testHead(t *testing.T, s eventstore.Store) {
	h0, err := s.Head(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	res := mustAppend(t, s, stream("tenant"), eventstore.NoStream, Events(2))
	h1, err := s.Head(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	if h1.Compare(h0) <= 0 || h1 != res.Position {
		t.Fatalf("head after append = %v (before %v), want %v", h1, h0, res.Position)
	}
}

// collect reads from sub until it has n events or the deadline passes.
func collect(t *testing.T, sub eventstore.Subscription, n int) []eventstore.RecordedEvent {
	t.Helper()
	c, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var got []eventstore.RecordedEvent
	for len(got) < n {
		evs, err := sub.Next(c)
		if err != nil {
			t.Fatalf("subscription after %d of %d events: %v", len(got), n, err)
		}
		got = append(got, evs...)
	}
	return got
}

func testSubscribe(t *testing.T, s eventstore.Store) {
	st := stream("tenant")
	before := Events(3)
	mustAppend(t, s, st, eventstore.NoStream, before)
	sub, err := s.SubscribeAll(ctx(t), eventstore.Start, eventstore.Filter{StreamPrefixes: []string{"tenant-"}})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	got := collect(t, sub, 3)
	after := Events(4)
	go func() {
		for i, e := range after {
			if _, err := s.Append(context.Background(), st, eventstore.Exact(uint64(2+i)), []eventstore.EventData{e}); err != nil {
				t.Errorf("live append: %v", err)
			}
		}
	}()
	got = append(got, collect(t, sub, 4)...)
	want := append(append([]eventstore.EventData{}, before...), after...)
	if len(got) != len(want) {
		t.Fatalf("got %d events, want %d", len(got), len(want))
	}
	for i := range want {
		if got[i].ID != want[i].ID {
			t.Fatalf("event %d = %s, want %s", i, got[i].ID, want[i].ID)
		}
	}
	// Nothing more arrives: no duplicates.
	c, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if extra, err := sub.Next(c); err == nil {
		t.Fatalf("unexpected extra events after live: %d", len(extra))
	}
}

func testSubscribeFromPosition(t *testing.T, s eventstore.Store) {
	st := stream("tenant")
	evs := Events(4)
	mustAppend(t, s, st, eventstore.NoStream, evs[:2])
	mustAppend(t, s, stream("other"), eventstore.NoStream, Events(3))
	res := mustAppend(t, s, st, eventstore.Exact(1), evs[2:3])
	sub, err := s.SubscribeAll(ctx(t), res.Position, eventstore.Filter{StreamPrefixes: []string{"tenant-"}})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	mustAppend(t, s, stream("other"), eventstore.NoStream, Events(2))
	mustAppend(t, s, st, eventstore.Exact(2), evs[3:])
	got := collect(t, sub, 1)
	if len(got) != 1 || got[0].ID != evs[3].ID {
		t.Fatalf("subscription after %v got %d events (first %v), want only %s", res.Position, len(got), firstID(got), evs[3].ID)
	}
}

func testConcurrentAppends(t *testing.T, s eventstore.Store) {
	st := stream("tenant")
	mustAppend(t, s, st, eventstore.NoStream, Events(1))
	const writers = 16
	var wg sync.WaitGroup
	var mu sync.Mutex
	wins, conflicts := 0, 0
	for i := 0; i < writers; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := s.Append(context.Background(), st, eventstore.Exact(0), Events(2))
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil:
				wins++
			case errors.Is(err, eventstore.ErrWrongExpectedVersion):
				conflicts++
			default:
				t.Errorf("append: %v", err)
			}
		}()
	}
	wg.Wait()
	if wins != 1 || conflicts != writers-1 {
		t.Fatalf("%d wins and %d conflicts, want 1 and %d", wins, conflicts, writers-1)
	}
	got, err := s.ReadStream(ctx(t), st, eventstore.Forward, 0, 0)
	if err != nil || len(got) != 3 {
		t.Fatalf("stream has %d events (err %v), want 3", len(got), err)
	}
}

func testRoundTrip(t *testing.T, s eventstore.Store) {
	st := stream("tenant")
	e := eventstore.EventData{
		ID: uuid.New(), Type: "TenantCreated", SchemaVersion: 3,
		Data:     []byte(`{"name":"Ünïcødé Corp","n":1.5,"nested":{"a":[1,2,3]}}`),
		Metadata: []byte(`{"correlation_id":"c-1","actor":"alice"}`),
	}
	before := time.Now().Add(-time.Minute)
	mustAppend(t, s, st, eventstore.NoStream, []eventstore.EventData{e})
	got, err := s.ReadStream(ctx(t), st, eventstore.Forward, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	r := got[0]
	if r.ID != e.ID || r.Type != e.Type || r.SchemaVersion != e.SchemaVersion || r.Stream != st || r.Version != 0 {
		t.Errorf("recorded = %+v", r)
	}
	if !jsonEqual(r.Data, e.Data) || !jsonEqual(r.Metadata, e.Metadata) {
		t.Errorf("data/metadata changed: %s / %s", r.Data, r.Metadata)
	}
	if r.RecordedAt.Before(before) || r.RecordedAt.After(time.Now().Add(time.Minute)) {
		t.Errorf("recorded at %v, want about now", r.RecordedAt)
	}
}

// jsonEqual compares two JSON documents by value: stores such as Postgres jsonb
// may reorder keys or change white space.
func jsonEqual(a, b []byte) bool {
	var x, y any
	if json.Unmarshal(a, &x) != nil || json.Unmarshal(b, &y) != nil {
		return false
	}
	return reflect.DeepEqual(x, y)
}
