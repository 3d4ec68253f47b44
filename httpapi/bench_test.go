package httpapi_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/tenancyhq/tenancy/aggregate"
	"github.com/tenancyhq/tenancy/eventstore"
	"github.com/tenancyhq/tenancy/internal/pgtest"
	"github.com/tenancyhq/tenancy/service"
)

// benchClients is the number of concurrent clients of every phase.
const benchClients = 16

// BenchmarkHTTP measures, in one run, the API against the raw Postgres work
// it stands on. b.N is the number of operations of each phase.
//
//   - commands/s, cmd-p99-ms: 16 clients each alternate suspend and resume
//     on a tenant of their own, over TCP loopback to the in-process server.
//   - pg-cmd-ops/s: the SQL round trips a command makes, with pgx and 16
//     goroutines on streams as long as the tenants': read the stream (every
//     event), then insert one event. cmd-ratio = commands/s over it.
//   - gets/s, get-p99-ms: 16 clients GET /api/v1/tenants/{id}.
//   - pg-get-ops/s: SELECT state FROM tenants WHERE id = $1 with 16
//     goroutines. get-ratio = gets/s over it.
//
// The measured server runs without projections (serve --no-projections, an
// API replica): the projections' work is not part of a command's and would
// only take CPU from both sides of the comparison. Both sides use a pool made
// from the same URL, so the same number of connections.
func BenchmarkHTTP(b *testing.B) {
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
	raw, err := pgxpool.New(ctx, dbURL)
	if err != nil {
		b.Fatal(err)
	}
	defer raw.Close()
	// The raw streams start as long as the tenants' streams, with events of
	// the size of the commands' events.
	payload := benchPayload()
	rawStreams := make([]string, benchClients)
	for i := range rawStreams {
		rawStreams[i] = "bench-" + uuid.NewString()
		for range 3 {
			if err := benchRawCommand(ctx, raw, rawStreams[i], payload); err != nil {
				b.Fatal(err)
			}
		}
	}

	b.ResetTimer()
	cmd := benchPhase(b, b.N, func(c, op int) error {
		verb, body := "suspend", `{"reason": "admin_action"}`
		if op%2 == 1 {
			verb, body = "resume", `{}`
		}
		return benchRequest(client, "POST", base+"/api/v1/tenants/"+ids[c]+"/"+verb, body)
	})
	pgCmd := benchPhase(b, b.N, func(c, _ int) error {
		return benchRawCommand(ctx, raw, rawStreams[c], payload)
	})
	get := benchPhase(b, b.N, func(c, _ int) error {
		return benchRequest(client, "GET", base+"/api/v1/tenants/"+ids[benchClients+c], "")
	})
	pgGet := benchPhase(b, b.N, func(c, _ int) error {
		var state []byte
		return raw.QueryRow(ctx, `SELECT state FROM tenants WHERE id = $1`, ids[benchClients+c]).Scan(&state)
	})
	b.StopTimer()

	b.ReportMetric(0, "ns/op")
	b.ReportMetric(cmd.perSecond(), "commands/s")
	b.ReportMetric(cmd.p99ms(), "cmd-p99-ms")
	b.ReportMetric(pgCmd.perSecond(), "pg-cmd-ops/s")
	b.ReportMetric(cmd.perSecond()/pgCmd.perSecond(), "cmd-ratio")
	b.ReportMetric(get.perSecond(), "gets/s")
	b.ReportMetric(get.p99ms(), "get-p99-ms")
	b.ReportMetric(pgGet.perSecond(), "pg-get-ops/s")
	b.ReportMetric(get.perSecond()/pgGet.perSecond(), "get-ratio")
}

// benchTenants makes one ACTIVE tenant per client, projected into the read
// model, with a service of its own that is stopped before the measurement.
func benchTenants(b *testing.B, dbURL, dataDir string) []string {
	b.Helper()
	// Twice as many as the clients: the commands phase changes the first
	// half (which the API-only server does not project), the reads read the
	// second, whose read model rows are current.
	ids := make([]string, 2*benchClients)
	benchFill(b, dbURL, dataDir, func(ctx context.Context, a *service.App) eventstore.Position {
		off := false
		var last eventstore.Position
		for i := range ids {
			res, err := a.Commands.Create(ctx, aggregate.Create{Name: fmt.Sprintf("Bench %d %s", i, uuid.NewString()[:8]),
				Edition: "professional", Region: "us-east-1", Trial: &off}, aggregate.Metadata{Actor: "bench"})
			if err != nil {
				b.Fatal(err)
			}
			res, err = a.Commands.Execute(ctx, commandsRequest(res.TenantID, aggregate.CompleteProvisioning{}))
			if err != nil {
				b.Fatal(err)
			}
			ids[i], last = res.TenantID.String(), res.Position
		}
		return last
	})
	return ids
}

