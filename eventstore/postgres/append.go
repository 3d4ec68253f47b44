package postgres

import (
	"context"
	"errors"
	"fmt"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/tenancyhq/tenancy/eventstore"
)

// The append statements write a whole append in one statement, so one
// round trip and one (implicit) transaction: they read the stream's version
// through the unique (stream, version) index and insert the events only if
// that version is the one expected ($2 is -2 for Any, -1 for NoStream, which
// is also the version of a stream without events). No row back means the
// expected version did not match.
//
// A concurrent append that read the same version inserts the same (stream,
// version) and waits on the index for the first to end; if that one commits,
// it fails with a unique violation, which Append reports as a wrong expected
// version (and if it rolls back, it goes on).
//
// appendOneSQL is the common case, one event, with plain parameters;
// appendManySQL takes the events as arrays, inserted in their order, so
// positions grow with versions. Arrays cost a one-event append about a
// fifth of its throughput, hence two statements.
const (
	appendOneSQL = `
INSERT INTO events (stream, version, event_id, event_type, schema_version, data, metadata)
SELECT $1, cur.version + 1, $3::uuid, $4::text, $5::int, $6::jsonb, coalesce($7::jsonb, '{}'::jsonb)
FROM (SELECT coalesce(max(version), -1) AS version FROM events WHERE stream = $1) cur
WHERE $2::bigint = -2 OR $2::bigint = cur.version
RETURNING version, transaction_id, position`

	appendManySQL = `
INSERT INTO events (stream, version, event_id, event_type, schema_version, data, metadata)
SELECT $1, cur.version + e.ord, e.event_id, e.event_type, e.schema_version, e.data, coalesce(e.metadata, '{}'::jsonb)
FROM (SELECT coalesce(max(version), -1) AS version FROM events WHERE stream = $1) cur,
	unnest($3::uuid[], $4::text[], $5::int[], $6::jsonb[], $7::jsonb[])
		WITH ORDINALITY AS e(event_id, event_type, schema_version, data, metadata, ord)
WHERE $2::bigint = -2 OR $2::bigint = cur.version
ORDER BY e.ord
RETURNING version, transaction_id, position`
)

// storedSQL says, for each id of a refused append in order, where the event
// with that id is stored (NULLs if it is not), along with the stream's
// current version (-1 when it has no events).
const storedSQL = `
SELECT coalesce((SELECT max(version) FROM events WHERE stream = $1), -1),
	e.stream, e.version, e.transaction_id, e.position
FROM unnest($2::uuid[]) WITH ORDINALITY AS ids(event_id, ord)
LEFT JOIN events e ON e.event_id = ids.event_id
ORDER BY ids.ord`

// querier is what an append runs on: the pool, or a caller's transaction.
type querier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
}

// Append implements eventstore.Appender in one statement and one transaction.
//
// A refused append is explained with a second query: if the very same event
// ids already sit, in order, in this stream at the place expected, the append
// is a retry after an unknown outcome and returns the original result; an id
// stored anywhere else wraps eventstore.ErrDuplicateEventID; otherwise the
// stream is not at the expected version and the error is an
// *eventstore.WrongExpectedVersionError, also when the append lost a race with
// a concurrent one. Appends with eventstore.Any that lose such a race are
// tried again, as Any promises to append whatever the stream's state.
//
// Once committed, the append is announced to subscriptions (see notifier).
func (s *Store) Append(ctx context.Context, stream string, expected eventstore.ExpectedVersion, events []eventstore.EventData) (eventstore.AppendResult, error) {
	for {
		res, err := s.appendOnce(ctx, s.pool, stream, expected, events, true)
		var wev *eventstore.WrongExpectedVersionError
		if expected == eventstore.Any && errors.As(err, &wev) && ctx.Err() == nil {
			continue // another append took the version first; someone made progress
		}
		if err == nil {
			s.notifier.announce()
		}
		return res, unavailable(err)
	}
}

