package postgres

import (
	"context"

	"github.com/jackc/pgx/v5"

	"github.com/tenancyhq/tenancy/eventstore"
)

// AppendInTx runs one append attempt inside the caller's transaction, so that
// tests can hold it open: its events, and its notification (sent at commit,
// as the caller cannot announce it afterwards), count from the caller's
// commit.
func (s *Store) AppendInTx(ctx context.Context, tx pgx.Tx, stream string, expected eventstore.ExpectedVersion, events []eventstore.EventData) (eventstore.AppendResult, error) {
	res, err := s.appendOnce(ctx, tx, stream, expected, events, true)
	if err != nil {
		return res, err
	}
	if _, err := tx.Exec(ctx, notifySQL); err != nil {
		return res, err
	}
	return res, nil
}

// Statements are the statements the Store runs, by name, for plan tests.
var Statements = map[string]string{
	"append one":   appendOneSQL,
	"append many":  appendManySQL,
	"stored":       storedSQL,
	"read forward": readForwardSQL,
	"read back":    readBackwardSQL,
	"read feed":    readFeedSQL,
	"head":         headSQL,
	"count after":  countAfterSQL,
}
