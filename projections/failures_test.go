package projections_test

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/tenancyhq/tenancy/eventstore"
	"github.com/tenancyhq/tenancy/eventstore/memory"
	"github.com/tenancyhq/tenancy/internal/pgtest"
	"github.com/tenancyhq/tenancy/projections"
)

// poisonSetup appends 20 events in one subscription batch and makes the
// 12th a poison event for p while poisoned is true.
type poisonSetup struct {
	pool     *pgxpool.Pool
	store    *memory.Store
	p        *recorder
	events   []eventstore.RecordedEvent
	poison   eventstore.RecordedEvent
	poisoned atomic.Bool
}

func newPoisonSetup(t *testing.T, name string) *poisonSetup {
	t.Helper()
	pool, _ := pgtest.NewMigrated(t)
	s := &poisonSetup{pool: pool, store: memory.New(), p: newRecorder(name)}
	s.p.createTable(t, pool)
	appendEvents(t, s.store, 20, 4)
	evs, err := s.store.ReadAll(context.Background(), eventstore.Start, s.p.filter, 0)
	if err != nil {
		t.Fatal(err)
	}
	s.events, s.poison = evs, evs[11]
	s.poisoned.Store(true)
	s.p.fail = func(ev eventstore.RecordedEvent) error {
		if ev.ID == s.poison.ID && s.poisoned.Load() {
			return errors.New("boom: cannot project this event")
		}
		return nil
	}
	return s
}

func (s *poisonSetup) runner(t *testing.T, policy projections.FailurePolicy) *projections.Runner {
	opts := testOptions(t, "replica-1")
	opts.OnFailure = policy
	return projections.NewRunner(s.pool, s.store, s.p, opts)
}

