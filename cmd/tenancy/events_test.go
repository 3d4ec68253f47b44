package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tenancyhq/tenancy/aggregate"
	"github.com/tenancyhq/tenancy/commands"
	"github.com/tenancyhq/tenancy/eventstore"
	"github.com/tenancyhq/tenancy/eventstore/memory"
	"github.com/tenancyhq/tenancy/internal/natsserver"
	"github.com/tenancyhq/tenancy/projections"
	"github.com/tenancyhq/tenancy/projections/natspub"
	"github.com/tenancyhq/tenancy/tenantlog"
)

// lockedBuffer is an io.Writer the tail goroutine writes while the test reads.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func (b *lockedBuffer) lines() []string {
	s := strings.TrimRight(b.String(), "\n")
	if s == "" {
		return nil
	}
	return strings.Split(s, "\n")
}

// eventsOfTenants makes real tenant events (command handler, in-memory
// store): per tenant TenantCreated, ProvisioningCompleted, TrialStarted or
// TenantActivated, TenantSuspended.
func eventsOfTenants(t *testing.T, names ...string) []eventstore.RecordedEvent {
	t.Helper()
	store := memory.New()
	h := commands.NewHandler(store, commands.Options{})
	ctx := context.Background()
	for i, name := range names {
		m := aggregate.Metadata{Actor: "user:alice", CorrelationID: fmt.Sprintf("corr-%d", i)}
		res, err := h.Create(ctx, aggregate.Create{Name: name, Edition: "professional", Region: "eu-west-1"}, m)
		if err != nil {
			t.Fatal(err)
		}
		for _, cmd := range []aggregate.Command{aggregate.CompleteProvisioning{}, aggregate.Suspend{Reason: aggregate.ReasonAdminAction}} {
			if _, err := h.Execute(ctx, commands.Request{TenantID: res.TenantID, Command: cmd, Metadata: m}); err != nil {
				t.Fatal(err)
			}
		}
	}
	evs, err := store.ReadAll(ctx, eventstore.Start, eventstore.Filter{StreamPrefixes: []string{aggregate.StreamPrefix}}, 0)
	if err != nil {
		t.Fatal(err)
	}
	return evs
}

