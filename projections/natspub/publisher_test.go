package natspub_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tenancyhq/tenancy/commands"
	"github.com/tenancyhq/tenancy/eventstore"
	"github.com/tenancyhq/tenancy/eventstore/postgres"
	"github.com/tenancyhq/tenancy/internal/natsserver"
	"github.com/tenancyhq/tenancy/internal/pgtest"
	"github.com/tenancyhq/tenancy/projections"
	"github.com/tenancyhq/tenancy/projections/natspub"
)

func TestSubscriberGetsEveryEventOnceInStreamOrderAsCloudEvents(t *testing.T) {
	t.Parallel()
	pool, _ := pgtest.NewMigrated(t)
	store := postgres.New(pool)
	h := commands.NewHandler(store, commands.Options{})
	url := natsserver.StartTest(t)
	js := dial(t, url)
	if err := natspub.EnsureStream(context.Background(), js, natspub.StreamOptions{}); err != nil {
		t.Fatal(err)
	}
	sub := subscribe(t, subscriberConn(t, url))

	stop := runProjection(t, pool, store, natspub.New(js, natspub.Options{}))
	// Tenants written while the publisher runs, one command after another
	// across tenants, so their events interleave in the feed.
	ids := createTenants(t, h, "live", 8)
	for k := range 5 {
		step(t, h, ids, k)
	}
	want := tenantEvents(t, store)
	checkDelivery(t, sub.wait(t, len(want), 30*time.Second), want)
	waitCaughtUp(t, pool, store, 10*time.Second)
	if err := stop(); err != nil {
		t.Fatalf("run: %v", err)
	}
	checkDelivery(t, streamMessages(t, js), want)
}

func TestEnsureStreamMakesTheStreamWithFileStorageAndDuplicateWindow(t *testing.T) {
	t.Parallel()
	js := dial(t, natsserver.StartTest(t))
	ctx := context.Background()
	for _, opts := range []natspub.StreamOptions{{}, {DuplicateWindow: 2 * time.Hour, MaxAge: 24 * time.Hour}} {
		if err := natspub.EnsureStream(ctx, js, opts); err != nil {
			t.Fatal(err)
		}
		s, err := js.Stream(ctx, natspub.StreamName)
		if err != nil {
			t.Fatal(err)
		}
		cfg := s.CachedInfo().Config
		wantDup := opts.DuplicateWindow
		if wantDup == 0 {
			wantDup = time.Hour
		}
		if cfg.Storage.String() != "File" || cfg.Duplicates != wantDup || cfg.MaxAge != opts.MaxAge ||
			len(cfg.Subjects) != 1 || cfg.Subjects[0] != "tenancy.events.>" {
			t.Errorf("stream config %+v, want file storage on tenancy.events.> with duplicates %s and max age %s", cfg, wantDup, opts.MaxAge)
		}
	}
	if err := natspub.EnsureStream(ctx, js, natspub.StreamOptions{DuplicateWindow: 2 * time.Hour, MaxAge: time.Hour}); err == nil {
		t.Error("a duplicate window longer than the max age was accepted")
	}
}

