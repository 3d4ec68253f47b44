package eventstoretest

import (
	"sync"
	"testing"

	"github.com/tenancyhq/tenancy/eventstore"
)

// RunIdentity checks eventstore.Identifier: one identity per store, the
// same for every caller (also callers racing to mint it), another for
// another store, and none of it in the feed.
func RunIdentity(t *testing.T, newStore NewStore) {
	t.Helper()
	t.Run("IdentityIsStableAndNotInTheFeed", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		idf, ok := s.(eventstore.Identifier)
		if !ok {
			t.Fatalf("%T does not implement eventstore.Identifier", s)
		}
		ids := make([]eventstore.Identity, 8)
		var wg sync.WaitGroup
		for i := range ids {
			wg.Go(func() {
				id, err := idf.Identity(ctx(t))
				if err != nil {
					t.Errorf("Identity: %v", err)
				}
				ids[i] = id
			})
		}
		wg.Wait()
		for _, id := range ids[1:] {
			if id != ids[0] {
				t.Fatalf("concurrent callers got different identities: %v and %v", ids[0], id)
			}
		}
		if ids[0].Kind == "" || ids[0].ID == "" {
			t.Fatalf("identity %+v: want a kind and an id", ids[0])
		}
		again, err := idf.Identity(ctx(t))
		if err != nil || again != ids[0] {
			t.Fatalf("Identity again = %v, %v; want %v", again, err, ids[0])
		}
		if head, err := s.Head(ctx(t)); err != nil || head != eventstore.Start {
			t.Errorf("Head after Identity = %v, %v; want the start (the identity is not an event of the feed)", head, err)
		}
		if evs, err := s.ReadAll(ctx(t), eventstore.Start, eventstore.Filter{}, 0); err != nil || len(evs) != 0 {
			t.Errorf("ReadAll after Identity = %d events, %v; want none", len(evs), err)
		}
		other, err := newStore(t).(eventstore.Identifier).Identity(ctx(t))
		if err != nil {
			t.Fatal(err)
		}
		if other == ids[0] {
			t.Errorf("two stores share the identity %v", other)
		}
	})
}
