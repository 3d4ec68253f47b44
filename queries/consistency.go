package queries

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tenancyhq/tenancy/eventstore"
)

// ErrNotCaughtUp is returned (wrapped) by WaitFor when the read model has not
// reached the position asked for within the timeout. The read itself could
// still be served, only possibly without the client's latest write.
var ErrNotCaughtUp = errors.New("read model has not caught up")

// readModelCheckpoint is the read-model projection's row in
// projection_checkpoints (projections/readmodel.Name, which queries may not
// import).
const readModelCheckpoint = "read-model"

// pollInterval is how often WaitFor reads the checkpoint. The projection moves
// it in the transaction that writes the rows, so reading the row is exact; the
// interval only bounds the added latency.
const pollInterval = 10 * time.Millisecond

// Checkpoint returns the position the read model has reached: every event at
// or before it is reflected in tenants and tenant_events. Before the
// projection has run it is eventstore.Start.
func (r *Reader) Checkpoint(ctx context.Context) (eventstore.Position, error) {
	var commit, prepare int64
	err := r.pool.QueryRow(ctx,
		`SELECT position_commit, position_prepare FROM projection_checkpoints WHERE name = $1`, readModelCheckpoint).
		Scan(&commit, &prepare)
	if errors.Is(err, pgx.ErrNoRows) {
		return eventstore.Start, nil
	}
	if err != nil {
		return eventstore.Position{}, fmt.Errorf("read checkpoint %s: %w", readModelCheckpoint, err)
	}
	return eventstore.Position{Commit: uint64(commit), Prepare: uint64(prepare)}, nil
}

// WaitFor blocks until the read model has reached pos (its checkpoint is at
// or after pos), so a read made next shows the effect of the command that
// returned pos ("read your writes"). It returns nil at once when already
// there, an error wrapping ErrNotCaughtUp when timeout passes first, and the
// context's error when ctx ends first. A timeout <= 0 checks once.
//
// It polls the checkpoint row every 10 ms rather than LISTENing: the
// projection does not notify, and a poll costs one primary-key read.
func (r *Reader) WaitFor(ctx context.Context, pos eventstore.Position, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	var timer *time.Timer
	for {
		cp, err := r.Checkpoint(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return fmt.Errorf("wait for position %s: %w", pos, ctx.Err())
			}
			return fmt.Errorf("wait for position %s: %w", pos, err)
		}
		if cp.Compare(pos) >= 0 {
			return nil
		}
		left := time.Until(deadline)
		if left <= 0 {
			return fmt.Errorf("wait for position %s: read model at %s after %s: %w", pos, cp, timeout, ErrNotCaughtUp)
		}
		if timer == nil {
			timer = time.NewTimer(min(pollInterval, left))
			defer timer.Stop()
		} else {
			timer.Reset(min(pollInterval, left))
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("wait for position %s: %w", pos, ctx.Err())
		case <-timer.C:
		}
	}
}
