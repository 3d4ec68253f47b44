package eventstoretest

import (
	"errors"
	"testing"

	"github.com/tenancyhq/tenancy/eventstore"
)

// commitTests are the conformance tests of Commit, ClaimHolder and Locate
// that every adapter passes.
var commitTests = []struct {
	name string
	fn   func(t *testing.T, s eventstore.Store)
}{
	{"CommitAppendsAndClaims", testCommitClaims},
	{"ClaimHeldByAnotherStreamIsRefused", testClaimTaken},
	{"ReleasedClaimCanBeTaken", testClaimReleased},
	{"CommitRefusesEventIDStoredElsewhere", testCommitDuplicateID},
	{"LocateFindsEventsByID", testLocate},
}

// RunAtomicCommit runs the tests that only an adapter whose Commit is one
// transaction passes (Postgres, memory): a refused Commit leaves no claim
// behind. EventStoreDB, which claims before it appends, does not; see its
// package documentation for how it converges instead.
func RunAtomicCommit(t *testing.T, newStore NewStore) {
	t.Helper()
	for _, tc := range []struct {
		name string
		fn   func(t *testing.T, s eventstore.Store)
	}{
		{"RefusedCommitLeavesNoClaim", testRefusedCommitLeavesNoClaim},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tc.fn(t, newStore(t))
		})
	}
}

func mustCommit(t *testing.T, s eventstore.Store, w eventstore.Write) eventstore.AppendResult {
	t.Helper()
	res, err := s.Commit(ctx(t), w)
	if err != nil {
		t.Fatalf("commit %d events to %s at %s: %v", len(w.Events), w.Stream, w.Expected, err)
	}
	return res
}

func holder(t *testing.T, s eventstore.Store, kind, value string) string {
	t.Helper()
	h, err := s.ClaimHolder(ctx(t), kind, value)
	if errors.Is(err, eventstore.ErrNotFound) {
		return ""
	}
	if err != nil {
		t.Fatalf("claim holder of %s %q: %v", kind, value, err)
	}
	return h
}

func testCommitClaims(t *testing.T, s eventstore.Store) {
	st := stream("tenant")
	value := stream("acme")
	res := mustCommit(t, s, eventstore.Write{Stream: st, Expected: eventstore.NoStream, Events: Events(2),
		Claims: []eventstore.Claim{{Kind: "name", Value: value}, {Kind: "code", Value: value}}})
	if res.NextExpectedVersion != 1 {
		t.Fatalf("next expected version %d, want 1", res.NextExpectedVersion)
	}
	for _, kind := range []string{"name", "code"} {
		if h := holder(t, s, kind, value); h != st {
			t.Fatalf("%s %q held by %q, want %s", kind, value, h, st)
		}
	}
	// Taking a value the stream holds again is no error.
	mustCommit(t, s, eventstore.Write{Stream: st, Expected: eventstore.Exact(1), Events: Events(1),
		Claims: []eventstore.Claim{{Kind: "name", Value: value}}})
	if h := holder(t, s, "name", stream("nobody")); h != "" {
		t.Fatalf("an unclaimed value is held by %q", h)
	}
}

func testClaimTaken(t *testing.T, s eventstore.Store) {
	first, second := stream("tenant"), stream("tenant")
	value := stream("acme")
	mustCommit(t, s, eventstore.Write{Stream: first, Expected: eventstore.NoStream, Events: Events(1),
		Claims: []eventstore.Claim{{Kind: "name", Value: value}}})
	_, err := s.Commit(ctx(t), eventstore.Write{Stream: second, Expected: eventstore.NoStream, Events: Events(1),
		Claims: []eventstore.Claim{{Kind: "name", Value: value}}})
	var taken *eventstore.ClaimTakenError
	if !errors.As(err, &taken) || !errors.Is(err, eventstore.ErrClaimTaken) || taken.Holder != first || taken.Kind != "name" || taken.Value != value {
		t.Fatalf("second claim: %v (%+v), want a ClaimTakenError naming %s", err, taken, first)
	}
	if _, err := s.ReadStream(ctx(t), second, eventstore.Forward, 0, 0); !errors.Is(err, eventstore.ErrStreamNotFound) {
		t.Fatalf("the refused commit wrote its events: %v", err)
	}
}

