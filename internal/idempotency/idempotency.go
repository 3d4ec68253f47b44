// Package idempotency remembers HTTP responses by Idempotency-Key in Postgres.
package idempotency

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Errors of Claim.
var (
	// ErrMismatch: the key was used before with a different request.
	ErrMismatch = errors.New("idempotency key reused with a different request")
	// ErrInFlight: the first request with this key is still running.
	ErrInFlight = errors.New("a request with this idempotency key is in progress")
)

// Response is a remembered response.
type Response struct {
	Status int
	Header map[string]string
	Body   []byte
}

// Store keeps responses in the idempotency_keys table.
type Store struct {
	pool *pgxpool.Pool
	// stale is how long a claim without a response may stand before another
	// request takes it over (its process died mid-request).
	stale time.Duration
}

// New returns a store on pool.
func New(pool *pgxpool.Pool) *Store { return &Store{pool: pool, stale: time.Minute} }

// Claim reserves (scope, key) for a request with fingerprint hash, for ttl.
// It returns nil when the caller should run the request, the remembered
// response when one exists for the same hash, ErrMismatch for another hash
// and ErrInFlight while the first request runs.
func (s *Store) Claim(ctx context.Context, scope, key, hash string, ttl time.Duration) (*Response, error) {
	// One statement: take the key if it is new, expired, or abandoned.
	var claimed bool
	err := s.pool.QueryRow(ctx, `
		INSERT INTO idempotency_keys (scope, key, request_hash, expires_at)
		VALUES ($1, $2, $3, now() + $4::interval)
		ON CONFLICT (scope, key) DO UPDATE
		   SET request_hash = EXCLUDED.request_hash, status = NULL, headers = NULL, body = NULL,
		       created_at = now(), expires_at = EXCLUDED.expires_at
		 WHERE idempotency_keys.expires_at < now()
		    OR (idempotency_keys.status IS NULL AND idempotency_keys.created_at < now() - $5::interval
		        AND idempotency_keys.request_hash = EXCLUDED.request_hash)
		RETURNING true`, scope, key, hash, ttl.String(), s.stale.String()).Scan(&claimed)
	if err == nil {
		return nil, nil
	}
	if !errors.Is(err, pgx.ErrNoRows) {
		return nil, fmt.Errorf("claim idempotency key: %w", err)
	}
	var storedHash string
	var status *int
	var header map[string]string
	var body []byte
	err = s.pool.QueryRow(ctx, `SELECT request_hash, status, headers, body FROM idempotency_keys WHERE scope = $1 AND key = $2`, scope, key).
		Scan(&storedHash, &status, &header, &body)
	if errors.Is(err, pgx.ErrNoRows) {
		return s.Claim(ctx, scope, key, hash, ttl) // expired and removed in between
	}
	if err != nil {
		return nil, fmt.Errorf("read idempotency key: %w", err)
	}
	switch {
	case storedHash != hash:
		return nil, ErrMismatch
	case status == nil:
		return nil, ErrInFlight
	}
	return &Response{Status: *status, Header: header, Body: body}, nil
}

// Save remembers the response of a claimed key.
func (s *Store) Save(ctx context.Context, scope, key string, r Response) error {
	_, err := s.pool.Exec(ctx, `UPDATE idempotency_keys SET status = $3, headers = $4, body = $5 WHERE scope = $1 AND key = $2`,
		scope, key, r.Status, r.Header, r.Body)
	if err != nil {
		return fmt.Errorf("save idempotent response: %w", err)
	}
	return nil
}

// Release forgets a claim whose request failed on our side, so a retry runs again.
func (s *Store) Release(ctx context.Context, scope, key string) error {
	_, err := s.pool.Exec(ctx, `DELETE FROM idempotency_keys WHERE scope = $1 AND key = $2 AND status IS NULL`, scope, key)
	if err != nil {
		return fmt.Errorf("release idempotency key: %w", err)
	}
	return nil
}

// ForgetTenant deletes the remembered responses that mention the tenant
// (its id is in the body: a tenant's state, a problem about it), and
// reports how many. A purge calls it: those responses hold the tenant's
// personal data as it was, outside the event store that crypto-shredding
// erases. A retried request is still applied once: the command handler
// recognises its events by the Idempotency-Key. Claims still running
// (no body yet) stay.
func (s *Store) ForgetTenant(ctx context.Context, tenant uuid.UUID) (int64, error) {
	tag, err := s.pool.Exec(ctx, `DELETE FROM idempotency_keys WHERE position($1::bytea IN body) > 0`, []byte(tenant.String()))
	if err != nil {
		return 0, fmt.Errorf("forget the idempotent responses of %s: %w", tenant, err)
	}
	return tag.RowsAffected(), nil
}

// DeleteExpired removes keys past their time; the service runs it periodically.
func (s *Store) DeleteExpired(ctx context.Context) (int64, error) {
	tag, err := s.pool.Exec(ctx, `DELETE FROM idempotency_keys WHERE expires_at < now()`)
	if err != nil {
		return 0, fmt.Errorf("delete expired idempotency keys: %w", err)
	}
	return tag.RowsAffected(), nil
}
