package esdb_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/google/uuid"

	"github.com/tenancyhq/tenancy/eventstore"
	"github.com/tenancyhq/tenancy/eventstore/esdb"
	"github.com/tenancyhq/tenancy/eventstore/esdb/esdbtest"
	"github.com/tenancyhq/tenancy/eventstore/eventstoretest"
)

// The benchmarks run the adapter against the test server (in process, gRPC
// over loopback): their figures measure the adapter and the client, with a
// server that does no I/O. They are not figures of EventStoreDB.

// BenchmarkAppend appends batches of events to tenant streams, one writer
// at a time and eight at once, with and without event id claims.
func BenchmarkAppend(b *testing.B) {
	for _, bc := range []struct {
		batch, writers int
		claims         bool
	}{
		{1, 1, true}, {1, 1, false},
		{10, 1, true}, {10, 1, false},
		{1, 8, true}, {1, 8, false},
	} {
		name := fmt.Sprintf("batch=%d/writers=%d/claims=%v", bc.batch, bc.writers, bc.claims)
		b.Run(name, func(b *testing.B) {
			srv := esdbtest.Start(b, esdbtest.Options{})
			s := open(b, srv.URL(), esdb.Options{NoEventIDClaims: !bc.claims})
			var (
				appends atomic.Int64 // appends handed out to the writers
				wg      sync.WaitGroup
			)
			b.ResetTimer()
			for range bc.writers {
				wg.Go(func() {
					stream := "tenant-" + uuid.NewString()
					exp := eventstore.NoStream
					for appends.Add(1) <= int64(b.N) {
						res, err := s.Append(context.Background(), stream, exp, eventstoretest.Events(bc.batch))
						if err != nil {
							b.Error(err)
							return
						}
						exp = eventstore.Exact(res.NextExpectedVersion)
					}
				})
			}
			wg.Wait()
			b.ReportMetric(float64(b.N*bc.batch)/b.Elapsed().Seconds(), "events/s")
		})
	}
}

// catchUpBacklog is how many tenant events the catch-up benchmarks read;
// another quarter of events in other streams are filtered out.
const catchUpBacklog = 20_000

func fillBacklog(b *testing.B, s *esdb.Store) {
	b.Helper()
	for i := 0; i < catchUpBacklog/100; i++ {
		if _, err := s.Append(context.Background(), "tenant-"+uuid.NewString(), eventstore.NoStream, eventstoretest.Events(100)); err != nil {
			b.Fatal(err)
		}
		if _, err := s.Append(context.Background(), "other-"+uuid.NewString(), eventstore.NoStream, eventstoretest.Events(25)); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkCatchUp subscribes from the start of a backlog and reads it
// through, as a projection runner does after a rebuild.
func BenchmarkCatchUp(b *testing.B) {
	srv := esdbtest.Start(b, esdbtest.Options{})
	s := open(b, srv.URL(), esdb.Options{NoEventIDClaims: true})
	fillBacklog(b, s)
	filter := eventstore.Filter{StreamPrefixes: []string{"tenant-"}}
	read := 0
	b.ResetTimer()
	for b.Loop() {
		sub, err := s.SubscribeAll(context.Background(), eventstore.Start, filter)
		if err != nil {
			b.Fatal(err)
		}
		for n := 0; n < catchUpBacklog; {
			evs, err := sub.Next(context.Background())
			if err != nil {
				b.Fatal(err)
			}
			n += len(evs)
		}
		sub.Close()
		read += catchUpBacklog
	}
	b.ReportMetric(float64(read)/b.Elapsed().Seconds(), "events/s")
}

// BenchmarkReadAll reads the same backlog page by page with ReadAll, which
// filters on the client's side.
func BenchmarkReadAll(b *testing.B) {
	srv := esdbtest.Start(b, esdbtest.Options{})
	s := open(b, srv.URL(), esdb.Options{NoEventIDClaims: true})
	fillBacklog(b, s)
	filter := eventstore.Filter{StreamPrefixes: []string{"tenant-"}}
	read := 0
	b.ResetTimer()
	for b.Loop() {
		after := eventstore.Start
		for n := 0; n < catchUpBacklog; {
			evs, err := s.ReadAll(context.Background(), after, filter, 500)
			if err != nil {
				b.Fatal(err)
			}
			n += len(evs)
			after = evs[len(evs)-1].Position
		}
		read += catchUpBacklog
	}
	b.ReportMetric(float64(read)/b.Elapsed().Seconds(), "events/s")
}
