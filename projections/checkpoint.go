package projections

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/tenancyhq/tenancy/eventstore"
	"github.com/tenancyhq/tenancy/internal/tracing"
)

// Querier runs SQL: a *pgxpool.Pool, a *pgx.Conn or a pgx.Tx. Reading a
// checkpoint through a projection's own tx shows what that tx will commit.
type Querier interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// DB is a Querier that can begin a transaction (a savepoint, inside a pgx.Tx).
// The operator functions take one so that a caller may run them inside its
// own transaction: a rebuild clears its tables and resets its checkpoint
// atomically.
type DB interface {
	Querier
	Begin(ctx context.Context) (pgx.Tx, error)
}

// State is what a projection is doing, as Status reports it.
type State string

const (
	// StateIdle: no runner leads the projection.
	StateIdle State = "idle"
	// StateRunning: a runner holds the projection's lock and projects.
	StateRunning State = "running"
	// StateHalted: the projection stopped in front of an event it cannot
	// apply, until RetryFailures or SkipFailure.
	StateHalted State = "halted"
)

// leadership is one runner's tenure as the projection's leader: the epoch it
// claimed (its fencing token) and the checkpoint it has reached.
type leadership struct {
	epoch int64
	pos   eventstore.Position
	// retries is how many failures an operator marked for retry; while
	// positive, committed batches resolve them.
	retries    int64
	progressed bool
}

// claim makes this runner the projection's leader in the checkpoint row:
// it raises the epoch, which fences any earlier leader still writing, and
// returns where to start. It fails with a *HaltedError if the projection is
// halted. Run holds the advisory lock when it claims.
func (r *Runner) claim(ctx context.Context) (*leadership, error) {
	prefixes := r.p.Filter().StreamPrefixes
	if prefixes == nil {
		prefixes = []string{}
	}
	tx, err := r.pool.Begin(ctx)
	if err != nil {
		return nil, fmt.Errorf("claim checkpoint %s: %w", r.name, err)
	}
	defer rollback(tx)
	if _, err := tx.Exec(ctx, `INSERT INTO projection_checkpoints (name, stream_prefixes) VALUES ($1, $2)
		ON CONFLICT (name) DO NOTHING`, r.name, prefixes); err != nil {
		return nil, fmt.Errorf("claim checkpoint %s: %w", r.name, err)
	}
	var (
		state   State
		lastErr string
		l       leadership
	)
	if err := tx.QueryRow(ctx, `UPDATE projection_checkpoints
		SET leader_epoch = leader_epoch + 1,
		    holder = CASE WHEN state = 'halted' THEN holder ELSE $2 END,
		    state = CASE WHEN state = 'halted' THEN state ELSE 'running' END,
		    stream_prefixes = $3,
		    moved_by = NULL,
		    updated_at = now()
		WHERE name = $1
		RETURNING leader_epoch, position_commit, position_prepare, state, coalesce(last_error, '')`,
		r.name, r.opts.Holder, prefixes).Scan(&l.epoch, &l.pos.Commit, &l.pos.Prepare, &state, &lastErr); err != nil {
		return nil, fmt.Errorf("claim checkpoint %s: %w", r.name, err)
	}
	if state == StateHalted {
		return nil, &HaltedError{Projection: r.name, Err: errors.New(lastErr)}
	}
	if err := tx.QueryRow(ctx, `SELECT count(*) FROM projection_failures WHERE projection = $1 AND status = 'retry'`,
		r.name).Scan(&l.retries); err != nil {
		return nil, fmt.Errorf("claim checkpoint %s: count retries: %w", r.name, err)
	}
	if err := tx.Commit(ctx); err != nil {
		return nil, fmt.Errorf("claim checkpoint %s: commit: %w", r.name, err)
	}
	return &l, nil
}

