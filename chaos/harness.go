// Package chaos is the fault harness: on this machine's loopback it starts
// three `tenancy serve` replicas on one private Postgres primary, with a
// streaming standby as their read replica (DATABASE_READ_URL), publishing
// to a three-node NATS JetStream cluster (TENANCY_EVENTS at three copies);
// each replica reaches Postgres and NATS through TCP proxies the harness
// can cut. It drives a steady mixed load (package loadgen, the engine of
// tenancy bench) through a round-robin balancer, injects faults — kill -9
// of a replica (the projections' leader among them) and of a NATS node, a
// replica cut from NATS or from Postgres, the standby paused — and ends
// with the checks that matter: no acknowledged command lost, no event
// duplicated in the store or on NATS, the read model equal to a fold of
// the events (tenancy verify), every event on NATS in order per tenant,
// every due timer fired exactly once, and how long each projection took
// to move on after each fault.
//
// make chaos runs the full schedule (CHAOS=full); make test runs a short
// smoke schedule with the same checks.
package chaos

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
)

// Config is one run of the harness.
type Config struct {
	// Dir holds the processes' data and logs.
	Dir string
	// Binary is the tenancy binary the replicas run.
	Binary string
	// PrimaryURL and StandbyURL are the Postgres servers' postgres
	// database (the harness makes its database on them); PrimaryAddr and
	// StandbyAddr are their host:port, for the proxies.
	PrimaryURL, StandbyURL   string
	PrimaryAddr, StandbyAddr string
	// Pause and Resume pause and resume the standby's replay.
	Pause, Resume func(ctx context.Context) error
	// Replicas is how many service replicas run (default 3).
	Replicas int
	// Faults are injected in order, each followed by Settle of steady load.
	Faults []Fault
	// CutFor is how long a cut or a pause lasts (default 20 s).
	CutFor time.Duration
	// Settle is the steady load between faults (default 10 s).
	Settle time.Duration
	// Rate and Concurrency shape the load (defaults 40/s, 6).
	Rate        float64
	Concurrency int
	// FailoverAim is the longest a projection may take to move on after a
	// fault (default 5 s).
	FailoverAim time.Duration
	// Load drives the load; default LoadgenDriver.
	Load Driver
	// Print receives the report's lines.
	Print func(string)
}

// Fault is a kind of fault the harness injects.
type Fault string

// The faults.
const (
	// KillLeader kills with SIGKILL the replica that leads the read
	// model (and most often the other projections and the timers).
	KillLeader Fault = "kill-leader"
	// KillReplica kills a random replica.
	KillReplica Fault = "kill-replica"
	// KillNATS kills a random NATS node.
	KillNATS Fault = "kill-nats"
	// CutNATS cuts the replica that leads the NATS publisher from every
	// NATS node for CutFor.
	CutNATS Fault = "cut-nats"
	// CutPostgres cuts the replica that leads the read model from the
	// primary and the standby for CutFor.
	CutPostgres Fault = "cut-postgres"
	// PauseStandby pauses the standby's replay for CutFor.
	PauseStandby Fault = "pause-standby"
)

// Projections are the projections the service runs (service.ProjectionNames).
var Projections = []string{"read-model", "scheduler", "nats-publisher"}

// Harness is a running system under test.
type Harness struct {
	cfg      Config
	db       string
	primary  *pgxpool.Pool
	nats     *natsCluster
	replicas []*replica
	client   *http.Client
	balancer *balancer
	token    string
	env      []string
	rnd      func(n int) int
	began    time.Time

	// load progress, for the figures of each fault
	okOps, failedOps atomic.Int64
	// acks are the harness's own acknowledged commands (the timers' suspends).
	mu   sync.Mutex
	acks []ack
}

// ack is an acknowledged command: its tenant stream and version.
type ack struct {
	stream  string
	version uint64
	// key, when set, is a string the event's data must contain.
	key string
}

func (c *Config) defaults() {
	if c.Replicas <= 0 {
		c.Replicas = 3
	}
	if c.CutFor <= 0 {
		c.CutFor = 20 * time.Second
	}
	if c.Settle <= 0 {
		c.Settle = 10 * time.Second
	}
	if c.Rate <= 0 {
		c.Rate = 40
	}
	if c.Concurrency <= 0 {
		c.Concurrency = 6
	}
	if c.FailoverAim <= 0 {
		c.FailoverAim = 5 * time.Second
	}
	if c.Load == nil {
		c.Load = LoadgenDriver{}
	}
	if c.Print == nil {
		c.Print = func(s string) { fmt.Println(s) }
	}
}

