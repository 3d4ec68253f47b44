package esdbtest_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"io"
	"math/big"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/EventStore/EventStore-Client-Go/v4/esdb"
	"github.com/google/uuid"
	"google.golang.org/grpc/codes"

	"github.com/tenancyhq/tenancy/eventstore/esdb/esdbtest"
)

// These tests drive the test server with the official client, the way the
// adapter does, and pin what the server must answer for the client not to
// fail (or panic, or exit).

func newClient(t *testing.T, url string) *esdb.Client {
	t.Helper()
	cfg, err := esdb.ParseConnectionString(url)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Logger = esdb.NoopLogging()
	c, err := esdb.NewClient(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func start(t *testing.T, opts esdbtest.Options) (*esdbtest.Server, *esdb.Client) {
	t.Helper()
	srv := esdbtest.Start(t, opts)
	return srv, newClient(t, srv.URL())
}

func ctx(t *testing.T) context.Context {
	t.Helper()
	c, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return c
}

func event(typ string) esdb.EventData {
	return esdb.EventData{EventID: uuid.New(), EventType: typ, ContentType: esdb.ContentTypeJson, Data: []byte(`{}`), Metadata: []byte(`{"m":1}`)}
}

func appendTo(t *testing.T, c *esdb.Client, stream string, exp esdb.ExpectedRevision, evs ...esdb.EventData) *esdb.WriteResult {
	t.Helper()
	res, err := c.AppendToStream(ctx(t), stream, esdb.AppendToStreamOptions{ExpectedRevision: exp}, evs...)
	if err != nil {
		t.Fatalf("append to %s: %v", stream, err)
	}
	return res
}

func read(t *testing.T, c *esdb.Client, stream string, opts esdb.ReadStreamOptions, count uint64) ([]*esdb.ResolvedEvent, error) {
	t.Helper()
	rs, err := c.ReadStream(ctx(t), stream, opts, count)
	if err != nil {
		return nil, err
	}
	defer rs.Close()
	var out []*esdb.ResolvedEvent
	for {
		ev, err := rs.Recv()
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return out, err
		}
		out = append(out, ev)
	}
}

func readAll(t *testing.T, c *esdb.Client, opts esdb.ReadAllOptions, count uint64) []*esdb.ResolvedEvent {
	t.Helper()
	rs, err := c.ReadAll(ctx(t), opts, count)
	if err != nil {
		t.Fatal(err)
	}
	defer rs.Close()
	var out []*esdb.ResolvedEvent
	for {
		ev, err := rs.Recv()
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, ev)
	}
}

func code(err error) esdb.ErrorCode {
	var e *esdb.Error
	if errors.As(err, &e) {
		return e.Code()
	}
	return -1
}

func TestRecordedEventsCarryTheMetadataTheClientNeeds(t *testing.T) {
	t.Parallel()
	_, c := start(t, esdbtest.Options{})
	before := time.Now().Add(-time.Second)
	e := event("Created")
	res := appendTo(t, c, "s-1", esdb.NoStream{}, e)
	if res.CommitPosition == 0 || res.CommitPosition != res.PreparePosition {
		t.Errorf("append position %d/%d, want a commit position above 0 equal to the prepare position", res.CommitPosition, res.PreparePosition)
	}
	evs, err := read(t, c, "s-1", esdb.ReadStreamOptions{}, 10)
	if err != nil || len(evs) != 1 {
		t.Fatalf("read: %d events, %v", len(evs), err)
	}
	r := evs[0].Event
	if r.EventID != e.EventID || r.EventType != "Created" || r.ContentType != "application/json" || string(r.UserMetadata) != `{"m":1}` {
		t.Errorf("recorded %+v", r)
	}
	if r.CreatedDate.Before(before) || r.CreatedDate.After(time.Now().Add(time.Second)) {
		t.Errorf("created %v, want about now", r.CreatedDate)
	}
	if r.Position.Commit != res.CommitPosition {
		t.Errorf("read position %v, append position %d", r.Position, res.CommitPosition)
	}
}

func TestAllPositionsStartAboveZeroAndGrow(t *testing.T) {
	t.Parallel()
	_, c := start(t, esdbtest.Options{NoSystemEvents: true})
	appendTo(t, c, "s", esdb.Any{}, event("A"), event("B"))
	all := readAll(t, c, esdb.ReadAllOptions{}, 100)
	if len(all) != 2 || all[0].Event.Position.Commit == 0 || all[1].Event.Position.Commit <= all[0].Event.Position.Commit {
		t.Fatalf("positions: %v", all)
	}
}

