package projections

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tenancyhq/tenancy/eventstore"
)

// FeedCounter is implemented by feeds that can count events cheaply (the
// Postgres adapter, with one query). Status uses it for the lag; other feeds
// are counted by reading, up to 100,000 events (lagCountCap).
type FeedCounter interface {
	// CountAfter returns how many events strictly after after match filter.
	CountAfter(ctx context.Context, after eventstore.Position, filter eventstore.Filter) (int64, error)
}

// lagCountCap bounds how many events Status reads to count the lag of a feed
// that is not a FeedCounter.
const lagCountCap = 100_000

// ProjectionStatus is what an operator asks of a projection: where it is,
// how far behind, who runs it, and whether it is stuck.
type ProjectionStatus struct {
	Name string
	// Position is the checkpoint: every event at or before it is applied.
	Position eventstore.Position
	// Head is the position of the last event in the feed (any stream).
	Head eventstore.Position
	// LagEvents counts the events after Position that the projection's
	// filter selects: 0 when caught up.
	LagEvents int64
	// LagCapped: the feed cannot count, and LagEvents stopped at the cap; the
	// lag is at least that.
	LagCapped bool
	// LagSeconds is how long ago the first event not yet applied was
	// recorded; 0 when caught up.
	LagSeconds float64
	// EventsProcessed counts the events applied since the checkpoint was
	// created or reset.
	EventsProcessed int64
	// LastEventAt is when the last applied event was recorded (zero if none).
	LastEventAt time.Time
	// Holder is the replica that leads the projection, or led it last.
	Holder string
	State  State
	// Failures counts recorded failures not resolved: halted, skipped or
	// waiting for retry (see ListFailures).
	Failures int64
	// LastError is why the projection halted, or the last event it skipped.
	LastError string
	// UpdatedAt is when the checkpoint row last changed (zero if none).
	UpdatedAt time.Time
}

// Status reports projection name's progress against feed. State is
// "running" only while a runner actually holds the projection's lock (a
// replica killed mid-run shows "idle"), "halted" after a halt.
func Status(ctx context.Context, q Querier, feed eventstore.FeedReader, name string) (ProjectionStatus, error) {
	st := ProjectionStatus{Name: name, State: StateIdle}
	key := uint64(lockKey(name))
	var (
		lastEventAt *time.Time
		prefixes    []string
		state       State
		locked      bool
	)
	err := q.QueryRow(ctx, `SELECT c.position_commit, c.position_prepare, c.events_processed, c.last_event_at,
		    coalesce(c.holder, ''), c.state, coalesce(c.last_error, ''), c.updated_at, c.stream_prefixes,
		    (SELECT count(*) FROM projection_failures f WHERE f.projection = c.name AND f.status <> 'resolved'),
		    EXISTS (SELECT 1 FROM pg_locks l
		        WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1
		          AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
		          AND l.classid = $2::bigint::oid AND l.objid = $3::bigint::oid)
		FROM projection_checkpoints c WHERE c.name = $1`,
		name, int64(key>>32), int64(key&0xffffffff)).Scan(
		&st.Position.Commit, &st.Position.Prepare, &st.EventsProcessed, &lastEventAt,
		&st.Holder, &state, &st.LastError, &st.UpdatedAt, &prefixes, &st.Failures, &locked)
	if err != nil && !errors.Is(err, pgx.ErrNoRows) {
		return st, fmt.Errorf("status of %s: %w", name, err)
	}
	if lastEventAt != nil {
		st.LastEventAt = *lastEventAt
	}
	switch {
	case state == StateHalted:
		st.State = StateHalted
	case locked:
		st.State = StateRunning
	}

	if st.Head, err = feed.Head(ctx); err != nil {
		return st, fmt.Errorf("status of %s: head: %w", name, err)
	}
	filter := eventstore.Filter{StreamPrefixes: prefixes}
	counted := false
	if c, ok := feed.(FeedCounter); ok {
		st.LagEvents, err = c.CountAfter(ctx, st.Position, filter)
		// A decorator of a store that cannot count says so.
		counted = !errors.Is(err, eventstore.ErrCannotCount)
	}
	if !counted {
		st.LagEvents, st.LagCapped, err = countByReading(ctx, feed, st.Position, filter)
	}
	if err != nil {
		return st, fmt.Errorf("status of %s: count lag: %w", name, err)
	}
	if st.LagEvents > 0 {
		next, err := feed.ReadAll(ctx, st.Position, filter, 1)
		if err != nil {
			return st, fmt.Errorf("status of %s: first event not applied: %w", name, err)
		}
		if len(next) > 0 {
			st.LagSeconds = max(0, time.Since(next[0].RecordedAt).Seconds())
		}
	}
	return st, nil
}

// countByReading counts the events after after that filter selects by
// reading the feed page by page, up to lagCountCap.
func countByReading(ctx context.Context, feed eventstore.FeedReader, after eventstore.Position, filter eventstore.Filter) (int64, bool, error) {
	const page = 1000
	var n int64
	for n < lagCountCap {
		evs, err := feed.ReadAll(ctx, after, filter, page)
		if err != nil {
			return n, false, err
		}
		n += int64(len(evs))
		if len(evs) < page {
			return n, false, nil
		}
		after = evs[len(evs)-1].Position
	}
	return n, true, nil
}
