package httpapi_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/tenancyhq/tenancy/eventstore/esdb/esdbtest"
	"github.com/tenancyhq/tenancy/internal/natsserver"
	"github.com/tenancyhq/tenancy/internal/pgtest"
	"github.com/tenancyhq/tenancy/projections/natspub"
	"github.com/tenancyhq/tenancy/service"
)

// TestServiceOnEventStoreDB runs the whole service with EVENTSTORE_URL
// pointing at the EventStoreDB test server: the REST lifecycle passes
// unchanged, the read model fills, NATS receives every event, and a restart
// resumes the projections from their stored $all checkpoints without a
// duplicate.
func TestServiceOnEventStoreDB(t *testing.T) {
	t.Parallel()
	es := esdbtest.Start(t, esdbtest.Options{})
	natsURL := natsserver.StartTest(t)
	dbURL := pgtest.NewDatabase(t)
	cfg := service.Config{ExternalProvisioning: true, EventStoreURL: es.URL(), NATSURL: natsURL, DatabaseURL: dbURL}

	s := startServiceWith(t, cfg)
	id := tenantLivesItsWholeLife(t, s)
	ctx := context.Background()
	events := func() int {
		var n int
		if err := s.app.Pool().QueryRow(ctx, `SELECT count(*) FROM tenant_events`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	waitFor(t, 30*time.Second, "the projections to catch up", func() bool { return lagOf(t, s.app) == 0 })
	before := events()
	if before < 20 {
		t.Fatalf("read model holds %d events after the lifecycle", before)
	}
	// NATS has exactly one message per event.
	published := streamMessages(t, natsURL)
	if published != uint64(before) {
		t.Fatalf("NATS holds %d messages, the read model %d events", published, before)
	}

	// Restart the service on the same stores: the projections resume from
	// their $all checkpoints; nothing is applied or published twice.
	s.stop()
	if _, ok := s.wait(30 * time.Second); !ok {
		t.Fatal("Run did not stop")
	}
	s2 := startServiceWith(t, cfg)
	s2.must(201, "POST", "/api/v1/tenants", map[string]any{"name": "After Restart", "edition": "free", "region": "us-east-1"})
	s2.must(200, "GET", "/api/v1/tenants/"+id+"/history", nil)
	waitFor(t, 30*time.Second, "the restarted projections to catch up", func() bool { return lagOf(t, s2.app) == 0 })
	after := events()
	if after != before+1 {
		t.Fatalf("after the restart and one command the read model holds %d events, want %d", after, before+1)
	}
	waitFor(t, 30*time.Second, "the publish after restart", func() bool { return streamMessages(t, natsURL) == uint64(after) })
	if got := streamMessages(t, natsURL); got != uint64(after) {
		t.Fatalf("NATS holds %d messages after the restart, want %d", got, after)
	}
}

func lagOf(t *testing.T, a *service.App) int64 {
	t.Helper()
	var total int64
	for _, name := range service.ProjectionNames() {
		st, err := statusOf(a, name)
		if err != nil {
			t.Fatal(err)
		}
		total += st
	}
	return total
}

func streamMessages(t *testing.T, url string) uint64 {
	t.Helper()
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	st, err := js.Stream(context.Background(), natspub.StreamName)
	if err != nil {
		return 0
	}
	info, err := st.Info(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return info.State.Msgs
}

func statusOf(a *service.App, name string) (int64, error) {
	return a.ProjectionLag(context.Background(), name)
}

// TestRebuildOnEventStoreDB rebuilds the read model from an EventStoreDB
// feed (which cannot count its events) and verifies it.
func TestRebuildOnEventStoreDB(t *testing.T) {
	t.Parallel()
	es := esdbtest.Start(t, esdbtest.Options{})
	s := startServiceWith(t, service.Config{ExternalProvisioning: true, EventStoreURL: es.URL()})
	for _, name := range []string{"Rebuild One", "Rebuild Two"} {
		s.must(201, "POST", "/api/v1/tenants", map[string]any{"name": name, "edition": "free", "region": "us-east-1"})
	}
	waitFor(t, 30*time.Second, "the read model", func() bool {
		lag, err := s.app.ProjectionLag(context.Background(), "read-model")
		return err == nil && lag == 0
	})
	if err := s.app.Rebuild(context.Background(), "read-model", nil); err != nil {
		t.Fatalf("rebuild on EventStoreDB: %v", err)
	}
	var n int
	if err := s.app.Pool().QueryRow(context.Background(), `SELECT count(*) FROM tenants`).Scan(&n); err != nil || n != 2 {
		t.Fatalf("after the rebuild: %d tenants (%v), want 2", n, err)
	}
}

// TestChangeTooLargeForEventStoreDB: on EventStoreDB a command whose events
// would be over the server's maximum append size (here configured to
// 16 KiB) is refused with 413 naming the largest field, before anything is
// sent: no tenant, and its name is not held, so the same create with less
// metadata goes through at once.
func TestChangeTooLargeForEventStoreDB(t *testing.T) {
	t.Parallel()
	es := esdbtest.Start(t, esdbtest.Options{MaxAppendSize: 16 << 10})
	s := startServiceWith(t, service.Config{ExternalProvisioning: true, EventStoreURL: es.URL(), DatabaseURL: pgtest.NewDatabase(t),
		EventStoreMaxAppendSize: 16 << 10})
	big := map[string]string{}
	for i := range 60 {
		big[fmt.Sprintf("key%02d", i)] = strings.Repeat("v", 450)
	}
	create := map[string]any{"name": "Large Change Co", "edition": "professional", "region": "us-east-1", "metadata": big}
	p := checkProblem(t, s.do("POST", "/api/v1/tenants", create), 413, "metadata", "max_append_size")
	if errs, _ := p["errors"].([]any); len(errs) != 1 {
		t.Errorf("errors[] = %v; want the one field", p["errors"])
	}
	if list := s.must(200, "GET", "/api/v1/tenants", nil).json(t); len(list["items"].([]any)) != 0 {
		t.Errorf("tenants after the refused create: %v", list["items"])
	}
	create["metadata"] = map[string]string{"crm": "42"}
	s.must(201, "POST", "/api/v1/tenants", create)
}