func TestReadAllForwardsIncludesItsStartAndBackwardsExcludesIt(t *testing.T) {
	t.Parallel()
	_, c := start(t, esdbtest.Options{})
	appendTo(t, c, "s", esdb.Any{}, event("A"), event("B"), event("C"))
	all := readAll(t, c, esdb.ReadAllOptions{}, 100)
	n := len(all)
	b := all[n-2].Event // B
	fwd := readAll(t, c, esdb.ReadAllOptions{From: b.Position}, 100)
	if len(fwd) != 2 || fwd[0].Event.EventType != "B" {
		t.Errorf("forwards from B: %d events starting %s, want B, C", len(fwd), fwd[0].Event.EventType)
	}
	back := readAll(t, c, esdb.ReadAllOptions{Direction: esdb.Backwards, From: b.Position}, 1)
	if len(back) != 1 || back[0].Event.EventType != "A" {
		t.Errorf("backwards from B: %v, want A", back)
	}
	end := readAll(t, c, esdb.ReadAllOptions{Direction: esdb.Backwards, From: esdb.End{}}, 1)
	if len(end) != 1 || end[0].Event.EventType != "C" {
		t.Errorf("backwards from the end: %v, want C", end)
	}
	if n <= 3 || all[0].Event.StreamID[0] != '$' {
		t.Errorf("a fresh server's $all starts with system events; got %d events, first in %s", n, all[0].Event.StreamID)
	}
}

func TestReadStream(t *testing.T) {
	t.Parallel()
	_, c := start(t, esdbtest.Options{})
	appendTo(t, c, "s", esdb.NoStream{}, event("0"), event("1"), event("2"), event("3"))
	types := func(evs []*esdb.ResolvedEvent) (s string) {
		for _, e := range evs {
			s += e.Event.EventType
		}
		return s
	}
	for _, tc := range []struct {
		name  string
		opts  esdb.ReadStreamOptions
		count uint64
		want  string
	}{
		{"forwards from the start", esdb.ReadStreamOptions{}, 100, "0123"},
		{"forwards from 1, 2 events", esdb.ReadStreamOptions{From: esdb.Revision(1)}, 2, "12"},
		{"forwards past the end", esdb.ReadStreamOptions{From: esdb.Revision(9)}, 2, ""},
		{"backwards from the end", esdb.ReadStreamOptions{Direction: esdb.Backwards, From: esdb.End{}}, 2, "32"},
		{"backwards from 1", esdb.ReadStreamOptions{Direction: esdb.Backwards, From: esdb.Revision(1)}, 100, "10"},
		{"backwards from past the end", esdb.ReadStreamOptions{Direction: esdb.Backwards, From: esdb.Revision(9)}, 1, "3"},
	} {
		evs, err := read(t, c, "s", tc.opts, tc.count)
		if err != nil || types(evs) != tc.want {
			t.Errorf("%s: %q, %v; want %q", tc.name, types(evs), err, tc.want)
		}
	}
	if _, err := read(t, c, "missing", esdb.ReadStreamOptions{}, 1); code(err) != esdb.ErrorCodeResourceNotFound {
		t.Errorf("read of a missing stream: %v, want ErrorCodeResourceNotFound", err)
	}
}

func TestAppendChecksTheExpectedRevision(t *testing.T) {
	t.Parallel()
	_, c := start(t, esdbtest.Options{})
	appendTo(t, c, "s", esdb.NoStream{}, event("0"), event("1"))
	for _, tc := range []struct {
		name string
		exp  esdb.ExpectedRevision
		ok   bool
		got  string // the current revision the error reports
	}{
		{"no stream", esdb.NoStream{}, false, "1"},
		{"stale", esdb.Revision(0), false, "1"},
		{"ahead", esdb.Revision(5), false, "1"},
		{"exact", esdb.Revision(1), true, ""},
		{"stream exists", esdb.StreamExists{}, true, ""},
		{"any", esdb.Any{}, true, ""},
	} {
		_, err := c.AppendToStream(ctx(t), "s", esdb.AppendToStreamOptions{ExpectedRevision: tc.exp}, event(tc.name))
		if tc.ok != (err == nil) {
			t.Errorf("%s: %v", tc.name, err)
		}
		if !tc.ok && (code(err) != esdb.ErrorCodeWrongExpectedVersion || !strings.Contains(err.Error(), "but got '"+tc.got+"'")) {
			t.Errorf("%s: %v, want a wrong expected version at %s", tc.name, err, tc.got)
		}
	}
	_, err := c.AppendToStream(ctx(t), "new", esdb.AppendToStreamOptions{ExpectedRevision: esdb.Revision(0)}, event("x"))
	if code(err) != esdb.ErrorCodeWrongExpectedVersion || !strings.Contains(err.Error(), "but got 'no_stream'") {
		t.Errorf("exact revision of a missing stream: %v", err)
	}
}

