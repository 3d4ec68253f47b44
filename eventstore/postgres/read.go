package postgres

import (
	"context"
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/tenancyhq/tenancy/eventstore"
)

// eventColumns are the columns nullableEvent scans, in its order.
const eventColumns = `e.position, e.transaction_id, e.stream, e.version, e.event_id,
	e.event_type, e.schema_version, e.data, e.metadata, e.recorded_at`

// Stream reads go straight to the unique (stream, version) index. They see
// every committed event of the stream; the feed's visibility rule does not
// apply, as a stream is ordered by version, which concurrency control keeps
// gap-free. Whether the stream exists comes from the same snapshot, so a
// stream created meanwhile is either read or not found, never empty.
const (
	readForwardSQL = `
SELECT s.found, ` + eventColumns + `
FROM (SELECT EXISTS (SELECT 1 FROM events WHERE stream = $1) AS found) s
LEFT JOIN LATERAL (
	SELECT * FROM events WHERE stream = $1 AND version >= $2 ORDER BY version LIMIT $3
) e ON true
ORDER BY e.version`
	readBackwardSQL = `
SELECT s.found, ` + eventColumns + `
FROM (SELECT EXISTS (SELECT 1 FROM events WHERE stream = $1) AS found) s
LEFT JOIN LATERAL (
	SELECT * FROM events WHERE stream = $1 AND version <= $2 ORDER BY version DESC LIMIT $3
) e ON true
ORDER BY e.version DESC`
)

// horizonSQL is the feed's horizon in the statement's snapshot: the oldest
// transaction of this database still running (its own included), or the
// snapshot's xmax when none runs. Every transaction of this database below
// it has ended, and any that has not ended, or has not started, has an id
// at or above it, so nothing can ever be added to the events table below it.
//
// pg_snapshot_xmin alone is the server's oldest running transaction, in any
// database: a transaction left open in another database (another service,
// another test, a psql session) would hold the feed back although it cannot
// write here. So the in-progress ids of the snapshot are taken one by one,
// leaving out those pg_stat_activity shows running in another database. An
// id whose database is unknown (its backend ended meanwhile, a prepared
// transaction, a role that may not see the column) is kept: the horizon
// errs on the side of waiting, never of skipping.
const horizonSQL = `(SELECT least(coalesce(min(x), pg_snapshot_xmax(pg_current_snapshot())),
		coalesce(pg_current_xact_id_if_assigned(), pg_snapshot_xmax(pg_current_snapshot())))
	FROM pg_snapshot_xip(pg_current_snapshot()) x
	WHERE NOT EXISTS (SELECT 1 FROM pg_stat_activity a
		WHERE a.backend_xid = xid(x)
			AND a.datid <> (SELECT oid FROM pg_database WHERE datname = current_database())))`

// newestSQL is the snapshot's horizon and the transaction id of the newest
// committed event. When that event is below pg_snapshot_xmin (the usual
// case: nothing is waiting) the server-wide xmin is the horizon, cheaply;
// only otherwise is the per-database horizon worked out.
const newestSQL = `
SELECT CASE WHEN l.last_xid IS NULL OR l.last_xid < pg_snapshot_xmin(pg_current_snapshot())
		THEN pg_snapshot_xmin(pg_current_snapshot()) ELSE ` + horizonSQL + ` END AS horizon, l.last_xid
FROM (SELECT (SELECT transaction_id FROM events ORDER BY transaction_id DESC, position DESC LIMIT 1) AS last_xid) l`

// readFeedSQL reads a page of the global feed strictly after ($1, $2), in
// (transaction id, position) order, matching the LIKE patterns $3 (all if
// NULL), at most $4 events (all if NULL). It reads only events whose
// transaction id is below the snapshot's horizon (horizonSQL): nothing can
// ever be added before what this returns.
//
// From the same snapshot it returns the horizon and the transaction id of
// the newest committed event: that one at or above the horizon means
// committed events are waiting for an older transaction to end. The outer
// row exists even when no event is returned (the event columns are then NULL).
const readFeedSQL = `
SELECT h.horizon, h.last_xid, ` + eventColumns + `
FROM (` + newestSQL + `) h
LEFT JOIN LATERAL (
	SELECT * FROM events
	WHERE (transaction_id, position) > ($1::xid8, $2::bigint)
		AND transaction_id < h.horizon
		AND ($3::text[] IS NULL OR stream LIKE ANY ($3::text[]))
	ORDER BY transaction_id, position
	LIMIT $4
) e ON true
ORDER BY e.transaction_id, e.position`

