// Package loadgen drives a tenancy deployment over its public HTTP API with
// a configurable mix of creates, commands, reads, lists and policy
// evaluations, and reports what a user of the API would see: throughput,
// latency percentiles per operation, how soon a write can be read back,
// how soon its event reaches NATS, and every command the service
// acknowledged (so a fault harness can check that none was lost).
//
// It is the engine of `tenancy bench` and of the chaos harness. It speaks
// plain HTTP, as any client would: commands carry an Idempotency-Key and
// are retried with the same key on a 5xx or a broken connection, so a
// command acknowledged under faults is applied once; an unreachable server
// is counted and waited out, not fatal.
package loadgen

import (
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Op is one kind of request the load is made of.
type Op string

// The operations of a mix.
const (
	// OpCreate is POST /api/v1/tenants.
	OpCreate Op = "create"
	// OpCommand is a command on an existing tenant: PATCH
	// /api/v1/tenants/{id} replacing its metadata (update-profile), which
	// every settled tenant accepts, so the load never runs out of valid
	// commands.
	OpCommand Op = "command"
	// OpGet is GET /api/v1/tenants/{id}.
	OpGet Op = "get"
	// OpList is GET /api/v1/tenants?limit=20.
	OpList Op = "list"
	// OpEvaluate is POST /api/v1/tenants/{id}/policy/evaluate.
	OpEvaluate Op = "evaluate"
)

// Ops are the operations in the order reports list them.
var Ops = []Op{OpCreate, OpCommand, OpGet, OpList, OpEvaluate}

// Mix weighs the operations: each request is drawn with probability
// weight/sum. The zero Mix is DefaultMix.
type Mix struct {
	Create, Command, Get, List, Evaluate float64
}

// DefaultMix is a read-heavy mix with a steady stream of writes.
var DefaultMix = Mix{Create: 1, Command: 4, Get: 10, List: 1, Evaluate: 4}

// Weight is op's weight.
func (m Mix) Weight(op Op) float64 {
	switch op {
	case OpCreate:
		return m.Create
	case OpCommand:
		return m.Command
	case OpGet:
		return m.Get
	case OpList:
		return m.List
	case OpEvaluate:
		return m.Evaluate
	}
	return 0
}

func (m *Mix) set(op Op, w float64) bool {
	switch op {
	case OpCreate:
		m.Create = w
	case OpCommand:
		m.Command = w
	case OpGet:
		m.Get = w
	case OpList:
		m.List = w
	case OpEvaluate:
		m.Evaluate = w
	default:
		return false
	}
	return true
}

func (m Mix) sum() float64 { return m.Create + m.Command + m.Get + m.List + m.Evaluate }

// String is the mix as ParseMix reads it.
func (m Mix) String() string {
	parts := make([]string, 0, len(Ops))
	for _, op := range Ops {
		parts = append(parts, string(op)+"="+strconv.FormatFloat(m.Weight(op), 'g', -1, 64))
	}
	return strings.Join(parts, ",")
}

// ParseMix reads "create=1,command=4,get=10,list=1,evaluate=4"; operations
// left out weigh 0.
func ParseMix(s string) (Mix, error) {
	var m Mix
	for part := range strings.SplitSeq(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		name, val, ok := strings.Cut(part, "=")
		if !ok {
			return Mix{}, fmt.Errorf("mix %q: want op=weight, such as get=10", part)
		}
		w, err := strconv.ParseFloat(strings.TrimSpace(val), 64)
		if err != nil || w < 0 {
			return Mix{}, fmt.Errorf("mix %q: the weight must be a number >= 0", part)
		}
		if !m.set(Op(strings.TrimSpace(name)), w) {
			return Mix{}, fmt.Errorf("mix %q: unknown operation %q (known: %s)", part, name, strings.Join(opNames(), ", "))
		}
	}
	if m.sum() == 0 {
		return Mix{}, fmt.Errorf("mix %q: at least one operation needs a weight above 0", s)
	}
	return m, nil
}

func opNames() []string {
	out := make([]string, len(Ops))
	for i, op := range Ops {
		out[i] = string(op)
	}
	return out
}

// Config is one run.
type Config struct {
	// BaseURL is the API, such as http://localhost:8000.
	BaseURL string
	// Token is the bearer token (an admin token: the load creates tenants).
	Token string
	// Duration is how long the load runs; 0 runs until the context ends.
	Duration time.Duration
	// Rate is the target requests per second over all workers; 0 sends
	// as fast as the workers can.
	Rate float64
	// Concurrency is how many requests are in flight at most (default 8).
	Concurrency int
	// Mix weighs the operations (zero: DefaultMix).
	Mix Mix
	// Tenants is how many tenants the setup creates and settles before the
	// timed run (default Concurrency); commands and evaluations go to them.
	Tenants int
	// ReadYourWritesEvery checks read-your-writes after every nth command
	// (default 1: after each; negative: never). Each check is two reads
	// of the tenant, one plain and one with the command's consistency
	// token, which are neither counted as get operations nor paced by
	// Rate.
	ReadYourWritesEvery int
	// NATSURL, when set, subscribes to tenancy.events.> there (several
	// servers separated by commas) and measures the time from a command's
	// response to its event's arrival.
	NATSURL string
	// NATSWait is how long the run waits at its end for the events of
	// acknowledged commands still on their way (default 10 s).
	NATSWait time.Duration
	// RequestTimeout bounds one HTTP attempt (default 10 s).
	RequestTimeout time.Duration
	// Drain is how long commands in flight when the run ends may keep
	// retrying to learn their outcome (default 10 s).
	Drain time.Duration
	// Ceiling is how long the workers send GET /health/live (no database,
	// no token check) before the timed run, as fast as they can: the
	// HTTP round trip's ceiling on this client, network and server, which
	// the report sets the run's throughput beside (default 1 s; negative:
	// not measured).
	Ceiling time.Duration
	// Prefix starts the names of the tenants the run creates (default
	// "bench-" and the run's start time), so that runs do not collide.
	Prefix string
	// HTTPClient sends the requests (default: a client sized for
	// Concurrency, with RequestTimeout).
	HTTPClient *http.Client
}

func (c Config) withDefaults() (Config, error) {
	if c.BaseURL == "" {
		return c, fmt.Errorf("loadgen: BaseURL is required")
	}
	c.BaseURL = strings.TrimRight(c.BaseURL, "/")
	if !strings.HasPrefix(c.BaseURL, "http://") && !strings.HasPrefix(c.BaseURL, "https://") {
		return c, fmt.Errorf("loadgen: BaseURL %q: want http(s)://host[:port]", c.BaseURL)
	}
	if c.Rate < 0 || c.Duration < 0 {
		return c, fmt.Errorf("loadgen: Rate and Duration must not be negative")
	}
	if c.Concurrency <= 0 {
		c.Concurrency = 8
	}
	if c.Mix.sum() == 0 {
		c.Mix = DefaultMix
	}
	if c.Tenants <= 0 {
		c.Tenants = c.Concurrency
	}
	if c.ReadYourWritesEvery == 0 {
		c.ReadYourWritesEvery = 1
	}
	if c.NATSWait <= 0 {
		c.NATSWait = 10 * time.Second
	}
	if c.RequestTimeout <= 0 {
		c.RequestTimeout = 10 * time.Second
	}
	if c.Drain <= 0 {
		c.Drain = 10 * time.Second
	}
	if c.Ceiling == 0 {
		c.Ceiling = time.Second
	}
	if c.Prefix == "" {
		c.Prefix = "bench-" + time.Now().UTC().Format("20060102T150405.000") + "-"
	}
	if c.HTTPClient == nil {
		c.HTTPClient = &http.Client{Timeout: c.RequestTimeout, Transport: &http.Transport{
			MaxIdleConns: c.Concurrency * 2, MaxIdleConnsPerHost: c.Concurrency * 2, IdleConnTimeout: 30 * time.Second,
		}}
	}
	return c, nil
}
