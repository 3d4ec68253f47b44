package loadgen_test

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tenancyhq/tenancy/internal/auth"
	"github.com/tenancyhq/tenancy/internal/natsserver"
	"github.com/tenancyhq/tenancy/internal/pgtest"
	"github.com/tenancyhq/tenancy/loadgen"
	"github.com/tenancyhq/tenancy/service"
)

// server is a real service (Postgres, embedded NATS, a token verifier) for
// the load to drive.
type server struct {
	base, token, nats string
}

func startServer(t *testing.T, external bool) server {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	secret := []byte(strings.Repeat("s", 40))
	v, err := auth.NewVerifier(ctx, auth.Config{Secret: secret})
	if err != nil {
		t.Fatal(err)
	}
	tok, err := auth.Mint(secret, "bench", []string{auth.ScopeAdmin}, nil, time.Hour, "", "")
	if err != nil {
		t.Fatal(err)
	}
	natsURL := natsserver.StartTest(t)
	a, err := service.Open(ctx, service.Config{DatabaseURL: pgtest.NewDatabase(t), HTTPAddr: "127.0.0.1:0", Migrate: true,
		Projections: true, ExternalProvisioning: external, DataDir: t.TempDir(), Auth: v, NATSURL: natsURL})
	if err != nil {
		t.Fatalf("service.Open: %v", err)
	}
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("run: %v", err)
		}
		a.Close()
	})
	return server{base: "http://" + a.Addr(), token: tok, nats: natsURL}
}

// ordered fails unless the percentiles of l are in order and l has samples.
func ordered(t *testing.T, what string, l loadgen.Latency) {
	t.Helper()
	if l.N == 0 || l.P50 <= 0 || l.P50 > l.P99 || l.P99 > l.P999 || l.P999 > l.Max {
		t.Errorf("%s: latency %+v: want samples and 0 < p50 <= p99 <= p999 <= max", what, l)
	}
}

