package loadgen

import (
	"slices"
	"sync"
	"time"
)

// Report is what a run measured.
type Report struct {
	BaseURL     string    `json:"base_url"`
	Started     time.Time `json:"started"`
	Seconds     float64   `json:"seconds"` // the timed run, without setup and drain
	Concurrency int       `json:"concurrency"`
	Rate        float64   `json:"target_rate"` // 0: as fast as possible
	Mix         string    `json:"mix"`
	// Setup is the tenants created and settled before the timed run.
	Setup SetupStats `json:"setup"`
	// Ops are the operations of the timed run, in the order of Ops.
	Ops []OpStats `json:"ops"`
	// Total is all operations together.
	Total OpStats `json:"total"`
	// Ceiling is GET /health/live as fast as the workers can, measured
	// just before the run (nil: not measured); CeilingRatio is Total's
	// throughput over the ceiling's.
	Ceiling      *OpStats `json:"ceiling,omitempty"`
	CeilingRatio float64  `json:"ceiling_ratio,omitempty"`
	// ReadYourWrites is how soon an acknowledged command can be read back.
	ReadYourWrites RYWStats `json:"read_your_writes"`
	// NATS is command-to-NATS delivery; nil without Config.NATSURL.
	NATS *NATSStats `json:"nats,omitempty"`
	// InDoubt counts commands whose outcome the run never learned (still
	// failing when the drain ended): they may or may not have been applied.
	InDoubt int `json:"in_doubt"`
	// Acknowledged is every command the service acknowledged (2xx),
	// setup's creates included, in the order the answers arrived.
	Acknowledged []Ack `json:"acknowledged"`
}

// Errors is the number of failed requests, of every kind.
func (r Report) Errors() int { return r.Total.Failed }

// Op returns the operation's statistics.
func (r Report) Op(op Op) OpStats {
	for _, s := range r.Ops {
		if s.Op == op {
			return s
		}
	}
	return OpStats{Op: op}
}

// SetupStats is the setup's work.
type SetupStats struct {
	Tenants int     `json:"tenants"`
	Seconds float64 `json:"seconds"`
}

// OpStats is one operation's outcome.
type OpStats struct {
	Op Op `json:"op"`
	// OK counts answers that succeeded (2xx), Failed the others, each
	// failure counted once whatever its retries.
	OK     int `json:"ok"`
	Failed int `json:"failed"`
	// Errors counts failed attempts by their HTTP status, or "connection"
	// and "timeout" when no answer came; retried attempts included.
	Errors map[string]int `json:"errors,omitempty"`
	// Retries counts attempts sent again: commands until answered, reads
	// answered 503 or 429 up to three attempts.
	Retries int `json:"retries,omitempty"`
	// PerSecond is OK answers per second of the timed run.
	PerSecond float64 `json:"per_second"`
	// Latency is of the OK answers, from the first attempt's send to the
	// answer (retries included).
	Latency Latency `json:"latency"`
}

// Latency summarizes durations, in milliseconds.
type Latency struct {
	N    int     `json:"n"`
	P50  float64 `json:"p50_ms"`
	P99  float64 `json:"p99_ms"`
	P999 float64 `json:"p999_ms"`
	Max  float64 `json:"max_ms"`
}

// RYWStats measures read-your-writes: after a command's answer, a GET
// without any consistency header (the service gives read-your-writes by
// default) and a GET with the command's X-Consistency-Token.
type RYWStats struct {
	Checks int `json:"checks"`
	// Plain and Token are from the command's answer to a read showing the
	// command's version.
	Plain Latency `json:"plain"`
	Token Latency `json:"token"`
	// Stale counts reads that answered 200 with an older version: a
	// broken promise (the reads are not retried).
	Stale int `json:"stale"`
	// Errors counts reads that failed, by status.
	Errors map[string]int `json:"errors,omitempty"`
}

// NATSStats measures command-to-NATS delivery on a plain subscription to
// tenancy.events.>.
type NATSStats struct {
	// Delivered counts acknowledged commands whose event arrived; Missing
	// those whose event had not arrived NATSWait after the run.
	Delivered int `json:"delivered"`
	Missing   int `json:"missing"`
	// Redelivered counts messages seen again with the same event id (a
	// re-publish after a crash reaches plain subscribers again; the stream
	// de-duplicates it).
	Redelivered int `json:"redelivered"`
	// Latency is from the command's answer to its event's arrival (0 when
	// the event arrived first).
	Latency Latency `json:"latency"`
	// Disconnects counts times the subscription lost its server.
	Disconnects int `json:"disconnects"`
}

// Ack is one acknowledged command: what a fault harness checks the event
// log and the read model against.
type Ack struct {
	Op     Op     `json:"op"`
	Tenant string `json:"tenant"`
	// IdempotencyKey is the key the command was sent (and retried) with.
	IdempotencyKey string `json:"idempotency_key"`
	// Version is the tenant's stream version after the command (from 0),
	// Token its X-Consistency-Token.
	Version uint64 `json:"version"`
	Token   string `json:"token"`
	// Replayed: the answer was a replay of the first outcome (a retry
	// after a lost answer).
	Replayed bool      `json:"replayed,omitempty"`
	At       time.Time `json:"at"`
}

