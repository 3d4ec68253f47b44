package chaos

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// CheckResult is one end check.
type CheckResult struct {
	Name   string
	Figure string
	Err    error
}

// Line is the check's report line.
func (c CheckResult) Line() string {
	status := "ok"
	if c.Err != nil {
		status = "FAIL: " + c.Err.Error()
	}
	return fmt.Sprintf("check %-22s %s — %s", c.Name, c.Figure, status)
}

// check runs the end checks once the load has stopped and prints each.
func (h *Harness) check(ctx context.Context, acks []ack, cycles timerCycles, load LoadReport) []CheckResult {
	var out []CheckResult
	add := func(c CheckResult) {
		h.printf("%s", c.Line())
		out = append(out, c)
	}
	add(h.checkCaughtUp(ctx))
	add(h.checkTimers(ctx, cycles))
	add(h.checkCaughtUp(ctx)) // the timers' last commands too
	add(h.checkAcks(ctx, acks, load.InDoubt))
	add(h.checkDuplicates(ctx))
	add(CheckResult{Name: "read-your-writes", Figure: fmt.Sprintf("%d stale reads of the caller's own write", load.Stale),
		Err: errIf(load.Stale > 0, "%d reads answered older than the caller's acknowledged write", load.Stale)})
	add(h.checkVerify(ctx))
	add(h.checkNATS(ctx))
	return out
}

func errIf(cond bool, format string, args ...any) error {
	if cond {
		return fmt.Errorf(format, args...)
	}
	return nil
}

// lastEvent is the store's last position.
const lastEventSQL = `SELECT transaction_id::text::bigint, position FROM events ORDER BY transaction_id DESC, position DESC LIMIT 1`

// checkCaughtUp waits until every projection has applied the last event.
func (h *Harness) checkCaughtUp(ctx context.Context) CheckResult {
	start := time.Now()
	var head checkpoint
	if err := h.primary.QueryRow(ctx, lastEventSQL).Scan(&head.commit, &head.prepare); err != nil {
		return CheckResult{Name: "projections caught up", Err: err}
	}
	for {
		cps, err := h.checkpoints(ctx)
		if err == nil {
			behind := []string{}
			for _, p := range Projections {
				if head.after(cps[p]) {
					behind = append(behind, p)
				}
			}
			if len(behind) == 0 {
				return CheckResult{Name: "projections caught up", Figure: fmt.Sprintf("all %d at the last event in %.1fs", len(Projections), time.Since(start).Seconds())}
			}
			if time.Since(start) > 2*time.Minute {
				return CheckResult{Name: "projections caught up", Err: fmt.Errorf("%v behind the last event 2 minutes after the load ended", behind)}
			}
		}
		sleep(ctx, 100*time.Millisecond)
	}
}

// checkAcks: every acknowledged command is in the event log, at the
// version it was answered with (and, for a command whose data names its
// key, that very command).
func (h *Harness) checkAcks(ctx context.Context, acks []ack, inDoubt int) CheckResult {
	streams, versions, keys := make([]string, len(acks)), make([]int64, len(acks)), make([]string, len(acks))
	for i, a := range acks {
		streams[i], versions[i], keys[i] = a.stream, int64(a.version), a.key
	}
	var lost int
	var example *string
	err := h.primary.QueryRow(ctx, `
		SELECT count(*), min(a.stream || '@' || a.version)
		FROM unnest($1::text[], $2::bigint[], $3::text[]) AS a(stream, version, key)
		WHERE NOT EXISTS (SELECT 1 FROM events e WHERE e.stream = a.stream AND e.version = a.version
		                  AND (a.key = '' OR strpos(e.data::text, a.key) > 0))`, streams, versions, keys).Scan(&lost, &example)
	if err != nil {
		return CheckResult{Name: "acknowledged commands", Err: err}
	}
	c := CheckResult{Name: "acknowledged commands", Figure: fmt.Sprintf("%d acknowledged, %d lost (%d in doubt, not acknowledged)", len(acks), lost, inDoubt)}
	if lost > 0 {
		c.Err = fmt.Errorf("%d acknowledged commands are not in the event log (e.g. %s)", lost, *example)
	}
	if len(acks) == 0 {
		c.Err = errors.New("no command was acknowledged: the load did not run")
	}
	return c
}