// appendOnce runs one attempt on q, which may be a transaction: then the
// events are written when the caller commits. With retryOK, the very same
// event ids stored at the expected place are a retry, answered with the
// first result (Append); without, they are a duplicate (Commit).
func (s *Store) appendOnce(ctx context.Context, q querier, stream string, expected eventstore.ExpectedVersion, events []eventstore.EventData, retryOK bool) (eventstore.AppendResult, error) {
	if err := checkBatch(stream, events); err != nil {
		return eventstore.AppendResult{}, err
	}
	var rows pgx.Rows
	var err error
	if len(events) == 1 {
		e := events[0]
		// Ids go to pgx as [16]byte, which it encodes natively (a uuid.UUID
		// takes the slower driver.Valuer path, and in arrays an error path).
		rows, err = q.Query(ctx, appendOneSQL, stream, int64(expected), [16]byte(e.ID), e.Type, int32(e.SchemaVersion), e.Data, e.Metadata)
	} else {
		ids := make([][16]byte, len(events))
		types := make([]string, len(events))
		schemas := make([]int32, len(events))
		data := make([][]byte, len(events))
		meta := make([][]byte, len(events))
		for i, e := range events {
			ids[i], types[i], schemas[i], data[i], meta[i] = [16]byte(e.ID), e.Type, int32(e.SchemaVersion), e.Data, e.Metadata
		}
		rows, err = q.Query(ctx, appendManySQL, stream, int64(expected), ids, types, schemas, data, meta)
	}
	var (
		res     eventstore.AppendResult
		written int
	)
	if err == nil {
		for rows.Next() {
			var version int64
			var pos eventstore.Position
			if err = rows.Scan(&version, &pos.Commit, &pos.Prepare); err != nil {
				break
			}
			if written++; pos.Compare(res.Position) > 0 {
				res = eventstore.AppendResult{NextExpectedVersion: uint64(version), Position: pos}
			}
		}
		rows.Close()
		if err == nil {
			err = rows.Err()
		}
	}
	var pgErr *pgconn.PgError
	switch {
	case err == nil && written == len(events):
		return res, nil
	case err == nil && written == 0, errors.As(err, &pgErr) && pgErr.Code == "23505": // unique_violation
		// q may be a transaction the error aborted: explain it on the pool.
		return s.refused(ctx, stream, expected, eventIDs(events), retryOK)
	case err == nil:
		return eventstore.AppendResult{}, fmt.Errorf("append %s: %d of %d events written", stream, written, len(events))
	default:
		return eventstore.AppendResult{}, fmt.Errorf("append %s: %w", stream, err)
	}
}

// checkBatch refuses batches that cannot be stored: Append needs at least one
// event, each with an id of its own.
func checkBatch(stream string, events []eventstore.EventData) error {
	if len(events) == 0 {
		return fmt.Errorf("append %s: no events", stream)
	}
	var seen map[uuid.UUID]bool // only for batches
	if len(events) > 1 {
		seen = make(map[uuid.UUID]bool, len(events))
	}
	for _, e := range events {
		if e.ID == uuid.Nil {
			return fmt.Errorf("append %s: event of type %q has no id", stream, e.Type)
		}
		if seen[e.ID] {
			return fmt.Errorf("append %s: event %s twice in one append: %w", stream, e.ID, eventstore.ErrDuplicateEventID)
		}
		if seen != nil {
			seen[e.ID] = true
		}
	}
	return nil
}

// refused explains an append that wrote nothing: a retry of an append that
// already succeeded, a duplicate event id, or a wrong expected version.
func (s *Store) refused(ctx context.Context, stream string, expected eventstore.ExpectedVersion, ids []uuid.UUID, retryOK bool) (eventstore.AppendResult, error) {
	rows, err := s.pool.Query(ctx, storedSQL, stream, ids)
	if err != nil {
		return eventstore.AppendResult{}, fmt.Errorf("append %s: look up refused events: %w", stream, err)
	}
	type place struct {
		stream  *string
		version *int64
		pos     eventstore.Position
	}
	var (
		current int64
		places  []place
	)
	for rows.Next() {
		var p place
		var commit, prepare *uint64
		if err := rows.Scan(&current, &p.stream, &p.version, &commit, &prepare); err != nil {
			rows.Close()
			return eventstore.AppendResult{}, fmt.Errorf("append %s: look up refused events: %w", stream, err)
		}
		if commit != nil && prepare != nil {
			p.pos = eventstore.Position{Commit: *commit, Prepare: *prepare}
		}
		places = append(places, p)
	}
	if err := rows.Err(); err != nil {
		return eventstore.AppendResult{}, fmt.Errorf("append %s: look up refused events: %w", stream, err)
	}

	stored, dup := 0, -1
	for i, p := range places {
		if p.stream != nil {
			stored++
			if dup < 0 {
				dup = i
			}
		}
	}
	if stored == 0 {
		return eventstore.AppendResult{}, &eventstore.WrongExpectedVersionError{Stream: stream, Expected: expected, Actual: current}
	}
	// A retry: every id stored, in order, in this stream, starting where the
	// append expected the stream to end.
	first := places[0]
	retry := retryOK && stored == len(places) && *first.stream == stream &&
		(expected == eventstore.Any || *first.version == int64(expected)+1)
	for i, p := range places {
		if !retry {
			break
		}
		retry = *p.stream == stream && *p.version == *first.version+int64(i)
	}
	if retry {
		last := places[len(places)-1]
		return eventstore.AppendResult{NextExpectedVersion: uint64(*last.version), Position: last.pos}, nil
	}
	p := places[dup]
	return eventstore.AppendResult{}, fmt.Errorf("append %s at %s: event %s is stored in %s at version %d: %w",
		stream, expected, ids[dup], *p.stream, *p.version, eventstore.ErrDuplicateEventID)
}
