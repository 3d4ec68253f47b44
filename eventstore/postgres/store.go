// Package postgres is the PostgreSQL adapter of the event store port, the
// service's default: one table, events, holds every stream (see
// migrations/001_events.sql), and pgx talks to it.
//
// Streams use optimistic concurrency through the unique (stream, version) key.
// The global feed is ordered by (transaction id, position) and read only below
// the oldest transaction of this database still running (the snapshot's
// in-progress ids, less those running in other databases of the server; see
// horizonSQL). Positions are handed out when a row is inserted, not when its
// transaction commits, so a feed ordered by position alone would let a reader
// pass an event whose transaction commits late and never see it. Every
// transaction of the database below that horizon has ended, and every
// transaction that can still commit has a transaction id at or above it, so
// what the feed returns is final: nothing can later appear before it.
//
// Committed appends are announced on the channel tenancy_events (after their
// commit, coalesced; see notifier for why not inside the transaction);
// subscriptions LISTEN on it and poll as a fallback.
package postgres

import (
	"context"
	"fmt"
	"time"

	"github.com/google/uuid"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/tenancyhq/tenancy/eventstore"
)

// notifyChannel is the channel appends notify and subscriptions listen on.
const notifyChannel = "tenancy_events"

// Defaults of the options.
const (
	// DefaultBatchSize is the most events one Subscription.Next returns.
	DefaultBatchSize = 500
	// DefaultPollInterval is how often an idle subscription reads the feed
	// when no notification wakes it.
	DefaultPollInterval = time.Second
	// DefaultSettle is the longest ReadAll and Head wait for transactions
	// older than the newest committed event to end (see WithSettle).
	DefaultSettle = time.Second
)

// Store is the PostgreSQL eventstore.Store. It is safe for concurrent use.
// Make one with New.
type Store struct {
	pool         *pgxpool.Pool
	notifier     *notifier
	batchSize    int
	pollInterval time.Duration
	settle       time.Duration
}

var _ eventstore.Store = (*Store)(nil)

// Option configures a Store.
type Option func(*Store)

// WithBatchSize sets the most events one Subscription.Next returns
// (DefaultBatchSize when n <= 0).
func WithBatchSize(n int) Option {
	return func(s *Store) {
		if n > 0 {
			s.batchSize = n
		}
	}
}

// WithPollInterval sets how often an idle subscription reads the feed without
// being notified, the fallback for a lost notification (DefaultPollInterval
// when d <= 0).
func WithPollInterval(d time.Duration) Option {
	return func(s *Store) {
		if d > 0 {
			s.pollInterval = d
		}
	}
}

// WithSettle bounds how long ReadAll and Head wait for transactions that are
// older than the newest committed event and still running. While such a
// transaction runs, the newest events are committed but not yet final (the
// older one could still add events before them), so the feed stops short of
// them. Waiting a little gives readers their own writes; a transaction that
// stays open longer than d only delays what they return, never skips it.
// Zero means do not wait.
func WithSettle(d time.Duration) Option {
	return func(s *Store) {
		if d >= 0 {
			s.settle = d
		}
	}
}

// New returns a Store on pool. The events table must exist (see the
// migrations package).
func New(pool *pgxpool.Pool, opts ...Option) *Store {
	s := &Store{
		pool:         pool,
		notifier:     &notifier{pool: pool},
		batchSize:    DefaultBatchSize,
		pollInterval: DefaultPollInterval,
		settle:       DefaultSettle,
	}
	for _, o := range opts {
		o(s)
	}
	return s
}

// Identity implements eventstore.Identifier: the id minted in this
// database when its events table was set up (table event_store_identity).
func (s *Store) Identity(ctx context.Context) (eventstore.Identity, error) {
	var id uuid.UUID
	err := s.pool.QueryRow(ctx, `
		WITH minted AS (INSERT INTO event_store_identity DEFAULT VALUES ON CONFLICT DO NOTHING RETURNING id)
		SELECT id FROM minted UNION ALL SELECT id FROM event_store_identity LIMIT 1`).Scan(&id)
	if err != nil {
		return eventstore.Identity{}, unavailable(fmt.Errorf("event store identity: %w", err))
	}
	return eventstore.Identity{Kind: "postgres", ID: id.String()}, nil
}
