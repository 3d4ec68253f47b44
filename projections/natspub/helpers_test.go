package natspub_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/tenancyhq/tenancy/aggregate"
	"github.com/tenancyhq/tenancy/commands"
	"github.com/tenancyhq/tenancy/eventstore"
	"github.com/tenancyhq/tenancy/eventstore/postgres"
	"github.com/tenancyhq/tenancy/projections"
	"github.com/tenancyhq/tenancy/projections/natspub"
	"github.com/tenancyhq/tenancy/tenantlog"
)

// runnerOptions make the runner react fast in tests.
var runnerOptions = projections.Options{
	LockPollInterval: 20 * time.Millisecond,
	BackoffBase:      20 * time.Millisecond,
	BackoffMax:       300 * time.Millisecond,
}

// dial connects a publisher's connection to url, closed when t ends.
func dial(t testing.TB, url string) jetstream.JetStream {
	t.Helper()
	nc, js, err := natspub.Dial(url, 5*time.Second, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return js
}

// subscriberConn connects a subscriber that rides out server restarts.
func subscriberConn(t testing.TB, url string) jetstream.JetStream {
	t.Helper()
	nc, err := nats.Connect(url, nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return js
}

// runProjection runs p under a runner until the returned stop is called;
// stop returns Run's error.
func runProjection(t testing.TB, pool *pgxpool.Pool, store *postgres.Store, p projections.Projection) (stop func() error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	opts := runnerOptions
	opts.Logger = slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))
	r := projections.NewRunner(pool, store, p, opts)
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	var once sync.Once
	var err error
	stop = func() error {
		once.Do(func() {
			cancel()
			err = <-done
		})
		return err
	}
	t.Cleanup(func() { _ = stop() })
	return stop
}

// waitCaughtUp waits until the publisher's checkpoint is past every tenant
// event in the store.
func waitCaughtUp(t testing.TB, pool *pgxpool.Pool, store *postgres.Store, within time.Duration) {
	t.Helper()
	ctx := context.Background()
	deadline := time.Now().Add(within)
	for {
		st, err := projections.Status(ctx, pool, store, natspub.Name)
		if err != nil {
			t.Fatal(err)
		}
		if st.State == projections.StateHalted {
			t.Fatalf("publisher halted: %s", st.LastError)
		}
		if st.LagEvents == 0 && !st.Position.IsZero() {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("publisher not caught up after %s: %+v", within, st)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// meta is the metadata the test commands carry, so the CloudEvent's
// extensions can be checked.
func meta(i int) aggregate.Metadata {
	return aggregate.Metadata{
		CorrelationID: fmt.Sprintf("corr-%d", i),
		CausationID:   fmt.Sprintf("cause-%d", i),
		Actor:         "user:alice",
		TraceParent:   "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
	}
}

// lifecycle is a valid sequence of commands after Create.
var lifecycle = []aggregate.Command{
	aggregate.CompleteProvisioning{},
	aggregate.UpdateProfile{Labels: &map[string]string{"team": "a"}},
	aggregate.Suspend{Reason: aggregate.ReasonAbuseDetected, Note: "test"},
	aggregate.Resume{},
	aggregate.UpdateProfile{Labels: &map[string]string{"team": "b"}},
}

// createTenants creates n tenants through the command handler and returns
// their ids.
func createTenants(t testing.TB, h *commands.Handler, prefix string, n int) []uuid.UUID {
	t.Helper()
	ids := make([]uuid.UUID, n)
	for i := range ids {
		res, err := h.Create(context.Background(), aggregate.Create{Name: fmt.Sprintf("%s %d", prefix, i), Edition: "professional", Region: "eu-west-1"}, meta(i))
		if err != nil {
			t.Fatalf("create: %v", err)
		}
		ids[i] = res.TenantID
	}
	return ids
}

// step runs lifecycle command k on every tenant (k wraps around).
func step(t testing.TB, h *commands.Handler, ids []uuid.UUID, k int) {
	t.Helper()
	for i, id := range ids {
		cmd := lifecycle[k%len(lifecycle)]
		if _, err := h.Execute(context.Background(), commands.Request{TenantID: id, Command: cmd, Metadata: meta(i*100 + k)}); err != nil {
			t.Fatalf("%s on %s: %v", cmd.CommandName(), id, err)
		}
	}
}

// tenantEvents reads every tenant stream of the store: the truth the
// published messages are checked against.
func tenantEvents(t testing.TB, store *postgres.Store) []eventstore.RecordedEvent {
	t.Helper()
	evs, err := store.ReadAll(context.Background(), eventstore.Start, eventstore.Filter{StreamPrefixes: []string{aggregate.StreamPrefix}}, 0)
	if err != nil {
		t.Fatal(err)
	}
	return evs
}

// received is one message a subscriber got.
type received struct {
	subject string
	header  nats.Header
	data    []byte
}

// collector is a subscriber on the whole stream (an ordered consumer from
// the first message), as a billing or analytics service would run.
type collector struct {
	mu   sync.Mutex
	msgs []received
}

func subscribe(t testing.TB, js jetstream.JetStream) *collector {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cons, err := js.OrderedConsumer(ctx, natspub.StreamName, jetstream.OrderedConsumerConfig{FilterSubjects: []string{natspub.StreamSubjects}})
	if err != nil {
		t.Fatal(err)
	}
	c := &collector{}
	cc, err := cons.Consume(func(m jetstream.Msg) {
		c.mu.Lock()
		defer c.mu.Unlock()
		c.msgs = append(c.msgs, received{subject: m.Subject(), header: m.Headers(), data: m.Data()})
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cc.Stop)
	return c
}

// wait returns the messages once there are at least n, and a little later
// (to catch any extra copy).
func (c *collector) wait(t testing.TB, n int, within time.Duration) []received {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		c.mu.Lock()
		got := len(c.msgs)
		c.mu.Unlock()
		if got >= n {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("subscriber got %d messages after %s, want %d", got, within, n)
		}
		time.Sleep(20 * time.Millisecond)
	}
	time.Sleep(200 * time.Millisecond)
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]received(nil), c.msgs...)
}

// streamMessages reads the stream as stored, by sequence.
func streamMessages(t testing.TB, js jetstream.JetStream) []received {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s, err := js.Stream(ctx, natspub.StreamName)
	if err != nil {
		t.Fatal(err)
	}
	st := s.CachedInfo().State
	var out []received
	for seq := st.FirstSeq; seq <= st.LastSeq && st.Msgs > 0; seq++ {
		m, err := s.GetMsg(ctx, seq)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, received{subject: m.Subject, header: m.Header, data: m.Data})
	}
	if uint64(len(out)) != st.Msgs {
		t.Fatalf("read %d messages, stream says it holds %d", len(out), st.Msgs)
	}
	return out
}