// checkDuplicates: no command was applied twice (each update's key is in
// one event only) and no tenant completed provisioning twice.
func (h *Harness) checkDuplicates(ctx context.Context) CheckResult {
	var dupUpdates, dupProvisions, events int
	err := h.primary.QueryRow(ctx, `
		SELECT (SELECT count(*) FROM (SELECT 1 FROM events WHERE event_type = 'MetadataUpdated' AND data->'metadata' ? 'bench'
		                               GROUP BY data->'metadata'->>'bench' HAVING count(*) > 1) d),
		       (SELECT count(*) FROM (SELECT 1 FROM events WHERE event_type = 'ProvisioningCompleted' GROUP BY stream HAVING count(*) > 1) p),
		       (SELECT count(*) FROM events)`).Scan(&dupUpdates, &dupProvisions, &events)
	if err != nil {
		return CheckResult{Name: "duplicates in the store", Err: err}
	}
	return CheckResult{Name: "duplicates in the store", Figure: fmt.Sprintf("%d events; commands applied twice %d, provisioned twice %d", events, dupUpdates, dupProvisions),
		Err: errIf(dupUpdates+dupProvisions > 0, "%d commands applied twice, %d tenants provisioned twice", dupUpdates, dupProvisions)}
}

// checkTimers: every due timer fired, exactly once. Every tenant created
// left PROVISIONING once (the provision timer, or the load completing it
// itself when the timer was slow), and each automatic resume the timer
// driver asked for happened once: as many TenantResumed by the timer as
// suspensions, per tenant. Nothing is left due.
func (h *Harness) checkTimers(ctx context.Context, cycles timerCycles) CheckResult {
	const name = "timers fired once"
	if cycles.err != nil {
		return CheckResult{Name: name, Err: cycles.err}
	}
	start := time.Now()
	var due int
	for {
		if err := h.primary.QueryRow(ctx, `SELECT count(*) FROM timers WHERE due_at <= now()`).Scan(&due); err != nil {
			return CheckResult{Name: name, Err: err}
		}
		// A timer claimed by a killed replica is free again after its
		// claim (30 s); and the last resume is due a few seconds on.
		if due == 0 && time.Since(start) > 5*time.Second {
			break
		}
		if time.Since(start) > 90*time.Second {
			return CheckResult{Name: name, Err: fmt.Errorf("%d timers still due 90 s after the load ended", due)}
		}
		sleep(ctx, 250*time.Millisecond)
	}
	var created, provisioned, byTimer, stuck int
	err := h.primary.QueryRow(ctx, `
		SELECT count(*) FILTER (WHERE event_type = 'TenantCreated'),
		       count(*) FILTER (WHERE event_type IN ('ProvisioningCompleted', 'ProvisioningFailed')),
		       count(*) FILTER (WHERE event_type = 'ProvisioningCompleted' AND metadata->>'actor' = 'system:timer'),
		       (SELECT count(*) FROM tenants WHERE status = 'PROVISIONING')
		FROM events`).Scan(&created, &provisioned, &byTimer, &stuck)
	if err != nil {
		return CheckResult{Name: name, Err: err}
	}
	var problems []string
	if provisioned != created || stuck > 0 {
		problems = append(problems, fmt.Sprintf("%d tenants created, %d provisioned, %d still PROVISIONING", created, provisioned, stuck))
	}
	suspensions, resumes := 0, 0
	for id, n := range cycles.suspensions {
		var s, r int
		if err := h.primary.QueryRow(ctx, `
			SELECT count(*) FILTER (WHERE event_type = 'TenantSuspended'),
			       count(*) FILTER (WHERE event_type = 'TenantResumed' AND metadata->>'actor' = 'system:timer')
			FROM events WHERE stream = $1`, "tenant-"+id).Scan(&s, &r); err != nil {
			return CheckResult{Name: name, Err: err}
		}
		suspensions += s
		resumes += r
		if s != n || r != s {
			problems = append(problems, fmt.Sprintf("tenant %s: %d suspensions acknowledged, %d in the log, %d resumed by the timer", id, n, s, r))
		}
	}
	c := CheckResult{Name: name, Figure: fmt.Sprintf("provision: %d tenants, %d by the timer; auto-resume: %d suspensions, %d resumed by the timer; 0 due",
		created, byTimer, suspensions, resumes)}
	if suspensions == 0 {
		problems = append(problems, "no automatic resume fell due during the run")
	}
	if len(problems) > 0 {
		c.Err = errors.New(strings.Join(problems, "; "))
	}
	return c
}

