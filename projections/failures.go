package projections

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/tenancyhq/tenancy/eventstore"
)

// FailureStatus is where a recorded failure stands.
type FailureStatus string

const (
	// FailureHalted: the projection stopped in front of the event.
	FailureHalted FailureStatus = "halted"
	// FailureSkipped: the projection moved past the event without applying
	// it (Skip policy, or SkipFailure). A skipped event stays skipped: if it
	// fails again after a rebuild it is passed over at its first failure.
	FailureSkipped FailureStatus = "skipped"
	// FailureRetry: an operator asked for another try (RetryFailures).
	FailureRetry FailureStatus = "retry"
	// FailureResolved: a later try applied the event.
	FailureResolved FailureStatus = "resolved"
)

// ErrFailureNotFound: no failure is recorded for that projection and event.
var ErrFailureNotFound = errors.New("projection failure not found")

// Failure is an event a projection could not apply after its retries, as
// recorded in projection_failures: what an operator needs to decide between
// fixing and retrying, or skipping it.
type Failure struct {
	Projection string
	EventID    uuid.UUID
	Position   eventstore.Position
	Stream     string
	EventType  string
	// Error is the projection's last error, as text.
	Error string
	// Attempts counts every try, over all runs.
	Attempts      int
	FirstFailedAt time.Time
	LastFailedAt  time.Time
	Status        FailureStatus
}

// maxErrorText bounds the error text stored per failure.
const maxErrorText = 8 << 10

func errorText(err error) string {
	s := err.Error()
	if len(s) > maxErrorText {
		s = s[:maxErrorText] + "…"
	}
	return s
}

// recordFailure writes the failed event to projection_failures and, in the
// same transaction, halts the projection in front of it or (skip) moves the
// checkpoint past it. Both are fenced like a batch.
func (r *Runner) recordFailure(ctx context.Context, l *leadership, ev eventstore.RecordedEvent, attempts int, cause error, skip bool) error {
	evC, evP, err := positionArgs(ev.Position)
	if err != nil {
		return err
	}
	priorC, priorP, err := positionArgs(l.pos)
	if err != nil {
		return err
	}
	status := FailureHalted
	if skip {
		status = FailureSkipped
	}
	tx, err := r.pool.Begin(ctx)
	if err != nil {
		return fmt.Errorf("record failure of event %s: %w", ev.ID, err)
	}
	defer rollback(tx)
	if err := r.lockCheckpoint(ctx, tx, l); err != nil {
		return err
	}
	msg := errorText(cause)
	if _, err := tx.Exec(ctx, `INSERT INTO projection_failures
		(projection, event_id, position_commit, position_prepare, prior_commit, prior_prepare,
		 stream, event_type, error, attempts, first_failed_at, last_failed_at, status)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, now(), now(), $11)
		ON CONFLICT (projection, event_id) DO UPDATE SET
		    position_commit = EXCLUDED.position_commit, position_prepare = EXCLUDED.position_prepare,
		    prior_commit = EXCLUDED.prior_commit, prior_prepare = EXCLUDED.prior_prepare,
		    error = EXCLUDED.error, attempts = projection_failures.attempts + EXCLUDED.attempts,
		    last_failed_at = EXCLUDED.last_failed_at, status = EXCLUDED.status`,
		r.name, ev.ID, evC, evP, priorC, priorP, ev.Stream, ev.Type, msg, attempts, string(status)); err != nil {
		return fmt.Errorf("record failure of event %s: %w", ev.ID, err)
	}
	var tag pgconn.CommandTag
	if skip {
		tag, err = tx.Exec(ctx, `UPDATE projection_checkpoints
			SET position_commit = $3, position_prepare = $4, last_error = $5, holder = $6, updated_at = now()
			WHERE name = $1 AND leader_epoch = $2 AND position_commit = $7 AND position_prepare = $8`,
			r.name, l.epoch, evC, evP,
			fmt.Sprintf("skipped event %s (%s at %s in %s) after %d attempts: %s", ev.ID, ev.Type, ev.Position, ev.Stream, attempts, msg),
			r.opts.Holder, priorC, priorP)
	} else {
		tag, err = tx.Exec(ctx, `UPDATE projection_checkpoints
			SET state = 'halted', last_error = $3, updated_at = now()
			WHERE name = $1 AND leader_epoch = $2`,
			r.name, l.epoch,
			fmt.Sprintf("halted at event %s (%s at %s in %s) after %d attempts: %s", ev.ID, ev.Type, ev.Position, ev.Stream, attempts, msg))
	}
	if err != nil {
		return fmt.Errorf("record failure of event %s: checkpoint: %w", ev.ID, err)
	}
	if tag.RowsAffected() != 1 {
		return fmt.Errorf("record failure of event %s: %w", ev.ID, errFenced)
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("record failure of event %s: commit: %w", ev.ID, err)
	}
	if skip {
		l.pos = ev.Position
		l.progressed = true
	}
	return nil
}

