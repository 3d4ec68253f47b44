package service_test

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/tenancyhq/tenancy/aggregate"
	"github.com/tenancyhq/tenancy/commands"
	"github.com/tenancyhq/tenancy/internal/natsserver"
	"github.com/tenancyhq/tenancy/internal/pgtest"
	"github.com/tenancyhq/tenancy/projections/natspub"
	"github.com/tenancyhq/tenancy/service"
)

// BenchmarkDeliveryLatency sends a steady 500 commands/s to the service and
// reports, per event, the time from the command's response to the event's
// delivery to a JetStream consumer (p50 and p99), with the command rate
// reached. The aim is p99 under 100 ms.
func BenchmarkDeliveryLatency(b *testing.B) {
	const rate, seconds, tenants = 500, 10, 200
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	natsURL := natsserver.StartTest(b)
	a, err := service.Open(ctx, service.Config{DatabaseURL: pgtest.NewDatabase(b), Migrate: true, Projections: true,
		ExternalProvisioning: true, NATSURL: natsURL, DataDir: b.TempDir()})
	if err != nil {
		b.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	defer func() { cancel(); <-done; a.Close() }()

	// Tenants, active, before the clock starts.
	ids := make([]uuid.UUID, tenants)
	for i := range ids {
		res, err := a.Commands.Create(ctx, aggregate.Create{Name: fmt.Sprintf("Latency %d", i), Edition: "professional", Region: "us-east-1",
			Trial: new(bool)}, aggregate.Metadata{})
		if err != nil {
			b.Fatal(err)
		}
		ids[i] = res.TenantID
		if _, err := a.Commands.Execute(ctx, commands.Request{TenantID: ids[i], Command: aggregate.CompleteProvisioning{}}); err != nil {
			b.Fatal(err)
		}
	}

	// A consumer of new messages, as a downstream service would run one.
	nc, err := nats.Connect(natsURL)
	if err != nil {
		b.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	var mu sync.Mutex
	received := map[string]time.Time{}
	cons, err := js.OrderedConsumer(ctx, natspub.StreamName, jetstream.OrderedConsumerConfig{DeliverPolicy: jetstream.DeliverNewPolicy})
	if err != nil {
		b.Fatal(err)
	}
	cc, err := cons.Consume(func(m jetstream.Msg) {
		now := time.Now()
		mu.Lock()
		received[m.Headers().Get(nats.MsgIdHdr)] = now
		mu.Unlock()
	})
	if err != nil {
		b.Fatal(err)
	}
	defer cc.Stop()
	time.Sleep(500 * time.Millisecond)

	b.ResetTimer()
	for n := 0; n < b.N; n++ {
		responded := map[string]time.Time{}
		var rmu sync.Mutex
		sem := make(chan struct{}, 64)
		var wg sync.WaitGroup
		tick := time.NewTicker(time.Second / rate)
		start := time.Now()
		for i := 0; i < rate*seconds; i++ {
			<-tick.C
			sem <- struct{}{}
			wg.Add(1)
			go func() {
				defer func() { <-sem; wg.Done() }()
				var cmd aggregate.Command = aggregate.Suspend{Reason: aggregate.ReasonAdminAction}
				if (i/tenants)%2 == 1 {
					cmd = aggregate.Resume{}
				}
				res, err := a.Commands.Execute(ctx, commands.Request{TenantID: ids[i%tenants], Command: cmd})
				at := time.Now()
				if err != nil {
					if _, domain := aggregate.AsError(err); !domain {
						b.Error(err)
					}
					return
				}
				rmu.Lock()
				for _, e := range res.Events {
					responded[e.EventID.String()] = at
				}
				rmu.Unlock()
			}()
		}
		tick.Stop()
		wg.Wait()
		sent := time.Since(start)
		// Wait for every event to arrive.
		deadline := time.Now().Add(30 * time.Second)
		for {
			mu.Lock()
			missing := 0
			for id := range responded {
				if _, ok := received[id]; !ok {
					missing++
				}
			}
			mu.Unlock()
			if missing == 0 {
				break
			}
			if time.Now().After(deadline) {
				b.Fatalf("%d of %d events never arrived", missing, len(responded))
			}
			time.Sleep(50 * time.Millisecond)
		}
		var lat []time.Duration
		mu.Lock()
		for id, at := range responded {
			lat = append(lat, max(0, received[id].Sub(at)))
		}
		mu.Unlock()
		slices.Sort(lat)
		b.ReportMetric(float64(len(responded))/sent.Seconds(), "commands/s")
		b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
		b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms")
	}
}
