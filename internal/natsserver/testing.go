package natsserver

import (
	"context"
	"log/slog"
	"testing"
	"time"
)

// StartTest starts an embedded server for a test: on a random loopback
// port, with its JetStream store in a temporary directory, shut down when
// the test ends. It returns the client URL and fails the test if the server
// cannot start. Any package's tests may use it.
func StartTest(t testing.TB) string {
	t.Helper()
	return StartTestServer(t, Options{}).ClientURL()
}

// StartTestServer is StartTest for tests that stop and restart the server
// (an outage): it returns the Server, and the zero Options fields get the
// test's defaults (random port, temporary store directory, warnings to the
// test's log). The server is shut down when the test ends unless the test
// did it first.
func StartTestServer(t testing.TB, opts Options) *Server {
	t.Helper()
	if opts.Listen == "" {
		opts.Listen = "127.0.0.1:0"
	}
	if opts.StoreDir == "" {
		opts.StoreDir = t.TempDir()
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s, err := Start(ctx, opts)
	if err != nil {
		t.Fatalf("natsserver: %v", err)
	}
	t.Cleanup(func() {
		if s.ns.Running() {
			s.Shutdown()
		}
	})
	return s
}