// benchFill runs fill on a service of its own (migrating the database,
// projections on), waits until the read model has reached the position
// fill returns, and stops the service before the measurement.
func benchFill(b *testing.B, dbURL, dataDir string, fill func(context.Context, *service.App) eventstore.Position) {
	b.Helper()
	ctx := context.Background()
	a, err := service.Open(ctx, service.Config{DatabaseURL: dbURL, Migrate: true, Projections: true, ExternalProvisioning: true, DataDir: dataDir})
	if err != nil {
		b.Fatal(err)
	}
	defer a.Close()
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- a.Run(runCtx) }()
	defer func() {
		stop()
		if err := <-done; err != nil {
			b.Error(err)
		}
	}()
	if err := a.Reader.WaitFor(ctx, fill(ctx, a), 60*time.Second); err != nil {
		b.Fatal(err)
	}
}

// benchEvent is the data and metadata of one event.
type benchEvent struct{ data, metadata []byte }

// benchPayload is a TenantSuspended event of the size the service writes.
func benchPayload() benchEvent {
	data := []byte(`{"reason":"admin_action","severity":"hard"}`)
	meta := []byte(fmt.Sprintf(`{"occurred_at":%q,"correlation_id":%q,"actor":"anonymous","command":"suspend"}`,
		time.Now().UTC().Format(time.RFC3339Nano), uuid.NewString()))
	return benchEvent{data: data, metadata: meta}
}

// benchRawCommand is the SQL a command runs: read the stream, append one
// event after its last version.
func benchRawCommand(ctx context.Context, pool *pgxpool.Pool, stream string, ev benchEvent) error {
	rows, err := pool.Query(ctx, `SELECT position, transaction_id::text, stream, version, event_id, event_type, schema_version, data, metadata, recorded_at
		FROM events WHERE stream = $1 ORDER BY version`, stream)
	if err != nil {
		return err
	}
	next := int64(0)
	for rows.Next() {
		var (
			pos, version int64
			xid, s, typ  string
			id           uuid.UUID
			schema       int32
			data, meta   []byte
			recorded     time.Time
		)
		if err := rows.Scan(&pos, &xid, &s, &version, &id, &typ, &schema, &data, &meta, &recorded); err != nil {
			rows.Close()
			return err
		}
		next = version + 1
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return err
	}
	_, err = pool.Exec(ctx, `INSERT INTO events (stream, version, event_id, event_type, schema_version, data, metadata)
		VALUES ($1, $2, $3, 'TenantSuspended', 1, $4, $5)`, stream, next, uuid.New(), ev.data, ev.metadata)
	return err
}

// benchRequest sends one request and reads its answer; anything but 200 is an error.
func benchRequest(client *http.Client, method, url, body string) error {
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		return err
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	res, err := client.Do(req)
	if err != nil {
		return err
	}
	defer res.Body.Close()
	got, err := io.ReadAll(res.Body)
	if err != nil {
		return err
	}
	if res.StatusCode != http.StatusOK {
		return fmt.Errorf("%s %s: %d %s", method, url, res.StatusCode, got)
	}
	return nil
}

// phase is the outcome of one measured phase.
type phase struct {
	ops       int
	elapsed   time.Duration
	latencies []time.Duration
}

func (p phase) perSecond() float64 { return float64(p.ops) / p.elapsed.Seconds() }

func (p phase) p99ms() float64 { return p.percentileMS(99) }

// percentileMS is the q-th percentile latency in milliseconds.
func (p phase) percentileMS(q int) float64 {
	if len(p.latencies) == 0 {
		return 0
	}
	slices.Sort(p.latencies)
	return float64(p.latencies[(len(p.latencies)*q)/100]) / float64(time.Millisecond)
}

// benchPhase runs n operations on benchClients goroutines; op(c, k) is the
// k-th operation of client c. Any error fails the benchmark.
func benchPhase(b *testing.B, n int, op func(c, k int) error) phase {
	b.Helper()
	return benchPhaseOn(b, benchClients, n, op)
}

// benchPhaseOn is benchPhase on a given number of clients.
func benchPhaseOn(b *testing.B, clients, n int, op func(c, k int) error) phase {
	b.Helper()
	var next atomic.Int64
	var mu sync.Mutex
	var wg sync.WaitGroup
	var failed atomic.Pointer[error]
	p := phase{ops: n, latencies: make([]time.Duration, 0, n)}
	start := time.Now()
	for c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			lat := make([]time.Duration, 0, n/clients+1)
			for k := 0; next.Add(1) <= int64(n) && failed.Load() == nil; k++ {
				t0 := time.Now()
				if err := op(c, k); err != nil {
					failed.Store(&err)
					return
				}
				lat = append(lat, time.Since(t0))
			}
			mu.Lock()
			p.latencies = append(p.latencies, lat...)
			mu.Unlock()
		}()
	}
	wg.Wait()
	p.elapsed = time.Since(start)
	if err := failed.Load(); err != nil {
		b.Fatal(*err)
	}
	return p
}
