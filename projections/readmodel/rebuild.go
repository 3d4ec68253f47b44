package readmodel

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/tenancyhq/tenancy/aggregate"
	"github.com/tenancyhq/tenancy/eventstore"
	"github.com/tenancyhq/tenancy/projections"
	"github.com/tenancyhq/tenancy/tenantlog"
)

// RebuildName is the checkpoint name of a read-model rebuild in progress.
const RebuildName = Name + ".rebuild"

// ShadowTables are where a rebuild builds the new read model, beside the live one.
var ShadowTables = Tables{Tenants: "tenants_rebuild", TenantEvents: "tenant_events_rebuild"}

// ErrRebuildRunning: another rebuild of the read model holds the rebuild lock.
var ErrRebuildRunning = fmt.Errorf("%s: %w", Name, projections.ErrRebuildRunning)

// Progress is how far a rebuild has come.
type Progress = projections.RebuildProgress

// RebuildOptions tune a rebuild.
type RebuildOptions struct {
	// Progress is called about every ProgressEvery with the progress so far.
	Progress      func(Progress)
	ProgressEvery time.Duration
	Logger        *slog.Logger
	// Holder names this process in the rebuild's checkpoint row.
	Holder string
}

// Rebuild builds a new read model beside the live one, from the start of the
// feed, with the same projector and runner (batched, checkpointed, so an
// interrupted rebuild resumes where it stopped). The live read model keeps
// serving queries the whole time. Once the new one has caught up, one
// transaction applies the last events, swaps the tables, moves the live
// checkpoint to where the new tables stand (fencing the live runner, which
// takes the lead again from there) and drops the old tables. Queries wait for
// that transaction for a moment; none fails or sees an empty read model.
func Rebuild(ctx context.Context, pool *pgxpool.Pool, feed projections.Feed, cat *aggregate.Catalog, opts RebuildOptions) error {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	report := func(p Progress) {
		if opts.Progress != nil {
			opts.Progress(p)
		}
	}
	unlock, err := projections.LockRebuild(ctx, pool, Name)
	if errors.Is(err, projections.ErrRebuildRunning) {
		return ErrRebuildRunning
	}
	if err != nil {
		return err
	}
	defer unlock()

	resumed, err := prepareShadow(ctx, pool)
	if err != nil {
		return err
	}
	p := NewInto(cat, RebuildName, ShadowTables)
	res, err := projections.CatchUp(ctx, pool, feed, p, projections.CatchUpOptions{Decode: tenantlog.Decode, Progress: opts.Progress,
		ProgressEvery: opts.ProgressEvery, Logger: opts.Logger, Holder: opts.Holder, Resumed: resumed})
	if err != nil {
		return err
	}
	total, rate := res.Total, res.Rate()
	report(Progress{Phase: "indexing", Processed: total, Total: total, Rate: rate, Resumed: resumed})
	if err := buildIndexes(ctx, pool); err != nil {
		return err
	}
	report(Progress{Phase: "switching", Processed: total, Total: total, Rate: rate, Resumed: resumed})
	if err := switchOver(ctx, pool, feed, p); err != nil {
		return err
	}
	report(Progress{Phase: "done", Processed: total, Total: total, Rate: rate, Resumed: resumed})
	opts.Logger.InfoContext(ctx, "read model rebuilt and switched over", "events", total, "events_per_second", rate, "took", res.Took)
	return nil
}