// Snapshot is the run's progress, passed to the progress function about
// once a second.
type Snapshot struct {
	Elapsed time.Duration
	// OK and Failed are the operations so far.
	OK, Failed int
	// PerSecond is OK operations per second since the last snapshot.
	PerSecond float64
	// Setup: the setup is still creating tenants (Tenants made so far).
	Setup   bool
	Tenants int
	// Ceiling: the ceiling is being measured (after the setup).
	Ceiling bool
}

// recorder collects samples from the workers.
type recorder struct {
	mu      sync.Mutex
	ops     map[Op]*opSamples
	ryw     rywSamples
	acks    []Ack
	inDoubt int
}

type opSamples struct {
	ok, failed, retries int
	errors              map[string]int
	lat                 []time.Duration
}

type rywSamples struct {
	checks, stale int
	plain, token  []time.Duration
	errors        map[string]int
}

func newRecorder() *recorder {
	r := &recorder{ops: map[Op]*opSamples{}, ryw: rywSamples{errors: map[string]int{}}}
	for _, op := range Ops {
		r.ops[op] = &opSamples{errors: map[string]int{}}
	}
	return r
}

func (r *recorder) done(op Op, d time.Duration, failures []string, retries int, ok bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	s := r.ops[op]
	for _, f := range failures {
		s.errors[f]++
	}
	s.retries += retries
	if ok {
		s.ok++
		s.lat = append(s.lat, d)
	} else {
		s.failed++
	}
}

func (r *recorder) ack(a Ack) {
	r.mu.Lock()
	r.acks = append(r.acks, a)
	r.mu.Unlock()
}

func (r *recorder) doubt() {
	r.mu.Lock()
	r.inDoubt++
	r.mu.Unlock()
}

func (r *recorder) totals() (ok, failed int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, s := range r.ops {
		ok += s.ok
		failed += s.failed
	}
	return ok, failed
}

func (r *recorder) rywCheck(plain, token time.Duration, plainOK, tokenOK bool, stale int, failures []string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.ryw.checks++
	r.ryw.stale += stale
	if plainOK {
		r.ryw.plain = append(r.ryw.plain, plain)
	}
	if tokenOK {
		r.ryw.token = append(r.ryw.token, token)
	}
	for _, f := range failures {
		r.ryw.errors[f]++
	}
}

// report builds the Report of a timed run of elapsed.
func (r *recorder) report(rep *Report, elapsed time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	secs := elapsed.Seconds()
	rep.Seconds = secs
	total := OpStats{Op: "total", Errors: map[string]int{}}
	var all []time.Duration
	for _, op := range Ops {
		s := r.ops[op]
		st := OpStats{Op: op, OK: s.ok, Failed: s.failed, Retries: s.retries, Latency: summarize(s.lat)}
		if len(s.errors) > 0 {
			st.Errors = maps(s.errors)
		}
		if secs > 0 {
			st.PerSecond = float64(s.ok) / secs
		}
		rep.Ops = append(rep.Ops, st)
		total.OK += s.ok
		total.Failed += s.failed
		total.Retries += s.retries
		for k, v := range s.errors {
			total.Errors[k] += v
		}
		all = append(all, s.lat...)
	}
	if secs > 0 {
		total.PerSecond = float64(total.OK) / secs
	}
	if len(total.Errors) == 0 {
		total.Errors = nil
	}
	total.Latency = summarize(all)
	rep.Total = total
	rep.ReadYourWrites = RYWStats{Checks: r.ryw.checks, Stale: r.ryw.stale,
		Plain: summarize(r.ryw.plain), Token: summarize(r.ryw.token)}
	if len(r.ryw.errors) > 0 {
		rep.ReadYourWrites.Errors = maps(r.ryw.errors)
	}
	rep.Acknowledged = slices.Clone(r.acks)
	rep.InDoubt = r.inDoubt
}

func maps(m map[string]int) map[string]int {
	out := make(map[string]int, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// summarize is the nearest-rank percentiles of ds.
func summarize(ds []time.Duration) Latency {
	if len(ds) == 0 {
		return Latency{}
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	at := func(q float64) float64 {
		i := int(q*float64(len(s))+0.999999) - 1 // ceil(q·n) − 1
		i = max(0, min(i, len(s)-1))
		return ms(s[i])
	}
	return Latency{N: len(s), P50: at(0.50), P99: at(0.99), P999: at(0.999), Max: ms(s[len(s)-1])}
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// resetOps forgets the operations so far (the setup's), keeping the
// acknowledged commands.
func (r *recorder) resetOps() {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, op := range Ops {
		r.ops[op] = &opSamples{errors: map[string]int{}}
	}
}

// lastErrors are op's failed attempts by name, for an error message.
func (r *recorder) lastErrors(op Op) map[string]int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return maps(r.ops[op].errors)
}
