package esdb_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	client "github.com/EventStore/EventStore-Client-Go/v4/esdb"
	"github.com/google/uuid"
	"google.golang.org/grpc/codes"

	"github.com/tenancyhq/tenancy/eventstore"
	"github.com/tenancyhq/tenancy/eventstore/esdb"
	"github.com/tenancyhq/tenancy/eventstore/esdb/esdbtest"
	"github.com/tenancyhq/tenancy/eventstore/eventstoretest"
)

var tenants = eventstore.Filter{StreamPrefixes: []string{"tenant-"}}

// fastResubscribe keeps the resilience tests quick.
func fastResubscribe(o esdb.Options) esdb.Options {
	o.ResubscribeMin, o.ResubscribeMax = 10*time.Millisecond, 100*time.Millisecond
	return o
}

// writer appends to one tenant stream and to an "other" stream and the
// system streams in between, remembering the tenant events in order.
type writer struct {
	t      *testing.T
	s      *esdb.Store
	srv    *esdbtest.Server
	stream string
	next   uint64
	want   []uuid.UUID
	// pad is added to each tenant event's data, to make a backlog larger
	// than what gRPC buffers.
	pad int
}

func newWriter(t *testing.T, s *esdb.Store, srv *esdbtest.Server) *writer {
	return &writer{t: t, s: s, srv: srv, stream: "tenant-" + uuid.NewString()}
}

// write appends n tenant events, one per append, each followed by an event
// the subscription filters out (another stream, or a system event).
func (w *writer) write(n int) {
	w.t.Helper()
	for i := 0; i < n; i++ {
		exp := eventstore.NoStream
		if w.next > 0 {
			exp = eventstore.Exact(w.next - 1)
		}
		evs := eventstoretest.Events(1)
		if w.pad > 0 {
			evs[0].Data = []byte(fmt.Sprintf(`{"n":%d,"pad":%q}`, w.next, strings.Repeat("x", w.pad)))
		}
		if _, err := w.s.Append(context.Background(), w.stream, exp, evs); err != nil {
			w.t.Fatalf("append %d: %v", w.next, err)
		}
		w.next++
		w.want = append(w.want, evs[0].ID)
		if i%2 == 0 {
			if _, err := w.s.Append(context.Background(), "other-"+uuid.NewString(), eventstore.NoStream, eventstoretest.Events(1)); err != nil {
				w.t.Fatal(err)
			}
		} else {
			w.srv.AppendSystemEvent("$stats-127.0.0.1:2113", "$statsCollected", []byte(`{}`))
		}
	}
}

// receive reads from sub until got has total events. Batches may bring more
// than asked for; the caller compares the whole sequence in the end.
func receive(t *testing.T, sub eventstore.Subscription, got []uuid.UUID, total int) []uuid.UUID {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for len(got) < total {
		evs, err := sub.Next(ctx)
		if err != nil {
			t.Fatalf("after %d of %d events: %v", len(got), total, err)
		}
		for _, e := range evs {
			got = append(got, e.ID)
		}
	}
	return got
}

// assertNothingMore checks that no further event arrives for a while.
func assertNothingMore(t *testing.T, sub eventstore.Subscription) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	if evs, err := sub.Next(ctx); err == nil {
		t.Fatalf("%d unexpected events, first %s at %v", len(evs), evs[0].ID, evs[0].Position)
	}
}

func assertSameIDs(t *testing.T, got, want []uuid.UUID) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("got %d events, want %d", len(got), len(want))
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("event %d is %s, want %s (gap or duplicate)", i, got[i], want[i])
		}
	}
}

// TestSubscriptionResumesAfterTheServerDropsIt drops the server's
// subscription while catching up and while live, with an error and cleanly,
// and checks that the consumer sees every event once, in order.
func TestSubscriptionResumesAfterTheServerDropsIt(t *testing.T) {
	t.Parallel()
	for _, code := range []codes.Code{codes.Unavailable, codes.Aborted, codes.OK} {
		t.Run(code.String(), func(t *testing.T) {
			t.Parallel()
			srv := esdbtest.Start(t, esdbtest.Options{})
			s := open(t, srv.URL(), fastResubscribe(esdb.Options{BatchSize: 7}))
			w := newWriter(t, s, srv)
			w.pad = 8 << 10
			w.write(300) // 2.4 MB: more than gRPC buffers, so the drop comes mid-backlog
			end, err := s.Head(context.Background())
			if err != nil {
				t.Fatal(err)
			}

			sub, err := s.SubscribeAll(context.Background(), eventstore.Start, tenants)
			if err != nil {
				t.Fatal(err)
			}
			defer sub.Close()
			got := receive(t, sub, nil, 20) // catching up
			if n := srv.DropSubscriptions(code); n != 1 {
				t.Fatalf("dropped %d subscriptions, want 1", n)
			}
			got = receive(t, sub, got, 300) // the rest of the backlog
			if starts := srv.SubscriptionStarts(); len(starts) != 2 || starts[1] == 0 || starts[1] >= end.Commit {
				t.Fatalf("subscriptions started after %v; want a resubscription inside the backlog (before %d)", starts, end.Commit)
			}
			w.pad = 0
			for round := 0; round < 3; round++ { // live
				w.write(10)
				waitFor(t, "a live subscription", func() bool { return srv.Subscriptions() == 1 })
				srv.DropSubscriptions(code)
				w.write(5)
				got = receive(t, sub, got, len(w.want))
			}
			assertSameIDs(t, got, w.want)
			assertNothingMore(t, sub)
		})
	}
}