func testClaimReleased(t *testing.T, s eventstore.Store) {
	first, second := stream("tenant"), stream("tenant")
	value := stream("acme")
	mustCommit(t, s, eventstore.Write{Stream: first, Expected: eventstore.NoStream, Events: Events(1),
		Claims: []eventstore.Claim{{Kind: "name", Value: value}}})
	// A stream that does not hold the value cannot release it.
	mustCommit(t, s, eventstore.Write{Stream: second, Expected: eventstore.NoStream, Events: Events(1),
		Claims: []eventstore.Claim{{Kind: "name", Value: value, Release: true}}})
	if h := holder(t, s, "name", value); h != first {
		t.Fatalf("after another stream's release the value is held by %q, want %s", h, first)
	}
	mustCommit(t, s, eventstore.Write{Stream: first, Expected: eventstore.Exact(0), Events: Events(1),
		Claims: []eventstore.Claim{{Kind: "name", Value: value, Release: true}, {Kind: "name", Value: value + "-new"}}})
	if h := holder(t, s, "name", value); h != "" {
		t.Fatalf("a released value is held by %q", h)
	}
	mustCommit(t, s, eventstore.Write{Stream: second, Expected: eventstore.Exact(0), Events: Events(1),
		Claims: []eventstore.Claim{{Kind: "name", Value: value}}})
	if h := holder(t, s, "name", value); h != second {
		t.Fatalf("released value taken again: held by %q, want %s", h, second)
	}
}

func testCommitDuplicateID(t *testing.T, s eventstore.Store) {
	evs := Events(1)
	mustCommit(t, s, eventstore.Write{Stream: stream("tenant"), Expected: eventstore.NoStream, Events: evs})
	_, err := s.Commit(ctx(t), eventstore.Write{Stream: stream("tenant"), Expected: eventstore.NoStream, Events: evs})
	if !errors.Is(err, eventstore.ErrDuplicateEventID) {
		t.Fatalf("commit of an id stored in another stream: %v, want ErrDuplicateEventID", err)
	}
}

func testLocate(t *testing.T, s eventstore.Store) {
	st := stream("tenant")
	evs := Events(3)
	mustCommit(t, s, eventstore.Write{Stream: st, Expected: eventstore.NoStream, Events: evs})
	for i, e := range evs {
		got, version, err := s.Locate(ctx(t), e.ID)
		if err != nil || got != st || version != uint64(i) {
			t.Fatalf("locate event %d: %s@%d, %v; want %s@%d", i, got, version, err, st, i)
		}
	}
	if _, _, err := s.Locate(ctx(t), Events(1)[0].ID); !errors.Is(err, eventstore.ErrNotFound) {
		t.Fatalf("locate an unknown id: %v, want ErrNotFound", err)
	}
}

func testRefusedCommitLeavesNoClaim(t *testing.T, s eventstore.Store) {
	st := stream("tenant")
	value := stream("acme")
	mustCommit(t, s, eventstore.Write{Stream: st, Expected: eventstore.NoStream, Events: Events(1)})
	_, err := s.Commit(ctx(t), eventstore.Write{Stream: st, Expected: eventstore.NoStream, Events: Events(1),
		Claims: []eventstore.Claim{{Kind: "name", Value: value}}})
	if !errors.Is(err, eventstore.ErrWrongExpectedVersion) {
		t.Fatalf("commit at a wrong version: %v", err)
	}
	if h := holder(t, s, "name", value); h != "" {
		t.Fatalf("a refused commit left its claim, held by %q", h)
	}
	// And a claim refused voids the events.
	other := stream("tenant")
	mustCommit(t, s, eventstore.Write{Stream: other, Expected: eventstore.NoStream, Events: Events(1),
		Claims: []eventstore.Claim{{Kind: "name", Value: value}}})
	_, err = s.Commit(ctx(t), eventstore.Write{Stream: st, Expected: eventstore.Exact(0), Events: Events(1),
		Claims: []eventstore.Claim{{Kind: "name", Value: value}}})
	if !errors.Is(err, eventstore.ErrClaimTaken) {
		t.Fatalf("claim of a held value: %v", err)
	}
	if evs, err := s.ReadStream(ctx(t), st, eventstore.Forward, 0, 0); err != nil || len(evs) != 1 {
		t.Fatalf("after a refused claim the stream has %d events (%v), want 1", len(evs), err)
	}
}
