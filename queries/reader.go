// Package queries is the read side of the tenancy service: it answers the REST
// API's reads from the Postgres read model (tables tenants and tenant_events,
// written by the read-model projection). It does not read events, with one
// exception: GetFresh learns where a tenant's stream ends, in the same
// statement as its row, when the Postgres event store shares the database.
//
// Every query is plain SQL over the indexes of migration 002. Lists page by
// keyset ("seek") on (sort key, id) with opaque cursors, so a client walking
// pages never misses or repeats a row while others write. Reads that must see
// a command's effect wait for the projection's checkpoint with WaitFor.
//
// Bad input (an unknown sort, a limit out of range, a cursor that is not ours)
// is refused with an *aggregate.Error of code validation naming the field and
// the rule, so the HTTP layer answers 400 like it does for commands.
package queries

import (
	"context"
	"errors"
	"fmt"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/tenancyhq/tenancy/aggregate"
	"github.com/tenancyhq/tenancy/eventstore"
)

// ErrNotFound is returned (wrapped) when no tenant has the id asked for. It is
// an *aggregate.Error with code not_found, so the HTTP layer maps it like the
// command side's unknown-tenant error; match it with errors.Is.
var ErrNotFound error = &aggregate.Error{Code: aggregate.CodeNotFound, Message: "tenant not found"}

// Reader answers reads from the read model. It is safe for concurrent use; it
// holds nothing but the pool.
type Reader struct {
	pool *pgxpool.Pool
	// events: the database holds the Postgres event store too (its events
	// table), so a read can learn where a tenant's stream ends in the same
	// statement (GetFresh).
	events bool
}

// NewReader returns a Reader over the database that holds the read model.
func NewReader(pool *pgxpool.Pool) *Reader {
	return &Reader{pool: pool}
}

// WithEventsInDatabase says the Reader's database also holds the events
// (the Postgres event store, the default), which GetFresh reads the end of
// a tenant's stream from. It returns r.
func (r *Reader) WithEventsInDatabase() *Reader {
	r.events = true
	return r
}

// ErrNoStreamEnd: GetFresh cannot see the event store from the read
// model's database (EventStoreDB); the caller asks the event store.
var ErrNoStreamEnd = errors.New("the read model's database does not hold the events")

// StreamEnd is where a tenant's stream ends: its last event's version and
// position. Exists is false when the tenant has no stream.
type StreamEnd struct {
	Exists   bool
	Version  uint64
	Position eventstore.Position
}

// getFreshSQL reads a tenant's row (if any) and the end of its stream in
// one statement: both through primary or unique keys.
const getFreshSQL = `
SELECT t.state, t.position_commit, t.position_prepare, h.version, h.transaction_id, h.position
FROM (SELECT 1) one
LEFT JOIN tenants t ON t.id = $1
LEFT JOIN LATERAL (SELECT version, transaction_id, position FROM events WHERE stream = $2 ORDER BY version DESC LIMIT 1) h ON true`

// GetFresh is Get by tenant id, with where the tenant's stream ends, read
// together in one statement, so a read can tell at once whether the read
// model's row holds every change made to the tenant (t is nil when the read
// model has no row). Only for a Reader WithEventsInDatabase; otherwise
// ErrNoStreamEnd.
func (r *Reader) GetFresh(ctx context.Context, id uuid.UUID) (*aggregate.Tenant, StreamEnd, error) {
	if !r.events {
		return nil, StreamEnd{}, ErrNoStreamEnd
	}
	var (
		state           []byte
		commit, prepare *int64
		version         *int64
		xid, position   *uint64
	)
	err := r.pool.QueryRow(ctx, getFreshSQL, [16]byte(id), aggregate.StreamName(id)).Scan(&state, &commit, &prepare, &version, &xid, &position)
	if err != nil {
		return nil, StreamEnd{}, fmt.Errorf("get tenant %s: %w", id, err)
	}
	var end StreamEnd
	if version != nil {
		end = StreamEnd{Exists: true, Version: uint64(*version), Position: eventstore.Position{Commit: *xid, Prepare: *position}}
	}
	if state == nil {
		return nil, end, nil
	}
	t, err := aggregate.UnmarshalSnapshot(state)
	if err != nil {
		return nil, end, fmt.Errorf("get tenant %s: %w", id, err)
	}
	return t, end, nil
}

// Get returns a tenant by its id (a UUID) or its external id ("ORG-" and 8
// upper-case hex digits), as folded by the projection, and the global position
// of the last event applied to it: what a client compares with a command's
// position to know whether the row already shows its effect. An unknown
// tenant, and a string of neither form, yields ErrNotFound.
func (r *Reader) Get(ctx context.Context, idOrExternalID string) (*aggregate.Tenant, eventstore.Position, error) {
	var where string
	var arg any
	if aggregate.IsExternalID(idOrExternalID) {
		where, arg = "external_id = $1", idOrExternalID
	} else if id, err := uuid.Parse(idOrExternalID); err == nil {
		// [16]byte: pgx encodes it natively (a uuid.UUID goes through
		// driver.Valuer, measurably slower on this hot path).
		where, arg = "id = $1", [16]byte(id)
	} else {
		// No tenant can have it: not found, as the API answers for a path
		// that names no tenant.
		return nil, eventstore.Position{}, fmt.Errorf("get tenant %q: %w", idOrExternalID, ErrNotFound)
	}
	var state []byte
	var commit, prepare int64
	err := r.pool.QueryRow(ctx, `SELECT state, position_commit, position_prepare FROM tenants WHERE `+where, arg).
		Scan(&state, &commit, &prepare)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, eventstore.Position{}, fmt.Errorf("get tenant %s: %w", idOrExternalID, ErrNotFound)
	}
	if err != nil {
		return nil, eventstore.Position{}, fmt.Errorf("get tenant %s: %w", idOrExternalID, err)
	}
	t, err := aggregate.UnmarshalSnapshot(state)
	if err != nil {
		return nil, eventstore.Position{}, fmt.Errorf("get tenant %s: %w", idOrExternalID, err)
	}
	return t, eventstore.Position{Commit: uint64(commit), Prepare: uint64(prepare)}, nil
}