// headSQL returns the horizon, the newest committed event's transaction id
// and the position of the last event below the horizon (the last a reader
// can reach).
const headSQL = `
SELECT h.horizon, h.last_xid, r.transaction_id, r.position
FROM (` + newestSQL + `) h
LEFT JOIN LATERAL (
	SELECT transaction_id, position FROM events
	WHERE transaction_id < h.horizon
	ORDER BY transaction_id DESC, position DESC LIMIT 1
) r ON true`

// xminSQL is the feed's horizon now (see horizonSQL).
const xminSQL = `SELECT ` + horizonSQL

// countAfterSQL counts what readFeedSQL would return without a limit.
const countAfterSQL = `
SELECT count(*) FROM (` + newestSQL + `) h, events
WHERE (transaction_id, position) > ($1::xid8, $2::bigint)
	AND transaction_id < h.horizon
	AND ($3::text[] IS NULL OR stream LIKE ANY ($3::text[]))`

// ReadStream implements eventstore.StreamReader.
func (s *Store) ReadStream(ctx context.Context, stream string, direction eventstore.Direction, from int64, limit int) ([]eventstore.RecordedEvent, error) {
	sql, start := readForwardSQL, max(from, 0)
	if direction == eventstore.Backward {
		sql, start = readBackwardSQL, from
		if start < 0 {
			start = math.MaxInt64
		}
	}
	rows, err := s.pool.Query(ctx, sql, stream, start, limitArg(limit))
	if err != nil {
		return nil, unavailable(fmt.Errorf("read %s: %w", stream, err))
	}
	defer rows.Close()
	var (
		found bool
		evs   []eventstore.RecordedEvent
	)
	for rows.Next() {
		var e nullableEvent
		if err := rows.Scan(append([]any{&found}, e.dest()...)...); err != nil {
			return nil, unavailable(fmt.Errorf("read %s: %w", stream, err))
		}
		if e.position != nil {
			evs = append(evs, e.event())
		}
	}
	if err := rows.Err(); err != nil {
		return nil, unavailable(fmt.Errorf("read %s: %w", stream, err))
	}
	if !found {
		return nil, fmt.Errorf("read %s: %w", stream, eventstore.ErrStreamNotFound)
	}
	return evs, nil
}

// ReadAll implements eventstore.FeedReader. What it returns is final: no event
// can later appear before it.
//
// When it would stop short because events committed before the call wait for
// an older transaction to end, it waits for that, up to the settle time (see
// WithSettle), and reads on, so that a caller reads its own appends.
func (s *Store) ReadAll(ctx context.Context, after eventstore.Position, filter eventstore.Filter, limit int) ([]eventstore.RecordedEvent, error) {
	patterns := likePatterns(filter)
	p, err := readFeed(ctx, s.pool, after, patterns, limit)
	if err != nil {
		return nil, unavailable(fmt.Errorf("read all after %s: %w", after, err))
	}
	evs := p.events
	if (limit > 0 && len(evs) >= limit) || !p.waiting() {
		return evs, nil
	}
	if ok, err := s.waitHorizon(ctx, p.lastXID); err != nil || !ok {
		return evs, err
	}
	from, rest := after, 0
	if len(evs) > 0 {
		from = evs[len(evs)-1].Position
	}
	if limit > 0 {
		rest = limit - len(evs)
	}
	more, err := readFeed(ctx, s.pool, from, patterns, rest)
	if err != nil {
		return nil, unavailable(fmt.Errorf("read all after %s: %w", from, err))
	}
	return append(evs, more.events...), nil
}

// Head implements eventstore.FeedReader: the position of the last event a
// reader can reach, under the same rule as ReadAll. Like ReadAll, it waits up
// to the settle time for events committed before the call to become
// reachable.
func (s *Store) Head(ctx context.Context) (eventstore.Position, error) {
	var (
		xmin, lastXID   *uint64
		commit, prepare *uint64
	)
	read := func() error {
		if err := s.pool.QueryRow(ctx, headSQL).Scan(&xmin, &lastXID, &commit, &prepare); err != nil {
			return unavailable(fmt.Errorf("head: %w", err))
		}
		return nil
	}
	if err := read(); err != nil {
		return eventstore.Start, err
	}
	if lastXID != nil && *lastXID >= *xmin {
		ok, err := s.waitHorizon(ctx, *lastXID)
		if err != nil {
			return eventstore.Start, fmt.Errorf("head: %w", err)
		}
		if ok {
			if err := read(); err != nil {
				return eventstore.Start, err
			}
		}
	}
	if commit == nil {
		return eventstore.Start, nil
	}
	return eventstore.Position{Commit: *commit, Prepare: *prepare}, nil
}

