package queries

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/tenancyhq/tenancy/aggregate"
	"github.com/tenancyhq/tenancy/eventstore"
)

// EventFilter selects and pages a tenant's events (its audit trail).
type EventFilter struct {
	// Types keeps only events of these types (aggregate.EventTypes); none
	// keeps every type.
	Types []string
	// After and Before bound the time the event occurred, both exclusive.
	After, Before *time.Time
	// Limit is the page size: DefaultLimit when 0, at most MaxLimit.
	Limit int
	// Cursor continues from the page whose NextCursor it is, for the same
	// tenant and filter.
	Cursor string
}

// EventRecord is one event of a tenant's audit trail as the read model keeps
// it: the payload in the current schema (upcast when projected), personal
// data as it was projected.
type EventRecord struct {
	ID            uuid.UUID `json:"event_id"`
	Type          string    `json:"type"`
	SchemaVersion int       `json:"schema_version"`
	// StreamVersion is the event's place in the tenant's stream, from 0.
	StreamVersion uint64    `json:"version"`
	OccurredAt    time.Time `json:"occurred_at"`
	// Position is the event's global position (eventstore.Position.String),
	// comparable with a command's response and WaitFor.
	Position string          `json:"position"`
	Data     json.RawMessage `json:"data"`
	Metadata json.RawMessage `json:"metadata"`
}

// EventPage is one page of a tenant's events.
type EventPage struct {
	Events []EventRecord
	// NextCursor fetches the next page; "" when this is the last one.
	NextCursor string
}

// Events returns one page of a tenant's events in stream order, from
// tenant_events, which outlives the tenant row (a purged tenant keeps its
// trail). A tenant with no event at all yields ErrNotFound. Pages are cut by
// stream version, so a page walk sees events appended meanwhile exactly once.
func (r *Reader) Events(ctx context.Context, tenantID uuid.UUID, f EventFilter) (EventPage, error) {
	q, err := buildEvents(tenantID, f)
	if err != nil {
		return EventPage{}, err
	}
	rows, err := r.pool.Query(ctx, q.sql, q.args...)
	if err != nil {
		return EventPage{}, fmt.Errorf("events of tenant %s: %w", tenantID, err)
	}
	defer rows.Close()
	page := EventPage{Events: make([]EventRecord, 0, q.limit)}
	for rows.Next() {
		if len(page.Events) == q.limit {
			last := page.Events[len(page.Events)-1]
			c := cursor{Kind: cursorEvents, Filter: q.digest, Key: strconv.FormatUint(last.StreamVersion, 10)}
			if page.NextCursor, err = encodeCursor(c); err != nil {
				return EventPage{}, fmt.Errorf("events of tenant %s: %w", tenantID, err)
			}
			break
		}
		var e EventRecord
		var schema int32
		var version, commit, prepare int64
		var data, meta []byte
		if err := rows.Scan(&e.ID, &e.Type, &schema, &version, &e.OccurredAt, &commit, &prepare, &data, &meta); err != nil {
			return EventPage{}, fmt.Errorf("events of tenant %s: %w", tenantID, err)
		}
		e.SchemaVersion, e.StreamVersion = int(schema), uint64(version)
		e.OccurredAt = e.OccurredAt.UTC()
		e.Position = eventstore.Position{Commit: uint64(commit), Prepare: uint64(prepare)}.String()
		e.Data, e.Metadata = data, meta
		page.Events = append(page.Events, e)
	}
	if err := rows.Err(); err != nil {
		return EventPage{}, fmt.Errorf("events of tenant %s: %w", tenantID, err)
	}
	rows.Close()
	if len(page.Events) == 0 && f.Cursor == "" {
		// An empty first page: the filter matched nothing, or there is no such tenant.
		var known bool
		if err := r.pool.QueryRow(ctx,
			`SELECT EXISTS (SELECT 1 FROM tenant_events WHERE tenant_id = $1) OR EXISTS (SELECT 1 FROM tenants WHERE id = $1)`,
			tenantID).Scan(&known); err != nil {
			return EventPage{}, fmt.Errorf("events of tenant %s: %w", tenantID, err)
		}
		if !known {
			return EventPage{}, fmt.Errorf("events of tenant %s: %w", tenantID, ErrNotFound)
		}
	}
	return page, nil
}

// eventsQuery is a validated EventFilter as SQL.
type eventsQuery struct {
	sql    string
	args   []any
	limit  int
	digest string
}

// buildEvents validates f and writes the query that serves it: the tenant's
// rows by (tenant_id, stream_version), narrowed by the type or time indexes.
func buildEvents(tenantID uuid.UUID, f EventFilter) (*eventsQuery, error) {
	q := &eventsQuery{}
	var err error
	if q.limit, err = pageLimit(f.Limit); err != nil {
		return nil, err
	}
	known := aggregate.EventTypes()
	types := make([]string, 0, len(f.Types))
	for _, t := range f.Types {
		if _, ok := slices.BinarySearch(known, t); !ok {
			return nil, aggregate.Invalid("type", "one_of", "unknown event type %q", t)
		}
		types = append(types, t)
	}
	slices.Sort(types)
	types = slices.Compact(types)
	if err := checkTime("after", f.After); err != nil {
		return nil, err
	}
	if err := checkTime("before", f.Before); err != nil {
		return nil, err
	}
	if f.After != nil && f.Before != nil && !f.After.Before(*f.Before) {
		return nil, aggregate.Invalid("after", "before_before", "after must be before before")
	}

	var a args
	where := []string{"tenant_id = " + a.add(tenantID)}
	digest := newFilterDigest(cursorEvents)
	digest.add("tenant", tenantID.String())
	digest.add("types", types...)
	digest.add("after", microsOrEmpty(f.After))
	digest.add("before", microsOrEmpty(f.Before))
	q.digest = digest.sum()
	if len(types) > 0 {
		where = append(where, "event_type = ANY("+a.add(types)+"::text[])")
	}
	if f.After != nil {
		where = append(where, "created_at > "+a.add(*f.After))
	}
	if f.Before != nil {
		where = append(where, "created_at < "+a.add(*f.Before))
	}
	if f.Cursor != "" {
		c, err := decodeCursor(f.Cursor, cursorEvents, "", "", q.digest)
		if err != nil {
			return nil, err
		}
		v, err := strconv.ParseInt(c.Key, 10, 64)
		if err != nil || v < 0 {
			return nil, malformedCursor()
		}
		where = append(where, "stream_version > "+a.add(v))
	}
	q.sql = `SELECT id, event_type, event_version, stream_version, created_at, position_commit, sequence_number, payload, metadata
		FROM tenant_events WHERE ` + strings.Join(where, " AND ") + `
		ORDER BY stream_version LIMIT ` + a.add(q.limit+1)
	q.args = a
	return q, nil
}