// checkVerify runs tenancy verify: the read model equals a fresh fold of
// the events.
func (h *Harness) checkVerify(ctx context.Context) CheckResult {
	cmd := exec.CommandContext(ctx, h.cfg.Binary, "verify", "--json")
	cmd.Env = append(append(os.Environ(), h.env...), "DATA_DIR="+filepath.Join(h.cfg.Dir, "ops"), "DATABASE_URL="+dbURL(h.cfg.PrimaryAddr, h.db, 4))
	out, err := cmd.Output()
	var rep struct {
		Equal       bool              `json:"equal"`
		Checkpoint  string            `json:"checkpoint"`
		Differences []json.RawMessage `json:"differences"`
	}
	if jerr := json.Unmarshal(out, &rep); jerr != nil {
		return CheckResult{Name: "tenancy verify", Err: fmt.Errorf("%v: %s", errors.Join(err, jerr), out)}
	}
	c := CheckResult{Name: "tenancy verify", Figure: fmt.Sprintf("read model vs fold of the events up to %s: %d differences", rep.Checkpoint, len(rep.Differences))}
	if err != nil || !rep.Equal {
		c.Err = fmt.Errorf("tenancy verify: %v, %d differences", err, len(rep.Differences))
	}
	return c
}

// checkNATS reads the whole TENANCY_EVENTS stream: each event of the store
// is on it exactly once (distinct ids = events = messages), and each
// tenant's events are in stream order.
func (h *Harness) checkNATS(ctx context.Context) CheckResult {
	const name = "events on NATS"
	nc, err := nats.Connect(h.nats.URLs())
	if err != nil {
		return CheckResult{Name: name, Err: err}
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return CheckResult{Name: name, Err: err}
	}
	var ids []string
	rows, err := h.primary.Query(ctx, `SELECT event_id::text FROM events WHERE stream LIKE 'tenant-%'`)
	if err != nil {
		return CheckResult{Name: name, Err: err}
	}
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			rows.Close()
			return CheckResult{Name: name, Err: err}
		}
		ids = append(ids, id)
	}
	rows.Close()
	stream, err := js.Stream(ctx, "TENANCY_EVENTS")
	if err != nil {
		return CheckResult{Name: name, Err: err}
	}
	info, err := stream.Info(ctx)
	if err != nil {
		return CheckResult{Name: name, Err: err}
	}
	cons, err := stream.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{})
	if err != nil {
		return CheckResult{Name: name, Err: err}
	}
	seen := map[string]int{}
	last := map[string]uint64{}
	outOfOrder, messages := 0, 0
	for uint64(messages) < info.State.Msgs {
		batch, err := cons.Fetch(500, jetstream.FetchMaxWait(5*time.Second))
		if err != nil {
			return CheckResult{Name: name, Err: err}
		}
		got := 0
		for m := range batch.Messages() {
			got++
			messages++
			var ce struct {
				ID            string `json:"id"`
				Subject       string `json:"subject"`
				StreamVersion uint64 `json:"streamversion"`
			}
			if err := json.Unmarshal(m.Data(), &ce); err != nil {
				return CheckResult{Name: name, Err: fmt.Errorf("message is not a CloudEvent: %w", err)}
			}
			seen[ce.ID]++
			if v, ok := last[ce.Subject]; ok && ce.StreamVersion <= v {
				outOfOrder++
			}
			last[ce.Subject] = ce.StreamVersion
		}
		if batch.Error() != nil && !errors.Is(batch.Error(), jetstream.ErrNoHeartbeat) {
			return CheckResult{Name: name, Err: batch.Error()}
		}
		if got == 0 {
			break
		}
	}
	missing, dups := 0, 0
	for _, id := range ids {
		if seen[id] == 0 {
			missing++
		}
	}
	for _, n := range seen {
		if n > 1 {
			dups += n - 1
		}
	}
	extra := len(seen) - (len(ids) - missing)
	c := CheckResult{Name: name, Figure: fmt.Sprintf("%d events in the store, %d messages (R%d), %d distinct ids; missing %d, duplicated %d, unknown %d, out of order %d",
		len(ids), messages, info.Config.Replicas, len(seen), missing, dups, extra, outOfOrder)}
	if missing+dups+extra+outOfOrder > 0 || info.Config.Replicas != 3 {
		c.Err = fmt.Errorf("NATS does not hold each event once in order at 3 replicas")
	}
	return c
}

// ---- small helpers ----

func decodeJSON(res *http.Response, v any) error {
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		return err
	}
	return json.Unmarshal(b, v)
}

func containsString(list []string, s string) bool { return slices.Contains(list, s) }

func containsEq(s string) bool { return strings.Contains(s, "=") && !strings.HasPrefix(s, "-") }

func trimSpace(s string) string { return strings.TrimSpace(s) }

func joinComma(s []string) string { return strings.Join(s, ",") }

func sprintf(format string, args ...any) string { return fmt.Sprintf(format, args...) }
