package loadgen

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tenancyhq/tenancy/aggregate"
)

// gen is one run's state.
type gen struct {
	cfg  Config
	rec  *recorder
	nats *natsWatch // nil without NATSURL
	pace *pacer     // nil: as fast as possible

	mu    sync.RWMutex
	ready []string // the setup's settled tenants: commands and evaluations
	all   []string // every tenant the run made: gets

	created  atomic.Int64 // names handed out
	commands atomic.Int64
}

// Run drives the load cfg describes and reports it. progress, when not
// nil, is called about once a second until Run returns. The run ends after
// cfg.Duration, or when ctx ends (then the report covers the run so far);
// an error means the run could not start: a bad Config, NATS unreachable,
// or the setup's tenants could not be created.
func Run(ctx context.Context, cfg Config, progress func(Snapshot)) (Report, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return Report{}, err
	}
	g := &gen{cfg: cfg, rec: newRecorder()}
	if cfg.Rate > 0 {
		g.pace = &pacer{interval: time.Duration(float64(time.Second) / cfg.Rate)}
	}
	rep := Report{BaseURL: cfg.BaseURL, Started: time.Now().UTC(), Concurrency: cfg.Concurrency, Rate: cfg.Rate, Mix: cfg.Mix.String()}
	if cfg.NATSURL != "" {
		if g.nats, err = watchNATS(cfg.NATSURL); err != nil {
			return rep, err
		}
		defer g.nats.close()
	}

	var phase atomic.Value // "setup" or "run", for the progress line
	phase.Store("setup")
	start := time.Now()
	var runStart atomic.Int64
	stopProgress := g.progress(progress, func() Snapshot {
		s := Snapshot{Elapsed: time.Since(start)}
		switch phase.Load() {
		case "ceiling":
			s.Ceiling = true
			return s
		case "setup":
			s.Setup = true
			g.mu.RLock()
			s.Tenants = len(g.all)
			g.mu.RUnlock()
			return s
		}
		s.Elapsed = time.Since(time.Unix(0, runStart.Load()))
		s.OK, s.Failed = g.rec.totals()
		return s
	})
	defer stopProgress()

	if err := g.setup(ctx); err != nil {
		return rep, err
	}
	rep.Setup = SetupStats{Tenants: len(g.ready), Seconds: time.Since(start).Seconds()}
	// The setup's creates are not operations of the timed run.
	g.rec.resetOps()
	if cfg.Ceiling > 0 {
		phase.Store("ceiling")
		c := g.ceiling(ctx)
		rep.Ceiling = &c
	}

	stop, cancelStop := ctx, context.CancelFunc(func() {})
	if cfg.Duration > 0 {
		stop, cancelStop = context.WithTimeout(ctx, cfg.Duration)
	}
	defer cancelStop()
	// Commands in flight when the run stops keep retrying for Drain, to
	// learn their outcome; so do the reads, which then end on their own.
	drain, cancelDrain := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelDrain()
	go func() {
		<-stop.Done()
		t := time.NewTimer(cfg.Drain)
		defer t.Stop()
		select {
		case <-t.C:
			cancelDrain()
		case <-drain.Done():
		}
	}()

	began := time.Now()
	runStart.Store(began.UnixNano())
	phase.Store("run")
	var wg sync.WaitGroup
	for w := range cfg.Concurrency {
		wg.Go(func() { g.worker(stop, drain, rand.New(rand.NewPCG(uint64(began.UnixNano()), uint64(w)))) })
	}
	wg.Wait()
	elapsed := time.Since(began)
	cancelDrain()

	g.rec.report(&rep, elapsed)
	if rep.Ceiling != nil && rep.Ceiling.PerSecond > 0 {
		rep.CeilingRatio = rep.Total.PerSecond / rep.Ceiling.PerSecond
	}
	if g.nats != nil {
		// Also when ctx ended the run (Duration 0): the events of the last
		// commands are still owed, and NATSWait bounds the wait.
		st := g.nats.wait(context.WithoutCancel(ctx), cfg.NATSWait)
		rep.NATS = &st
	}
	return rep, nil
}

