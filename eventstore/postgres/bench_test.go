package postgres_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/tenancyhq/tenancy/eventstore"
	"github.com/tenancyhq/tenancy/eventstore/postgres"
	"github.com/tenancyhq/tenancy/internal/pgtest"
)

// BenchmarkAppend compares the adapter's append throughput with a raw pgx
// INSERT of the same row into an identical table (same columns, defaults,
// constraints and indexes, none of the adapter's logic): 8 concurrent
// appenders, one event per transaction, synchronous_commit on. It reports
// both in events/s and their ratio. The two alternate in rounds within one
// run, so that both see the same machine; each side appends at least 800
// events, so that -benchtime 1x still gives a figure.
func BenchmarkAppend(b *testing.B) {
	const (
		appenders = 8
		rounds    = 8
	)
	pool := newPool(b, appenders)
	ctx := context.Background()
	pgtest.Exec(b, pool, `CREATE TABLE events_raw (LIKE events INCLUDING ALL)`)
	var syncCommit string
	if err := pool.QueryRow(ctx, `SHOW synchronous_commit`).Scan(&syncCommit); err != nil || syncCommit != "on" {
		b.Fatalf("synchronous_commit = %q (err %v), want on", syncCommit, err)
	}
	s := postgres.New(pool)
	data := []byte(`{"tenant_id":"6f1c2a9e-3b4d-4e5f-8a7b-9c0d1e2f3a4b","name":"Acme Corporation","plan_tier":"professional","region":"eu-west-1"}`)
	meta := []byte(`{"correlation_id":"c-1","causation_id":"c-0","actor":"bench"}`)

	// Each appender writes its own stream, at the version it knows.
	type side struct {
		name     string
		versions [appenders]int64
		append   func(w int, version int64) error
		elapsed  time.Duration
	}
	streams := [appenders]string{}
	for w := range streams {
		streams[w] = fmt.Sprintf("tenant-%s", uuid.NewString())
	}
	adapter := &side{name: "adapter", append: func(w int, version int64) error {
		expected := eventstore.NoStream
		if version > 0 {
			expected = eventstore.Exact(uint64(version - 1))
		}
		_, err := s.Append(ctx, streams[w], expected, []eventstore.EventData{{
			ID: uuid.New(), Type: "TenantCreated", SchemaVersion: 1, Data: data, Metadata: meta,
		}})
		return err
	}}
	raw := &side{name: "raw", append: func(w int, version int64) error {
		_, err := pool.Exec(ctx, `INSERT INTO events_raw (stream, version, event_id, event_type, schema_version, data, metadata)
			VALUES ($1, $2, $3, $4, $5, $6, $7)`, streams[w], version, uuid.New(), "TenantCreated", 1, data, meta)
		return err
	}}
	run := func(sd *side, n int) {
		var (
			left atomic.Int64
			wg   sync.WaitGroup
		)
		left.Store(int64(n))
		start := time.Now()
		for w := range appenders {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for left.Add(-1) >= 0 {
					if err := sd.append(w, sd.versions[w]); err != nil {
						b.Errorf("%s append: %v", sd.name, err)
						return
					}
					sd.versions[w]++
				}
			}()
		}
		wg.Wait()
		sd.elapsed += time.Since(start)
	}

	// Warm up: connections made, statements prepared on each.
	run(adapter, 4*appenders)
	run(raw, 4*appenders)
	adapter.elapsed, raw.elapsed = 0, 0

	n := max(b.N, 800)
	perRound := (n + rounds - 1) / rounds
	b.ResetTimer()
	for r := range rounds {
		if r%2 == 0 {
			run(adapter, perRound)
			run(raw, perRound)
		} else {
			run(raw, perRound)
			run(adapter, perRound)
		}
	}
	b.StopTimer()
	total := float64(perRound * rounds)
	adapterRate := total / adapter.elapsed.Seconds()
	rawRate := total / raw.elapsed.Seconds()
	b.ReportMetric(0, "ns/op")
	b.ReportMetric(adapterRate, "adapter_events/s")
	b.ReportMetric(rawRate, "raw_events/s")
	b.ReportMetric(adapterRate/rawRate, "ratio")
}
