package aggregate_test

import (
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/tenancyhq/tenancy/aggregate"
)

// benchStream builds a realistic 10,000-event stream: a tenant that is
// created, provisioned, and then lives through suspensions, profile changes,
// edition changes and billing updates.
func benchStream(b *testing.B, n int) []aggregate.Envelope {
	b.Helper()
	h := &history{tenant: &aggregate.Tenant{}, now: t0}
	t := &testing.T{}
	h.do(t, aggregate.Create{TenantID: uuid.New(), ExternalID: "ORG-0A1B2C3D", Name: "Bench Corp", Edition: "professional", Region: "us-east-1"})
	h.do(t, aggregate.CompleteProvisioning{})
	h.do(t, aggregate.ConvertTrial{})
	cycle := []func(i int) aggregate.Command{
		func(int) aggregate.Command {
			return aggregate.Suspend{Reason: aggregate.ReasonPaymentFailed, Note: "declined"}
		},
		func(int) aggregate.Command { return aggregate.Resume{} },
		func(i int) aggregate.Command {
			return aggregate.UpdateProfile{Labels: &map[string]string{"n": string(rune('a' + i%26))}}
		},
		func(i int) aggregate.Command {
			return aggregate.RecordBillingStatus{Status: aggregate.BillingActive, ProviderEventID: uuid.NewString()}
		},
		func(int) aggregate.Command { return aggregate.ChangeEdition{Edition: aggregate.EditionEnterprise} },
		func(int) aggregate.Command { return aggregate.ChangeEdition{Edition: aggregate.EditionProfessional} },
	}
	for i := 0; len(h.events) < n; i++ {
		h.now = h.now.Add(time.Minute)
		cmd := cycle[i%len(cycle)](i)
		evs, err := h.tenant.Decide(cmd, h.now, cat)
		if err != nil {
			b.Fatalf("%s: %v", cmd.CommandName(), err)
		}
		h.apply(cmd, evs)
	}
	return h.events[:n]
}

// BenchmarkFold reports events folded per second for a 10,000-event stream,
// from decoded events (the aggregate alone).
func BenchmarkFold(b *testing.B) {
	events := benchStream(b, 10_000)
	b.ResetTimer()
	for b.Loop() {
		t := aggregate.Fold(events)
		if t.Version != 9_999 {
			b.Fatal("wrong fold")
		}
	}
	b.ReportMetric(float64(b.N)*10_000/b.Elapsed().Seconds(), "events/s")
}

// BenchmarkFoldWithDecode reports events folded per second including the
// JSON decode of every event, as a load from the event store does it.
func BenchmarkFoldWithDecode(b *testing.B) {
	events := benchStream(b, 10_000)
	type raw struct {
		typ     string
		version int
		data    []byte
	}
	raws := make([]raw, len(events))
	for i, e := range events {
		data, v, err := aggregate.EncodeEvent(e.Data)
		if err != nil {
			b.Fatal(err)
		}
		raws[i] = raw{e.Type, v, data}
	}
	b.ResetTimer()
	for b.Loop() {
		t := &aggregate.Tenant{}
		for i, r := range raws {
			e, err := aggregate.DecodeEvent(r.typ, r.version, r.data)
			if err != nil {
				b.Fatal(err)
			}
			t.Apply(aggregate.Envelope{Type: r.typ, Version: uint64(i), OccurredAt: events[i].OccurredAt, Data: e})
		}
	}
	b.ReportMetric(float64(b.N)*10_000/b.Elapsed().Seconds(), "events/s")
}

// BenchmarkDecide reports the cost of deciding one command (a suspension of an
// active tenant).
func BenchmarkDecide(b *testing.B) {
	events := benchStream(b, 3)
	t := aggregate.Fold(events)
	cmd := aggregate.Suspend{Reason: aggregate.ReasonPaymentFailed, Note: "declined"}
	now := t0.Add(time.Hour)
	for b.Loop() {
		if _, err := t.Decide(cmd, now, cat); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N), "ns/decide")
}