// CountAfter returns how many events matching filter a reader at after has
// still to read: those ReadAll would return, without a limit. The projection
// runner reports it as its lag.
func (s *Store) CountAfter(ctx context.Context, after eventstore.Position, filter eventstore.Filter) (int64, error) {
	var n int64
	if err := s.pool.QueryRow(ctx, countAfterSQL, after.Commit, after.Prepare, likePatterns(filter)).Scan(&n); err != nil {
		return 0, fmt.Errorf("count events after %s: %w", after, err)
	}
	return n, nil
}

// feedPage is one read of the feed with what the snapshot said about it.
type feedPage struct {
	events []eventstore.RecordedEvent
	// xmin is the snapshot's horizon (horizonSQL): every event below it was
	// visible to the read.
	xmin uint64
	// lastXID is the transaction id of the newest committed event, 0 if none.
	lastXID uint64
}

// waiting reports whether committed events wait for an older transaction
// to end before the feed can return them.
func (p feedPage) waiting() bool { return p.lastXID != 0 && p.lastXID >= p.xmin }

// readFeed reads one page of the feed (see readFeedSQL).
func readFeed(ctx context.Context, q querier, after eventstore.Position, patterns []string, limit int) (feedPage, error) {
	rows, err := q.Query(ctx, readFeedSQL, after.Commit, after.Prepare, patterns, limitArg(limit))
	if err != nil {
		return feedPage{}, err
	}
	defer rows.Close()
	var p feedPage
	for rows.Next() {
		var (
			xmin    uint64
			lastXID *uint64
			e       nullableEvent
		)
		if err := rows.Scan(append([]any{&xmin, &lastXID}, e.dest()...)...); err != nil {
			return feedPage{}, err
		}
		p.xmin = xmin
		if lastXID != nil {
			p.lastXID = *lastXID
		}
		if e.position != nil {
			p.events = append(p.events, e.event())
		}
	}
	return p, rows.Err()
}

// waitHorizon waits until every transaction up to xid has ended, polling
// with a short back-off for at most the settle time. It reports whether it
// got there.
func (s *Store) waitHorizon(ctx context.Context, xid uint64) (bool, error) {
	deadline := time.Now().Add(s.settle)
	for wait := time.Millisecond; ; wait = min(2*wait, 20*time.Millisecond) {
		var xmin uint64
		if err := s.pool.QueryRow(ctx, xminSQL).Scan(&xmin); err != nil {
			return false, fmt.Errorf("wait for transactions up to %d: %w", xid, err)
		}
		if xmin > xid {
			return true, nil
		}
		if time.Until(deadline) <= 0 {
			return false, nil
		}
		t := time.NewTimer(min(wait, time.Until(deadline)))
		select {
		case <-ctx.Done():
			t.Stop()
			return false, ctx.Err()
		case <-t.C:
		}
	}
}

// likePatterns turns a filter's stream prefixes into LIKE patterns; nil
// (SQL NULL) matches every stream.
func likePatterns(f eventstore.Filter) []string {
	if len(f.StreamPrefixes) == 0 {
		return nil
	}
	escape := strings.NewReplacer(`\`, `\\`, `%`, `\%`, `_`, `\_`)
	out := make([]string, len(f.StreamPrefixes))
	for i, p := range f.StreamPrefixes {
		out[i] = escape.Replace(p) + "%"
	}
	return out
}

// limitArg is a LIMIT parameter: NULL, no limit, when limit <= 0.
func limitArg(limit int) *int64 {
	if limit <= 0 {
		return nil
	}
	n := int64(limit)
	return &n
}

// nullableEvent scans eventColumns from the outer side of a LEFT JOIN.
type nullableEvent struct {
	position, transactionID *uint64
	stream, typ             *string
	version                 *uint64
	id                      *[16]byte
	schemaVersion           *int
	data, metadata          []byte
	recordedAt              *time.Time
}

func (n *nullableEvent) dest() []any {
	return []any{&n.position, &n.transactionID, &n.stream, &n.version, &n.id,
		&n.typ, &n.schemaVersion, &n.data, &n.metadata, &n.recordedAt}
}

func (n *nullableEvent) event() eventstore.RecordedEvent {
	return eventstore.RecordedEvent{
		ID:            *n.id,
		Type:          *n.typ,
		SchemaVersion: *n.schemaVersion,
		Stream:        *n.stream,
		Version:       *n.version,
		Position:      eventstore.Position{Commit: *n.transactionID, Prepare: *n.position},
		Data:          n.data,
		Metadata:      n.metadata,
		RecordedAt:    *n.recordedAt,
	}
}