func TestRetriedAppendsAreRecognised(t *testing.T) {
	t.Parallel()
	for _, noPosition := range []bool{false, true} {
		_, c := start(t, esdbtest.Options{IdempotentWithoutPosition: noPosition})
		a, b := event("A"), event("B")
		first := appendTo(t, c, "s", esdb.NoStream{}, a, b)
		appendTo(t, c, "s", esdb.Revision(1), event("C")) // the stream moves on
		for _, exp := range []esdb.ExpectedRevision{esdb.NoStream{}, esdb.Any{}} {
			again := appendTo(t, c, "s", exp, a, b)
			wantPos := first.CommitPosition
			if noPosition {
				wantPos = 0
			}
			if again.NextExpectedVersion != 1 || again.CommitPosition != wantPos {
				t.Errorf("retry at %T (no position %v): %+v, want revision 1 at %d", exp, noPosition, again, wantPos)
			}
		}
		if evs, _ := read(t, c, "s", esdb.ReadStreamOptions{}, 100); len(evs) != 3 {
			t.Errorf("stream has %d events after retries, want 3", len(evs))
		}
		// Same first id, different second: not a retry.
		_, err := c.AppendToStream(ctx(t), "s", esdb.AppendToStreamOptions{ExpectedRevision: esdb.NoStream{}}, a, event("D"))
		if code(err) != esdb.ErrorCodeWrongExpectedVersion {
			t.Errorf("partial retry: %v, want a wrong expected version", err)
		}
	}
}

// TestAnEventIDOfAnotherStreamIsStored pins a server behaviour the adapter
// makes up for: ids are recognised within a stream only.
func TestAnEventIDOfAnotherStreamIsStored(t *testing.T) {
	t.Parallel()
	_, c := start(t, esdbtest.Options{})
	e := event("A")
	appendTo(t, c, "s-1", esdb.NoStream{}, e)
	appendTo(t, c, "s-2", esdb.NoStream{}, e)
	if evs, err := read(t, c, "s-2", esdb.ReadStreamOptions{}, 10); err != nil || len(evs) != 1 || evs[0].Event.EventID != e.EventID {
		t.Fatalf("s-2: %v, %v", evs, err)
	}
}

func TestDeleteHidesAStreamUntilItIsWrittenAgain(t *testing.T) {
	t.Parallel()
	_, c := start(t, esdbtest.Options{})
	appendTo(t, c, "s", esdb.NoStream{}, event("0"), event("1"))
	if _, err := c.DeleteStream(ctx(t), "s", esdb.DeleteStreamOptions{ExpectedRevision: esdb.Revision(0)}); err == nil {
		t.Fatal("delete at a stale revision succeeded")
	}
	res, err := c.DeleteStream(ctx(t), "s", esdb.DeleteStreamOptions{ExpectedRevision: esdb.Revision(1)})
	if err != nil || res.Position.Commit == 0 {
		t.Fatalf("delete: %+v, %v", res, err)
	}
	if _, err := read(t, c, "s", esdb.ReadStreamOptions{}, 10); code(err) != esdb.ErrorCodeResourceNotFound {
		t.Fatalf("read after delete: %v", err)
	}
	w := appendTo(t, c, "s", esdb.NoStream{}, event("2"))
	if w.NextExpectedVersion != 2 {
		t.Errorf("revision after writing a deleted stream again: %d, want 2", w.NextExpectedVersion)
	}
	evs, err := read(t, c, "s", esdb.ReadStreamOptions{}, 10)
	if err != nil || len(evs) != 1 || evs[0].Event.EventNumber != 2 {
		t.Errorf("after writing again: %v, %v; want only revision 2", evs, err)
	}
}

