package postgres

import (
	"context"
	"errors"
	"fmt"
	"strconv"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/tenancyhq/tenancy/eventstore"
	"github.com/tenancyhq/tenancy/internal/pgerr"
)

// A Commit is one transaction: its statements are sent as one pgx batch,
// which PostgreSQL runs in one implicit transaction (one Sync), so a
// command costs one round trip and one commit whatever it writes. Any
// statement that fails voids the whole batch; every condition is therefore
// an error raised by the statement itself, never a row count read later:
//
//   - events_require_version (migrations/007) raises TN409 unless the stream
//     is at the expected version; the events are inserted at explicit
//     versions after it, so a concurrent append that took a version first
//     fails the insert on the unique (stream, version) key;
//   - claims_apply raises TN423 for a value another stream holds;
//   - a second key for one owner fails on tenant_keys' primary key.
const (
	commitEventsSQL = `
INSERT INTO events (stream, version, event_id, event_type, schema_version, data, metadata)
SELECT $1, $2::bigint + e.ord, e.event_id, e.event_type, e.schema_version, e.data, coalesce(e.metadata, '{}'::jsonb)
FROM unnest($3::uuid[], $4::text[], $5::int[], $6::jsonb[], $7::jsonb[])
	WITH ORDINALITY AS e(event_id, event_type, schema_version, data, metadata, ord)
ORDER BY e.ord
RETURNING version, transaction_id, position`
	requireVersionSQL = `SELECT events_require_version($1, $2)`
	claimsSQL         = `SELECT claims_apply($1, $2, $3, $4)`
	keepSecretSQL     = `INSERT INTO tenant_keys (tenant_id, wrapped_key) VALUES ($1, $2)`
	destroySecretSQL  = `DELETE FROM tenant_keys WHERE tenant_id = $1`
)

// SQLSTATEs raised by the functions of migrations/007_unique_claims.sql.
const (
	codeWrongVersion = "TN409"
	codeClaimTaken   = "TN423"
)

// KeepsSecrets implements eventstore.Committer: keys go to the tenant_keys
// table in the events' transaction.
func (s *Store) KeepsSecrets() bool { return true }

// Commit implements eventstore.Committer in one transaction and one round
// trip. A Write of events alone is Append's single statement; with claims
// or secrets it is a batch (see commitEventsSQL).
func (s *Store) Commit(ctx context.Context, w eventstore.Write) (eventstore.AppendResult, error) {
	if err := checkBatch(w.Stream, w.Events); err != nil {
		return eventstore.AppendResult{}, err
	}
	var (
		res eventstore.AppendResult
		err error
	)
	if len(w.Claims) == 0 && len(w.Secrets) == 0 {
		res, err = s.appendOnce(ctx, s.pool, w.Stream, w.Expected, w.Events, false)
	} else {
		res, err = s.commitBatch(ctx, w)
	}
	if err != nil {
		return eventstore.AppendResult{}, unavailable(err)
	}
	s.notifier.announce()
	return res, nil
}

