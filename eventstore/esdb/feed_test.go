package esdb_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	client "github.com/EventStore/EventStore-Client-Go/v4/esdb"
	"github.com/google/uuid"

	"github.com/tenancyhq/tenancy/eventstore"
	"github.com/tenancyhq/tenancy/eventstore/esdb"
	"github.com/tenancyhq/tenancy/eventstore/esdb/esdbtest"
	"github.com/tenancyhq/tenancy/eventstore/eventstoretest"
)

func mustAppend(t *testing.T, s eventstore.Store, stream string, exp eventstore.ExpectedVersion, evs []eventstore.EventData) eventstore.AppendResult {
	t.Helper()
	res, err := s.Append(context.Background(), stream, exp, evs)
	if err != nil {
		t.Fatalf("append to %s: %v", stream, err)
	}
	return res
}

func rawClient(t *testing.T, url string) *client.Client {
	t.Helper()
	cfg, err := client.ParseConnectionString(url)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Logger = client.NoopLogging()
	c, err := client.NewClient(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// TestSystemEventsNeverReachTheFeed interleaves system events (and the
// event id claims) with the service's and checks that no read of the feed
// returns them, not even with an empty filter.
func TestSystemEventsNeverReachTheFeed(t *testing.T) {
	t.Parallel()
	srv := esdbtest.Start(t, esdbtest.Options{})
	s := open(t, srv.URL(), esdb.Options{})
	var want []uuid.UUID
	for i := 0; i < 5; i++ {
		evs := eventstoretest.Events(2)
		mustAppend(t, s, "tenant-"+uuid.NewString(), eventstore.NoStream, evs)
		want = append(want, evs[0].ID, evs[1].ID)
		srv.AppendSystemEvent("$stats-node", "$statsCollected", []byte(`{}`))
	}
	last := srv.AppendSystemEvent("$$tenant-x", "$metadata", []byte(`{"$maxAge":1}`))

	all, err := s.ReadAll(context.Background(), eventstore.Start, eventstore.Filter{}, 0)
	if err != nil {
		t.Fatal(err)
	}
	assertSameIDs(t, ids(all), want)

	sub, err := s.SubscribeAll(context.Background(), eventstore.Start, eventstore.Filter{})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	assertSameIDs(t, receive(t, sub, nil, len(want)), want)
	assertNothingMore(t, sub)

	head, err := s.Head(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if head != all[len(all)-1].Position || head.Commit >= last {
		t.Fatalf("head %v, want the last service event %v (not the system event at %d)", head, all[len(all)-1].Position, last)
	}
}

func ids(evs []eventstore.RecordedEvent) []uuid.UUID {
	out := make([]uuid.UUID, len(evs))
	for i, e := range evs {
		out[i] = e.ID
	}
	return out
}

// TestHeadOfAnEmptyStoreIsStart: a fresh server has only system events.
func TestHeadOfAnEmptyStoreIsStart(t *testing.T) {
	t.Parallel()
	srv := esdbtest.Start(t, esdbtest.Options{})
	s := open(t, srv.URL(), esdb.Options{})
	head, err := s.Head(context.Background())
	if err != nil || !head.IsZero() {
		t.Fatalf("head %v, %v; want Start", head, err)
	}
}

// TestNamespacesShareAServerWithoutSeeingEachOther runs two stores with
// their own namespaces on one server.
func TestNamespacesShareAServerWithoutSeeingEachOther(t *testing.T) {
	t.Parallel()
	srv := esdbtest.Start(t, esdbtest.Options{})
	a := open(t, srv.URL(), esdb.Options{Namespace: "a_"})
	b := open(t, srv.URL(), esdb.Options{Namespace: "b_"})
	evA, evB := eventstoretest.Events(1), eventstoretest.Events(1)
	mustAppend(t, a, "tenant-1", eventstore.NoStream, evA)
	mustAppend(t, b, "tenant-1", eventstore.NoStream, evB) // same name, other namespace
	for _, tc := range []struct {
		s    *esdb.Store
		want uuid.UUID
	}{{a, evA[0].ID}, {b, evB[0].ID}} {
		got, err := tc.s.ReadStream(context.Background(), "tenant-1", eventstore.Forward, 0, 0)
		if err != nil || len(got) != 1 || got[0].ID != tc.want || got[0].Stream != "tenant-1" {
			t.Fatalf("stream: %+v, %v", got, err)
		}
		all, err := tc.s.ReadAll(context.Background(), eventstore.Start, eventstore.Filter{}, 0)
		if err != nil || len(all) != 1 || all[0].ID != tc.want {
			t.Fatalf("feed: %+v, %v", all, err)
		}
		sub, err := tc.s.SubscribeAll(context.Background(), eventstore.Start, tenants)
		if err != nil {
			t.Fatal(err)
		}
		assertSameIDs(t, receive(t, sub, nil, 1), []uuid.UUID{tc.want})
		assertNothingMore(t, sub)
		sub.Close()
	}
	if _, err := esdb.New(context.Background(), srv.URL(), esdb.Options{Namespace: "$x"}); err == nil {
		t.Fatal("a namespace of system streams was accepted")
	}
}

// TestEventsWrittenByOthersReadBack reads an event written without the
// adapter's envelope.
func TestEventsWrittenByOthersReadBack(t *testing.T) {
	t.Parallel()
	srv := esdbtest.Start(t, esdbtest.Options{})
	s := open(t, srv.URL(), esdb.Options{})
	id := uuid.New()
	_, err := rawClient(t, srv.URL()).AppendToStream(context.Background(), "tenant-foreign", client.AppendToStreamOptions{},
		client.EventData{EventID: id, EventType: "Imported", ContentType: client.ContentTypeJson, Data: []byte(`{"a":1}`), Metadata: []byte(`{"source":"legacy"}`)})
	if err != nil {
		t.Fatal(err)
	}
	got, err := s.ReadStream(context.Background(), "tenant-foreign", eventstore.Forward, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	r := got[0]
	if r.ID != id || r.Type != "Imported" || r.SchemaVersion != 1 || string(r.Data) != `{"a":1}` || string(r.Metadata) != `{"source":"legacy"}` {
		t.Fatalf("read back %+v", r)
	}
}

// TestMetadataIsKeptByteForByte: the envelope keeps the service's metadata
// as written, and copies the correlation and causation ids where the
// server's tools look for them.
func TestMetadataIsKeptByteForByte(t *testing.T) {
	t.Parallel()
	srv := esdbtest.Start(t, esdbtest.Options{})
	s := open(t, srv.URL(), esdb.Options{})
	meta := []byte(`{ "correlation_id": "c-1", "causation_id": "e-0", "actor": "<alice & bob>" }`)
	e := eventstore.EventData{ID: uuid.New(), Type: "T", SchemaVersion: 2, Data: []byte(`{"x": 1}`), Metadata: meta}
	mustAppend(t, s, "tenant-m", eventstore.NoStream, []eventstore.EventData{e})
	got, err := s.ReadStream(context.Background(), "tenant-m", eventstore.Forward, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got[0].Metadata, meta) || !bytes.Equal(got[0].Data, e.Data) || got[0].SchemaVersion != 2 {
		t.Fatalf("read back %s / %s / v%d", got[0].Metadata, got[0].Data, got[0].SchemaVersion)
	}
	rs, err := rawClient(t, srv.URL()).ReadStream(context.Background(), "tenant-m", client.ReadStreamOptions{}, 1)
	if err != nil {
		t.Fatal(err)
	}
	defer rs.Close()
	raw, err := rs.Recv()
	if err != nil {
		t.Fatal(err)
	}
	stored := string(raw.Event.UserMetadata)
	for _, want := range []string{`"schema_version":2`, `"$correlationId":"c-1"`, `"$causationId":"e-0"`} {
		if !strings.Contains(stored, want) {
			t.Errorf("stored metadata %s lacks %s", stored, want)
		}
	}
}

// TestWrongExpectedVersionSaysWhereTheStreamIs checks Actual for each kind
// of conflict.
func TestWrongExpectedVersionSaysWhereTheStreamIs(t *testing.T) {
	t.Parallel()
	srv := esdbtest.Start(t, esdbtest.Options{})
	s := open(t, srv.URL(), esdb.Options{})
	mustAppend(t, s, "tenant-w", eventstore.NoStream, eventstoretest.Events(3))
	for _, tc := range []struct {
		stream string
		exp    eventstore.ExpectedVersion
		actual int64
	}{
		{"tenant-w", eventstore.NoStream, 2},
		{"tenant-w", eventstore.Exact(0), 2},
		{"tenant-w", eventstore.Exact(9), 2},
		{"tenant-none", eventstore.Exact(0), -1},
	} {
		_, err := s.Append(context.Background(), tc.stream, tc.exp, eventstoretest.Events(1))
		var wev *eventstore.WrongExpectedVersionError
		if !errors.As(err, &wev) || wev.Actual != tc.actual || wev.Expected != tc.exp || wev.Stream != tc.stream {
			t.Errorf("%s at %s: %#v, want actual %d", tc.stream, tc.exp, err, tc.actual)
		}
	}
}

// TestTombstonedStream maps the server's stream-deleted answers.
func TestTombstonedStream(t *testing.T) {
	t.Parallel()
	srv := esdbtest.Start(t, esdbtest.Options{})
	s := open(t, srv.URL(), esdb.Options{})
	mustAppend(t, s, "tenant-gone", eventstore.NoStream, eventstoretest.Events(1))
	if _, err := rawClient(t, srv.URL()).TombstoneStream(context.Background(), "tenant-gone", client.TombstoneStreamOptions{ExpectedRevision: client.Any{}}); err != nil {
		t.Fatal(err)
	}
	_, err := s.ReadStream(context.Background(), "tenant-gone", eventstore.Forward, 0, 0)
	if !errors.Is(err, eventstore.ErrStreamNotFound) || !errors.Is(err, esdb.ErrStreamDeleted) {
		t.Errorf("read: %v, want ErrStreamNotFound and ErrStreamDeleted", err)
	}
	_, err = s.Append(context.Background(), "tenant-gone", eventstore.Any, eventstoretest.Events(1))
	if !errors.Is(err, esdb.ErrStreamDeleted) {
		t.Errorf("append: %v, want ErrStreamDeleted", err)
	}
	// The tombstone ($streamDeleted) is no event of the feed.
	all, err := s.ReadAll(context.Background(), eventstore.Start, eventstore.Filter{}, 0)
	if err != nil || len(all) != 1 {
		t.Errorf("feed: %d events, %v; want the one event", len(all), err)
	}
}

// TestRetryAfterAConflictWithTheSameIDs is how the command handler retries
// a request with an idempotency key: the ids stay, the version moves on.
// The claims of the refused attempt belong to the same stream, so the retry
// goes through.
func TestRetryAfterAConflictWithTheSameIDs(t *testing.T) {
	t.Parallel()
	srv := esdbtest.Start(t, esdbtest.Options{})
	s := open(t, srv.URL(), esdb.Options{})
	mustAppend(t, s, "tenant-r", eventstore.NoStream, eventstoretest.Events(2))
	evs := eventstoretest.Events(1)
	if _, err := s.Append(context.Background(), "tenant-r", eventstore.Exact(0), evs); !errors.Is(err, eventstore.ErrWrongExpectedVersion) {
		t.Fatalf("stale append: %v", err)
	}
	res := mustAppend(t, s, "tenant-r", eventstore.Exact(1), evs)
	if res.NextExpectedVersion != 2 {
		t.Fatalf("next expected version %d, want 2", res.NextExpectedVersion)
	}
	if _, err := s.Append(context.Background(), "tenant-other", eventstore.NoStream, evs); !errors.Is(err, eventstore.ErrDuplicateEventID) {
		t.Fatalf("the same id in another stream: %v, want ErrDuplicateEventID", err)
	}
	dup := eventstoretest.Events(1)
	if _, err := s.Append(context.Background(), "tenant-r", eventstore.Any, []eventstore.EventData{dup[0], dup[0]}); !errors.Is(err, eventstore.ErrDuplicateEventID) {
		t.Fatalf("an id twice in one append: %v, want ErrDuplicateEventID", err)
	}
}

// TestWithoutClaimsAnIDOfAnotherStreamIsStored documents what
// NoEventIDClaims gives up: the server's own behaviour.
func TestWithoutClaimsAnIDOfAnotherStreamIsStored(t *testing.T) {
	t.Parallel()
	srv := esdbtest.Start(t, esdbtest.Options{})
	s := open(t, srv.URL(), esdb.Options{NoEventIDClaims: true})
	evs := eventstoretest.Events(1)
	mustAppend(t, s, "tenant-1", eventstore.NoStream, evs)
	mustAppend(t, s, "tenant-2", eventstore.NoStream, evs)
	all, err := s.ReadAll(context.Background(), eventstore.Start, eventstore.Filter{}, 0)
	if err != nil || len(all) != 2 || all[0].ID != all[1].ID {
		t.Fatalf("feed: %+v, %v; want the same id twice", all, err)
	}
	// A retry is still recognised: that is the server's doing.
	again := mustAppend(t, s, "tenant-2", eventstore.NoStream, evs)
	if again.Position != all[1].Position {
		t.Fatalf("retry at %v, want %v", again.Position, all[1].Position)
	}
}

// TestCredentialsAreNotSentWithoutTLS: the client drops the credentials of
// a tls=false connection string, and the adapter warns about it.
func TestCredentialsAreNotSentWithoutTLS(t *testing.T) {
	t.Parallel()
	srv := esdbtest.Start(t, esdbtest.Options{})
	var logs syncBuffer
	s := open(t, "esdb://admin:changeit@"+srv.Addr()+"?tls=false", esdb.Options{Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	mustAppend(t, s, "tenant-c", eventstore.NoStream, eventstoretest.Events(1))
	if n := srv.CallsWithCredentials(); n != 0 {
		t.Errorf("%d calls carried credentials over plain text", n)
	}
	if !strings.Contains(logs.String(), "tls=false") || strings.Contains(logs.String(), "changeit") {
		t.Errorf("logs do not warn about tls=false, or show the password:\n%s", logs.String())
	}
}

// TestDiscoverConnectionString connects through gossip (esdb+discover://).
func TestDiscoverConnectionString(t *testing.T) {
	t.Parallel()
	srv := esdbtest.Start(t, esdbtest.Options{})
	s := open(t, "esdb+discover://"+srv.Addr()+"?tls=false", esdb.Options{})
	mustAppend(t, s, "tenant-d", eventstore.NoStream, eventstoretest.Events(1))
	if got, err := s.ReadStream(context.Background(), "tenant-d", eventstore.Forward, 0, 0); err != nil || len(got) != 1 {
		t.Fatalf("read: %d events, %v", len(got), err)
	}
}

func TestBadConnectionStrings(t *testing.T) {
	t.Parallel()
	for _, url := range []string{"postgres://x", "esdb://", "esdb://u:secret@host:notaport"} {
		_, err := esdb.New(context.Background(), url, esdb.Options{})
		if err == nil {
			t.Errorf("%s: accepted", url)
		} else if strings.Contains(err.Error(), "secret") {
			t.Errorf("%s: error shows the password: %v", url, err)
		}
	}
}

// TestCloseEndsEverything: after Store.Close, subscriptions end with
// ErrClosed and calls fail with ErrClosed.
func TestCloseEndsEverything(t *testing.T) {
	t.Parallel()
	srv := esdbtest.Start(t, esdbtest.Options{})
	s, err := esdb.New(context.Background(), srv.URL(), esdb.Options{Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	sub, err := s.SubscribeAll(context.Background(), eventstore.Start, tenants)
	if err != nil {
		t.Fatal(err)
	}
	nextErr := make(chan error, 1)
	go func() {
		_, err := sub.Next(context.Background())
		nextErr <- err
	}()
	time.Sleep(50 * time.Millisecond)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-nextErr:
		if !errors.Is(err, esdb.ErrClosed) {
			t.Errorf("Next after Close: %v, want ErrClosed", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Next did not return after Close")
	}
	if _, err := s.Append(context.Background(), "tenant-x", eventstore.Any, eventstoretest.Events(1)); !errors.Is(err, esdb.ErrClosed) {
		t.Errorf("append after Close: %v, want ErrClosed", err)
	}
	if _, err := s.SubscribeAll(context.Background(), eventstore.Start, tenants); !errors.Is(err, esdb.ErrClosed) {
		t.Errorf("subscribe after Close: %v, want ErrClosed", err)
	}
	if err := s.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
