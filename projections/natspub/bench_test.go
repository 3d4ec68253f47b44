package natspub_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/tenancyhq/tenancy/aggregate"
	"github.com/tenancyhq/tenancy/commands"
	"github.com/tenancyhq/tenancy/eventstore"
	"github.com/tenancyhq/tenancy/eventstore/memory"
	"github.com/tenancyhq/tenancy/internal/natsserver"
	"github.com/tenancyhq/tenancy/projections"
	"github.com/tenancyhq/tenancy/projections/natspub"
)

// benchLifecycle gives each tenant 10 events: TenantCreated, then
// ProvisioningCompleted + TrialStarted, then one event per command.
var benchLifecycle = []aggregate.Command{
	aggregate.CompleteProvisioning{},
	aggregate.UpdateProfile{Labels: &map[string]string{"team": "a"}},
	aggregate.Suspend{Reason: aggregate.ReasonAbuseDetected},
	aggregate.Resume{},
	aggregate.UpdateProfile{Labels: &map[string]string{"team": "b"}},
	aggregate.Suspend{Reason: aggregate.ReasonAdminAction},
	aggregate.Resume{},
	aggregate.UpdateProfile{Labels: &map[string]string{"team": "c"}},
}

// backlog makes real tenant events, through the command handler on the
// in-memory store, and returns the tenant streams' events in feed order.
func backlog(tb testing.TB, tenants int, cmds []aggregate.Command) []eventstore.RecordedEvent {
	tb.Helper()
	store := memory.New()
	h := commands.NewHandler(store, commands.Options{})
	ctx := context.Background()
	const writers = 8
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	for w := range writers {
		wg.Go(func() {
			for i := w; i < tenants; i += writers {
				res, err := h.Create(ctx, aggregate.Create{Name: fmt.Sprintf("bench %d", i), Edition: "professional", Region: "us-east-1"}, meta(i))
				if err != nil {
					errs <- err
					return
				}
				for k, cmd := range cmds {
					if _, err := h.Execute(ctx, commands.Request{TenantID: res.TenantID, Command: cmd, Metadata: meta(i*100 + k)}); err != nil {
						errs <- fmt.Errorf("%s: %w", cmd.CommandName(), err)
						return
					}
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		tb.Fatal(err)
	}
	evs, err := store.ReadAll(ctx, eventstore.Start, eventstore.Filter{StreamPrefixes: []string{aggregate.StreamPrefix}}, 0)
	if err != nil {
		tb.Fatal(err)
	}
	return evs
}

// sampleEvents returns the first n events of a small backlog.
func sampleEvents(tb testing.TB, n int) []eventstore.RecordedEvent {
	tb.Helper()
	evs := backlog(tb, n, benchLifecycle)
	return evs[:n]
}

// resetStream deletes and re-creates the stream, so a run starts empty and
// with an empty de-duplication window.
func resetStream(b *testing.B, js jetstream.JetStream) {
	b.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := js.DeleteStream(ctx, natspub.StreamName); err != nil && !errors.Is(err, jetstream.ErrStreamNotFound) {
		b.Fatal(err)
	}
	if err := natspub.EnsureStream(ctx, js, natspub.StreamOptions{}); err != nil {
		b.Fatal(err)
	}
}

func storedCount(b *testing.B, js jetstream.JetStream) uint64 {
	b.Helper()
	s, err := js.Stream(context.Background(), natspub.StreamName)
	if err != nil {
		b.Fatal(err)
	}
	return s.CachedInfo().State.Msgs
}

// BenchmarkPublish reports how fast the publisher drains a 100,000-event
// backlog into JetStream, acks included: the Publisher's Apply on batches
// of 500 (the Postgres feed's batch size), each building its CloudEvents
// and waiting for every ack before the next batch, as under the runner.
// Beside it, in the same run and on the same server, the ceiling: raw
// nats.go asynchronous publishing of the very same messages (built
// beforehand) with one wait for all acks at the end. It reports both rates
// and their ratio.
func BenchmarkPublish(b *testing.B) {
	const tenants, batch = 10_000, 500
	t0 := time.Now()
	events := backlog(b, tenants, benchLifecycle)
	b.Logf("backlog of %d events made in %s", len(events), time.Since(t0).Round(time.Millisecond))
	if len(events) != 100_000 {
		b.Fatalf("backlog has %d events, want 100000", len(events))
	}
	msgs := make([]*nats.Msg, len(events))
	for i, ev := range events {
		m, err := natspub.Message(ev, natspub.DefaultSource)
		if err != nil {
			b.Fatal(err)
		}
		msgs[i] = m
	}
	url := natsserver.StartTest(b)
	pubJS := dial(b, url)
	rawConn, err := nats.Connect(url)
	if err != nil {
		b.Fatal(err)
	}
	defer rawConn.Close()
	rawJS, err := jetstream.New(rawConn)
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()

	var pubTime, rawTime time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		// Alternate which goes first, so neither always meets a warmer server.
		runs := []func(){
			func() {
				b.StopTimer()
				resetStream(b, pubJS)
				p := natspub.New(pubJS, natspub.Options{})
				b.StartTimer()
				start := time.Now()
				for lo := 0; lo < len(events); lo += batch {
					evs, _ := projections.Decode(events[lo:min(lo+batch, len(events))], nil)
					if err := p.Apply(ctx, nil, evs); err != nil {
						b.Fatal(err)
					}
				}
				pubTime += time.Since(start)
				if n := storedCount(b, pubJS); n != uint64(len(events)) {
					b.Fatalf("publisher stored %d messages, want %d", n, len(events))
				}
			},
			func() {
				b.StopTimer()
				resetStream(b, rawJS)
				b.StartTimer()
				start := time.Now()
				for _, m := range msgs {
					if _, err := rawJS.PublishMsgAsync(&nats.Msg{Subject: m.Subject, Header: m.Header, Data: m.Data}, jetstream.WithStallWait(time.Minute)); err != nil {
						b.Fatal(err)
					}
				}
				select {
				case <-rawJS.PublishAsyncComplete():
				case <-time.After(time.Minute):
					b.Fatal("raw publish: acks missing after a minute")
				}
				rawTime += time.Since(start)
				if n := storedCount(b, rawJS); n != uint64(len(events)) {
					b.Fatalf("raw publish stored %d messages, want %d", n, len(events))
				}
			},
		}
		if i%2 == 1 {
			runs[0], runs[1] = runs[1], runs[0]
		}
		for _, run := range runs {
			run()
		}
	}
	b.StopTimer()
	total := float64(b.N * len(events))
	pubRate := total / pubTime.Seconds()
	rawRate := total / rawTime.Seconds()
	b.ReportMetric(pubRate, "events/s")
	b.ReportMetric(rawRate, "raw_events/s")
	b.ReportMetric(pubRate/rawRate, "ratio")
}

// BenchmarkMessage reports the cost of building one event's message
// (decode, upcast, CloudEvent JSON): the publisher's own CPU per event.
func BenchmarkMessage(b *testing.B) {
	events := backlog(b, 100, benchLifecycle)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := natspub.Message(events[i%len(events)], natspub.DefaultSource); err != nil {
			b.Fatal(err)
		}
	}
}