func TestTombstoneDeletesForEver(t *testing.T) {
	t.Parallel()
	_, c := start(t, esdbtest.Options{})
	appendTo(t, c, "s", esdb.NoStream{}, event("0"))
	res, err := c.TombstoneStream(ctx(t), "s", esdb.TombstoneStreamOptions{ExpectedRevision: esdb.Any{}})
	if err != nil || res.Position.Commit == 0 {
		t.Fatalf("tombstone: %+v, %v", res, err)
	}
	if _, err := read(t, c, "s", esdb.ReadStreamOptions{}, 10); code(err) != esdb.ErrorCodeStreamDeleted {
		t.Errorf("read: %v, want ErrorCodeStreamDeleted", err)
	}
	if _, err := c.AppendToStream(ctx(t), "s", esdb.AppendToStreamOptions{}, event("1")); code(err) != esdb.ErrorCodeStreamDeleted {
		t.Errorf("append: %v, want ErrorCodeStreamDeleted", err)
	}
	if _, err := c.DeleteStream(ctx(t), "s", esdb.DeleteStreamOptions{ExpectedRevision: esdb.Any{}}); code(err) != esdb.ErrorCodeStreamDeleted {
		t.Errorf("delete: %v, want ErrorCodeStreamDeleted", err)
	}
}

// subscriptionEvents collects what a subscription sends until stop says so.
func subscriptionEvents(t *testing.T, sub *esdb.Subscription, stop func(events []string, caughtUp bool) bool) (events []string, checkpoints []esdb.Position, caughtUp bool) {
	t.Helper()
	for !stop(events, caughtUp) {
		ev := sub.Recv()
		switch {
		case ev.SubscriptionDropped != nil:
			t.Fatalf("dropped: %v", ev.SubscriptionDropped.Error)
		case ev.EventAppeared != nil:
			events = append(events, ev.EventAppeared.Event.EventType)
		case ev.CheckPointReached != nil:
			checkpoints = append(checkpoints, *ev.CheckPointReached)
		case ev.CaughtUp != nil:
			caughtUp = true
		}
	}
	return events, checkpoints, caughtUp
}

