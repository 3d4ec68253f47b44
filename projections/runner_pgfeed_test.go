package projections_test

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/tenancyhq/tenancy/eventstore"
	"github.com/tenancyhq/tenancy/projections"
)

// pgTableFeed is a minimal, test-only feed over the events table of
// migration 001, so that a child process (the kill -9 test) sees the same
// events as the test. It follows the table's rule for a gap-free feed: order
// by (transaction_id, position) and read only below the oldest running
// transaction. Swap it for eventstore/postgres once that adapter exists.
type pgTableFeed struct {
	pool      *pgxpool.Pool
	batchSize int
}

var (
	_ eventstore.Appender     = (*pgTableFeed)(nil)
	_ projections.Feed        = (*pgTableFeed)(nil)
	_ projections.FeedCounter = (*pgTableFeed)(nil)
)

func newPGTableFeed(pool *pgxpool.Pool, batchSize int) *pgTableFeed {
	return &pgTableFeed{pool: pool, batchSize: batchSize}
}

// Append supports only eventstore.Any: the tests append from one goroutine.
func (f *pgTableFeed) Append(ctx context.Context, stream string, expected eventstore.ExpectedVersion, events []eventstore.EventData) (eventstore.AppendResult, error) {
	if expected != eventstore.Any {
		return eventstore.AppendResult{}, errors.New("pgTableFeed: only ExpectedVersion Any")
	}
	var res eventstore.AppendResult
	err := pgx.BeginFunc(ctx, f.pool, func(tx pgx.Tx) error {
		var next int64
		if err := tx.QueryRow(ctx, `SELECT coalesce(max(version) + 1, 0) FROM events WHERE stream = $1`, stream).Scan(&next); err != nil {
			return err
		}
		for i, e := range events {
			var txid string
			var pos int64
			data := e.Data
			if data == nil {
				data = []byte("{}")
			}
			if err := tx.QueryRow(ctx, `INSERT INTO events (stream, version, event_id, event_type, schema_version, data)
				VALUES ($1, $2, $3, $4, $5, $6) RETURNING transaction_id::text, position`,
				stream, next+int64(i), e.ID, e.Type, max(e.SchemaVersion, 1), data).Scan(&txid, &pos); err != nil {
				return err
			}
			c, err := strconv.ParseUint(txid, 10, 64)
			if err != nil {
				return err
			}
			res = eventstore.AppendResult{NextExpectedVersion: uint64(next) + uint64(i), Position: eventstore.Position{Commit: c, Prepare: uint64(pos)}}
		}
		return nil
	})
	if err != nil {
		return res, fmt.Errorf("append to %s: %w", stream, err)
	}
	return res, nil
}

const pgFeedWhere = `(transaction_id, position) > ($1::text::xid8, $2::bigint)
	AND transaction_id < pg_snapshot_xmin(pg_current_snapshot())
	AND (cardinality($3::text[]) = 0 OR EXISTS (SELECT 1 FROM unnest($3::text[]) p WHERE starts_with(stream, p)))`

func (f *pgTableFeed) ReadAll(ctx context.Context, after eventstore.Position, filter eventstore.Filter, limit int) ([]eventstore.RecordedEvent, error) {
	if limit <= 0 {
		limit = 1 << 30
	}
	rows, err := f.pool.Query(ctx, `SELECT transaction_id::text, position, event_id, event_type, schema_version,
		stream, version, data, metadata, recorded_at FROM events WHERE `+pgFeedWhere+`
		ORDER BY transaction_id, position LIMIT $4`,
		strconv.FormatUint(after.Commit, 10), int64(after.Prepare), prefixes(filter), limit)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, func(row pgx.CollectableRow) (eventstore.RecordedEvent, error) {
		var (
			e    eventstore.RecordedEvent
			txid string
			pos  int64
			ver  int64
		)
		if err := row.Scan(&txid, &pos, &e.ID, &e.Type, &e.SchemaVersion, &e.Stream, &ver, &e.Data, &e.Metadata, &e.RecordedAt); err != nil {
			return e, err
		}
		c, err := strconv.ParseUint(txid, 10, 64)
		e.Position = eventstore.Position{Commit: c, Prepare: uint64(pos)}
		e.Version = uint64(ver)
		return e, err
	})
}

func (f *pgTableFeed) Head(ctx context.Context) (eventstore.Position, error) {
	var txid string
	var pos int64
	err := f.pool.QueryRow(ctx, `SELECT transaction_id::text, position FROM events
		WHERE transaction_id < pg_snapshot_xmin(pg_current_snapshot())
		ORDER BY transaction_id DESC, position DESC LIMIT 1`).Scan(&txid, &pos)
	if errors.Is(err, pgx.ErrNoRows) {
		return eventstore.Start, nil
	}
	if err != nil {
		return eventstore.Position{}, err
	}
	c, err := strconv.ParseUint(txid, 10, 64)
	return eventstore.Position{Commit: c, Prepare: uint64(pos)}, err
}

// CountAfter makes the feed a projections.FeedCounter, as the Postgres
// adapter will be.
func (f *pgTableFeed) CountAfter(ctx context.Context, after eventstore.Position, filter eventstore.Filter) (int64, error) {
	var n int64
	err := f.pool.QueryRow(ctx, `SELECT count(*) FROM events WHERE `+pgFeedWhere,
		strconv.FormatUint(after.Commit, 10), int64(after.Prepare), prefixes(filter)).Scan(&n)
	return n, err
}

func (f *pgTableFeed) SubscribeAll(ctx context.Context, after eventstore.Position, filter eventstore.Filter) (eventstore.Subscription, error) {
	return &pgTableSubscription{feed: f, after: after, filter: filter}, nil
}

type pgTableSubscription struct {
	feed   *pgTableFeed
	after  eventstore.Position
	filter eventstore.Filter
}

// Next polls every 10ms: good enough for tests.
func (s *pgTableSubscription) Next(ctx context.Context) ([]eventstore.RecordedEvent, error) {
	for {
		evs, err := s.feed.ReadAll(ctx, s.after, s.filter, s.feed.batchSize)
		if err != nil {
			return nil, err
		}
		if len(evs) > 0 {
			s.after = evs[len(evs)-1].Position
			return evs, nil
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(10 * time.Millisecond):
		}
	}
}

func (s *pgTableSubscription) Close() error { return nil }

func prefixes(f eventstore.Filter) []string {
	if f.StreamPrefixes == nil {
		return []string{}
	}
	return f.StreamPrefixes
}