// TestSubscriptionSurvivesAServerRestart stops the server under a live
// subscription, writes after it comes back, and checks the consumer misses
// nothing and sees nothing twice.
func TestSubscriptionSurvivesAServerRestart(t *testing.T) {
	t.Parallel()
	srv := esdbtest.Start(t, esdbtest.Options{})
	s := open(t, srv.URL(), fastResubscribe(esdb.Options{}))
	w := newWriter(t, s, srv)
	w.write(30)
	sub, err := s.SubscribeAll(context.Background(), eventstore.Start, tenants)
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	got := receive(t, sub, nil, 30)

	srv.Stop()
	time.Sleep(300 * time.Millisecond) // the subscription is dropped and retries meanwhile
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	var err2 error
	waitFor(t, "appends after the restart", func() bool {
		_, err2 = s.Append(context.Background(), "tenant-probe-"+uuid.NewString(), eventstore.NoStream, eventstoretest.Events(1))
		return err2 == nil
	})
	// The probe stream is a tenant stream too: it comes next.
	probe := receive(t, sub, nil, 1)
	w.write(20)
	got = receive(t, sub, got, 50)
	assertSameIDs(t, got, w.want)
	if len(probe) != 1 {
		t.Fatalf("%d probe events, want 1", len(probe))
	}
	assertNothingMore(t, sub)
}

// TestRecoversWhenTheServerComesUpAfterTheFirstCall starts the store with
// the server down: the first call fails, which leaves the client stopped for
// good; once the server is up the very next call works (on a new client).
func TestRecoversWhenTheServerComesUpAfterTheFirstCall(t *testing.T) {
	t.Parallel()
	srv := esdbtest.NewServer(esdbtest.Options{})
	if err := srv.Start(); err != nil { // learn a port, then go down
		t.Fatal(err)
	}
	srv.Stop()
	t.Cleanup(srv.Stop)
	s := open(t, srv.URL(), esdb.Options{OperationTimeout: 5 * time.Second})

	st := "tenant-" + uuid.NewString()
	if _, err := s.Append(context.Background(), st, eventstore.NoStream, eventstoretest.Events(1)); err == nil {
		t.Fatal("append with the server down succeeded")
	}
	if _, err := s.Head(context.Background()); err == nil {
		t.Fatal("head with the server down succeeded")
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	res, err := s.Append(context.Background(), st, eventstore.NoStream, eventstoretest.Events(2))
	if err != nil {
		t.Fatalf("first append once the server is up: %v", err)
	}
	if res.NextExpectedVersion != 1 {
		t.Fatalf("next expected version %d, want 1", res.NextExpectedVersion)
	}
	sub, err := s.SubscribeAll(context.Background(), eventstore.Start, tenants)
	if err != nil {
		t.Fatalf("subscribe once the server is up: %v", err)
	}
	defer sub.Close()
	if got := receive(t, sub, nil, 2); len(got) != 2 {
		t.Fatalf("got %d events", len(got))
	}
}

// TestClientStaysClosedAfterAFailedFirstConnection pins the client
// behaviour that the adapter works around: a client whose first connection
// fails answers ErrorCodeConnectionClosed for ever, even once the server is
// up. If this test fails, a new client version reconnects by itself.
func TestClientStaysClosedAfterAFailedFirstConnection(t *testing.T) {
	t.Parallel()
	srv := esdbtest.NewServer(esdbtest.Options{})
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	srv.Stop()
	t.Cleanup(srv.Stop)
	cfg, err := client.ParseConnectionString(srv.URL() + "&maxDiscoverAttempts=2&discoveryInterval=10")
	if err != nil {
		t.Fatal(err)
	}
	cfg.Logger = client.NoopLogging()
	c, err := client.NewClient(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.AppendToStream(context.Background(), "s", client.AppendToStreamOptions{}, client.EventData{EventType: "T"}); err == nil {
		t.Fatal("append with the server down succeeded")
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	_, err = c.AppendToStream(context.Background(), "s", client.AppendToStreamOptions{}, client.EventData{EventType: "T"})
	var e *client.Error
	if !errors.As(err, &e) || e.Code() != client.ErrorCodeConnectionClosed {
		t.Fatalf("append once the server is up: %v, want ErrorCodeConnectionClosed", err)
	}
}

// TestCallsStopAtTheOperationTimeout checks that a call cannot outlive the
// operation timeout even when the caller's context has no deadline.
func TestCallsStopAtTheOperationTimeout(t *testing.T) {
	t.Parallel()
	// A listener that accepts and never answers: the client waits for the
	// server's HTTP/2 settings for ever.
	addr := silentListener(t)
	s := open(t, "esdb://"+addr+"?tls=false&maxDiscoverAttempts=1&gossipTimeout=1", esdb.Options{OperationTimeout: 300 * time.Millisecond})
	start := time.Now()
	_, err := s.ReadStream(context.Background(), "tenant-x", eventstore.Forward, 0, 0)
	if err == nil {
		t.Fatal("read from a silent server succeeded")
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("read returned after %v, want about the operation timeout", d)
	}
}

// silentListener accepts connections and never says a word.
func silentListener(t *testing.T) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var conns []net.Conn
	var mu sync.Mutex
	go func() {
		for {
			c, err := lis.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		lis.Close()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
	})
	return lis.Addr().String()
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
