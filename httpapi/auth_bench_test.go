package httpapi_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/tenancyhq/tenancy/httpapi"
	"github.com/tenancyhq/tenancy/internal/auth"
	"github.com/tenancyhq/tenancy/internal/pgtest"
	"github.com/tenancyhq/tenancy/service"
)

// authBenchTurn is how many GETs a server serves before the other takes
// its turn: short turns make drift of the machine (other load, caches,
// Postgres) fall on both alike.
const authBenchTurn = 200

// BenchmarkGETAuth measures what authentication adds to GET
// /api/v1/tenants/{id}: two API replicas on the same database, one without
// a verifier and one checking an HS256 token (issuer, audience, expiry,
// scope), take turns of authBenchTurn GETs from 16 clients, b.N GETs each. Both receive the
// same Authorization header, so the difference is the server's work only.
//
//   - gets/s-off, gets/s-on: throughput without and with authentication.
//   - p99-ms-off, p99-ms-on: their 99th percentile latency.
//   - verify-seen-µs, verify-first-µs: one verification on its own, for
//     scale: of a token the verifier accepted before (what the measured
//     requests pay), and of a token it has not seen.
//   - auth-overhead-%: how much throughput authentication costs (the issue
//     asks for at most 5).
func BenchmarkGETAuth(b *testing.B) {
	ctx := context.Background()
	dbURL, dataDir := pgtest.NewDatabase(b), b.TempDir()
	ids := benchTenants(b, dbURL, dataDir)

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
	off := benchAPI(b, dbURL, dataDir, nil)
	on := benchAPI(b, dbURL, dataDir, verifier)

	get := func(base string) func(c, _ int) error {
		client := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: benchClients * 2}}
		b.Cleanup(client.CloseIdleConnections)
		return func(c, _ int) error {
			req, err := http.NewRequest("GET", base+"/api/v1/tenants/"+ids[c], nil)
			if err != nil {
				return err
			}
			req.Header.Set("Authorization", "Bearer "+token)
			res, err := client.Do(req)
			if err != nil {
				return err
			}
			defer res.Body.Close()
			body, err := io.ReadAll(res.Body)
			if err != nil {
				return err
			}
			if res.StatusCode != http.StatusOK {
				return fmt.Errorf("GET: %d %s", res.StatusCode, body)
			}
			return nil
		}
	}
	getOff, getOn := get(off), get(on)
	// Warm both (connections, caches) outside the measurement.
	benchPhase(b, 4*benchClients, getOff)
	benchPhase(b, 4*benchClients, getOn)

	b.ResetTimer()
	var offs, ons []phase
	for r, left := 0, b.N; left > 0; r++ {
		n := min(left, authBenchTurn)
		left -= n
		// Alternate which goes first, so neither always follows the other.
		if r%2 == 0 {
			offs = append(offs, benchPhase(b, n, getOff))
			ons = append(ons, benchPhase(b, n, getOn))
		} else {
			ons = append(ons, benchPhase(b, n, getOn))
			offs = append(offs, benchPhase(b, n, getOff))
		}
	}
	b.StopTimer()
	// The verification alone, for scale: of a token seen before (what the
	// measured requests paid), and of tokens seen for the first time.
	const verifications = 2000
	fresh := make([]string, verifications)
	for i := range fresh {
		if fresh[i], err = auth.Mint(secret, fmt.Sprint("bench-", i), []string{auth.ScopeRead}, nil, time.Hour, issuer, audience); err != nil {
			b.Fatal(err)
		}
	}
	verifyUS := func(tokens func(i int) string) float64 {
		start := time.Now()
		for i := range verifications {
			if _, err := verifier.Verify(tokens(i)); err != nil {
				b.Fatal(err)
			}
		}
		return float64(time.Since(start).Nanoseconds()) / 1000 / verifications
	}
	seenUS := verifyUS(func(int) string { return token })
	firstUS := verifyUS(func(i int) string { return fresh[i] })

	offAll, onAll := mergePhases(offs), mergePhases(ons)
	b.ReportMetric(0, "ns/op")
	b.ReportMetric(offAll.perSecond(), "gets/s-off")
	b.ReportMetric(onAll.perSecond(), "gets/s-on")
	b.ReportMetric(offAll.p99ms(), "p99-ms-off")
	b.ReportMetric(onAll.p99ms(), "p99-ms-on")
	b.ReportMetric(seenUS, "verify-seen-µs")
	b.ReportMetric(firstUS, "verify-first-µs")
	b.ReportMetric(100*(offAll.perSecond()-onAll.perSecond())/offAll.perSecond(), "auth-overhead-%")
}

// benchAPI serves the API (no projections: an API replica) on the
// database until the benchmark ends, with the given verifier (nil: no
// authentication), and returns its base URL.
func benchAPI(b *testing.B, dbURL, dataDir string, v httpapi.Verifier) string {
	b.Helper()
	a, err := service.Open(context.Background(), service.Config{DatabaseURL: dbURL, HTTPAddr: "127.0.0.1:0", DataDir: dataDir, Auth: v})
	if err != nil {
		b.Fatal(err)
	}
	runCtx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(runCtx) }()
	b.Cleanup(func() {
		stop()
		if err := <-done; err != nil {
			b.Error(err)
		}
		a.Close()
	})
	return "http://" + a.Addr()
}

// mergePhases adds up phases: their operations, time and latencies.
func mergePhases(ps []phase) phase {
	var out phase
	for _, p := range ps {
		out.ops += p.ops
		out.elapsed += p.elapsed
		out.latencies = append(out.latencies, p.latencies...)
	}
	return out
}