func (h *Harness) printf(format string, args ...any) {
	h.cfg.Print(fmt.Sprintf("%6.1fs ", time.Since(h.began).Seconds()) + fmt.Sprintf(format, args...))
}

// Start starts the NATS cluster, the proxies and the replicas.
func Start(ctx context.Context, cfg Config) (_ *Harness, err error) {
	cfg.defaults()
	h := &Harness{cfg: cfg, db: "tenancy_chaos", rnd: randN, began: time.Now()}
	defer func() {
		if err != nil {
			h.Close()
		}
	}()
	h.printf("chaos: %d replicas, NATS cluster of 3 (R3), Postgres primary %s + standby %s; data and logs in %s",
		cfg.Replicas, cfg.PrimaryAddr, cfg.StandbyAddr, cfg.Dir)
	if h.nats, err = startNATSCluster(ctx, cfg.Dir, 3); err != nil {
		return nil, err
	}
	key := make([]byte, 32)
	_, _ = rand.Read(key)
	secret := make([]byte, 32)
	_, _ = rand.Read(secret)
	h.env = []string{"TENANCY_MASTER_KEY=" + base64.StdEncoding.EncodeToString(key), "JWT_SECRET=" + base64.StdEncoding.EncodeToString(secret),
		"LOG_FORMAT=json", "LOG_LEVEL=info", "PROVISIONING_MODE=auto", "NATS_STREAM_REPLICAS=3"}
	if h.token, err = h.mintToken(ctx); err != nil {
		return nil, err
	}
	// The database and its schema first, on the primary, so the standby
	// has them before any replica reads there.
	if err := h.run(ctx, "migrate", "DATABASE_URL="+dbURL(cfg.PrimaryAddr, h.db, 2)); err != nil {
		return nil, err
	}
	if h.primary, err = pgxpool.New(ctx, dbURL(cfg.PrimaryAddr, h.db, 4)); err != nil {
		return nil, err
	}
	if err := waitStandby(ctx, dbURL(cfg.StandbyAddr, h.db, 1)); err != nil {
		return nil, err
	}
	for i := range cfg.Replicas {
		r := &replica{name: fmt.Sprintf("r%d", i+1), bin: cfg.Binary, port: freePort(), dir: filepath.Join(cfg.Dir, fmt.Sprintf("replica-%d", i+1))}
		for _, target := range []string{cfg.PrimaryAddr, cfg.StandbyAddr} {
			p, err := NewProxy(target)
			if err != nil {
				return nil, err
			}
			r.pg = append(r.pg, p)
		}
		var natsURLs []string
		for j := range h.nats.nodes {
			p, err := NewProxy(h.nats.addr(j))
			if err != nil {
				return nil, err
			}
			r.nats = append(r.nats, p)
			natsURLs = append(natsURLs, "nats://"+p.Addr())
		}
		r.env = append(append([]string(nil), h.env...),
			"DATABASE_URL="+dbURL(r.pg[0].Addr(), h.db, 8),
			"DATABASE_READ_URL="+dbURL(r.pg[1].Addr(), h.db, 8),
			"NATS_URL="+joinComma(natsURLs))
		h.replicas = append(h.replicas, r)
	}
	// One replica first (it makes the NATS stream), then the others.
	if err := h.replicas[0].start(ctx); err != nil {
		return nil, err
	}
	var wg sync.WaitGroup
	errs := make([]error, len(h.replicas))
	for i, r := range h.replicas[1:] {
		wg.Go(func() { errs[i+1] = r.start(ctx) })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	var bases []string
	for _, r := range h.replicas {
		bases = append(bases, r.base())
	}
	h.balancer = newBalancer(bases)
	h.client = &http.Client{Timeout: 15 * time.Second, Transport: h.balancer}
	h.printf("chaos: replicas ready: %v", bases)
	return h, nil
}

// Close stops everything the harness started.
func (h *Harness) Close() {
	var wg sync.WaitGroup
	for _, r := range h.replicas {
		wg.Go(r.stop)
	}
	wg.Wait()
	for _, r := range h.replicas {
		for _, p := range append(r.pg, r.nats...) {
			p.Close()
		}
	}
	if h.balancer != nil {
		h.balancer.close()
	}
	if h.nats != nil {
		h.nats.stop()
	}
	if h.primary != nil {
		h.primary.Close()
	}
}

// run runs the tenancy binary with args, the harness's environment and env.
func (h *Harness) run(ctx context.Context, args ...string) error {
	var env []string
	var argv []string
	for _, a := range args {
		if containsEq(a) {
			env = append(env, a)
		} else {
			argv = append(argv, a)
		}
	}
	cmd := exec.CommandContext(ctx, h.cfg.Binary, argv...)
	cmd.Env = append(append(append(os.Environ(), h.env...), "DATA_DIR="+filepath.Join(h.cfg.Dir, "ops")), env...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("tenancy %v: %w\n%s", argv, err, out)
	}
	return nil
}

func (h *Harness) mintToken(ctx context.Context) (string, error) {
	cmd := exec.CommandContext(ctx, h.cfg.Binary, "token", "--scope", "tenancy:admin", "--ttl", "2h", "--subject", "chaos")
	cmd.Env = append(append(os.Environ(), h.env...), "DATA_DIR="+filepath.Join(h.cfg.Dir, "ops"))
	out, err := cmd.Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return "", fmt.Errorf("tenancy token: %w: %s", err, ee.Stderr)
		}
		return "", fmt.Errorf("tenancy token: %w", err)
	}
	return trimSpace(string(out)), nil
}