// publisher returns a function publishing events to the stream on url, as
// the service's projection does.
func publisher(t *testing.T, url string) func([]eventstore.RecordedEvent) {
	t.Helper()
	nc, js, err := natspub.Dial(url, 5*time.Second, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	p := natspub.New(js, natspub.Options{Stream: &natspub.StreamOptions{}})
	return func(evs []eventstore.RecordedEvent) {
		t.Helper()
		batch, _ := projections.Decode(evs, nil)
		if err := p.Apply(context.Background(), nil, batch); err != nil {
			t.Fatal(err)
		}
	}
}

// tail runs "tenancy events tail args..." in-process until stop is called.
type tail struct {
	out, errs *lockedBuffer
	cancel    context.CancelFunc
	done      chan error
}

func startTail(t *testing.T, args ...string) *tail {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	tl := &tail{out: &lockedBuffer{}, errs: &lockedBuffer{}, cancel: cancel, done: make(chan error, 1)}
	cmd := newEventsCmd(&options{logFormat: "text", logLevel: "info"})
	cmd.SetArgs(append([]string{"tail"}, args...))
	cmd.SetOut(tl.out)
	cmd.SetErr(tl.errs)
	go func() { tl.done <- cmd.ExecuteContext(ctx) }()
	t.Cleanup(func() { _ = tl.stop() })
	// Wait until the consumer exists, so "new events only" is well defined.
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(tl.errs.String(), "tailing tenant events") {
		select {
		case err := <-tl.done:
			t.Fatalf("tail %v ended before it started: %v\n%s", args, err, tl.errs)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("tail %v did not start:\n%s", args, tl.errs)
		}
		time.Sleep(10 * time.Millisecond)
	}
	return tl
}

// waitLines waits for n output lines, then a little longer for any extra.
func (tl *tail) waitLines(t *testing.T, n int) []string {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for len(tl.out.lines()) < n {
		if time.Now().After(deadline) {
			t.Fatalf("tail printed %d lines, want %d:\n%s\nstderr:\n%s", len(tl.out.lines()), n, tl.out, tl.errs)
		}
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(300 * time.Millisecond)
	return tl.out.lines()
}

func (tl *tail) stop() error {
	tl.cancel()
	select {
	case err := <-tl.done:
		tl.done <- err
		return err
	case <-time.After(10 * time.Second):
		return fmt.Errorf("tail did not stop")
	}
}

func TestEventsTailPrintsALinePerEvent(t *testing.T) {
	t.Parallel()
	url := natsserver.StartTest(t)
	evs := eventsOfTenants(t, "Tail One", "Tail Two")
	publisher(t, url)(evs)

	tl := startTail(t, "--nats-url", url, "--from-start")
	lines := tl.waitLines(t, len(evs))
	if err := tl.stop(); err != nil {
		t.Fatal(err)
	}
	if len(lines) != len(evs) {
		t.Fatalf("tail printed %d lines for %d events:\n%s", len(lines), len(evs), tl.out)
	}
	for i, ev := range evs {
		env, err := tenantlog.Decode(ev)
		if err != nil {
			t.Fatal(err)
		}
		tenant := strings.TrimPrefix(ev.Stream, aggregate.StreamPrefix)
		for _, want := range []string{
			env.OccurredAt.UTC().Format(lineTime), " " + ev.Type + " ", "tenant=" + tenant,
			fmt.Sprintf("version=%d", ev.Version), "actor=user:alice", "correlation=" + env.Metadata.CorrelationID,
		} {
			if !strings.Contains(lines[i], want) {
				t.Errorf("line %d %q lacks %q", i, lines[i], want)
			}
		}
	}
}

func TestEventsTailJSONPrintsTheCloudEvents(t *testing.T) {
	t.Parallel()
	url := natsserver.StartTest(t)
	publish := publisher(t, url)
	publish(eventsOfTenants(t, "Old"))

	// Without --from-start only events published after the start arrive.
	tl := startTail(t, "--nats-url", url, "--json")
	evs := eventsOfTenants(t, "New")
	publish(evs)
	lines := tl.waitLines(t, len(evs))
	if len(lines) != len(evs) {
		t.Fatalf("tail printed %d lines, want the %d new events only:\n%s", len(lines), len(evs), tl.out)
	}
	for i, line := range lines {
		var ce natspub.CloudEvent
		if err := json.Unmarshal([]byte(line), &ce); err != nil {
			t.Fatalf("line %d is not JSON: %v\n%s", i, err, line)
		}
		if ce.SpecVersion != "1.0" || ce.ID != evs[i].ID.String() || ce.Type != "dev.tenancy."+evs[i].Type || len(ce.Data) == 0 {
			t.Errorf("line %d: %+v, want the CloudEvent of %s %s", i, ce, evs[i].Type, evs[i].ID)
		}
	}
}

func TestEventsTailFiltersByTypeAndTenant(t *testing.T) {
	t.Parallel()
	url := natsserver.StartTest(t)
	evs := eventsOfTenants(t, "Filter One", "Filter Two")
	publisher(t, url)(evs)
	tenant := strings.TrimPrefix(evs[len(evs)-1].Stream, aggregate.StreamPrefix)

	tl := startTail(t, "--nats-url", url, "--from-start", "--type", "TenantSuspended", "--tenant", tenant)
	lines := tl.waitLines(t, 1)
	if len(lines) != 1 || !strings.Contains(lines[0], "TenantSuspended") || !strings.Contains(lines[0], tenant) {
		t.Fatalf("want the one TenantSuspended of %s, got:\n%s", tenant, tl.out)
	}
}

func TestEventsTailDurableResumesWhereItStopped(t *testing.T) {
	t.Parallel()
	url := natsserver.StartTest(t)
	publish := publisher(t, url)
	first := eventsOfTenants(t, "Durable One")
	publish(first)

	tl := startTail(t, "--nats-url", url, "--durable", "audit", "--from-start")
	tl.waitLines(t, len(first))
	if err := tl.stop(); err != nil {
		t.Fatal(err)
	}
	second := eventsOfTenants(t, "Durable Two")
	publish(second)

	tl = startTail(t, "--nats-url", url, "--durable", "audit", "--from-start")
	lines := tl.waitLines(t, len(second))
	if len(lines) != len(second) {
		t.Fatalf("the durable consumer printed %d lines on its second run, want the %d events published since:\n%s", len(lines), len(second), tl.out)
	}
	for i, ev := range second {
		if !strings.Contains(lines[i], ev.Type) {
			t.Errorf("line %d %q, want %s", i, lines[i], ev.Type)
		}
	}
}

func TestEventsTailRefusesBadFlagsAndAMissingStream(t *testing.T) {
	t.Parallel()
	url := natsserver.StartTest(t)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--tenant", "nope"}, "--tenant"},
		{[]string{"--type", "Tenant.*"}, "--type"},
		{nil, "no stream TENANCY_EVENTS"},
	} {
		cmd := newEventsCmd(&options{logFormat: "text", logLevel: "error"})
		cmd.SetArgs(append([]string{"tail", "--nats-url", url}, tc.args...))
		var out bytes.Buffer
		cmd.SetOut(&out)
		cmd.SetErr(&out)
		cmd.SilenceUsage = true
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		err := cmd.ExecuteContext(ctx)
		cancel()
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("tail %v: %v, want an error about %s", tc.args, err, tc.want)
		}
	}
}