// prepareShadow creates the shadow tables, or keeps them to resume a rebuild
// that was interrupted (its checkpoint row exists). It reports whether it resumed.
func prepareShadow(ctx context.Context, pool *pgxpool.Pool) (bool, error) {
	var resumed bool
	err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM projection_checkpoints WHERE name = $1)
			AND to_regclass($2) IS NOT NULL AND to_regclass($3) IS NOT NULL`,
			RebuildName, ShadowTables.Tenants, ShadowTables.TenantEvents).Scan(&resumed); err != nil {
			return err
		}
		if resumed {
			return nil
		}
		// Only the primary keys (the projector's upserts need them): the
		// secondary indexes are built once, at the end (buildIndexes), which is
		// far cheaper than maintaining them row by row through a bulk load.
		for _, q := range []string{
			`DROP TABLE IF EXISTS tenants_rebuild, tenant_events_rebuild`,
			`CREATE TABLE tenants_rebuild (LIKE tenants INCLUDING DEFAULTS INCLUDING CONSTRAINTS)`,
			`ALTER TABLE tenants_rebuild ADD PRIMARY KEY (id)`,
			`CREATE TABLE tenant_events_rebuild (LIKE tenant_events INCLUDING DEFAULTS INCLUDING CONSTRAINTS)`,
			`ALTER TABLE tenant_events_rebuild ADD PRIMARY KEY (id)`,
		} {
			if _, err := tx.Exec(ctx, q); err != nil {
				return err
			}
		}
		return projections.ResetCheckpoint(ctx, tx, RebuildName)
	})
	if err != nil {
		return false, fmt.Errorf("rebuild: prepare shadow tables: %w", err)
	}
	return resumed, nil
}

// switchOver applies the events the shadow tables still lack and swaps them
// in, in one transaction. It locks the live checkpoint row before the tables,
// the order the live runner takes them in, so the two cannot deadlock.
func switchOver(ctx context.Context, pool *pgxpool.Pool, feed eventstore.FeedReader, p *Projector) error {
	return pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `INSERT INTO projection_checkpoints (name) VALUES ($1) ON CONFLICT DO NOTHING`, Name); err != nil {
			return fmt.Errorf("switch: %w", err)
		}
		if _, err := tx.Exec(ctx, `SELECT 1 FROM projection_checkpoints WHERE name = $1 FOR UPDATE`, Name); err != nil {
			return fmt.Errorf("switch: lock live checkpoint: %w", err)
		}
		if _, err := tx.Exec(ctx, `LOCK TABLE tenants, tenant_events IN ACCESS EXCLUSIVE MODE`); err != nil {
			return fmt.Errorf("switch: lock live tables: %w", err)
		}
		pos, err := projections.ReadCheckpoint(ctx, tx, RebuildName)
		if err != nil {
			return fmt.Errorf("switch: %w", err)
		}
		var processed int64
		if err := tx.QueryRow(ctx, `SELECT events_processed FROM projection_checkpoints WHERE name = $1`, RebuildName).Scan(&processed); err != nil {
			return fmt.Errorf("switch: %w", err)
		}
		pos, rest, err := projections.ApplyRest(ctx, tx, feed, p, pos, tenantlog.Decode)
		if err != nil {
			return fmt.Errorf("switch: %w", err)
		}
		processed += rest
		for _, q := range []string{
			`ALTER TABLE tenants RENAME TO tenants_old`,
			`ALTER TABLE tenant_events RENAME TO tenant_events_old`,
			`ALTER TABLE tenants_rebuild RENAME TO tenants`,
			`ALTER TABLE tenant_events_rebuild RENAME TO tenant_events`,
			`DROP TABLE tenants_old, tenant_events_old`,
		} {
			if _, err := tx.Exec(ctx, q); err != nil {
				return fmt.Errorf("switch: %s: %w", q, err)
			}
		}
		// The new tables' indexes take the names the migrations gave the old ones.
		if err := renameIndexes(ctx, tx); err != nil {
			return fmt.Errorf("switch: %w", err)
		}
		// The live runner must continue from where the new tables stand; the
		// raised epoch fences it, so it takes the lead again from here.
		if err := projections.MoveCheckpoint(ctx, tx, Name, pos, processed, "rebuild"); err != nil {
			return fmt.Errorf("switch: %w", err)
		}
		if _, err := tx.Exec(ctx, `DELETE FROM projection_checkpoints WHERE name = $1`, RebuildName); err != nil {
			return fmt.Errorf("switch: %w", err)
		}
		return nil
	})
}

// shadowSuffix marks the shadow tables' indexes until the switch-over.
const shadowSuffix = "_rebuild"

// buildIndexes creates on the shadow tables every index the live tables
// have (named with shadowSuffix), skipping those already built by an
// interrupted rebuild.
func buildIndexes(ctx context.Context, pool *pgxpool.Pool) error {
	for _, pair := range [][2]string{{LiveTables.Tenants, ShadowTables.Tenants}, {LiveTables.TenantEvents, ShadowTables.TenantEvents}} {
		live, shadow := pair[0], pair[1]
		rows, err := pool.Query(ctx, `SELECT l.indexname, l.indexdef FROM pg_indexes l
			WHERE l.schemaname = current_schema() AND l.tablename = $1 AND l.indexname <> $1 || '_pkey'
			  AND NOT EXISTS (SELECT 1 FROM pg_indexes s WHERE s.schemaname = current_schema() AND s.tablename = $2 AND s.indexname = l.indexname || $3)`,
			live, shadow, shadowSuffix)
		if err != nil {
			return fmt.Errorf("rebuild: list indexes of %s: %w", live, err)
		}
		var defs []string
		for rows.Next() {
			var name, def string
			if err := rows.Scan(&name, &def); err != nil {
				rows.Close()
				return err
			}
			def = strings.Replace(def, "INDEX "+name+" ON ", "INDEX "+name+shadowSuffix+" ON ", 1)
			def = onTable.ReplaceAllString(def, " ON ${1}"+shadow+" ")
			defs = append(defs, def)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		for _, def := range defs {
			if _, err := pool.Exec(ctx, def); err != nil {
				return fmt.Errorf("rebuild: %s: %w", def, err)
			}
		}
		if _, err := pool.Exec(ctx, "ANALYZE "+pgx.Identifier{shadow}.Sanitize()); err != nil {
			return fmt.Errorf("rebuild: analyze %s: %w", shadow, err)
		}
	}
	return nil
}

// onTable matches the table of an index definition: " ON public.tenants ".
var onTable = regexp.MustCompile(` ON ((?:[a-z_]+\.)?)[a-z_]+ `)

// renameIndexes gives the switched-in tables' indexes their canonical names.
func renameIndexes(ctx context.Context, tx pgx.Tx) error {
	rows, err := tx.Query(ctx, `SELECT indexname FROM pg_indexes WHERE schemaname = current_schema()
		AND tablename = ANY($1) AND (indexname LIKE '%' || $2 OR indexname LIKE '%' || $2 || '_pkey')`,
		[]string{LiveTables.Tenants, LiveTables.TenantEvents}, shadowSuffix)
	if err != nil {
		return err
	}
	var names []string
	for rows.Next() {
		var n string
		if err := rows.Scan(&n); err != nil {
			rows.Close()
			return err
		}
		names = append(names, n)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return err
	}
	for _, n := range names {
		to := strings.TrimSuffix(n, shadowSuffix)
		switch n {
		case ShadowTables.Tenants + "_pkey":
			to = LiveTables.Tenants + "_pkey"
		case ShadowTables.TenantEvents + "_pkey":
			to = LiveTables.TenantEvents + "_pkey"
		}
		if _, err := tx.Exec(ctx, "ALTER INDEX "+pgx.Identifier{n}.Sanitize()+" RENAME TO "+pgx.Identifier{to}.Sanitize()); err != nil {
			return fmt.Errorf("rename index %s: %w", n, err)
		}
	}
	return nil
}
