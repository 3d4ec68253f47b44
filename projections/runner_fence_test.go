package projections

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/tenancyhq/tenancy/eventstore"
	"github.com/tenancyhq/tenancy/eventstore/memory"
	"github.com/tenancyhq/tenancy/internal/pgtest"
)

// countingProjection counts the batches it applied and committed.
type countingProjection struct{ applied atomic.Int64 }

func (*countingProjection) Name() string              { return "fence" }
func (*countingProjection) Filter() eventstore.Filter { return eventstore.Filter{} }
func (p *countingProjection) Apply(context.Context, pgx.Tx, []Event) error {
	p.applied.Add(1)
	return nil
}

// TestStaleLeaderCannotMoveCheckpoint plays a zombie leader directly: once
// another runner has claimed the projection, the old leadership's batches are
// refused before Apply; and a leadership that starts a batch from a position
// the checkpoint has left (compare-and-set) is refused too.
func TestStaleLeaderCannotMoveCheckpoint(t *testing.T) {
	t.Parallel()
	pool, _ := pgtest.NewMigrated(t)
	ctx := context.Background()
	p := &countingProjection{}
	a := NewRunner(pool, memory.New(), p, Options{Holder: "a"})
	b := NewRunner(pool, memory.New(), p, Options{Holder: "b"})
	ev := func(n uint64) []eventstore.RecordedEvent {
		return []eventstore.RecordedEvent{{ID: uuid.New(), Stream: "tenant-1", Type: "T",
			Position: eventstore.Position{Commit: n, Prepare: n}, RecordedAt: time.Now()}}
	}

	la, err := a.claim(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := a.commitBatch(ctx, la, ev(1)); err != nil {
		t.Fatalf("leader's batch: %v", err)
	}
	lb, err := b.claim(ctx) // b takes over; a has not noticed
	if err != nil {
		t.Fatal(err)
	}
	if lb.epoch != la.epoch+1 || lb.pos != la.pos {
		t.Fatalf("b claimed epoch %d at %s; a had %d at %s", lb.epoch, lb.pos, la.epoch, la.pos)
	}
	if err := a.commitBatch(ctx, la, ev(2)); !errors.Is(err, errFenced) {
		t.Fatalf("zombie's batch: %v, want errFenced", err)
	}
	if err := b.commitBatch(ctx, lb, ev(2)); err != nil {
		t.Fatalf("new leader's batch: %v", err)
	}
	stale := &leadership{epoch: lb.epoch, pos: la.pos} // b's epoch, but an old position
	if err := b.commitBatch(ctx, stale, ev(2)); !errors.Is(err, errFenced) {
		t.Fatalf("batch from a position the checkpoint has left: %v, want errFenced", err)
	}
	if n := p.applied.Load(); n != 2 {
		t.Fatalf("Apply ran %d times, want 2 (refused batches never reach it)", n)
	}
	cp, err := ReadCheckpoint(ctx, pool, p.Name())
	if err != nil {
		t.Fatal(err)
	}
	st, err := Status(ctx, pool, memory.New(), p.Name())
	if err != nil {
		t.Fatal(err)
	}
	if cp != (eventstore.Position{Commit: 2, Prepare: 2}) || st.Holder != "b" || st.EventsProcessed != 2 {
		t.Fatalf("checkpoint %s, status %+v", cp, st)
	}
}
