package queries

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/tenancyhq/tenancy/aggregate"
	"github.com/tenancyhq/tenancy/eventstore"
)

// A Rendering is one of the JSON renderings of a tenant that the read-model
// projection keeps in the tenant's row (migration 010), ready to send.
type Rendering int

const (
	// NoRendering: the row's state only.
	NoRendering Rendering = iota
	// TenantView is the tenant as GET /api/v1/tenants/{id} shows it
	// (aggregate.RenderView).
	TenantView
	// EntitlementsView is the tenant's entitlements as
	// GET /api/v1/tenants/{id}/entitlements shows them
	// (aggregate.Catalog.RenderEntitlements).
	EntitlementsView
)

// column is the rendering's column in tenants.
func (r Rendering) column() string {
	switch r {
	case TenantView:
		return "view_json"
	case EntitlementsView:
		return "entitlements_json"
	}
	return ""
}

// Want says what a read of one tenant wants of its row.
type Want struct {
	// Rendering is the rendering to send as is.
	Rendering Rendering
	// Format is the format the caller can send as is
	// (aggregate.Catalog.RenderFormat). A row rendered in another (by
	// another release, with another catalog, or not yet) comes with its
	// state instead.
	Format string
	// HeldID and HeldVersion, without a Rendering: the caller already
	// holds the state of tenant HeldID at HeldVersion (in a cache of its
	// own). A row still at it comes without its state, which the caller
	// need not decode again.
	HeldID      uuid.UUID
	HeldVersion uint64
}

// Row is one tenant's row as a read wants it: one of JSON and Tenant is
// set, unless the caller holds the row's version (then neither).
type Row struct {
	ID      uuid.UUID
	Version uint64
	// JSON is the rendering asked for, in the format asked for.
	JSON []byte
	// Tenant is the row's state, decoded, when JSON is nil and the caller
	// does not hold the row's version.
	Tenant *aggregate.Tenant
}

// rowShape is what a row statement depends on.
type rowShape struct {
	rendering           Rendering
	byExternalID, fresh bool
}

// rowStatements are the row statements, built once (rowSQL).
var rowStatements = sync.OnceValue(func() map[rowShape]string {
	out := map[rowShape]string{}
	for _, r := range []Rendering{NoRendering, TenantView, EntitlementsView} {
		for _, shape := range []rowShape{{r, false, false}, {r, true, false}, {r, false, true}} {
			out[shape] = buildRowSQL(shape)
		}
	}
	return out
})

func rowSQL(w Want, byExternalID, fresh bool) string {
	return rowStatements()[rowShape{w.Rendering, byExternalID, fresh}]
}

// buildRowSQL is the statement that reads one row as a read wants it: the
// row by id ($1, a uuid) or by external id ($1, text), or — fresh — the
// row (if any) by id with the end of the tenant's stream, as getFreshSQL.
// The state is read only when it is needed. Statements differ by their
// text only, so pgx prepares each once per connection.
func buildRowSQL(shape rowShape) string {
	n := 1
	param := func() string { n++; return "$" + strconv.Itoa(n) }
	var rendered, skipState string
	if col := shape.rendering.column(); col != "" {
		f := param()
		rendered = "CASE WHEN t.rendered_as = " + f + " THEN t." + col + " END"
		skipState = "t.rendered_as = " + f + " AND t." + col + " IS NOT NULL"
	} else {
		rendered = "NULL::text"
		skipState = "t.id = " + param() + " AND t.version = " + param()
	}
	cols := "t.id, t.version, " + rendered + ", CASE WHEN " + skipState + " THEN NULL ELSE t.state END"
	if shape.fresh {
		return `SELECT ` + cols + `, h.version, h.transaction_id, h.position
FROM (SELECT 1) one
LEFT JOIN tenants t ON t.id = $1
LEFT JOIN LATERAL (SELECT version, transaction_id, position FROM events WHERE stream = ` + param() + ` ORDER BY version DESC LIMIT 1) h ON true`
	}
	where := "t.id = $1"
	if shape.byExternalID {
		where = "t.external_id = $1"
	}
	return `SELECT ` + cols + ` FROM tenants t WHERE ` + where
}

// rowArgs are rowSQL's arguments, key first (the fresh statement's
// stream name follows them).
func rowArgs(w Want, key any) []any {
	if w.Rendering.column() != "" {
		return []any{key, w.Format}
	}
	return []any{key, [16]byte(w.HeldID), int64(w.HeldVersion)}
}

// GetRow reads one tenant's row, by id or external id, as w wants it: the
// rendering ready to send when the row holds it in w.Format, else the
// state, decoded. An unknown tenant, and a string of neither form, yields
// ErrNotFound.
func (r *Reader) GetRow(ctx context.Context, idOrExternalID string, w Want) (*Row, error) {
	var key any
	byExternalID := aggregate.IsExternalID(idOrExternalID)
	if byExternalID {
		key = idOrExternalID
	} else if id, err := uuid.Parse(idOrExternalID); err == nil {
		key = [16]byte(id)
	} else {
		return nil, fmt.Errorf("get tenant %q: %w", idOrExternalID, ErrNotFound)
	}
	q := rowSQL(w, byExternalID, false)
	var (
		id          pgtype.UUID
		version     int64
		json, state []byte
	)
	err := r.pool.QueryRow(ctx, q, rowArgs(w, key)...).Scan(&id, &version, &json, &state)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, fmt.Errorf("get tenant %s: %w", idOrExternalID, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("get tenant %s: %w", idOrExternalID, err)
	}
	return newRow(id.Bytes, version, json, state)
}

// GetRowFresh is GetRow by tenant id with where the tenant's stream ends,
// read in one statement, as GetFresh does; the row is nil when the read
// model has none. Only for a Reader WithEventsInDatabase; otherwise
// ErrNoStreamEnd.
func (r *Reader) GetRowFresh(ctx context.Context, id uuid.UUID, w Want) (*Row, StreamEnd, error) {
	if !r.events {
		return nil, StreamEnd{}, ErrNoStreamEnd
	}
	q := rowSQL(w, false, true)
	// pgtype's nullable types: pgx plans their scans directly, where
	// pointers cost it a search (measurable on this hot path).
	var (
		rowID        pgtype.UUID
		version, end pgtype.Int8
		json, state  []byte
		xid          pgtype.Uint64
		position     pgtype.Int8
	)
	err := r.pool.QueryRow(ctx, q, append(rowArgs(w, [16]byte(id)), aggregate.StreamName(id))...).
		Scan(&rowID, &version, &json, &state, &end, &xid, &position)
	if err != nil {
		return nil, StreamEnd{}, fmt.Errorf("get tenant %s: %w", id, err)
	}
	var se StreamEnd
	if end.Valid {
		se = StreamEnd{Exists: true, Version: uint64(end.Int64), Position: eventstore.Position{Commit: xid.Uint64, Prepare: uint64(position.Int64)}}
	}
	if !rowID.Valid {
		return nil, se, nil
	}
	row, err := newRow(rowID.Bytes, version.Int64, json, state)
	return row, se, err
}

func newRow(id [16]byte, version int64, json, state []byte) (*Row, error) {
	row := &Row{ID: id, Version: uint64(version), JSON: json}
	if state != nil {
		t, err := aggregate.UnmarshalSnapshot(state)
		if err != nil {
			return nil, fmt.Errorf("get tenant %s: %w", row.ID, err)
		}
		row.Tenant = t
	}
	return row, nil
}
