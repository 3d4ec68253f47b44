package httpapi_test

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/tenancyhq/tenancy/internal/pgtest"
	"github.com/tenancyhq/tenancy/service"
)

// BenchmarkHTTPCommandsTail is BenchmarkHTTP's command phase beside the raw
// Postgres round trips a command makes now that the command handler keeps
// tenant states between commands: read the stream after the last version
// seen (usually no row), then insert one event. BenchmarkHTTP's ceiling
// still reads the whole stream, which a command no longer does.
//
//   - commands/s, cmd-p99-ms: as in BenchmarkHTTP.
//   - pool-waits/cmd, pool-wait-ms/cmd: how often and how long the server's
//     commands waited for a free connection of its pool (pgxpool's empty
//     acquires), the sign that the pool, not Postgres, is the limit.
//   - pg-tail-ops/s, cmd-ratio: the raw round trips with 16 goroutines on a
//     pool made from the same URL (the server's size); pg-tail-ops-16conns/s
//     the same on a pool of 16 connections, one per client.
func BenchmarkHTTPCommandsTail(b *testing.B) {
	ctx := context.Background()
	dbURL, dataDir := pgtest.NewDatabase(b), b.TempDir()
	ids := benchTenants(b, dbURL, dataDir)

	a, err := service.Open(ctx, service.Config{DatabaseURL: dbURL, HTTPAddr: "127.0.0.1:0", DataDir: dataDir})
	if err != nil {
		b.Fatal(err)
	}
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- a.Run(runCtx) }()
	defer func() {
		stop()
		if err := <-done; err != nil {
			b.Error(err)
		}
		a.Close()
	}()
	base := "http://" + a.Addr()
	client := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: benchClients * 2}}
	defer client.CloseIdleConnections()
	pools := make([]*pgxpool.Pool, 2)
	for i, conns := range []int32{0, benchClients} {
		cfg, err := pgxpool.ParseConfig(dbURL)
		if err != nil {
			b.Fatal(err)
		}
		if conns > 0 {
			cfg.MaxConns = conns
		}
		if pools[i], err = pgxpool.NewWithConfig(ctx, cfg); err != nil {
			b.Fatal(err)
		}
		defer pools[i].Close()
	}
	payload := benchPayload()
	next := make([]int64, benchClients)
	rawStreams := make([]string, benchClients)
	for i := range rawStreams {
		rawStreams[i] = "bench-" + uuid.NewString()
		for range 3 {
			if err := benchRawTailCommand(ctx, pools[0], rawStreams[i], &next[i], payload); err != nil {
				b.Fatal(err)
			}
		}
	}

	b.ResetTimer()
	before := a.Pool().Stat()
	cmd := benchPhase(b, b.N, func(c, op int) error {
		verb, body := "suspend", `{"reason": "admin_action"}`
		if op%2 == 1 {
			verb, body = "resume", `{}`
		}
		return benchRequest(client, "POST", base+"/api/v1/tenants/"+ids[c]+"/"+verb, body)
	})
	after := a.Pool().Stat()
	raw := make([]phase, len(pools))
	for i, pool := range pools {
		raw[i] = benchPhase(b, b.N, func(c, _ int) error {
			return benchRawTailCommand(ctx, pool, rawStreams[c], &next[c], payload)
		})
	}
	b.StopTimer()

	ops := float64(cmd.ops)
	b.ReportMetric(0, "ns/op")
	b.ReportMetric(cmd.perSecond(), "commands/s")
	b.ReportMetric(cmd.p99ms(), "cmd-p99-ms")
	b.ReportMetric(float64(after.EmptyAcquireCount()-before.EmptyAcquireCount())/ops, "pool-waits/cmd")
	b.ReportMetric(float64(after.EmptyAcquireWaitTime()-before.EmptyAcquireWaitTime())/float64(time.Millisecond)/ops, "pool-wait-ms/cmd")
	b.ReportMetric(raw[0].perSecond(), "pg-tail-ops/s")
	b.ReportMetric(cmd.perSecond()/raw[0].perSecond(), "cmd-ratio")
	b.ReportMetric(raw[1].perSecond(), "pg-tail-ops-16conns/s")
}

// benchRawTailCommand is the SQL a command on a cached tenant runs: read the
// stream from the next version on (the event store's query), then append
// one event there. next is the stream's next version, the client's own.
func benchRawTailCommand(ctx context.Context, pool *pgxpool.Pool, stream string, next *int64, ev benchEvent) error {
	rows, err := pool.Query(ctx, `SELECT s.found, e.position, e.version, e.data, e.metadata
		FROM (SELECT EXISTS (SELECT 1 FROM events WHERE stream = $1) AS found) s
		LEFT JOIN LATERAL (SELECT * FROM events WHERE stream = $1 AND version >= $2 ORDER BY version) e ON true
		ORDER BY e.version`, stream, *next)
	if err != nil {
		return err
	}
	for rows.Next() {
		var (
			found         bool
			pos, version  *int64
			data, metaRaw []byte
		)
		if err := rows.Scan(&found, &pos, &version, &data, &metaRaw); err != nil {
			rows.Close()
			return err
		}
		if version != nil {
			*next = *version + 1
		}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return err
	}
	_, err = pool.Exec(ctx, `INSERT INTO events (stream, version, event_id, event_type, schema_version, data, metadata)
		VALUES ($1, $2, $3, 'TenantSuspended', 1, $4, $5)`, stream, *next, uuid.New(), ev.data, ev.metadata)
	if err == nil {
		*next++
	}
	return err
}
