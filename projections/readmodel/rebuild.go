package readmodel

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"regexp"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/tenancyhq/tenancy/aggregate"
	"github.com/tenancyhq/tenancy/eventstore"
	"github.com/tenancyhq/tenancy/projections"
)

// RebuildName is the checkpoint name of a read-model rebuild in progress.
const RebuildName = Name + ".rebuild"

// ShadowTables are where a rebuild builds the new read model, beside the live one.
var ShadowTables = Tables{Tenants: "tenants_rebuild", TenantEvents: "tenant_events_rebuild"}

// ErrRebuildRunning: another rebuild of the read model holds the rebuild lock.
var ErrRebuildRunning = errors.New("a rebuild of the read model is already running")

// Progress is how far a rebuild has come.
type Progress struct {
	Phase     string        `json:"phase"` // building | switching | done
	Processed int64         `json:"processed"`
	Total     int64         `json:"total"`
	Rate      float64       `json:"events_per_second"`
	ETA       time.Duration `json:"eta"`
	Resumed   bool          `json:"resumed"`
}

// Percent is Processed as a share of Total.
func (p Progress) Percent() float64 {
	if p.Total == 0 {
		return 100
	}
	return 100 * float64(p.Processed) / float64(p.Total)
}

// RebuildOptions tune a rebuild.
type RebuildOptions struct {
	// Progress is called about every ProgressEvery with the progress so far.
	Progress      func(Progress)
	ProgressEvery time.Duration
	Logger        *slog.Logger
	// Holder names this process in the rebuild's checkpoint row.
	Holder string
}

// Counter counts the feed's events after a position (the Postgres store does).
type Counter interface {
	CountAfter(ctx context.Context, after eventstore.Position, filter eventstore.Filter) (int64, error)
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
	if opts.ProgressEvery <= 0 {
		opts.ProgressEvery = time.Second
	}
	report := func(p Progress) {
		if opts.Progress != nil {
			opts.Progress(p)
		}
	}
	unlock, err := lockRebuild(ctx, pool)
	if err != nil {
		return err
	}
	defer unlock()

	resumed, err := prepareShadow(ctx, pool)
	if err != nil {
		return err
	}
	p := NewInto(cat, RebuildName, ShadowTables)
	var total int64
	counter, canCount := feed.(Counter)
	if canCount {
		total, err = counter.CountAfter(ctx, eventstore.Start, p.Filter())
		switch {
		case errors.Is(err, eventstore.ErrCannotCount):
			total = 0 // unknown (EventStoreDB): progress shows events done, the lag the rest
		case err != nil:
			return fmt.Errorf("rebuild: count events: %w", err)
		}
	}

	// Build: run the projector into the shadow tables until it is caught up.
	rctx, stop := context.WithCancel(ctx)
	// Asynchronous commit is safe here as for any in-database projection:
	// the shadow tables and the rebuild's checkpoint are lost together.
	runner := projections.NewRunner(pool, feed, p, projections.Options{Logger: opts.Logger, Holder: opts.Holder,
		LockPollInterval: 50 * time.Millisecond, AsynchronousCommit: true})
	done := make(chan error, 1)
	go func() { done <- runner.Run(rctx) }()
	started := time.Now()
	var startProcessed int64 = -1
	for {
		select {
		case err := <-done:
			stop()
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return fmt.Errorf("rebuild stopped: %w", err)
		case <-time.After(opts.ProgressEvery):
		case <-ctx.Done():
			stop()
			<-done
			return ctx.Err()
		}
		st, err := projections.Status(ctx, pool, feed, RebuildName)
		if err != nil {
			stop()
			<-done
			return err
		}
		processed := st.EventsProcessed
		if startProcessed < 0 {
			startProcessed = processed
		}
		pr := Progress{Phase: "building", Processed: processed, Total: max(total, processed+st.LagEvents), Resumed: resumed}
		if secs := time.Since(started).Seconds(); secs > 0 {
			pr.Rate = float64(processed-startProcessed) / secs
			if pr.Rate > 0 {
				pr.ETA = time.Duration(float64(st.LagEvents) / pr.Rate * float64(time.Second))
			}
		}
		report(pr)
		if st.State == projections.StateHalted {
			stop()
			<-done
			return fmt.Errorf("rebuild halted on an event: %s (see projection_failures for %s)", st.LastError, RebuildName)
		}
		if st.LagEvents == 0 && st.EventsProcessed > 0 || st.LagEvents == 0 && total == 0 {
			break
		}
	}
	stop()
	if err := <-done; err != nil {
		return fmt.Errorf("rebuild: %w", err)
	}

	report(Progress{Phase: "indexing", Processed: total, Total: total})
	if err := buildIndexes(ctx, pool); err != nil {
		return err
	}
	report(Progress{Phase: "switching", Processed: total, Total: total})
	if err := switchOver(ctx, pool, feed, p); err != nil {
		return err
	}
	report(Progress{Phase: "done", Processed: total, Total: total})
	opts.Logger.InfoContext(ctx, "read model rebuilt and switched over", "events", total, "took", time.Since(started))
	return nil
}

// lockRebuild takes the rebuild's advisory lock on a connection of its own.
func lockRebuild(ctx context.Context, pool *pgxpool.Pool) (func(), error) {
	conn, err := pgx.ConnectConfig(ctx, pool.Config().ConnConfig)
	if err != nil {
		return nil, fmt.Errorf("rebuild: %w", err)
	}
	h := fnv.New64a()
	h.Write([]byte("tenancy.rebuild\x00" + Name))
	key := int64(h.Sum64())
	var ok bool
	if err := conn.QueryRow(ctx, `SELECT pg_try_advisory_lock($1)`, key).Scan(&ok); err != nil {
		conn.Close(ctx)
		return nil, fmt.Errorf("rebuild lock: %w", err)
	}
	if !ok {
		conn.Close(ctx)
		return nil, ErrRebuildRunning
	}
	return func() { conn.Close(context.Background()) }, nil
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
		for {
			batch, err := feed.ReadAll(ctx, pos, p.Filter(), 1000)
			if err != nil {
				return fmt.Errorf("switch: read the last events: %w", err)
			}
			if len(batch) == 0 {
				break
			}
			if err := p.Apply(ctx, tx, batch); err != nil {
				return fmt.Errorf("switch: %w", err)
			}
			pos = batch[len(batch)-1].Position
			processed += int64(len(batch))
		}
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
		if _, err := tx.Exec(ctx, `UPDATE projection_checkpoints
			SET position_commit = $2, position_prepare = $3, events_processed = $4, leader_epoch = leader_epoch + 1,
			    state = CASE WHEN state = 'halted' THEN 'idle' ELSE state END, last_error = NULL, updated_at = now()
			WHERE name = $1`, Name, int64(pos.Commit), int64(pos.Prepare), processed); err != nil {
			return fmt.Errorf("switch: move live checkpoint: %w", err)
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
