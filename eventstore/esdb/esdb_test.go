package esdb_test

import (
	"context"
	"log/slog"
	"os"
	"strings"
	"sync"
	"testing"

	"github.com/google/uuid"

	"github.com/tenancyhq/tenancy/eventstore"
	"github.com/tenancyhq/tenancy/eventstore/esdb"
	"github.com/tenancyhq/tenancy/eventstore/esdb/esdbtest"
	"github.com/tenancyhq/tenancy/eventstore/eventstoretest"
)

// TestConformance runs the port's conformance suite against the test
// server, a fresh one per sub-test.
func TestConformance(t *testing.T) {
	t.Parallel()
	eventstoretest.Run(t, func(t *testing.T) eventstore.Store {
		srv := esdbtest.Start(t, esdbtest.Options{})
		return open(t, srv.URL(), esdb.Options{})
	})
}

// TestConformanceRecognisesRetriesOnOlderServers runs the suite against a
// test server that answers a recognised retry without a position, as older
// servers do.
func TestConformanceRecognisesRetriesOnOlderServers(t *testing.T) {
	t.Parallel()
	eventstoretest.Run(t, func(t *testing.T) eventstore.Store {
		srv := esdbtest.Start(t, esdbtest.Options{IdempotentWithoutPosition: true})
		return open(t, srv.URL(), esdb.Options{})
	})
}

// TestConformanceAgainstEventStoreDB runs the suite against a real
// EventStoreDB or KurrentDB named by TENANCY_TEST_ESDB_URL (for instance
// esdb://127.0.0.1:2113?tls=false against `docker compose up kurrentdb`).
// Each sub-test has a namespace of its own, so the suite's "fresh, empty
// store" holds on a shared server.
func TestConformanceAgainstEventStoreDB(t *testing.T) {
	url := os.Getenv("TENANCY_TEST_ESDB_URL")
	if url == "" {
		t.Skip("TENANCY_TEST_ESDB_URL is not set: no real EventStoreDB/KurrentDB to run the conformance suite against (the test server runs it in TestConformance)")
	}
	eventstoretest.Run(t, func(t *testing.T) eventstore.Store {
		return open(t, url, esdb.Options{Namespace: "t" + strings.ReplaceAll(uuid.NewString(), "-", "")[:12] + "_"})
	})
}

// open returns a store on url closed when t ends.
func open(t testing.TB, url string, opts esdb.Options) *esdb.Store {
	t.Helper()
	if opts.Logger == nil {
		opts.Logger = testLogger(t)
	}
	s, err := esdb.New(context.Background(), url, opts)
	if err != nil {
		t.Fatalf("esdb.New(%s): %v", url, err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// testLogger logs warnings and errors to t, so that a failing test shows
// what the adapter saw. Goroutines of the client may outlive the test (see
// connection): what they log after it ends is dropped, since t.Log would
// panic.
func testLogger(t testing.TB) *slog.Logger {
	w := &testWriter{t: t}
	t.Cleanup(func() {
		w.mu.Lock()
		w.done = true
		w.mu.Unlock()
	})
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelWarn}))
}

type testWriter struct {
	t    testing.TB
	mu   sync.Mutex
	done bool
}

func (w *testWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.done {
		w.t.Log(strings.TrimRight(string(p), "\n"))
	}
	return len(p), nil
}
