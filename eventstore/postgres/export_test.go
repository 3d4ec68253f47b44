package postgres

import (
	"context"

	"github.com/jackc/pgx/v5"

	"github.com/tenancyhq/tenancy/eventstore"
)

// AppendInTx runs one append attempt inside the caller's transaction, so that
// tests can hold it open: its events, and its notification, count from the
// caller's commit.
func (s *Store) AppendInTx(ctx context.Context, tx pgx.Tx, stream string, expected eventstore.ExpectedVersion, events []eventstore.EventData) (eventstore.AppendResult, error) {
	return s.append(ctx, tx, stream, expected, events)
}
