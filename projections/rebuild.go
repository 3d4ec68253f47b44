package projections

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/tenancyhq/tenancy/aggregate"
	"github.com/tenancyhq/tenancy/eventstore"
)

// RebuildProgress is how far a rebuild has come.
type RebuildProgress struct {
	Phase     string `json:"phase"` // building | indexing | switching | done
	Processed int64  `json:"processed"`
	Total     int64  `json:"total"`
	// Rate is the events applied per second by this run (a resumed rebuild
	// counts from where it resumed), over the run so far.
	Rate    float64       `json:"events_per_second"`
	ETA     time.Duration `json:"eta"`
	Resumed bool          `json:"resumed"`
}

// Percent is Processed as a share of Total.
func (p RebuildProgress) Percent() float64 {
	if p.Total == 0 {
		return 100
	}
	return 100 * float64(p.Processed) / float64(p.Total)
}

// CatchUpOptions tune CatchUp.
type CatchUpOptions struct {
	// Progress is called about every ProgressEvery (default 1 s) while building.
	Progress      func(RebuildProgress)
	ProgressEvery time.Duration
	Logger        *slog.Logger
	Holder        string
	// Resumed is reported in the progress (the caller knows).
	Resumed bool
	// Decode decodes the records for the projection (see Options.Decode).
	Decode func(eventstore.RecordedEvent) (aggregate.Envelope, error)
}

// CatchUpResult is where a catch-up ended.
type CatchUpResult struct {
	// Processed counts every event the projection's checkpoint has applied
	// (since it was reset), Total the feed's events it selected at the start.
	Processed, Total int64
	// Run counts the events this run applied, in Took.
	Run  int64
	Took time.Duration
}

// Rate is the events this run applied per second.
func (r CatchUpResult) Rate() float64 {
	if r.Took <= 0 {
		return 0
	}
	return float64(r.Run) / r.Took.Seconds()
}

// CatchUp runs projection p (a rebuild's: its own name and tables) from its
// checkpoint until it has applied every event of the feed it selects,
// reporting progress, and returns. It is the build phase of a blue-green
// rebuild: the caller then applies the last events and switches over in one
// transaction.
func CatchUp(ctx context.Context, pool *pgxpool.Pool, feed Feed, p Projection, opts CatchUpOptions) (CatchUpResult, error) {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.ProgressEvery <= 0 {
		opts.ProgressEvery = time.Second
	}
	name := p.Name()
	var res CatchUpResult
	if c, ok := feed.(FeedCounter); ok {
		total, err := c.CountAfter(ctx, eventstore.Start, p.Filter())
		switch {
		case errors.Is(err, eventstore.ErrCannotCount):
			// unknown (EventStoreDB): progress shows events done, the lag the rest
		case err != nil:
			return res, fmt.Errorf("rebuild %s: count events: %w", name, err)
		default:
			res.Total = total
		}
	}
	var startProcessed int64
	if err := pool.QueryRow(ctx, `SELECT coalesce((SELECT events_processed FROM projection_checkpoints WHERE name = $1), 0)`,
		name).Scan(&startProcessed); err != nil {
		return res, fmt.Errorf("rebuild %s: %w", name, err)
	}
	rctx, stop := context.WithCancel(ctx)
	defer stop()
	// Asynchronous commit is safe for a rebuild as for any in-database
	// projection: its tables and its checkpoint are lost together.
	runner := NewRunner(pool, feed, p, Options{Logger: opts.Logger, Holder: opts.Holder,
		LockPollInterval: 50 * time.Millisecond, AsynchronousCommit: true, Decode: opts.Decode})
	done := make(chan error, 1)
	go func() { done <- runner.Run(rctx) }()
	started := time.Now()
	finish := func(err error) (CatchUpResult, error) {
		stop()
		if rerr := <-done; err == nil && rerr != nil {
			err = fmt.Errorf("rebuild %s: %w", name, rerr)
		}
		res.Took = time.Since(started)
		return res, err
	}
	for {
		select {
		case err := <-done:
			done <- err // finish reads it again
			if ctx.Err() != nil {
				return finish(ctx.Err())
			}
			return finish(fmt.Errorf("rebuild %s stopped: %w", name, err))
		case <-time.After(opts.ProgressEvery):
		case <-ctx.Done():
			return finish(ctx.Err())
		}
		st, err := Status(ctx, pool, feed, name)
		if err != nil {
			return finish(err)
		}
		res.Processed = st.EventsProcessed
		res.Run = st.EventsProcessed - startProcessed
		pr := RebuildProgress{Phase: "building", Processed: st.EventsProcessed, Total: max(res.Total, st.EventsProcessed+st.LagEvents), Resumed: opts.Resumed}
		if secs := time.Since(started).Seconds(); secs > 0 {
			pr.Rate = float64(res.Run) / secs
			if pr.Rate > 0 {
				pr.ETA = time.Duration(float64(st.LagEvents) / pr.Rate * float64(time.Second))
			}
		}
		if opts.Progress != nil {
			opts.Progress(pr)
		}
		if st.State == StateHalted {
			return finish(fmt.Errorf("rebuild halted on an event: %s (see projection_failures for %s)", st.LastError, name))
		}
		if st.LagEvents == 0 && (st.EventsProcessed > 0 || res.Total == 0) {
			res.Total = max(res.Total, st.EventsProcessed)
			return finish(nil)
		}
	}
}