func (s *Store) commitBatch(ctx context.Context, w eventstore.Write) (eventstore.AppendResult, error) {
	if w.Expected == eventstore.Any {
		return eventstore.AppendResult{}, fmt.Errorf("commit %s: a write with claims or secrets needs an exact or no-stream expected version", w.Stream)
	}
	b := &pgx.Batch{}
	b.Queue(requireVersionSQL, w.Stream, int64(w.Expected))
	n := len(w.Events)
	ids := make([][16]byte, n)
	types := make([]string, n)
	schemas := make([]int32, n)
	data := make([][]byte, n)
	meta := make([][]byte, n)
	for i, e := range w.Events {
		ids[i], types[i], schemas[i], data[i], meta[i] = [16]byte(e.ID), e.Type, int32(e.SchemaVersion), e.Data, e.Metadata
	}
	// ord counts from 1, so the first event lands at expected + 1 (0 for
	// NoStream, which is -1).
	b.Queue(commitEventsSQL, w.Stream, int64(w.Expected), ids, types, schemas, data, meta)
	if len(w.Claims) > 0 {
		kinds := make([]string, len(w.Claims))
		values := make([]string, len(w.Claims))
		release := make([]bool, len(w.Claims))
		for i, c := range w.Claims {
			kinds[i], values[i], release[i] = c.Kind, c.Value, c.Release
		}
		b.Queue(claimsSQL, w.Stream, kinds, values, release)
	}
	for _, sec := range w.Secrets {
		if sec.Destroy {
			b.Queue(destroySecretSQL, [16]byte(sec.Owner))
		} else {
			b.Queue(keepSecretSQL, [16]byte(sec.Owner), sec.Key)
		}
	}

	br := s.pool.SendBatch(ctx, b)
	var res eventstore.AppendResult
	_, err := br.Exec()
	if err == nil {
		err = scanAppended(br, &res, n)
	}
	for i := 2; err == nil && i < b.Len(); i++ {
		_, err = br.Exec()
	}
	if cerr := br.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		return res, nil
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		switch {
		case pgErr.Code == codeWrongVersion:
			actual, _ := strconv.ParseInt(pgErr.Detail, 10, 64)
			return eventstore.AppendResult{}, &eventstore.WrongExpectedVersionError{Stream: w.Stream, Expected: w.Expected, Actual: actual}
		case pgErr.Code == codeClaimTaken:
			return eventstore.AppendResult{}, &eventstore.ClaimTakenError{Kind: pgErr.ColumnName, Value: pgErr.Hint, Holder: pgErr.Detail}
		case pgErr.Code == "23505" && pgErr.ConstraintName == "tenant_keys_pkey":
			return eventstore.AppendResult{}, fmt.Errorf("commit %s: %w", w.Stream, eventstore.ErrSecretExists)
		case pgErr.Code == "23505": // (stream, version) or event_id
			return s.refused(ctx, w.Stream, w.Expected, eventIDs(w.Events), false)
		}
	}
	return eventstore.AppendResult{}, fmt.Errorf("commit %s: %w", w.Stream, err)
}

// scanAppended reads the rows of an events insert into res: the last
// version and the greatest position.
func scanAppended(br pgx.BatchResults, res *eventstore.AppendResult, want int) error {
	rows, err := br.Query()
	if err != nil {
		return err
	}
	written := 0
	for rows.Next() {
		var version int64
		var pos eventstore.Position
		if err := rows.Scan(&version, &pos.Commit, &pos.Prepare); err != nil {
			rows.Close()
			return err
		}
		if written++; pos.Compare(res.Position) > 0 {
			*res = eventstore.AppendResult{NextExpectedVersion: uint64(version), Position: pos}
		}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return err
	}
	if written != want {
		return fmt.Errorf("%d of %d events written", written, want)
	}
	return nil
}

func eventIDs(events []eventstore.EventData) []uuid.UUID {
	ids := make([]uuid.UUID, len(events))
	for i, e := range events {
		ids[i] = e.ID
	}
	return ids
}

// ClaimHolder implements eventstore.ClaimReader.
func (s *Store) ClaimHolder(ctx context.Context, kind, value string) (string, error) {
	var holder string
	err := s.pool.QueryRow(ctx, `SELECT holder FROM unique_claims WHERE kind = $1 AND value = $2`, kind, value).Scan(&holder)
	if errors.Is(err, pgx.ErrNoRows) {
		return "", fmt.Errorf("claim %s %q: %w", kind, value, eventstore.ErrNotFound)
	}
	if err != nil {
		return "", unavailable(fmt.Errorf("claim %s %q: %w", kind, value, err))
	}
	return holder, nil
}

// Locate implements eventstore.Locator through the unique event_id index.
func (s *Store) Locate(ctx context.Context, id uuid.UUID) (string, uint64, error) {
	var stream string
	var version int64
	err := s.pool.QueryRow(ctx, `SELECT stream, version FROM events WHERE event_id = $1`, [16]byte(id)).Scan(&stream, &version)
	if errors.Is(err, pgx.ErrNoRows) {
		return "", 0, fmt.Errorf("event %s: %w", id, eventstore.ErrNotFound)
	}
	if err != nil {
		return "", 0, unavailable(fmt.Errorf("locate event %s: %w", id, err))
	}
	return stream, uint64(version), nil
}

// unavailable marks an error that means the database cannot be reached
// with eventstore.ErrUnavailable.
func unavailable(err error) error {
	if err == nil || errors.Is(err, eventstore.ErrUnavailable) || !pgerr.IsUnavailable(err) {
		return err
	}
	return fmt.Errorf("%w: %w", eventstore.ErrUnavailable, err)
}
