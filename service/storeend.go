package service

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/tenancyhq/tenancy/eventstore"
)

// storeEnd tells the API the last position the event store holds, so that
// a consistency token beyond it (one no command ever returned) is refused at
// once instead of waited for.
//
// On EventStoreDB that is the store's head. On the Postgres store it is the
// last row of events, whether or not the feed may read it yet: the feed's
// head stops below the oldest running transaction of the whole cluster
// (pg_snapshot_xmin), which on a busy server lags a token just handed out
// by seconds, and such a token must wait, not be refused.
type storeEnd struct {
	pool  *pgxpool.Pool // nil: not the Postgres store
	store eventstore.Store
}

// lastEventSQL is the position of the last event written (events_feed_idx).
const lastEventSQL = `SELECT transaction_id, position FROM events ORDER BY transaction_id DESC, position DESC LIMIT 1`

// Head implements httpapi.FeedHead.
func (e storeEnd) Head(ctx context.Context) (eventstore.Position, error) {
	if e.pool == nil {
		return e.store.Head(ctx)
	}
	var commit, prepare uint64
	rows, err := e.pool.Query(ctx, lastEventSQL)
	if err != nil {
		return eventstore.Start, fmt.Errorf("last event: %w", err)
	}
	defer rows.Close()
	if !rows.Next() {
		return eventstore.Start, rows.Err()
	}
	if err := rows.Scan(&commit, &prepare); err != nil {
		return eventstore.Start, fmt.Errorf("last event: %w", err)
	}
	return eventstore.Position{Commit: commit, Prepare: prepare}, nil
}
