package httpapi_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/tenancyhq/tenancy/aggregate"
	"github.com/tenancyhq/tenancy/eventstore"
	"github.com/tenancyhq/tenancy/internal/auth"
	"github.com/tenancyhq/tenancy/internal/pgtest"
	"github.com/tenancyhq/tenancy/service"
)

const (
	// readClients is the number of connections of every read phase.
	readClients = 8
	// readTenants is how many tenants the reads spread over.
	readTenants = 1000
	// readMinOps is the fewest operations a read phase makes: with
	// -benchtime 1x (make bench) b.N alone would measure nothing.
	readMinOps = 8000
	// readRounds: the phases take turns this many times, in one order and
	// then the other, so that drift of the shared machine (other load,
	// Postgres's caches) falls on all alike.
	readRounds = 12
)

// BenchmarkReadPath measures, in one run, the three HTTP read routes
// beside their ceiling: a prepared primary-key SELECT of the same rows.
// Every phase runs readClients connections over readTenants tenants, b.N
// operations (at least readMinOps), in readRounds turns. The API runs as
// an API replica (no projections) with bearer-token authentication, like
// the wrk run; the HTTP client is a lean keep-alive one (a request
// rendered once, http.ReadResponse), as wrk is, so that the client's own
// cost weighs little on the 2 shared cores.
//
//   - pg-pk-ops/s, pg-pk-p50-ms, pg-pk-p99-ms: SELECT state FROM tenants
//     WHERE id = $1 with pgx (prepared, cached statement) on 8 connections.
//   - pgbench-tps: pgbench -M prepared -c 8 of the same SELECT (literal
//     ids, one script per tenant), when pgbench is on the PATH.
//   - http-floor/s, http-floor-ratio: a bare net/http handler that sends
//     the row's state, read with the same SELECT: what any HTTP service of
//     these rows can reach on this machine (the 0.5 is measured
//     against pg-pk-ops/s, beyond which this floor may already lie).
//   - get/s, get-p50-ms, get-p99-ms, get-ratio: GET /api/v1/tenants/{id},
//     read-your-writes (the default); get-ratio = get/s over pg-pk-ops/s.
//   - get-eventual/s, get-eventual-ratio: the same with Consistency:
//     eventual; ryw-cost-% is what read-your-writes costs.
//   - ent/s, ent-ratio: GET /api/v1/tenants/{id}/entitlements.
//   - eval/s, eval-ratio: POST /api/v1/tenants/{id}/policy/evaluate.
//   - <phase>-cpu-µs: this process's CPU time per operation of the phase
//     (the server's and the client's, not Postgres's), which another load
//     on the machine disturbs far less than the rates.
func BenchmarkReadPath(b *testing.B) {
	ctx := context.Background()
	dbURL, dataDir := pgtest.NewDatabase(b), b.TempDir()
	ids := readBenchTenants(b, dbURL, dataDir)

	secret := []byte("benchmark-secret-0123456789abcdefghij")
	const issuer, audience = "https://id.tenancy.test", "tenancy-api"
	verifier, err := auth.NewVerifier(ctx, auth.Config{Secret: secret, Issuer: issuer, Audience: audience})
	if err != nil {
		b.Fatal(err)
	}
	token, err := auth.Mint(secret, "bench-reader", []string{auth.ScopeRead}, nil, time.Hour, issuer, audience)
	if err != nil {
		b.Fatal(err)
	}
	addr := strings.TrimPrefix(benchAPI(b, dbURL, dataDir, verifier), "http://")

	cfg, err := pgxpool.ParseConfig(dbURL)
	if err != nil {
		b.Fatal(err)
	}
	cfg.MaxConns = readClients
	raw, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		b.Fatal(err)
	}
	defer raw.Close()
	keys := make([][16]byte, len(ids))
	for i, id := range ids {
		keys[i] = uuid.MustParse(id)
	}

	get := readRequests(ids, func(id string) string {
		return "GET /api/v1/tenants/" + id + " HTTP/1.1\r\nHost: " + addr + "\r\nAuthorization: Bearer " + token + "\r\n\r\n"
	})
	eventual := readRequests(ids, func(id string) string {
		return "GET /api/v1/tenants/" + id + " HTTP/1.1\r\nHost: " + addr + "\r\nAuthorization: Bearer " + token + "\r\nConsistency: eventual\r\n\r\n"
	})
	ent := readRequests(ids, func(id string) string {
		return "GET /api/v1/tenants/" + id + "/entitlements HTTP/1.1\r\nHost: " + addr + "\r\nAuthorization: Bearer " + token + "\r\n\r\n"
	})
	const evalBody = `{"action":"user.create","resource":"users","context":{"usage":{"max_users":12}}}`
	eval := readRequests(ids, func(id string) string {
		return "POST /api/v1/tenants/" + id + "/policy/evaluate HTTP/1.1\r\nHost: " + addr + "\r\nAuthorization: Bearer " + token +
			"\r\nContent-Type: application/json\r\nContent-Length: " + strconv.Itoa(len(evalBody)) + "\r\n\r\n" + evalBody
	})

	// The floor of any HTTP service of these rows: a bare net/http handler
	// that sends the row's state, read with the same SELECT.
	floorAddr := bareServer(b, raw)
	floor := readRequests(ids, func(id string) string {
		return "GET /" + id + " HTTP/1.1\r\nHost: " + floorAddr + "\r\nAuthorization: Bearer " + token + "\r\n\r\n"
	})

	conns := make([]*leanConn, readClients)
	floorConns := make([]*leanConn, readClients)
	for i := range conns {
		if conns[i], err = dialLean(addr); err != nil {
			b.Fatal(err)
		}
		defer conns[i].Close()
		if floorConns[i], err = dialLean(floorAddr); err != nil {
			b.Fatal(err)
		}
		defer floorConns[i].Close()
	}
	httpOp := func(reqs [][]byte) func(c, k int) error {
		return func(c, k int) error { return conns[c].roundTrip(reqs[(c*7919+k)%len(reqs)]) }
	}
	pgOp := func(c, k int) error {
		var state []byte
		return raw.QueryRow(ctx, `SELECT state FROM tenants WHERE id = $1`, keys[(c*7919+k)%len(keys)]).Scan(&state)
	}
	phases := []struct {
		name string
		op   func(c, k int) error
	}{
		{"pg-pk", pgOp},
		{"http-floor", func(c, k int) error { return floorConns[c].roundTrip(floor[(c*7919+k)%len(floor)]) }},
		{"get", httpOp(get)},
		{"get-eventual", httpOp(eventual)},
		{"ent", httpOp(ent)},
		{"eval", httpOp(eval)},
	}
	n := max(b.N, readMinOps)
	// Warm every path (connections, statement caches) outside the measurement.
	for _, p := range phases {
		benchPhaseOn(b, readClients, 4*readClients, p.op)
	}
	b.ResetTimer()
	got := map[string][]phase{}
	cpu := map[string]time.Duration{}
	var pgbenchTPS float64
	for round := range readRounds {
		for i := range phases {
			if round%2 == 1 {
				i = len(phases) - 1 - i
			}
			p := phases[i]
			before := processCPU(b)
			ph := benchPhaseOn(b, readClients, n/readRounds, p.op)
			cpu[p.name] += processCPU(b) - before
			got[p.name] = append(got[p.name], ph)
		}
		if round == readRounds/2 {
			pgbenchTPS = runPgbench(b, dbURL, ids, 4*n/readRounds)
		}
	}
	b.StopTimer()

	pg := mergePhases(got["pg-pk"])
	b.ReportMetric(0, "ns/op")
	b.ReportMetric(pg.perSecond(), "pg-pk-ops/s")
	b.ReportMetric(pg.percentileMS(50), "pg-pk-p50-ms")
	b.ReportMetric(pg.p99ms(), "pg-pk-p99-ms")
	if pgbenchTPS > 0 {
		b.ReportMetric(pgbenchTPS, "pgbench-tps")
	}
	for _, name := range []string{"http-floor", "get", "get-eventual", "ent", "eval"} {
		p := mergePhases(got[name])
		b.ReportMetric(p.perSecond(), name+"/s")
		b.ReportMetric(p.percentileMS(50), name+"-p50-ms")
		b.ReportMetric(p.p99ms(), name+"-p99-ms")
		b.ReportMetric(p.perSecond()/pg.perSecond(), name+"-ratio")
	}
	// This process's CPU per operation (server and client; Postgres's
	// work is not in it): steadier than the rates on a shared machine.
	for _, ph := range phases {
		b.ReportMetric(float64(cpu[ph.name].Microseconds())/float64(mergePhases(got[ph.name]).ops), ph.name+"-cpu-µs")
	}
	ryw, ev := mergePhases(got["get"]), mergePhases(got["get-eventual"])
	b.ReportMetric(100*(1-ryw.perSecond()/ev.perSecond()), "ryw-cost-%")
}

