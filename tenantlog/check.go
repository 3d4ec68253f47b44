package tenantlog

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// ErrWrongMasterKey is matched (errors.Is) by CheckMasterKey's error when
// the master key does not unwrap the tenant keys the database holds: it is
// not the key their personal data was sealed with.
var ErrWrongMasterKey = errors.New("master key does not unwrap the sealed tenant keys")

// Sealed describes the tenant keys a database holds.
type Sealed struct {
	// Keys is how many tenant keys there are; 0: nothing is sealed yet.
	Keys int64
	// Since is when the oldest was made.
	Since time.Time
}

// SealedKeys reports the tenant keys the database holds. A database whose
// migrations have not made tenant_keys yet holds none.
func SealedKeys(ctx context.Context, pool *pgxpool.Pool) (Sealed, error) {
	var s Sealed
	var since *time.Time
	err := pool.QueryRow(ctx, `SELECT count(*), min(created_at) FROM tenant_keys`).Scan(&s.Keys, &since)
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == "42P01" { // undefined_table
		return Sealed{}, nil
	}
	if err != nil {
		return Sealed{}, fmt.Errorf("count tenant keys: %w", err)
	}
	if since != nil {
		s.Since = *since
	}
	return s, nil
}

// CheckMasterKey unwraps the oldest tenant key with master, so that a
// service started with another master key than the one that sealed the data
// stops at once instead of answering 500 on the first personal field. It
// returns an error matching ErrWrongMasterKey when the key does not fit, and
// nil when it does or nothing is sealed yet.
func CheckMasterKey(ctx context.Context, pool *pgxpool.Pool, master *MasterKey) error {
	var tenant uuid.UUID
	var wrapped []byte
	err := pool.QueryRow(ctx, `SELECT tenant_id, wrapped_key FROM tenant_keys ORDER BY created_at, tenant_id LIMIT 1`).Scan(&tenant, &wrapped)
	var pgErr *pgconn.PgError
	if errors.Is(err, pgx.ErrNoRows) || errors.As(err, &pgErr) && pgErr.Code == "42P01" {
		return nil
	}
	if err != nil {
		return fmt.Errorf("read a tenant key: %w", err)
	}
	if _, err := master.unwrap(wrapped, tenant); err != nil {
		return fmt.Errorf("%w (tenant %s's key: %w)", ErrWrongMasterKey, tenant, err)
	}
	return nil
}