// lockCheckpoint locks the checkpoint row in tx and checks that this
// leadership still owns it and that it is where this leadership left it;
// otherwise it returns errFenced. Holding the row lock serialises the batch
// with a new leader's claim and with the operator functions.
func (r *Runner) lockCheckpoint(ctx context.Context, tx pgx.Tx, l *leadership) error {
	var (
		epoch int64
		pos   eventstore.Position
	)
	// A projection whose effect is outside the database (a NATS publish)
	// must not lock the row first: the lock gives the transaction an xid
	// while Apply waits on the outside world, which holds back
	// pg_snapshot_xmin and with it every reader of the Postgres feed. The
	// compare-and-set of the checkpoint at the end still fences it.
	lock := " FOR UPDATE"
	if o, ok := r.p.(OutsideEffects); ok && o.OutsideEffects() {
		lock = ""
	}
	err := tx.QueryRow(ctx, `SELECT leader_epoch, position_commit, position_prepare
		FROM projection_checkpoints WHERE name = $1`+lock, r.name).Scan(&epoch, &pos.Commit, &pos.Prepare)
	if errors.Is(err, pgx.ErrNoRows) {
		return fmt.Errorf("checkpoint %s: row deleted: %w", r.name, errFenced)
	}
	if err != nil {
		return fmt.Errorf("lock checkpoint %s: %w", r.name, err)
	}
	if epoch != l.epoch || pos != l.pos {
		return fmt.Errorf("checkpoint %s: epoch %d at %s, this leader has epoch %d at %s: %w",
			r.name, epoch, pos, l.epoch, l.pos, errFenced)
	}
	return nil
}

// commitBatch is the unit of exactly-once: BEGIN; lock and check the
// checkpoint; Apply; move the checkpoint by compare-and-set from l.pos;
// COMMIT. A failure of Apply, or of what follows it, is an *applyError.
func (r *Runner) commitBatch(ctx context.Context, l *leadership, events []eventstore.RecordedEvent) (err error) {
	started := time.Now()
	if r.opts.Tracer != nil {
		end := r.traceEvents(ctx, events)
		defer func() { end(err) }()
	}
	last := events[len(events)-1]
	toC, toP, err := positionArgs(last.Position)
	if err != nil {
		return err
	}
	fromC, fromP, err := positionArgs(l.pos)
	if err != nil {
		return err
	}
	tx, err := r.pool.Begin(ctx)
	if err != nil {
		return fmt.Errorf("begin batch: %w", err)
	}
	defer rollback(tx)
	if r.opts.AsynchronousCommit {
		if _, err := tx.Exec(ctx, "SET LOCAL synchronous_commit = off"); err != nil {
			return fmt.Errorf("begin batch: %w", err)
		}
	}
	if err := r.lockCheckpoint(ctx, tx, l); err != nil {
		return err
	}
	decoded, err := Decode(events, r.opts.Decode)
	if err != nil {
		return &applyError{err: fmt.Errorf("decode: %w", err)}
	}
	if err := r.p.Apply(ctx, tx, decoded); err != nil {
		if errors.Is(err, ErrUnavailable) {
			// Not the events' fault: roll back at once (an open transaction
			// would hold back the feed) and let Run back off and resume.
			return fmt.Errorf("apply: %w", err)
		}
		return &applyError{err: err}
	}
	tag, err := tx.Exec(ctx, `UPDATE projection_checkpoints
		SET position_commit = $3, position_prepare = $4,
		    events_processed = events_processed + $5,
		    last_event_at = $6, holder = $7, updated_at = now()
		WHERE name = $1 AND leader_epoch = $2 AND position_commit = $8 AND position_prepare = $9`,
		r.name, l.epoch, toC, toP, len(events), last.RecordedAt, r.opts.Holder, fromC, fromP)
	if err != nil {
		return &applyError{err: fmt.Errorf("move checkpoint to %s: %w", last.Position, err)}
	}
	if tag.RowsAffected() != 1 {
		return fmt.Errorf("move checkpoint %s from %s: %w", r.name, l.pos, errFenced)
	}
	var resolved int64
	if l.retries > 0 {
		if resolved, err = resolveRetried(ctx, tx, r.name, events); err != nil {
			return &applyError{err: err}
		}
	}
	if err := tx.Commit(ctx); err != nil {
		return &applyError{err: fmt.Errorf("commit batch to %s: %w", last.Position, err)}
	}
	if r.opts.OnBatch != nil {
		r.opts.OnBatch(r.name, len(events), time.Since(started))
	}
	l.pos = last.Position
	l.progressed = true
	l.retries -= resolved
	return nil
}