func (s *poisonSetup) status(t *testing.T) projections.ProjectionStatus {
	t.Helper()
	st, err := projections.Status(context.Background(), s.pool, s.store, s.p.name)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

func (s *poisonSetup) failures(t *testing.T) []projections.Failure {
	t.Helper()
	fs, err := projections.ListFailures(context.Background(), s.pool, s.p.name)
	if err != nil {
		t.Fatal(err)
	}
	return fs
}

// haltOnPoison runs until the poison event halts the projection and checks
// what is left behind.
func (s *poisonSetup) haltOnPoison(t *testing.T) {
	t.Helper()
	err := start(t, s.runner(t, projections.Halt)).wait(t, 10*time.Second)
	var halted *projections.HaltedError
	if !errors.Is(err, projections.ErrHalted) || !errors.As(err, &halted) || halted.EventID != s.poison.ID {
		t.Fatalf("Run returned %v, want a halt at event %s", err, s.poison.ID)
	}
	if !strings.Contains(err.Error(), "boom") {
		t.Fatalf("halt error %q does not carry the projection's error", err)
	}
	cp, err := projections.ReadCheckpoint(context.Background(), s.pool, s.p.name)
	if err != nil {
		t.Fatal(err)
	}
	if want := s.events[10].Position; cp != want {
		t.Fatalf("checkpoint %s, want %s (just before the poison event)", cp, want)
	}
	s.assertApplied(t, s.events[:11])

	st := s.status(t)
	if st.State != projections.StateHalted || st.Failures != 1 || !strings.Contains(st.LastError, "boom") || st.LagEvents != 9 {
		t.Fatalf("status when halted: %+v", st)
	}
	fs := s.failures(t)
	if len(fs) != 1 {
		t.Fatalf("failures %+v, want one", fs)
	}
	f := fs[0]
	if f.EventID != s.poison.ID || f.Status != projections.FailureHalted || f.Attempts != 3 ||
		f.Position != s.poison.Position || f.Stream != s.poison.Stream || f.EventType != s.poison.Type ||
		!strings.Contains(f.Error, "boom") || f.FirstFailedAt.IsZero() || f.LastFailedAt.Before(f.FirstFailedAt) {
		t.Fatalf("failure %+v", f)
	}

	// Every replica finds it halted and gives up the lead.
	err = start(t, s.runner(t, projections.Halt)).wait(t, 5*time.Second)
	if !errors.Is(err, projections.ErrHalted) {
		t.Fatalf("second Run on a halted projection returned %v, want ErrHalted", err)
	}
}

// assertApplied checks the table holds exactly want.
func (s *poisonSetup) assertApplied(t *testing.T, want []eventstore.RecordedEvent) {
	t.Helper()
	rows, err := s.pool.Query(context.Background(), `SELECT event_id FROM `+s.p.table()+` ORDER BY position_commit`)
	if err != nil {
		t.Fatal(err)
	}
	got, err := pgx.CollectRows(rows, pgx.RowTo[uuid.UUID])
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(want) {
		t.Fatalf("applied %d events, want %d", len(got), len(want))
	}
	for i := range want {
		if got[i] != want[i].ID {
			t.Fatalf("applied event %d is %s, want %s", i, got[i], want[i].ID)
		}
	}
}

func without(evs []eventstore.RecordedEvent, id uuid.UUID) []eventstore.RecordedEvent {
	var out []eventstore.RecordedEvent
	for _, ev := range evs {
		if ev.ID != id {
			out = append(out, ev)
		}
	}
	return out
}

func TestPoisonEventHaltsProjectionUntilRetried(t *testing.T) {
	t.Parallel()
	s := newPoisonSetup(t, "halt_retry")
	s.haltOnPoison(t)

	// The projection is fixed; the operator retries.
	s.poisoned.Store(false)
	n, err := projections.RetryFailures(context.Background(), s.pool, s.p.name)
	if err != nil || n != 1 {
		t.Fatalf("RetryFailures = %d, %v; want 1", n, err)
	}
	if st := s.status(t); st.State != projections.StateIdle || st.LastError != "" {
		t.Fatalf("status after retry: %+v", st)
	}
	start(t, s.runner(t, projections.Halt))
	waitCaughtUp(t, s.pool, s.p.name, s.events[19].Position, 10*time.Second)
	s.assertApplied(t, s.events)
	waitFor(t, 5*time.Second, "failure resolved", func() bool {
		fs := s.failures(t)
		return len(fs) == 1 && fs[0].Status == projections.FailureResolved
	})
	if st := s.status(t); st.Failures != 0 || st.State != projections.StateRunning {
		t.Fatalf("status after the retried event applied: %+v", st)
	}
}

func TestPoisonEventHaltsProjectionUntilSkipped(t *testing.T) {
	t.Parallel()
	s := newPoisonSetup(t, "halt_skip")
	s.haltOnPoison(t)
	ctx := context.Background()

	if err := projections.SkipFailure(ctx, s.pool, s.p.name, uuid.New()); !errors.Is(err, projections.ErrFailureNotFound) {
		t.Fatalf("SkipFailure of an unknown event: %v, want ErrFailureNotFound", err)
	}
	if err := projections.SkipFailure(ctx, s.pool, s.p.name, s.poison.ID); err != nil {
		t.Fatal(err)
	}
	cp, err := projections.ReadCheckpoint(ctx, s.pool, s.p.name)
	if err != nil {
		t.Fatal(err)
	}
	if cp != s.poison.Position {
		t.Fatalf("checkpoint after skip %s, want the poison event's %s", cp, s.poison.Position)
	}
	if st := s.status(t); st.State != projections.StateIdle || st.Failures != 1 {
		t.Fatalf("status after skip: %+v", st)
	}
	start(t, s.runner(t, projections.Halt))
	waitCaughtUp(t, s.pool, s.p.name, s.events[19].Position, 10*time.Second)
	s.assertApplied(t, without(s.events, s.poison.ID))
	if fs := s.failures(t); len(fs) != 1 || fs[0].Status != projections.FailureSkipped {
		t.Fatalf("failures after skip: %+v", fs)
	}
}

func TestPoisonEventIsRecordedAndSkippedWithSkipPolicy(t *testing.T) {
	t.Parallel()
	s := newPoisonSetup(t, "skip_policy")
	ctx := context.Background()
	run := start(t, s.runner(t, projections.Skip))
	waitCaughtUp(t, s.pool, s.p.name, s.events[19].Position, 10*time.Second)
	s.assertApplied(t, without(s.events, s.poison.ID))
	st := s.status(t)
	if st.State != projections.StateRunning || st.Failures != 1 || !strings.Contains(st.LastError, "skipped event "+s.poison.ID.String()) {
		t.Fatalf("status after skipping: %+v", st)
	}
	if fs := s.failures(t); len(fs) != 1 || fs[0].Status != projections.FailureSkipped || fs[0].Attempts != 3 {
		t.Fatalf("failures: %+v", fs)
	}
	if err := run.stop(); err != nil {
		t.Fatal(err)
	}

	// A skipped event stays skipped: a rebuild under the Halt policy passes
	// over it at its first failure instead of halting.
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `DELETE FROM `+s.p.table()); err != nil {
			return err
		}
		return projections.ResetCheckpoint(ctx, tx, s.p.name)
	})
	if err != nil {
		t.Fatal(err)
	}
	start(t, s.runner(t, projections.Halt))
	waitCaughtUp(t, s.pool, s.p.name, s.events[19].Position, 10*time.Second)
	s.assertApplied(t, without(s.events, s.poison.ID))
	if fs := s.failures(t); len(fs) != 1 || fs[0].Status != projections.FailureSkipped || fs[0].Attempts != 4 {
		t.Fatalf("failures after rebuild: %+v", fs)
	}
}

func TestFailingBatchIsRetriedWithoutRecordingAFailure(t *testing.T) {
	t.Parallel()
	s := newPoisonSetup(t, "transient")
	var failures atomic.Int32
	s.p.fail = func(eventstore.RecordedEvent) error {
		if failures.Add(1) <= 2 { // the first two tries of the first batch
			return errors.New("transient")
		}
		return nil
	}
	start(t, s.runner(t, projections.Halt))
	waitCaughtUp(t, s.pool, s.p.name, s.events[19].Position, 10*time.Second)
	s.assertApplied(t, s.events)
	if fs := s.failures(t); len(fs) != 0 {
		t.Fatalf("failures recorded for a transient error: %+v", fs)
	}
	if n := s.p.calls.Load(); n != 3 {
		t.Fatalf("%d Apply calls, want 3 (two failed tries of the whole batch, then success)", n)
	}
}