func TestRunDrivesEveryOperationAndReportsWhatItSaw(t *testing.T) {
	t.Parallel()
	s := startServer(t, false)
	var snaps []loadgen.Snapshot
	var mu sync.Mutex
	// Equal weights and 4 s: every operation is drawn many times even on a
	// loaded machine (the default mix gives lists 1 draw in 20, and a 2 s
	// run beside another make test drew none).
	rep, err := loadgen.Run(context.Background(), loadgen.Config{BaseURL: s.base, Token: s.token, Duration: 4 * time.Second,
		Concurrency: 4, Tenants: 4, NATSURL: s.nats, Mix: loadgen.Mix{Create: 1, Command: 1, Get: 1, List: 1, Evaluate: 1}}, func(sn loadgen.Snapshot) {
		mu.Lock()
		snaps = append(snaps, sn)
		mu.Unlock()
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, op := range loadgen.Ops {
		st := rep.Op(op)
		if st.OK == 0 || st.Failed != 0 || len(st.Errors) != 0 || st.PerSecond <= 0 {
			t.Errorf("%s: %+v: want answers and no errors", op, st)
		}
		ordered(t, string(op), st.Latency)
	}
	if rep.Errors() != 0 || rep.InDoubt != 0 {
		t.Errorf("errors %d, in doubt %d", rep.Errors(), rep.InDoubt)
	}
	if rep.Setup.Tenants != 4 {
		t.Errorf("setup made %d tenants, want 4", rep.Setup.Tenants)
	}
	ryw := rep.ReadYourWrites
	if ryw.Checks != rep.Op(loadgen.OpCommand).OK || ryw.Stale != 0 || len(ryw.Errors) != 0 {
		t.Errorf("read-your-writes %+v after %d commands: want a check each, none stale", ryw, rep.Op(loadgen.OpCommand).OK)
	}
	ordered(t, "read-your-writes plain", ryw.Plain)
	ordered(t, "read-your-writes token", ryw.Token)

	// Every create and command acknowledged is there, once, with its own
	// key; the setup's creates too.
	wantAcks := rep.Setup.Tenants + rep.Op(loadgen.OpCreate).OK + rep.Op(loadgen.OpCommand).OK
	if len(rep.Acknowledged) != wantAcks {
		t.Errorf("%d acknowledged, want %d", len(rep.Acknowledged), wantAcks)
	}
	keys := map[string]bool{}
	for _, a := range rep.Acknowledged {
		if a.Tenant == "" || a.Token == "" || keys[a.IdempotencyKey] || (a.Op == loadgen.OpCommand && a.Version == 0) {
			t.Errorf("acknowledged %+v: want a tenant, a token, a key of its own, a version after the create", a)
		}
		keys[a.IdempotencyKey] = true
	}
	if rep.NATS == nil || rep.NATS.Missing != 0 || rep.NATS.Delivered != len(rep.Acknowledged) {
		t.Fatalf("NATS %+v: want every one of the %d acknowledged commands delivered", rep.NATS, len(rep.Acknowledged))
	}
	ordered(t, "NATS", rep.NATS.Latency)
	if c := rep.Ceiling; c == nil || c.OK == 0 || c.Failed != 0 || rep.CeilingRatio <= 0 || rep.CeilingRatio > 1 {
		t.Errorf("ceiling %+v, ratio %v: want GET /health/live measured, faster than the mix", c, rep.CeilingRatio)
	}

	mu.Lock()
	n := len(snaps)
	mu.Unlock()
	if n == 0 {
		t.Error("no progress snapshot in a 2 s run")
	}
	if _, err := json.Marshal(rep); err != nil {
		t.Error(err)
	}
}

// TestCommandsSurviveTheServerGoingAway cuts the connection to the service
// for a while mid-run: the load counts the failures, retries the commands
// with their keys and goes on; every command it reports acknowledged is
// in the tenant's history exactly once, and its event reached NATS.
func TestCommandsSurviveTheServerGoingAway(t *testing.T) {
	t.Parallel()
	s := startServer(t, true)
	p := startProxy(t, strings.TrimPrefix(s.base, "http://"))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	type result struct {
		rep loadgen.Report
		err error
	}
	res := make(chan result, 1)
	var first sync.Once
	running := make(chan struct{})
	go func() {
		rep, err := loadgen.Run(ctx, loadgen.Config{BaseURL: "http://" + p.addr(), Token: s.token, Concurrency: 4, Tenants: 2,
			Mix: loadgen.Mix{Command: 1}, RequestTimeout: 2 * time.Second, Ceiling: -1, NATSURL: s.nats}, func(sn loadgen.Snapshot) {
			if !sn.Setup && sn.OK > 0 {
				first.Do(func() { close(running) })
			}
		})
		res <- result{rep, err}
	}()
	select {
	case <-running:
	case <-time.After(60 * time.Second):
		t.Fatal("the load did not start")
	}
	p.cut()
	time.Sleep(500 * time.Millisecond) // an outage of some length, not a synchronization
	p.restore()
	// Run until commands went through after the outage, then stop.
	deadline := time.Now().Add(30 * time.Second)
	for p.accepted() < 2 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	time.Sleep(300 * time.Millisecond)
	cancel()
	r := <-res
	if r.err != nil {
		t.Fatal(r.err)
	}
	st := r.rep.Op(loadgen.OpCommand)
	if st.OK == 0 || st.Errors["connection"]+st.Errors["timeout"] == 0 || st.Retries == 0 || r.rep.InDoubt != 0 {
		t.Fatalf("commands %+v, in doubt %d: want answers, connection failures, retries and none in doubt", st, r.rep.InDoubt)
	}
	// Ended by its context, the run still waited for the last events.
	if n := r.rep.NATS; n == nil || n.Missing != 0 || n.Delivered != len(r.rep.Acknowledged) {
		t.Errorf("NATS %+v for %d acknowledged commands: want every one delivered", n, len(r.rep.Acknowledged))
	}
	// Each acknowledged key made exactly one event, at the version its
	// answer gave.
	exports := map[string][]exportedEvent{}
	for _, a := range r.rep.Acknowledged {
		if a.Op != loadgen.OpCommand {
			continue
		}
		evs, ok := exports[a.Tenant]
		if !ok {
			var ex struct {
				Events []exportedEvent `json:"events"`
			}
			if err := json.Unmarshal([]byte(get(t, s, "/api/v1/tenants/"+a.Tenant+"/export")), &ex); err != nil {
				t.Fatal(err)
			}
			evs, exports[a.Tenant] = ex.Events, ex.Events
		}
		var at []uint64
		for _, e := range evs {
			if strings.Contains(string(e.Data), `"`+a.IdempotencyKey+`"`) {
				at = append(at, e.Version)
			}
		}
		if len(at) != 1 || at[0] != a.Version {
			t.Errorf("command %s acknowledged at %s@%d: its change is in the events at versions %v, want [%d]", a.IdempotencyKey, a.Tenant, a.Version, at, a.Version)
		}
	}
}

type exportedEvent struct {
	Version uint64          `json:"version"`
	Data    json.RawMessage `json:"data"`
}

func get(t *testing.T, s server, path string) string {
	t.Helper()
	req, _ := http.NewRequest("GET", s.base+path, nil)
	req.Header.Set("Authorization", "Bearer "+s.token)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	if res.StatusCode != 200 {
		t.Fatalf("GET %s: %d %s", path, res.StatusCode, b)
	}
	return string(b)
}

// proxy forwards TCP to the service, and can cut every connection and
// refuse new ones (closing its listener) for an outage.
type proxy struct {
	t      *testing.T
	target string
	mu     sync.Mutex
	ln     net.Listener
	port   string
	conns  map[net.Conn]bool
	count  int // connections accepted since the last restore
}

func startProxy(t *testing.T, target string) *proxy {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	p := &proxy{t: t, target: target, port: port, conns: map[net.Conn]bool{}}
	p.serve(ln)
	t.Cleanup(p.cut)
	return p
}

func (p *proxy) addr() string { return "127.0.0.1:" + p.port }

func (p *proxy) serve(ln net.Listener) {
	p.mu.Lock()
	p.ln = ln
	p.mu.Unlock()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			up, err := net.Dial("tcp", p.target)
			if err != nil {
				c.Close()
				continue
			}
			p.mu.Lock()
			p.conns[c], p.conns[up] = true, true
			p.count++
			p.mu.Unlock()
			go func() { _, _ = io.Copy(up, c); up.Close() }()
			go func() { _, _ = io.Copy(c, up); c.Close() }()
		}
	}()
}

func (p *proxy) cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ln != nil {
		p.ln.Close()
		p.ln = nil
	}
	for c := range p.conns {
		c.Close()
	}
	clear(p.conns)
}

func (p *proxy) restore() {
	ln, err := net.Listen("tcp", p.addr())
	if err != nil {
		p.t.Fatalf("proxy: listen again on %s: %v", p.addr(), err)
	}
	p.mu.Lock()
	p.count = 0
	p.mu.Unlock()
	p.serve(ln)
}

func (p *proxy) accepted() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.count
}