func TestFilteredSubscriptionCatchesUpCheckpointsAndGoesLive(t *testing.T) {
	t.Parallel()
	_, c := start(t, esdbtest.Options{})
	appendTo(t, c, "keep-1", esdb.NoStream{}, event("k1"))
	for i := 0; i < 100; i++ {
		appendTo(t, c, "skip-1", esdb.Any{}, event("s"))
	}
	appendTo(t, c, "keep-1", esdb.Revision(0), event("k2"))
	sub, err := c.SubscribeToAll(ctx(t), esdb.SubscribeToAllOptions{
		From:   esdb.Start{},
		Filter: &esdb.SubscriptionFilter{Type: esdb.StreamFilterType, Prefixes: []string{"keep-"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	evs, cps, _ := subscriptionEvents(t, sub, func(_ []string, caughtUp bool) bool { return caughtUp })
	if len(evs) != 2 || evs[0] != "k1" || evs[1] != "k2" {
		t.Errorf("catch-up events %v, want k1 k2", evs)
	}
	// 100+ considered events at a window of 32: three interval checkpoints
	// and one when going live.
	if len(cps) < 4 {
		t.Errorf("%d checkpoints, want at least 4", len(cps))
	}
	for i := 1; i < len(cps); i++ {
		if cps[i].Commit < cps[i-1].Commit {
			t.Errorf("checkpoints go back: %v", cps)
		}
	}
	appendTo(t, c, "skip-1", esdb.Any{}, event("s"))
	appendTo(t, c, "keep-2", esdb.NoStream{}, event("k3"))
	live, _, _ := subscriptionEvents(t, sub, func(evs []string, _ bool) bool { return len(evs) == 1 })
	if live[0] != "k3" {
		t.Errorf("live event %v, want k3", live)
	}
}

func TestSubscriptionFromAPositionStartsAfterIt(t *testing.T) {
	t.Parallel()
	_, c := start(t, esdbtest.Options{})
	res := appendTo(t, c, "s", esdb.NoStream{}, event("A"))
	appendTo(t, c, "s", esdb.Revision(0), event("B"))
	sub, err := c.SubscribeToAll(ctx(t), esdb.SubscribeToAllOptions{From: esdb.Position{Commit: res.CommitPosition, Prepare: res.PreparePosition}})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	evs, _, _ := subscriptionEvents(t, sub, func(_ []string, caughtUp bool) bool { return caughtUp })
	if len(evs) != 1 || evs[0] != "B" {
		t.Errorf("events after A: %v, want B", evs)
	}
}

func TestSubscriptionFromTheEndIsLiveOnly(t *testing.T) {
	t.Parallel()
	_, c := start(t, esdbtest.Options{})
	appendTo(t, c, "s", esdb.NoStream{}, event("old"))
	sub, err := c.SubscribeToAll(ctx(t), esdb.SubscribeToAllOptions{}) // the client's default start: the end
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	subscriptionEvents(t, sub, func(_ []string, caughtUp bool) bool { return caughtUp })
	appendTo(t, c, "s", esdb.Revision(0), event("new"))
	evs, _, _ := subscriptionEvents(t, sub, func(evs []string, _ bool) bool { return len(evs) == 1 })
	if evs[0] != "new" {
		t.Errorf("first event %s, want new", evs[0])
	}
}

func TestRestartKeepsDataAndPort(t *testing.T) {
	t.Parallel()
	srv, c := start(t, esdbtest.Options{})
	addr := srv.Addr()
	appendTo(t, c, "s", esdb.NoStream{}, event("A"))
	srv.Stop()
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	if srv.Addr() != addr {
		t.Fatalf("restarted on %s, want %s", srv.Addr(), addr)
	}
	c2 := newClient(t, srv.URL())
	if evs, err := read(t, c2, "s", esdb.ReadStreamOptions{}, 10); err != nil || len(evs) != 1 {
		t.Fatalf("after restart: %d events, %v", len(evs), err)
	}
}

func TestDropSubscriptions(t *testing.T) {
	t.Parallel()
	for _, cd := range []codes.Code{codes.OK, codes.Unavailable} {
		srv, c := start(t, esdbtest.Options{})
		sub, err := c.SubscribeToAll(ctx(t), esdb.SubscribeToAllOptions{From: esdb.Start{}})
		if err != nil {
			t.Fatal(err)
		}
		subscriptionEvents(t, sub, func(_ []string, caughtUp bool) bool { return caughtUp })
		if n := srv.DropSubscriptions(cd); n != 1 {
			t.Fatalf("dropped %d", n)
		}
		for {
			ev := sub.Recv()
			if ev.SubscriptionDropped != nil {
				if cd == codes.OK && !errors.Is(ev.SubscriptionDropped.Error, io.EOF) {
					t.Errorf("clean drop: %v, want EOF", ev.SubscriptionDropped.Error)
				}
				break
			}
		}
		sub.Close()
	}
}

func TestGossipAnswersForDiscovery(t *testing.T) {
	t.Parallel()
	srv := esdbtest.Start(t, esdbtest.Options{})
	c := newClient(t, "esdb+discover://"+srv.Addr()+"?tls=false")
	appendTo(t, c, "s", esdb.NoStream{}, event("A"))
	if evs, err := read(t, c, "s", esdb.ReadStreamOptions{}, 10); err != nil || len(evs) != 1 {
		t.Fatalf("read through discovery: %d events, %v", len(evs), err)
	}
}

// TestCredentialsOnlyOverTLS pins a client behaviour (esdb/endpoint.go,
// esdb/options.go): credentials go with every call over TLS, and with none
// when tls=false.
func TestCredentialsOnlyOverTLS(t *testing.T) {
	t.Parallel()
	plain := esdbtest.Start(t, esdbtest.Options{})
	c := newClient(t, "esdb://admin:changeit@"+plain.Addr()+"?tls=false")
	appendTo(t, c, "s", esdb.NoStream{}, event("A"))
	if n := plain.CallsWithCredentials(); n != 0 {
		t.Errorf("%d calls carried credentials over plain text", n)
	}

	secure := esdbtest.Start(t, esdbtest.Options{TLS: selfSigned(t)})
	c = newClient(t, "esdb://admin:changeit@"+secure.Addr()+"?tlsVerifyCert=false")
	appendTo(t, c, "s", esdb.NoStream{}, event("A"))
	if n := secure.CallsWithCredentials(); n == 0 {
		t.Errorf("no call carried credentials over TLS")
	}
}

// selfSigned makes a TLS configuration with a fresh certificate for 127.0.0.1.
func selfSigned(t *testing.T) *tls.Config {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "esdbtest"},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}}
}
