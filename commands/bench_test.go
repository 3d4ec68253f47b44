package commands_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/tenancyhq/tenancy/aggregate"
	"github.com/tenancyhq/tenancy/commands"
	"github.com/tenancyhq/tenancy/eventstore/postgres"
	"github.com/tenancyhq/tenancy/internal/pgtest"
)

// benchClients is the number of concurrent clients, as in httpapi's BenchmarkHTTP.
const benchClients = 16

// BenchmarkExecuteOnPostgres measures the command path alone (no HTTP) on
// the Postgres event store: 16 clients each alternate suspend and resume on
// a tenant of their own whose stream already holds the given number of
// events, with the state cache on and off. It reports commands/s; ns/op is
// wall time per command across all clients.
func BenchmarkExecuteOnPostgres(b *testing.B) {
	for _, events := range []int{10, 500} {
		for _, tc := range []struct {
			name string
			size int
		}{{"cache", 0}, {"no-cache", -1}} {
			b.Run(fmt.Sprintf("events=%d/%s", events, tc.name), func(b *testing.B) {
				benchExecute(b, events, tc.size)
			})
		}
	}
}

func benchExecute(b *testing.B, events, cacheSize int) {
	ctx := context.Background()
	pool, _ := pgtest.NewMigrated(b)
	store := postgres.New(pool)
	setup := commands.NewHandler(store, commands.Options{})
	off := false
	ids := make([]uuid.UUID, benchClients)
	for i := range ids {
		res, err := setup.Create(ctx, aggregate.Create{Name: fmt.Sprintf("Bench %d %s", i, uuid.NewString()[:8]),
			Edition: "professional", Region: "us-east-1", Trial: &off}, aggregate.Metadata{Actor: "bench"})
		if err != nil {
			b.Fatal(err)
		}
		ids[i] = res.TenantID
		cmds := []aggregate.Command{aggregate.Suspend{Reason: aggregate.ReasonAdminAction}, aggregate.Resume{}}
		if res, err = setup.Execute(ctx, commands.Request{TenantID: ids[i], Command: aggregate.CompleteProvisioning{}}); err != nil {
			b.Fatal(err)
		}
		for k := 0; res.Version+1 < uint64(events) || res.Tenant.Status != aggregate.StatusActive; k++ {
			if res, err = setup.Execute(ctx, commands.Request{TenantID: ids[i], Command: cmds[k%2]}); err != nil {
				b.Fatal(err)
			}
		}
	}
	// A handler of its own, as a freshly started replica: cold cache.
	h := commands.NewHandler(store, commands.Options{StateCacheSize: cacheSize})
	var next, failed atomic.Int64
	done := make(chan struct{})
	b.ResetTimer()
	start := time.Now()
	for c := range benchClients {
		go func() {
			defer func() { done <- struct{}{} }()
			for k := 0; next.Add(1) <= int64(b.N); k++ {
				cmd := aggregate.Command(aggregate.Suspend{Reason: aggregate.ReasonAdminAction})
				if k%2 == 1 {
					cmd = aggregate.Resume{}
				}
				if _, err := h.Execute(ctx, commands.Request{TenantID: ids[c], Command: cmd}); err != nil {
					failed.Add(1)
					b.Error(err)
					return
				}
			}
		}()
	}
	for range benchClients {
		<-done
	}
	elapsed := time.Since(start)
	b.StopTimer()
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "commands/s")
}