// checkDelivery checks that msgs hold every event of want exactly once, in
// feed order (so in stream order per tenant), each a correct CloudEvent.
func checkDelivery(t testing.TB, msgs []received, want []eventstore.RecordedEvent) {
	t.Helper()
	if len(msgs) != len(want) {
		t.Errorf("got %d messages, want %d (one per event)", len(msgs), len(want))
	}
	byID := map[string]eventstore.RecordedEvent{}
	for _, ev := range want {
		byID[ev.ID.String()] = ev
	}
	seen := map[string]bool{}
	lastVersion := map[string]int64{}
	var lastPos eventstore.Position
	for i, m := range msgs {
		id := m.header.Get("Nats-Msg-Id")
		ev, ok := byID[id]
		if !ok {
			t.Errorf("message %d: Nats-Msg-Id %q is no event of the store", i, id)
			continue
		}
		if seen[id] {
			t.Errorf("message %d: event %s received twice", i, id)
			continue
		}
		seen[id] = true
		checkCloudEvent(t, m, ev)
		tenant := strings.TrimPrefix(ev.Stream, aggregate.StreamPrefix)
		if prev, ok := lastVersion[tenant]; ok && int64(ev.Version) != prev+1 || !ok && ev.Version != 0 {
			t.Errorf("tenant %s: version %d arrived after %d", tenant, ev.Version, lastVersion[tenant])
		}
		lastVersion[tenant] = int64(ev.Version)
		if ev.Position.Compare(lastPos) <= 0 {
			t.Errorf("message %d: position %s after %s: not in feed order", i, ev.Position, lastPos)
		}
		lastPos = ev.Position
	}
	for _, ev := range want {
		if !seen[ev.ID.String()] {
			t.Errorf("event %s (%s %s@%d) never arrived", ev.ID, ev.Type, ev.Stream, ev.Version)
		}
	}
}

// checkCloudEvent checks one message against the event it carries.
func checkCloudEvent(t testing.TB, m received, ev eventstore.RecordedEvent) {
	t.Helper()
	env, err := tenantlog.Decode(ev)
	if err != nil {
		t.Fatal(err)
	}
	tenant := strings.TrimPrefix(ev.Stream, aggregate.StreamPrefix)
	if want := "tenancy.events." + ev.Type + "." + tenant; m.subject != want {
		t.Errorf("event %s: subject %q, want %q", ev.ID, m.subject, want)
	}
	if ct := m.header.Get("Content-Type"); ct != "application/cloudevents+json" {
		t.Errorf("event %s: Content-Type %q", ev.ID, ct)
	}
	var ce map[string]any
	if err := json.Unmarshal(m.data, &ce); err != nil {
		t.Fatalf("event %s: payload is not JSON: %v", ev.ID, err)
	}
	wantData, _, err := aggregate.EncodeEvent(env.Data)
	if err != nil {
		t.Fatal(err)
	}
	var data any
	if err := json.Unmarshal(wantData, &data); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{
		"specversion":     "1.0",
		"id":              ev.ID.String(),
		"source":          "tenancy",
		"type":            "dev.tenancy." + ev.Type,
		"subject":         tenant,
		"time":            env.Metadata.OccurredAt.UTC().Format(time.RFC3339Nano),
		"datacontenttype": "application/json",
		"data":            data,
		"schemaversion":   float64(aggregate.SchemaVersion(ev.Type)),
		"streamversion":   float64(ev.Version),
		"position":        ev.Position.String(),
		"correlationid":   env.Metadata.CorrelationID,
		"causationid":     env.Metadata.CausationID,
		"actor":           env.Metadata.Actor,
		"traceparent":     env.Metadata.TraceParent,
	}
	for k, v := range want {
		got, _ := json.Marshal(ce[k])
		exp, _ := json.Marshal(v)
		if string(got) != string(exp) {
			t.Errorf("event %s: %s = %s, want %s", ev.ID, k, got, exp)
		}
	}
	if len(ce) != len(want) {
		t.Errorf("event %s: CloudEvent has %d attributes, want %d: %s", ev.ID, len(ce), len(want), m.data)
	}
}