// bareServer serves GET /{id} with the tenant's state, read with pool:
// net/http and one SELECT, nothing else.
func bareServer(b *testing.B, pool *pgxpool.Pool) string {
	b.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id, err := uuid.Parse(strings.TrimPrefix(r.URL.Path, "/"))
		if err != nil {
			http.NotFound(w, r)
			return
		}
		var state []byte
		if err := pool.QueryRow(r.Context(), `SELECT state FROM tenants WHERE id = $1`, [16]byte(id)).Scan(&state); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(state)
	})}
	go func() { _ = srv.Serve(l) }()
	b.Cleanup(func() { _ = srv.Close() })
	return l.Addr().String()
}

// processCPU is the CPU time this process has used so far.
func processCPU(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// readRequests renders one request per tenant.
func readRequests(ids []string, render func(id string) string) [][]byte {
	out := make([][]byte, len(ids))
	for i, id := range ids {
		out[i] = []byte(render(id))
	}
	return out
}

// leanConn is one keep-alive HTTP/1.1 connection that sends prepared
// requests and reads each answer whole, as a load generator such as wrk does.
type leanConn struct {
	conn net.Conn
	rd   *bufio.Reader
}

func dialLean(addr string) (*leanConn, error) {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		return nil, err
	}
	return &leanConn{conn: c, rd: bufio.NewReaderSize(c, 16<<10)}, nil
}