// TestNATSOutageDelaysEventsButLosesNone stops the NATS server while
// commands keep succeeding, starts it again on the same port and store, and
// checks that every event then arrives, in order, once, and that the
// projection waited out the outage without halting or blaming an event.
func TestNATSOutageDelaysEventsButLosesNone(t *testing.T) {
	t.Parallel()
	pool, _ := pgtest.NewMigrated(t)
	store := postgres.New(pool)
	h := commands.NewHandler(store, commands.Options{})
	dir := t.TempDir()
	srv := natsserver.StartTestServer(t, natsserver.Options{StoreDir: dir})
	url := srv.ClientURL()
	js := dial(t, url)
	// The publisher makes the stream itself: the service needs no NATS to start.
	pub := natspub.New(js, natspub.Options{AckTimeout: 2 * time.Second, Stream: &natspub.StreamOptions{}})
	stop := runProjection(t, pool, store, pub)

	ids := createTenants(t, h, "outage", 5)
	step(t, h, ids, 0)
	waitCaughtUp(t, pool, store, 20*time.Second)

	srv.Shutdown()
	// Commands do not depend on NATS.
	more := createTenants(t, h, "during", 3)
	ids = append(ids, more...)
	step(t, h, ids[5:], 0)
	step(t, h, ids, 1)
	step(t, h, ids, 2)
	time.Sleep(1500 * time.Millisecond) // the runner tries, fails, backs off
	ctx := context.Background()
	st, err := projections.Status(ctx, pool, store, natspub.Name)
	if err != nil {
		t.Fatal(err)
	}
	if st.State == projections.StateHalted || st.LagEvents == 0 {
		t.Fatalf("during the outage the publisher should wait with a lag, not halt: %+v", st)
	}

	natsserver.StartTestServer(t, natsserver.Options{Listen: strings.TrimPrefix(url, "nats://"), StoreDir: dir})
	step(t, h, ids, 3)
	waitCaughtUp(t, pool, store, 30*time.Second)
	if err := stop(); err != nil {
		t.Fatalf("run: %v", err)
	}

	st, err = projections.Status(ctx, pool, store, natspub.Name)
	if err != nil {
		t.Fatal(err)
	}
	if st.State == projections.StateHalted || st.Failures != 0 {
		t.Errorf("after the outage: state %s, %d failures, want not halted and none", st.State, st.Failures)
	}
	var failures int
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM projection_failures WHERE projection = $1`, natspub.Name).Scan(&failures); err != nil {
		t.Fatal(err)
	}
	if failures != 0 {
		t.Errorf("%d projection_failures rows: the outage blamed events", failures)
	}
	want := tenantEvents(t, store)
	checkDelivery(t, streamMessages(t, subscriberConn(t, url)), want)
	checkDelivery(t, subscribe(t, subscriberConn(t, url)).wait(t, len(want), 10*time.Second), want)
}

// crashAfterPublish publishes through the real publisher and then fails
// before the runner can move the checkpoint, the first `crashes` times:
// the window where a process dies after JetStream acked but before
// Postgres committed.
type crashAfterPublish struct {
	*natspub.Publisher
	crashes atomic.Int32
	// crash is called instead of returning an error when set: it kills
	// the runner (cancels its context) like a process crash would.
	crash func()
}

func (c *crashAfterPublish) Apply(ctx context.Context, tx pgx.Tx, events []projections.Event) error {
	if err := c.Publisher.Apply(ctx, tx, events); err != nil {
		return err
	}
	if c.crashes.Add(-1) >= 0 {
		if c.crash != nil {
			c.crash()
			return context.Canceled
		}
		return errors.New("crash after the acks, before the checkpoint")
	}
	return nil
}

func TestCrashBetweenPublishAndCheckpointStoresEachEventOnce(t *testing.T) {
	t.Parallel()
	pool, _ := pgtest.NewMigrated(t)
	store := postgres.New(pool)
	h := commands.NewHandler(store, commands.Options{})
	url := natsserver.StartTest(t)
	ctx := context.Background()
	ids := createTenants(t, h, "crash", 20)
	for k := range 4 {
		step(t, h, ids, k)
	}
	want := tenantEvents(t, store)

	// First life: publishes the backlog, then dies before the checkpoint.
	js1 := dial(t, url)
	if err := natspub.EnsureStream(ctx, js1, natspub.StreamOptions{}); err != nil {
		t.Fatal(err)
	}
	runCtx, kill := context.WithCancel(ctx)
	crashing := &crashAfterPublish{Publisher: natspub.New(js1, natspub.Options{}), crash: kill}
	crashing.crashes.Store(1)
	r := projections.NewRunner(pool, store, crashing, runnerOptions)
	var wg sync.WaitGroup
	wg.Go(func() {
		if err := r.Run(runCtx); err != nil {
			t.Errorf("run: %v", err)
		}
	})
	wg.Wait()
	pos, err := projections.ReadCheckpoint(ctx, pool, natspub.Name)
	if err != nil {
		t.Fatal(err)
	}
	published := len(streamMessages(t, js1))
	if !pos.IsZero() || published == 0 {
		t.Fatalf("after the crash: checkpoint %s and %d messages stored; want the checkpoint at the start and the batch stored", pos, published)
	}

	// Second life, on a new connection: publishes everything again from the
	// checkpoint, and also fails once more after the acks (a failed commit),
	// which the runner retries.
	again := &crashAfterPublish{Publisher: natspub.New(dial(t, url), natspub.Options{})}
	again.crashes.Store(1)
	sub := subscribe(t, subscriberConn(t, url))
	stop := runProjection(t, pool, store, again)
	waitCaughtUp(t, pool, store, 30*time.Second)
	if err := stop(); err != nil {
		t.Fatalf("run: %v", err)
	}

	s, err := js1.Stream(ctx, natspub.StreamName)
	if err != nil {
		t.Fatal(err)
	}
	if n := s.CachedInfo().State.Msgs; n != uint64(len(want)) {
		t.Errorf("stream holds %d messages, want %d (one per event)", n, len(want))
	}
	checkDelivery(t, streamMessages(t, js1), want)
	checkDelivery(t, sub.wait(t, len(want), 10*time.Second), want)
	var failures int
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM projection_failures WHERE projection = $1 AND status <> 'resolved'`, natspub.Name).Scan(&failures); err != nil {
		t.Fatal(err)
	}
	if failures != 0 {
		t.Errorf("%d unresolved projection_failures rows", failures)
	}
}

