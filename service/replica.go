package service

import (
	"context"
	"fmt"
	"math"
	"runtime"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/tenancyhq/tenancy/httpapi"
	"github.com/tenancyhq/tenancy/queries"
)

// openReader builds the read side: on the primary, or on the read replica
// DatabaseReadURL names.
//
// On the primary (Postgres store) a tenant read learns where the tenant's
// stream ends from the same database in the same statement
// (WithEventsInDatabase). On a replica it must not: the replica's events
// lag exactly as its read model does, so a write the replica has not
// replayed would be missing from both and the stale row would look fresh.
// There the stream's end is asked of the event store on the primary, and
// the wait for it (like a consistency token's) polls the replica's own
// read-model checkpoint, which replays in the same transaction as the rows
// it covers: "caught up" means this database has the change.
func (a *App) openReader(ctx context.Context) error {
	if a.cfg.DatabaseReadURL == "" {
		a.Reader = queries.NewReader(a.pool)
		if a.esdb == nil {
			a.Reader.WithEventsInDatabase()
		}
		return nil
	}
	pcfg, err := pgxpool.ParseConfig(a.cfg.DatabaseReadURL)
	if err != nil {
		return fmt.Errorf("DATABASE_READ_URL: %w", err)
	}
	if !strings.Contains(a.cfg.DatabaseReadURL, "pool_max_conns") {
		pcfg.MaxConns = int32(max(16, 4*runtime.NumCPU()))
	}
	// The pool connects lazily: a replica that is down at start makes reads
	// answer 503 and readiness say degraded, as the primary's NATS does.
	if a.readPool, err = pgxpool.NewWithConfig(ctx, pcfg); err != nil {
		return fmt.Errorf("read replica %s: %w", redactURL(a.cfg.DatabaseReadURL), err)
	}
	a.Reader = queries.NewReader(a.readPool)
	return nil
}

// ReadPool is the read replica's pool (nil without DatabaseReadURL).
func (a *App) ReadPool() *pgxpool.Pool { return a.readPool }

// replicaStateSQL is what the replica says of its replay. Outside recovery
// (a promoted standby, or a URL naming a primary) the replay functions are
// not asked: pg_is_wal_replay_paused fails there.
const replicaStateSQL = `
SELECT pg_is_in_recovery(),
       CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn()::text END,
       CASE WHEN pg_is_in_recovery() THEN pg_is_wal_replay_paused() ELSE false END,
       COALESCE(EXTRACT(EPOCH FROM now() - pg_last_xact_replay_timestamp()), 0)::float8`

// replicaHealth measures the read replica's lag behind the primary: the
// WAL bytes the primary has written that the replica has not replayed, and
// (when it is behind) how long ago the replica replayed its last
// transaction.
func (a *App) replicaHealth(ctx context.Context) (httpapi.ReplicaHealth, error) {
	var (
		recovery, paused bool
		replay           *string
		sinceReplay      float64
	)
	if err := a.readPool.QueryRow(ctx, replicaStateSQL).Scan(&recovery, &replay, &paused, &sinceReplay); err != nil {
		return httpapi.ReplicaHealth{}, fmt.Errorf("read replica: %w", err)
	}
	h := httpapi.ReplicaHealth{Standby: recovery, ReplayPaused: paused}
	if !recovery || replay == nil {
		return h, nil
	}
	if err := a.pool.QueryRow(ctx, `SELECT GREATEST(pg_wal_lsn_diff(pg_current_wal_lsn(), $1::pg_lsn), 0)::bigint`, *replay).Scan(&h.LagBytes); err != nil {
		return h, fmt.Errorf("primary's WAL position: %w", err)
	}
	if h.LagBytes > 0 {
		h.LagSeconds = sinceReplay
	}
	return h, nil
}

// replicaLagMetric is tenancy_read_replica_lag_bytes, measured at scrape
// time like the projections' lag (NaN while the replica cannot be asked).
func (a *App) replicaLagMetric() prometheus.Collector {
	return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "tenancy_read_replica_lag_bytes",
		Help: "WAL of the primary the read replica (DATABASE_READ_URL) has not replayed yet."}, func() float64 {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		h, err := a.replicaHealth(ctx)
		if err != nil {
			return math.NaN()
		}
		return float64(h.LagBytes)
	})
}
