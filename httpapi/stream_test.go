package httpapi_test

import (
	"bufio"
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/tenancyhq/tenancy/service"
)

// sseEvent is one server-sent event of the live stream.
type sseEvent struct {
	id   string
	data map[string]any
}

// openStream opens GET /api/v1/admin/events/stream and returns its events
// as they come; the stream closes when the test ends.
func openStream(t *testing.T, s *testService, headers ...string) (<-chan sseEvent, *http.Response) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	req, err := http.NewRequestWithContext(ctx, "GET", s.base+"/api/v1/admin/events/stream", nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { res.Body.Close() })
	out := make(chan sseEvent, 64)
	go func() {
		defer close(out)
		sc := bufio.NewScanner(res.Body)
		var ev sseEvent
		for sc.Scan() {
			line := sc.Text()
			switch {
			case strings.HasPrefix(line, "id: "):
				ev.id = strings.TrimPrefix(line, "id: ")
			case strings.HasPrefix(line, "data: "):
				_ = json.Unmarshal([]byte(strings.TrimPrefix(line, "data: ")), &ev.data)
			case line == "" && ev.data != nil:
				out <- ev
				ev = sseEvent{}
			}
		}
	}()
	return out, res
}

func nextEvent(t *testing.T, events <-chan sseEvent) sseEvent {
	t.Helper()
	select {
	case ev, ok := <-events:
		if !ok {
			t.Fatal("the stream ended")
		}
		return ev
	case <-time.After(15 * time.Second):
		t.Fatal("no event on the stream within 15 s")
	}
	return sseEvent{}
}

// TestLiveEventStreamSendsNewEventsAndResumesFromLastEventID: the stream
// starts at the head, sends each new tenant event (its feed position as
// the SSE id, no event data), and a client reconnecting with Last-Event-ID
// gets what came after it.
func TestLiveEventStreamSendsNewEventsAndResumesFromLastEventID(t *testing.T) {
	t.Parallel()
	s := startService(t)
	s.createTenant("Before The Stream")
	events, res := openStream(t, s)
	if res.StatusCode != 200 || !strings.HasPrefix(res.Header.Get("Content-Type"), "text/event-stream") {
		t.Fatalf("GET stream: %s, Content-Type %q", res.Status, res.Header.Get("Content-Type"))
	}
	id, _ := s.createTenant("Streamed Co")
	created := nextEvent(t, events)
	if created.data["type"] != "TenantCreated" || created.data["tenant_id"] != id || created.data["version"] != 0.0 {
		t.Fatalf("first event %v, want TenantCreated of %s (the tenant made before the stream is not sent)", created.data, id)
	}
	if created.id == "" || created.id != created.data["position"] {
		t.Errorf("SSE id %q, position %v", created.id, created.data["position"])
	}
	if _, ok := created.data["data"]; ok {
		t.Errorf("the stream sends event data: %v", created.data)
	}
	s.must(200, "POST", "/api/v1/tenants/"+id+"/complete-provisioning", nil)
	if ev := nextEvent(t, events); ev.data["type"] != "ProvisioningCompleted" {
		t.Errorf("second event %v", ev.data)
	}

	// Reconnecting after the first event replays from there.
	again, _ := openStream(t, s, "Last-Event-ID", created.id)
	if ev := nextEvent(t, again); ev.data["type"] != "ProvisioningCompleted" || ev.data["tenant_id"] != id {
		t.Errorf("after Last-Event-ID %s: %v", created.id, ev.data)
	}
	checkProblem(t, s.do("GET", "/api/v1/admin/events/stream?after=nonsense", nil), 400, "after", "position")
}

// TestShutdownEndsLiveEventStreams: an open stream does not hold the
// graceful shutdown for its timeout.
func TestShutdownEndsLiveEventStreams(t *testing.T) {
	t.Parallel()
	s := startService(t)
	events, _ := openStream(t, s)
	s.createTenant("Shutdown Streamer")
	nextEvent(t, events)
	start := time.Now()
	s.stop()
	if err, done := s.wait(10 * time.Second); !done {
		t.Fatal("Run did not return within 10 s with a live stream open")
	} else if err != nil {
		t.Fatalf("Run returned %v", err)
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("shutdown took %s with a live stream open", took)
	}
	select {
	case _, ok := <-events:
		for ok {
			_, ok = <-events
		}
	case <-time.After(5 * time.Second):
		t.Error("the stream was not closed by the shutdown")
	}
}

// TestLiveEventStreamOutlivesTheRequestDeadline: the request deadline
// (HTTP_REQUEST_TIMEOUT) ends ordinary requests, not a live stream.
func TestLiveEventStreamOutlivesTheRequestDeadline(t *testing.T) {
	t.Parallel()
	s := startServiceWith(t, service.Config{ExternalProvisioning: true, HTTPRequestTimeout: time.Second})
	events, _ := openStream(t, s)
	time.Sleep(2 * time.Second)
	id, _ := s.createTenant("After The Deadline Co")
	if ev := nextEvent(t, events); ev.data["tenant_id"] != id {
		t.Fatalf("after the request deadline: %v, want the new tenant's event", ev.data)
	}
}