// dbURL is the harness's database through addr.
func dbURL(addr, db string, conns int) string {
	return fmt.Sprintf("postgres://postgres@%s/%s?sslmode=disable&pool_max_conns=%d", addr, db, conns)
}

// waitStandby waits until the standby has replayed the database's creation.
func waitStandby(ctx context.Context, url string) error {
	deadline := time.Now().Add(60 * time.Second)
	for {
		pool, err := pgxpool.New(ctx, url)
		if err == nil {
			err = pool.Ping(ctx)
			if err == nil {
				var n int
				err = pool.QueryRow(ctx, `SELECT count(*) FROM projection_checkpoints`).Scan(&n)
			}
			pool.Close()
		}
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the standby has not replayed the schema after 60 s: %w", err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// ---- the balancer ----

// balancer sends each request to the next ready replica in turn, as a load
// balancer in front of them would: it probes each replica's /health/ready
// every 250 ms, as a Kubernetes readiness probe does (more often), and
// passes over the ones not ready (all, if none is). A replica that refuses
// the connection (killed) is passed over for the next one at once, since
// nothing of the request was sent.
type balancer struct {
	bases []string
	ready []atomic.Bool
	next  atomic.Uint64
	base  http.RoundTripper
	stop  context.CancelFunc
	wg    sync.WaitGroup
}

func newBalancer(bases []string) *balancer {
	b := &balancer{bases: bases, ready: make([]atomic.Bool, len(bases)),
		base: &http.Transport{MaxIdleConnsPerHost: 32, IdleConnTimeout: 30 * time.Second,
			DialContext: (&net.Dialer{Timeout: 2 * time.Second}).DialContext}}
	for i := range b.ready {
		b.ready[i].Store(true)
	}
	ctx, stop := context.WithCancel(context.Background())
	b.stop = stop
	probe := &http.Client{Timeout: time.Second}
	for i, base := range bases {
		b.wg.Go(func() {
			for ctx.Err() == nil {
				req, _ := http.NewRequestWithContext(ctx, http.MethodGet, base+"/health/ready", nil)
				res, err := probe.Do(req)
				ok := err == nil && res.StatusCode == http.StatusOK
				if err == nil {
					res.Body.Close()
				}
				b.ready[i].Store(ok)
				sleep(ctx, 250*time.Millisecond)
			}
		})
	}
	return b
}

// close stops the probes.
func (b *balancer) close() {
	b.stop()
	b.wg.Wait()
}

// RoundTrip implements http.RoundTripper.
func (b *balancer) RoundTrip(req *http.Request) (*http.Response, error) {
	n := uint64(len(b.bases))
	start := b.next.Add(1)
	order := make([]int, 0, n)
	for i := range n {
		if j := int((start + i) % n); b.ready[j].Load() {
			order = append(order, j)
		}
	}
	if len(order) == 0 {
		for i := range n {
			order = append(order, int((start+i)%n))
		}
	}
	var err error
	for _, j := range order {
		r := req.Clone(req.Context())
		if req.Body != nil && req.GetBody != nil {
			if r.Body, err = req.GetBody(); err != nil {
				return nil, err
			}
		}
		host := b.bases[j][len("http://"):]
		r.URL.Host, r.Host = host, host
		var res *http.Response
		res, err = b.base.RoundTrip(r)
		var op *net.OpError
		if err != nil && errors.As(err, &op) && op.Op == "dial" {
			continue
		}
		return res, err
	}
	return nil, err
}