// isSkipped reports whether an operator (or the Skip policy, earlier) marked
// the event skipped for the projection.
func isSkipped(ctx context.Context, q Querier, name string, id uuid.UUID) (bool, error) {
	var skipped bool
	err := q.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM projection_failures
		WHERE projection = $1 AND event_id = $2 AND status = 'skipped')`, name, id).Scan(&skipped)
	if err != nil {
		return false, fmt.Errorf("look up failure of event %s: %w", id, err)
	}
	return skipped, nil
}

// resolveRetried marks the failures of events just applied in tx, which an
// operator had sent back for retry, as resolved.
func resolveRetried(ctx context.Context, tx pgx.Tx, name string, events []eventstore.RecordedEvent) (int64, error) {
	ids := make([]uuid.UUID, len(events))
	for i, ev := range events {
		ids[i] = ev.ID
	}
	tag, err := tx.Exec(ctx, `UPDATE projection_failures SET status = 'resolved'
		WHERE projection = $1 AND status = 'retry' AND event_id = ANY($2)`, name, ids)
	if err != nil {
		return 0, fmt.Errorf("resolve retried failures: %w", err)
	}
	return tag.RowsAffected(), nil
}

// ListFailures returns the failures recorded for projection name, in feed
// order, whatever their status.
func ListFailures(ctx context.Context, q Querier, name string) ([]Failure, error) {
	rows, err := q.Query(ctx, `SELECT projection, event_id, position_commit, position_prepare, stream, event_type,
		error, attempts, first_failed_at, last_failed_at, status
		FROM projection_failures WHERE projection = $1
		ORDER BY position_commit, position_prepare`, name)
	if err != nil {
		return nil, fmt.Errorf("list failures of %s: %w", name, err)
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (Failure, error) {
		var f Failure
		err := row.Scan(&f.Projection, &f.EventID, &f.Position.Commit, &f.Position.Prepare, &f.Stream, &f.EventType,
			&f.Error, &f.Attempts, &f.FirstFailedAt, &f.LastFailedAt, &f.Status)
		return f, err
	})
	if err != nil {
		return nil, fmt.Errorf("list failures of %s: %w", name, err)
	}
	return out, nil
}

// RetryFailures clears projection name's halted state and sends its halted
// failures back for retry (status retry), so the next Run tries the event
// again: for after the projection or the data was fixed. Skipped failures
// stay skipped. It returns how many failures it sent back.
func RetryFailures(ctx context.Context, db DB, name string) (int64, error) {
	tx, err := db.Begin(ctx)
	if err != nil {
		return 0, fmt.Errorf("retry failures of %s: %w", name, err)
	}
	defer rollback(tx)
	tag, err := tx.Exec(ctx, `UPDATE projection_failures SET status = 'retry'
		WHERE projection = $1 AND status = 'halted'`, name)
	if err != nil {
		return 0, fmt.Errorf("retry failures of %s: %w", name, err)
	}
	if _, err := tx.Exec(ctx, `UPDATE projection_checkpoints SET state = 'idle', last_error = NULL, updated_at = now()
		WHERE name = $1 AND state = 'halted'`, name); err != nil {
		return 0, fmt.Errorf("retry failures of %s: clear halt: %w", name, err)
	}
	if err := tx.Commit(ctx); err != nil {
		return 0, fmt.Errorf("retry failures of %s: commit: %w", name, err)
	}
	return tag.RowsAffected(), nil
}

// SkipFailure marks the recorded failure of event eventID skipped for
// projection name and moves the checkpoint past it, when the checkpoint is
// still in front of it; it clears the halted state if no other failure holds
// the projection. A running leader is fenced and resumes from the new
// checkpoint. If the checkpoint is elsewhere (e.g. after a reset), the event
// is passed over when the projection reaches it and it fails again. It
// returns ErrFailureNotFound if no failure of that event is recorded.
func SkipFailure(ctx context.Context, db DB, name string, eventID uuid.UUID) error {
	tx, err := db.Begin(ctx)
	if err != nil {
		return fmt.Errorf("skip event %s of %s: %w", eventID, name, err)
	}
	defer rollback(tx)
	var evC, evP, priorC, priorP int64
	err = tx.QueryRow(ctx, `SELECT position_commit, position_prepare, prior_commit, prior_prepare
		FROM projection_failures WHERE projection = $1 AND event_id = $2 FOR UPDATE`,
		name, eventID).Scan(&evC, &evP, &priorC, &priorP)
	if errors.Is(err, pgx.ErrNoRows) {
		return fmt.Errorf("skip event %s of %s: %w", eventID, name, ErrFailureNotFound)
	}
	if err != nil {
		return fmt.Errorf("skip event %s of %s: %w", eventID, name, err)
	}
	if _, err := tx.Exec(ctx, `UPDATE projection_failures SET status = 'skipped'
		WHERE projection = $1 AND event_id = $2`, name, eventID); err != nil {
		return fmt.Errorf("skip event %s of %s: %w", eventID, name, err)
	}
	if _, err := tx.Exec(ctx, `UPDATE projection_checkpoints
		SET position_commit = $2, position_prepare = $3, leader_epoch = leader_epoch + 1, moved_by = 'skip-failure', updated_at = now()
		WHERE name = $1 AND position_commit = $4 AND position_prepare = $5`,
		name, evC, evP, priorC, priorP); err != nil {
		return fmt.Errorf("skip event %s of %s: move checkpoint: %w", eventID, name, err)
	}
	if _, err := tx.Exec(ctx, `UPDATE projection_checkpoints
		SET state = 'idle', last_error = NULL, leader_epoch = leader_epoch + 1, moved_by = 'skip-failure', updated_at = now()
		WHERE name = $1 AND state = 'halted' AND NOT EXISTS (
		    SELECT 1 FROM projection_failures WHERE projection = $1 AND status = 'halted')`, name); err != nil {
		return fmt.Errorf("skip event %s of %s: clear halt: %w", eventID, name, err)
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("skip event %s of %s: commit: %w", eventID, name, err)
	}
	return nil
}
