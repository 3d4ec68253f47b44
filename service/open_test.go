package service_test

import (
	"context"
	"net"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tenancyhq/tenancy/internal/pgtest"
	"github.com/tenancyhq/tenancy/service"
)

// TestOpenReleasesEverythingItOpenedWhenItFails fails service.Open at each of
// its dependencies in turn (the database, the master key, the event store)
// after it has opened the others (the API's port, an embedded NATS server,
// the database pool): each time, the ports are free again, the database has
// no connection of the service left, and no goroutine stays behind. Not
// parallel, so that goroutines are counted with no other test running.
func TestOpenReleasesEverythingItOpenedWhenItFails(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name string
		fail func(cfg *service.Config)
		want string
	}{
		{"database unreachable", func(cfg *service.Config) {
			cfg.DatabaseURL = "postgres://postgres@127.0.0.1:1/none?sslmode=disable&connect_timeout=2"
		}, "127.0.0.1:1"},
		{"master key unreadable", func(cfg *service.Config) { cfg.MasterKey = "not a key" }, "master key"},
		{"event store URL unusable", func(cfg *service.Config) { cfg.EventStoreURL = "esdb://[::1" }, "esdb"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dbURL := pgtest.NewDatabase(t)
			httpAddr, natsAddr := freeAddr(t), freeAddr(t)
			cfg := service.Config{DatabaseURL: dbURL, HTTPAddr: httpAddr, NATSListen: natsAddr, Migrate: true, Projections: true, DataDir: t.TempDir()}
			tc.fail(&cfg)
			before := runtime.NumGoroutine()
			a, err := service.Open(ctx, cfg)
			if err == nil {
				a.Close()
				t.Fatal("Open succeeded")
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Open: %v, want an error about %s", err, tc.want)
			}
			for _, addr := range []string{httpAddr, natsAddr} {
				l, err := net.Listen("tcp", addr)
				if err != nil {
					t.Errorf("%s still taken after the failed Open: %v", addr, err)
					continue
				}
				l.Close()
			}
			waitFor(t, "the service's database connections to close", func() bool { return connections(t, dbURL) == 0 })
			waitFor(t, "the goroutines Open started to end", func() bool { return runtime.NumGoroutine() <= before })
		})
	}
}

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// connections counts the connections to the database of dbURL other than
// the one asking.
func connections(t *testing.T, dbURL string) int {
	t.Helper()
	conn, err := pgx.Connect(context.Background(), dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	var n int
	if err := conn.QueryRow(context.Background(),
		`SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

func waitFor(t *testing.T, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !ok() {
		if time.Now().After(deadline) {
			t.Errorf("waited 5 s for %s", what)
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
}