func (l *leanConn) Close() error { return l.conn.Close() }

// roundTrip sends req and reads its response; anything but 200 is an error.
func (l *leanConn) roundTrip(req []byte) error {
	if _, err := l.conn.Write(req); err != nil {
		return err
	}
	res, err := http.ReadResponse(l.rd, nil)
	if err != nil {
		return err
	}
	body, err := io.ReadAll(res.Body)
	res.Body.Close()
	if err != nil {
		return err
	}
	if res.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %d %s", strings.SplitN(string(req), "\r\n", 2)[0], res.StatusCode, body)
	}
	return nil
}

// pgbenchTPS matches pgbench's throughput line.
var pgbenchTPS = regexp.MustCompile(`tps = ([0-9.]+) \(without initial connection time\)`)

// runPgbench runs pgbench -M prepared on readClients connections, ops
// transactions in all, each one SELECT state of a tenant by primary key
// (a script per tenant, picked at random), and returns its tps; 0 when
// pgbench is not installed.
func runPgbench(b *testing.B, dbURL string, ids []string, ops int) float64 {
	b.Helper()
	bin, err := exec.LookPath("pgbench")
	if err != nil {
		return 0
	}
	dir := b.TempDir()
	args := []string{"-n", "-M", "prepared", "-c", strconv.Itoa(readClients), "-j", "2", "-t", strconv.Itoa(max(ops/readClients, 1))}
	for i, id := range ids[:min(len(ids), 64)] {
		f := filepath.Join(dir, fmt.Sprintf("pk%d.sql", i))
		if err := os.WriteFile(f, []byte("SELECT state FROM tenants WHERE id = '"+id+"';\n"), 0o600); err != nil {
			b.Fatal(err)
		}
		args = append(args, "-f", f)
	}
	out, err := exec.Command(bin, append(args, dbURL)...).CombinedOutput()
	if err != nil {
		b.Fatalf("pgbench: %v\n%s", err, out)
	}
	m := pgbenchTPS.FindSubmatch(out)
	if m == nil {
		b.Fatalf("pgbench: no tps in\n%s", out)
	}
	tps, _ := strconv.ParseFloat(string(m[1]), 64)
	return tps
}

// readBenchTenants makes readTenants ACTIVE tenants, projected into the
// read model, with a service of its own that is stopped before the
// measurement. Every fourth has a limit override and an enforced policy,
// so entitlements and evaluation have something of their own to show.
func readBenchTenants(b *testing.B, dbURL, dataDir string) []string {
	b.Helper()
	ids := make([]string, readTenants)
	benchFill(b, dbURL, dataDir, func(ctx context.Context, a *service.App) eventstore.Position {
		positions := make([]eventstore.Position, readTenants)
		var wg sync.WaitGroup
		errs := make(chan error, 4)
		for w := range 4 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := w; i < readTenants; i += 4 {
					off := false
					res, err := a.Commands.Create(ctx, aggregate.Create{Name: fmt.Sprintf("Read bench %d %s", i, uuid.NewString()[:8]),
						Edition: "professional", Region: "eu-west-1", Trial: &off,
						Labels: map[string]string{"tier": "gold"}, ComplianceStandards: []string{"GDPR"}}, aggregate.Metadata{Actor: "bench"})
					if err != nil {
						errs <- err
						return
					}
					cmds := []aggregate.Command{aggregate.CompleteProvisioning{}}
					if i%4 == 0 {
						v := int64(500)
						cmds = append(cmds, aggregate.SetOverride{Key: "max_users", Value: &v},
							aggregate.SetPolicy{Policy: aggregate.PolicySetting{Type: aggregate.PolicyMFARequired, Enforced: true, Settings: []byte(`{}`)}})
					}
					for _, cmd := range cmds {
						if res, err = a.Commands.Execute(ctx, commandsRequest(res.TenantID, cmd)); err != nil {
							errs <- err
							return
						}
					}
					ids[i], positions[i] = res.TenantID.String(), res.Position
				}
			}()
		}
		wg.Wait()
		close(errs)
		if err := <-errs; err != nil {
			b.Fatal(err)
		}
		last := eventstore.Start
		for _, p := range positions {
			if p.Compare(last) > 0 {
				last = p
			}
		}
		return last
	})
	return ids
}