// ceiling sends GET /health/live from every worker for cfg.Ceiling.
func (g *gen) ceiling(ctx context.Context) OpStats {
	ctx, cancel := context.WithTimeout(ctx, g.cfg.Ceiling)
	defer cancel()
	var mu sync.Mutex
	st := OpStats{Op: "ceiling", Errors: map[string]int{}}
	var lat []time.Duration
	start := time.Now()
	var wg sync.WaitGroup
	for range g.cfg.Concurrency {
		wg.Go(func() {
			for ctx.Err() == nil {
				t := time.Now()
				a, err := g.send(ctx, http.MethodGet, "/health/live", nil, nil)
				d := time.Since(t)
				if ctx.Err() != nil {
					return // cut by the end of the measurement, not a failure
				}
				mu.Lock()
				if ok(a, err) {
					st.OK++
					lat = append(lat, d)
				} else {
					st.Failed++
					st.Errors[failure(a, err)]++
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	st.PerSecond = float64(st.OK) / time.Since(start).Seconds()
	st.Latency = summarize(lat)
	if len(st.Errors) == 0 {
		st.Errors = nil
	}
	return st
}

// worker sends operations until stop ends.
func (g *gen) worker(stop, drain context.Context, rnd *rand.Rand) {
	for stop.Err() == nil {
		if g.pace != nil && !g.pace.wait(stop) {
			return
		}
		switch g.pick(rnd) {
		case OpCreate:
			g.create(drain)
		case OpCommand:
			g.updateProfile(drain, g.tenant(rnd, true))
		case OpGet:
			g.read(drain, OpGet, http.MethodGet, "/api/v1/tenants/"+g.tenant(rnd, false), nil)
		case OpList:
			g.read(drain, OpList, http.MethodGet, "/api/v1/tenants?limit=20", nil)
		case OpEvaluate:
			g.read(drain, OpEvaluate, http.MethodPost, "/api/v1/tenants/"+g.tenant(rnd, true)+"/policy/evaluate",
				[]byte(`{"action":"data.read","resource":"bench"}`))
		}
	}
}

// pick draws an operation by the mix's weights.
func (g *gen) pick(rnd *rand.Rand) Op {
	x := rnd.Float64() * g.cfg.Mix.sum()
	for _, op := range Ops {
		if w := g.cfg.Mix.Weight(op); x < w {
			return op
		} else {
			x -= w
		}
	}
	return OpGet
}

// tenant draws a tenant: a settled one, or any the run made.
func (g *gen) tenant(rnd *rand.Rand, settled bool) string {
	g.mu.RLock()
	defer g.mu.RUnlock()
	if settled {
		return g.ready[rnd.IntN(len(g.ready))]
	}
	return g.all[rnd.IntN(len(g.all))]
}

// create creates a tenant with a name of the run's own.
func (g *gen) create(ctx context.Context) (commandResult, bool) {
	name := g.cfg.Prefix + strconv.FormatInt(g.created.Add(1), 10)
	body, _ := json.Marshal(map[string]string{"name": name, "edition": string(aggregate.EditionProfessional)})
	key := newKey()
	start := time.Now()
	res, failures, acked, doubt := g.command(ctx, http.MethodPost, "/api/v1/tenants", key, body)
	g.finish(OpCreate, start, key, res, failures, acked, doubt)
	if acked {
		g.mu.Lock()
		g.all = append(g.all, res.tenant.ID)
		g.mu.Unlock()
	}
	return res, acked
}

// updateProfile replaces the tenant's metadata with the command's key, so
// each command is a change (and the event log shows which command made
// it), then checks read-your-writes on every nth.
func (g *gen) updateProfile(ctx context.Context, id string) {
	key := newKey()
	body, _ := json.Marshal(map[string]any{"metadata": map[string]string{"bench": key}})
	start := time.Now()
	res, failures, acked, doubt := g.command(ctx, http.MethodPatch, "/api/v1/tenants/"+id, key, body)
	g.finish(OpCommand, start, key, res, failures, acked, doubt)
	if acked && g.cfg.ReadYourWritesEvery > 0 && g.commands.Add(1)%int64(g.cfg.ReadYourWritesEvery) == 0 {
		g.checkReadYourWrites(ctx, res)
	}
}

// finish records a command's outcome.
func (g *gen) finish(op Op, start time.Time, key string, res commandResult, failures []string, acked, doubt bool) {
	retries := max(0, len(failures)-1)
	if acked {
		retries = len(failures)
		g.rec.ack(Ack{Op: op, Tenant: res.tenant.ID, IdempotencyKey: key, Version: res.tenant.Version, Token: res.token, Replayed: res.replayed, At: res.at})
		if g.nats != nil {
			g.nats.acked(res.tenant.ID, res.tenant.Version, res.at)
		}
	}
	if doubt && !acked {
		g.rec.doubt()
	}
	g.rec.done(op, time.Since(start), failures, retries, acked)
}

// checkReadYourWrites reads the tenant back twice, without any consistency
// header and with the command's token, each timed from its send to an
// answer that shows the command's version; which read goes first
// alternates, so neither always profits from the other's wait.
func (g *gen) checkReadYourWrites(ctx context.Context, res commandResult) {
	path := "/api/v1/tenants/" + res.tenant.ID
	var failures []string
	stale := 0
	look := func(header map[string]string) (time.Duration, bool) {
		start := time.Now()
		a, err := g.send(ctx, http.MethodGet, path, nil, header)
		d := time.Since(start)
		if !ok(a, err) {
			failures = append(failures, failure(a, err))
			return 0, false
		}
		var t tenantBody
		if json.Unmarshal(a.body, &t) != nil || t.Version < res.tenant.Version {
			stale++
			return 0, false
		}
		return d, true
	}
	var plain, token time.Duration
	var plainOK, tokenOK bool
	withToken := map[string]string{"X-Consistency-Token": res.token}
	if g.commands.Load()%2 == 0 {
		plain, plainOK = look(nil)
		token, tokenOK = look(withToken)
	} else {
		token, tokenOK = look(withToken)
		plain, plainOK = look(nil)
	}
	g.rec.rywCheck(plain, token, plainOK, tokenOK, stale, failures)
}

// setup creates cfg.Tenants tenants and waits until each has left
// PROVISIONING (which the service does by itself unless provisioning is
// external: after a while the setup completes provisioning itself).
func (g *gen) setup(ctx context.Context) error {
	sem := make(chan struct{}, g.cfg.Concurrency)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var firstErr error
	for range g.cfg.Tenants {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
			defer cancel()
			res, acked := g.create(cctx)
			if !acked {
				mu.Lock()
				if firstErr == nil {
					firstErr = fmt.Errorf("loadgen setup: creating a tenant failed (%v)", g.rec.lastErrors(OpCreate))
				}
				mu.Unlock()
				return
			}
			if err := g.settle(cctx, res.tenant.ID); err != nil {
				mu.Lock()
				if firstErr == nil {
					firstErr = err
				}
				mu.Unlock()
				return
			}
			g.mu.Lock()
			g.ready = append(g.ready, res.tenant.ID)
			g.mu.Unlock()
		})
	}
	wg.Wait()
	if firstErr != nil {
		return firstErr
	}
	return ctx.Err()
}

// settle waits for the tenant to leave PROVISIONING.
func (g *gen) settle(ctx context.Context, id string) error {
	path := "/api/v1/tenants/" + url.PathEscape(id)
	start := time.Now()
	completed := false
	for {
		a, err := g.send(ctx, http.MethodGet, path, nil, map[string]string{"Consistency": "eventual"})
		if ok(a, err) {
			var t tenantBody
			if json.Unmarshal(a.body, &t) == nil && t.Status != "" && t.Status != string(aggregate.StatusProvisioning) {
				return nil
			}
		}
		if !completed && time.Since(start) > 3*time.Second {
			// Provisioning is external here: complete it as its worker would.
			key := newKey()
			res, _, acked, _ := g.command(ctx, http.MethodPost, path+"/complete-provisioning", key, []byte(`{"steps":["bench"]}`))
			if acked {
				g.rec.ack(Ack{Op: "complete-provisioning", Tenant: id, IdempotencyKey: key, Version: res.tenant.Version, Token: res.token, Replayed: res.replayed, At: res.at})
				if g.nats != nil {
					g.nats.acked(id, res.tenant.Version, res.at)
				}
			}
			completed = true
		}
		if !sleep(ctx, 50*time.Millisecond) {
			return fmt.Errorf("loadgen setup: tenant %s is still PROVISIONING: %w", id, ctx.Err())
		}
	}
}

// progress calls fn with snap() every second until the returned stop.
func (g *gen) progress(fn func(Snapshot), snap func() Snapshot) (stop func()) {
	if fn == nil {
		return func() {}
	}
	done, exited := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(exited)
		t := time.NewTicker(time.Second)
		defer t.Stop()
		lastOK, last := 0, time.Now()
		for {
			select {
			case <-done:
				return
			case now := <-t.C:
				s := snap()
				if !s.Setup && !s.Ceiling {
					s.PerSecond = float64(s.OK-lastOK) / now.Sub(last).Seconds()
					lastOK = s.OK
				}
				last = now
				fn(s)
			}
		}
	}()
	var once sync.Once
	return func() { once.Do(func() { close(done); <-exited }) }
}

// pacer spaces requests interval apart over all workers.
type pacer struct {
	mu       sync.Mutex
	next     time.Time
	interval time.Duration
}

// wait blocks until the next request may go, false if ctx ended first. A
// pacer that fell behind does not burst to catch up.
func (p *pacer) wait(ctx context.Context) bool {
	p.mu.Lock()
	now := time.Now()
	at := p.next
	if at.Before(now) {
		at = now
	}
	p.next = at.Add(p.interval)
	p.mu.Unlock()
	d := time.Until(at)
	if d <= 0 {
		return ctx.Err() == nil
	}
	return sleep(ctx, d)
}