func TestUnreachableNATSIsUnavailableNotTheEventsFault(t *testing.T) {
	t.Parallel()
	srv := natsserver.StartTestServer(t, natsserver.Options{})
	js := dial(t, srv.ClientURL())
	ctx := context.Background()
	if err := natspub.EnsureStream(ctx, js, natspub.StreamOptions{}); err != nil {
		t.Fatal(err)
	}
	evs := sampleEvents(t, 3)
	p := natspub.New(js, natspub.Options{AckTimeout: time.Second})
	if err := p.Apply(ctx, nil, asEvents(evs)); err != nil {
		t.Fatal(err)
	}
	srv.Shutdown()
	err := p.Apply(ctx, nil, asEvents(evs))
	if !errors.Is(err, projections.ErrUnavailable) {
		t.Fatalf("publishing with NATS down: %v, want an error matching projections.ErrUnavailable", err)
	}
}

func TestMissingStreamIsUnavailable(t *testing.T) {
	t.Parallel()
	js := dial(t, natsserver.StartTest(t))
	err := natspub.New(js, natspub.Options{AckTimeout: time.Second}).Apply(context.Background(), nil, asEvents(sampleEvents(t, 1)))
	if !errors.Is(err, projections.ErrUnavailable) || !strings.Contains(err.Error(), natspub.StreamName) {
		t.Fatalf("publishing with no stream: %v, want ErrUnavailable naming %s", err, natspub.StreamName)
	}
}

func TestUndecodableEventIsTheEventsFault(t *testing.T) {
	t.Parallel()
	js := dial(t, natsserver.StartTest(t))
	evs := sampleEvents(t, 1)
	evs[0].Data = []byte(`{"tenant_id":`)
	err := natspub.New(js, natspub.Options{Stream: &natspub.StreamOptions{}}).Apply(context.Background(), nil, asEvents(evs))
	if err == nil || errors.Is(err, projections.ErrUnavailable) {
		t.Fatalf("publishing an undecodable event: %v, want an error that is not ErrUnavailable", err)
	}
}

// asEvents hands records to the publisher as a runner does (it decodes
// nothing for the publisher).
func asEvents(records []eventstore.RecordedEvent) []projections.Event {
	evs, _ := projections.Decode(records, nil)
	return evs
}