// ErrRebuildRunning: another rebuild of the projection holds its rebuild lock.
var ErrRebuildRunning = errors.New("a rebuild of this projection is already running")

// LockRebuild takes projection name's rebuild lock (an advisory lock, on a
// connection of its own, so two rebuilds of one projection cannot run at
// once on any replica) and returns the function that releases it.
func LockRebuild(ctx context.Context, pool *pgxpool.Pool, name string) (func(), error) {
	conn, err := pgx.ConnectConfig(ctx, pool.Config().ConnConfig)
	if err != nil {
		return nil, fmt.Errorf("rebuild %s: %w", name, err)
	}
	h := fnv.New64a()
	h.Write([]byte("tenancy.rebuild\x00" + name))
	key := int64(h.Sum64())
	var ok bool
	if err := conn.QueryRow(ctx, `SELECT pg_try_advisory_lock($1)`, key).Scan(&ok); err != nil {
		conn.Close(ctx)
		return nil, fmt.Errorf("rebuild %s: lock: %w", name, err)
	}
	if !ok {
		conn.Close(ctx)
		return nil, fmt.Errorf("rebuild %s: %w", name, ErrRebuildRunning)
	}
	return func() { conn.Close(context.Background()) }, nil
}

// MoveCheckpoint moves projection name's checkpoint, in tx, to pos with
// processed events applied, and raises its epoch so that the running leader
// (fenced) takes the lead again from there. by says which operator move it
// was (a rebuild's switch-over): the fenced runner logs it as such rather
// than as a lost lead.
func MoveCheckpoint(ctx context.Context, tx pgx.Tx, name string, pos eventstore.Position, processed int64, by string) error {
	c, p, err := positionArgs(pos)
	if err != nil {
		return err
	}
	if _, err := tx.Exec(ctx, `UPDATE projection_checkpoints
		SET position_commit = $2, position_prepare = $3, events_processed = $4, leader_epoch = leader_epoch + 1,
		    state = CASE WHEN state = 'halted' THEN 'idle' ELSE state END, last_error = NULL,
		    moved_by = $5, updated_at = now()
		WHERE name = $1`, name, c, p, processed, by); err != nil {
		return fmt.Errorf("move checkpoint %s: %w", name, err)
	}
	return nil
}

// ApplyRest applies to p, inside tx, every event of the feed after pos that
// p's filter selects, decoded with decode: what a rebuild does in the
// transaction that switches over, so that nothing committed meanwhile is
// missed. It returns the position reached and how many events it applied.
func ApplyRest(ctx context.Context, tx pgx.Tx, feed eventstore.FeedReader, p Projection, pos eventstore.Position,
	decode func(eventstore.RecordedEvent) (aggregate.Envelope, error)) (eventstore.Position, int64, error) {
	var applied int64
	for {
		batch, err := feed.ReadAll(ctx, pos, p.Filter(), 1000)
		if err != nil {
			return pos, applied, fmt.Errorf("read the last events: %w", err)
		}
		if len(batch) == 0 {
			return pos, applied, nil
		}
		decoded, err := Decode(batch, decode)
		if err != nil {
			return pos, applied, err
		}
		if err := p.Apply(ctx, tx, decoded); err != nil {
			return pos, applied, err
		}
		pos = batch[len(batch)-1].Position
		applied += int64(len(batch))
	}
}
