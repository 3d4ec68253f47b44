package service_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/tenancyhq/tenancy/internal/auth"
)

// commandClients is the number of concurrent clients of every phase.
const commandClients = 16

// BenchmarkCommandPath measures, in one run on one Postgres, the command
// path through HTTP beside its ceiling: a raw single-statement pgx INSERT of
// the same events. The service runs whole, projections (read model,
// scheduler, NATS publisher) included, with authentication on; b.N is the
// number of operations of each phase, 16 clients each. BENCH_NO_PROJECTIONS=1
// runs the API alone (an API replica), to see the command path's own cost.
//
//   - creates/s, create-p99-ms: POST /api/v1/tenants (a new name each).
//   - pg-create-inserts/s: INSERT of one TenantCreated-sized event into a new
//     stream. create-ratio = creates/s over it.
//   - commands/s, cmd-p99-ms: suspend and resume by turns, on a tenant per
//     client. pg-cmd-inserts/s: INSERT of one event after the last.
//     cmd-ratio = commands/s over it.
func BenchmarkCommandPath(b *testing.B) {
	s := startService(b, serviceOptions{auth: true, logLevel: slog.LevelInfo, noProjections: os.Getenv("BENCH_NO_PROJECTIONS") != ""})
	tok := token(b, "bench", nil, auth.ScopeAdmin)
	ctx := context.Background()
	client := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: commandClients * 2}}
	defer client.CloseIdleConnections()
	raw, err := pgxpool.New(ctx, s.dbURL)
	if err != nil {
		b.Fatal(err)
	}
	defer raw.Close()

	tenants := make([]string, commandClients)
	for i := range tenants {
		off := false
		id := s.must(http.StatusCreated, tok, "POST", "/api/v1/tenants", map[string]any{"name": fmt.Sprintf("Bench %d %s", i, uuid.NewString()[:8]),
			"edition": "professional", "region": "eu-west-1", "trial": &off}).json(b)["id"].(string)
		s.must(http.StatusOK, tok, "POST", "/api/v1/tenants/"+id+"/complete-provisioning", map[string]any{})
		tenants[i] = id
	}
	run := uuid.NewString()[:8]
	created := []byte(`{"tenant_id":"00000000-0000-0000-0000-000000000000","external_id":"ORG-00000000","name":"Bench 0000000 xxxxxxxx","normalized_name":"bench 0000000 xxxxxxxx","edition":"free","region":"eu-west-1","trial":false,"contacts":[],"metadata":{},"labels":{},"compliance_standards":[]}`)
	suspended := []byte(`{"reason":"admin_action","severity":"hard"}`)
	meta := []byte(fmt.Sprintf(`{"occurred_at":%q,"correlation_id":%q,"actor":"bench","command":"suspend","trace_parent":""}`,
		time.Now().UTC().Format(time.RFC3339Nano), uuid.NewString()))
	rawVersions := make([]int64, commandClients)
	rawStreams := make([]string, commandClients)
	for i := range rawStreams {
		rawStreams[i] = "bench-" + uuid.NewString()
	}
	insert := `INSERT INTO events (stream, version, event_id, event_type, schema_version, data, metadata) VALUES ($1, $2, $3, $4, 1, $5, $6)`

	b.ResetTimer()
	create := commandPhase(b, b.N, func(c, k int) error {
		body := fmt.Sprintf(`{"name": "Bench %s %d %d", "edition": "free", "region": "eu-west-1", "trial": false}`, run, c, k)
		return commandRequest(client, tok, "POST", s.base+"/api/v1/tenants", body, http.StatusCreated)
	})
	pgCreate := commandPhase(b, b.N, func(int, int) error {
		_, err := raw.Exec(ctx, insert, "bench-"+uuid.NewString(), 0, uuid.New(), "TenantCreated", created, meta)
		return err
	})
	cmd := commandPhase(b, b.N, func(c, k int) error {
		verb, body := "suspend", `{"reason": "admin_action"}`
		if k%2 == 1 {
			verb, body = "resume", `{}`
		}
		return commandRequest(client, tok, "POST", s.base+"/api/v1/tenants/"+tenants[c]+"/"+verb, body, http.StatusOK)
	})
	pgCmd := commandPhase(b, b.N, func(c, _ int) error {
		_, err := raw.Exec(ctx, insert, rawStreams[c], rawVersions[c], uuid.New(), "TenantSuspended", suspended, meta)
		rawVersions[c]++
		return err
	})
	b.StopTimer()

	b.ReportMetric(0, "ns/op")
	b.ReportMetric(create.perSecond(), "creates/s")
	b.ReportMetric(create.p99ms(), "create-p99-ms")
	b.ReportMetric(pgCreate.perSecond(), "pg-create-inserts/s")
	b.ReportMetric(create.perSecond()/pgCreate.perSecond(), "create-ratio")
	b.ReportMetric(cmd.perSecond(), "commands/s")
	b.ReportMetric(cmd.p99ms(), "cmd-p99-ms")
	b.ReportMetric(pgCmd.perSecond(), "pg-cmd-inserts/s")
	b.ReportMetric(cmd.perSecond()/pgCmd.perSecond(), "cmd-ratio")
}

// commandRequest sends one request with the token and reads its answer;
// any status but want is an error.
func commandRequest(client *http.Client, tok, method, url, body string, want int) error {
	req, err := http.NewRequest(method, url, bytes.NewReader([]byte(body)))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+tok)
	res, err := client.Do(req)
	if err != nil {
		return err
	}
	defer res.Body.Close()
	got, err := io.ReadAll(res.Body)
	if err != nil {
		return err
	}
	if res.StatusCode != want {
		return fmt.Errorf("%s %s: %d %s", method, url, res.StatusCode, got)
	}
	return nil
}

// measured is the outcome of one measured phase.
type measured struct {
	ops       int
	elapsed   time.Duration
	latencies []time.Duration
}

func (p measured) perSecond() float64 { return float64(p.ops) / p.elapsed.Seconds() }

func (p measured) p99ms() float64 {
	if len(p.latencies) == 0 {
		return 0
	}
	slices.Sort(p.latencies)
	return float64(p.latencies[(len(p.latencies)*99)/100]) / float64(time.Millisecond)
}

// commandPhase runs n operations on commandClients goroutines; op(c, k) is
// the k-th operation of client c, which runs its operations in order. Any
// error fails the benchmark.
func commandPhase(b *testing.B, n int, op func(c, k int) error) measured {
	b.Helper()
	var next atomic.Int64
	var mu sync.Mutex
	var wg sync.WaitGroup
	var failed atomic.Pointer[error]
	p := measured{ops: n, latencies: make([]time.Duration, 0, n)}
	start := time.Now()
	for c := range commandClients {
		wg.Go(func() {
			lat := make([]time.Duration, 0, n/commandClients+1)
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
		})
	}
	wg.Wait()
	p.elapsed = time.Since(start)
	if err := failed.Load(); err != nil {
		b.Fatal(*err)
	}
	return p
}