// markIdle records that this leadership ended, unless another one (or a
// halt) has taken the row since.
func (r *Runner) markIdle(l *leadership) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := r.pool.Exec(ctx, `UPDATE projection_checkpoints SET state = 'idle', updated_at = now()
		WHERE name = $1 AND leader_epoch = $2 AND state = 'running'`, r.name, l.epoch); err != nil {
		r.log.Warn("mark checkpoint idle", "err", err)
	}
}

// ReadCheckpoint returns the position projection name has reached: every
// event at or before it has been applied. It is Start for a projection that
// has not run. Pass the projection's tx to read what that tx sees.
func ReadCheckpoint(ctx context.Context, q Querier, name string) (eventstore.Position, error) {
	var c, p int64
	err := q.QueryRow(ctx, `SELECT position_commit, position_prepare FROM projection_checkpoints WHERE name = $1`,
		name).Scan(&c, &p)
	if errors.Is(err, pgx.ErrNoRows) {
		return eventstore.Start, nil
	}
	if err != nil {
		return eventstore.Position{}, fmt.Errorf("read checkpoint %s: %w", name, err)
	}
	return eventstore.Position{Commit: uint64(c), Prepare: uint64(p)}, nil
}

// ResetCheckpoint moves projection name back to the start of the feed (zero
// events processed), so it re-applies every event: the rebuild. Run it in the
// same transaction (db a pgx.Tx) that clears the projection's effect. The
// running leader, if any, is fenced and starts again from the start; recorded
// failures and a halted state are kept.
func ResetCheckpoint(ctx context.Context, db DB, name string) error {
	if _, err := db.Exec(ctx, `UPDATE projection_checkpoints
		SET position_commit = 0, position_prepare = 0, events_processed = 0, last_event_at = NULL,
		    leader_epoch = leader_epoch + 1, moved_by = 'reset', updated_at = now()
		WHERE name = $1`, name); err != nil {
		return fmt.Errorf("reset checkpoint %s: %w", name, err)
	}
	return nil
}

// positionArgs encodes p for the bigint columns.
func positionArgs(p eventstore.Position) (commit, prepare int64, err error) {
	if p.Commit > math.MaxInt64 || p.Prepare > math.MaxInt64 {
		return 0, 0, fmt.Errorf("position %s does not fit the checkpoint's bigint columns", p)
	}
	return int64(p.Commit), int64(p.Prepare), nil
}

// rollback ends tx if it is still open; after a commit it is a no-op. It
// does not use the caller's ctx, which may be what ended the transaction.
func rollback(tx pgx.Tx) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = tx.Rollback(ctx)
}

// traceEvents starts a span per event, each a child of the trace the event's
// metadata names, and returns the function that ends them with the batch's
// outcome.
func (r *Runner) traceEvents(ctx context.Context, events []eventstore.RecordedEvent) func(error) {
	spans := make([]trace.Span, 0, len(events))
	for _, e := range events {
		var meta struct {
			TraceParent string `json:"trace_parent"`
		}
		if len(e.Metadata) == 0 || json.Unmarshal(e.Metadata, &meta) != nil || meta.TraceParent == "" {
			continue
		}
		_, span := r.opts.Tracer.Start(tracing.WithTraceParent(ctx, meta.TraceParent), "project "+r.name,
			trace.WithSpanKind(trace.SpanKindConsumer),
			trace.WithAttributes(attribute.String("tenancy.projection", r.name), attribute.String("tenancy.event_type", e.Type),
				attribute.String("tenancy.event_id", e.ID.String()), attribute.String("tenancy.stream", e.Stream)))
		spans = append(spans, span)
	}
	return func(err error) {
		for _, s := range spans {
			if err != nil {
				s.RecordError(err)
				s.SetStatus(codes.Error, err.Error())
			}
			s.End()
		}
	}
}
