package process

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/tenancyhq/tenancy/projections"
	"github.com/tenancyhq/tenancy/tenantlog"
)

// SchedulerRebuildName is the checkpoint of a scheduler rebuild in progress.
const SchedulerRebuildName = SchedulerName + ".rebuild"

// shadowTimers is where a rebuild builds the new timers, beside the live ones.
const shadowTimers = "timers_rebuild"

// RebuildOptions tune RebuildScheduler.
type RebuildOptions struct {
	// AutoProvision must be the service's (PROVISIONING_MODE): it decides
	// whether provisioning tenants get a provision timer.
	AutoProvision bool
	Progress      func(projections.RebuildProgress)
	ProgressEvery time.Duration
	Logger        *slog.Logger
	Holder        string
}

// RebuildScheduler rebuilds the timers from the start of the feed beside the
// live ones, which the timer worker keeps firing meanwhile: the scheduler
// projection runs into a shadow table (checkpointed, so an interrupted
// rebuild resumes) until it has caught up; then one transaction applies the
// last events, carries over the claims of timers being fired, swaps the
// tables and moves the live checkpoint to where the new table stands
// (fencing the live scheduler, which takes the lead again from there). No
// moment exists without the timers.
func RebuildScheduler(ctx context.Context, pool *pgxpool.Pool, feed projections.Feed, opts RebuildOptions) error {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	report := func(p projections.RebuildProgress) {
		if opts.Progress != nil {
			opts.Progress(p)
		}
	}
	unlock, err := projections.LockRebuild(ctx, pool, SchedulerName)
	if err != nil {
		return err
	}
	defer unlock()
	resumed, err := prepareShadowTimers(ctx, pool)
	if err != nil {
		return err
	}
	p := Scheduler{AutoProvision: opts.AutoProvision, name: SchedulerRebuildName, table: shadowTimers}
	res, err := projections.CatchUp(ctx, pool, feed, p, projections.CatchUpOptions{Decode: tenantlog.Decode, Progress: opts.Progress,
		ProgressEvery: opts.ProgressEvery, Logger: opts.Logger, Holder: opts.Holder, Resumed: resumed})
	if err != nil {
		return err
	}
	report(projections.RebuildProgress{Phase: "switching", Processed: res.Total, Total: res.Total, Rate: res.Rate(), Resumed: resumed})
	n, err := switchTimers(ctx, pool, feed, p)
	if err != nil {
		return err
	}
	report(projections.RebuildProgress{Phase: "done", Processed: res.Total, Total: res.Total, Rate: res.Rate(), Resumed: resumed})
	opts.Logger.InfoContext(ctx, "timers rebuilt and switched over", "events", res.Total, "timers", n, "took", res.Took)
	return nil
}

// prepareShadowTimers creates the shadow table, or keeps it to resume a
// rebuild that was interrupted (its checkpoint row exists).
func prepareShadowTimers(ctx context.Context, pool *pgxpool.Pool) (bool, error) {
	var resumed bool
	err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM projection_checkpoints WHERE name = $1) AND to_regclass($2) IS NOT NULL`,
			SchedulerRebuildName, shadowTimers).Scan(&resumed); err != nil {
			return err
		}
		if resumed {
			return nil
		}
		for _, q := range []string{
			`DROP TABLE IF EXISTS timers_rebuild`,
			`CREATE TABLE timers_rebuild (LIKE timers INCLUDING ALL)`,
		} {
			if _, err := tx.Exec(ctx, q); err != nil {
				return err
			}
		}
		return projections.ResetCheckpoint(ctx, tx, SchedulerRebuildName)
	})
	if err != nil {
		return false, fmt.Errorf("rebuild %s: prepare the shadow table: %w", SchedulerName, err)
	}
	return resumed, nil
}

// switchTimers applies the events the shadow table still lacks and swaps it
// in, in one transaction, locking the live checkpoint row before the table
// (the live scheduler's order). It returns how many timers are pending.
func switchTimers(ctx context.Context, pool *pgxpool.Pool, feed projections.Feed, p Scheduler) (int64, error) {
	var n int64
	err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `INSERT INTO projection_checkpoints (name) VALUES ($1) ON CONFLICT DO NOTHING`, SchedulerName); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `SELECT 1 FROM projection_checkpoints WHERE name = $1 FOR UPDATE`, SchedulerName); err != nil {
			return fmt.Errorf("lock live checkpoint: %w", err)
		}
		if _, err := tx.Exec(ctx, `LOCK TABLE timers IN ACCESS EXCLUSIVE MODE`); err != nil {
			return fmt.Errorf("lock live timers: %w", err)
		}
		pos, err := projections.ReadCheckpoint(ctx, tx, SchedulerRebuildName)
		if err != nil {
			return err
		}
		var processed int64
		if err := tx.QueryRow(ctx, `SELECT events_processed FROM projection_checkpoints WHERE name = $1`, SchedulerRebuildName).Scan(&processed); err != nil {
			return err
		}
		pos, rest, err := projections.ApplyRest(ctx, tx, feed, p, pos, tenantlog.Decode)
		if err != nil {
			return err
		}
		processed += rest
		// A timer a worker is firing right now keeps its claim, so no other
		// replica fires it again meanwhile.
		if _, err := tx.Exec(ctx, `UPDATE timers_rebuild r
			SET claimed_by = l.claimed_by, claimed_until = l.claimed_until, attempts = l.attempts, last_error = l.last_error
			FROM timers l WHERE (r.tenant_id, r.kind, r.due_at) = (l.tenant_id, l.kind, l.due_at)`); err != nil {
			return fmt.Errorf("carry over claims: %w", err)
		}
		for _, q := range []string{
			`DROP TABLE timers`,
			`ALTER TABLE timers_rebuild RENAME TO timers`,
			`ALTER INDEX timers_rebuild_pkey RENAME TO timers_pkey`,
			`ALTER INDEX timers_rebuild_due_at_idx RENAME TO timers_due_idx`,
		} {
			if _, err := tx.Exec(ctx, q); err != nil {
				return fmt.Errorf("%s: %w", q, err)
			}
		}
		if err := projections.MoveCheckpoint(ctx, tx, SchedulerName, pos, processed, "rebuild"); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `DELETE FROM projection_checkpoints WHERE name = $1`, SchedulerRebuildName); err != nil {
			return err
		}
		return tx.QueryRow(ctx, `SELECT count(*) FROM timers`).Scan(&n)
	})
	if err != nil {
		return 0, fmt.Errorf("rebuild %s: switch over: %w", SchedulerName, err)
	}
	return n, nil
}
