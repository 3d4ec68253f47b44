package chaos

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"
)

// FaultResult is what one fault did and how the system coped.
type FaultResult struct {
	Fault  Fault
	Target string
	// Failover is, per projection, how long after the fault it applied a
	// new event again (from a live replica, where the fault hit its leader).
	Failover map[string]time.Duration
	// Led are the projections the target led when the fault began: they
	// must move on from another replica.
	Led []string
	// Aimed are the projections the fault hit (Led, and the NATS
	// publisher when a NATS node dies): each must move on within the aim.
	Aimed []string
	// OK and Failed are the load's operations from the fault's start to
	// the end of the settling load after it.
	OK, Failed int64
	// Notes are the fault's own figures.
	Notes []string
	// Err is a broken promise (failover over the aim, a stale read).
	Err error
}

// Line is the fault's report line.
func (r FaultResult) Line() string {
	var fo []string
	for _, p := range Projections {
		if d, ok := r.Failover[p]; ok {
			mark := ""
			if slices.Contains(r.Aimed, p) {
				mark = "*"
			}
			fo = append(fo, fmt.Sprintf("%s%s %.1fs", p, mark, d.Seconds()))
		}
	}
	status := "ok"
	if r.Err != nil {
		status = "FAIL: " + r.Err.Error()
	}
	line := fmt.Sprintf("fault %-13s %-22s failover %s; load ok %d failed %d", r.Fault, r.Target, strings.Join(fo, ", "), r.OK, r.Failed)
	if len(r.Notes) > 0 {
		line += "; " + strings.Join(r.Notes, "; ")
	}
	return line + " — " + status
}

// checkpoint is a projection's row in projection_checkpoints.
type checkpoint struct {
	holder          string
	commit, prepare int64
}

func (c checkpoint) after(o checkpoint) bool {
	return c.commit > o.commit || (c.commit == o.commit && c.prepare > o.prepare)
}

func (h *Harness) checkpoints(ctx context.Context) (map[string]checkpoint, error) {
	rows, err := h.primary.Query(ctx, `SELECT name, COALESCE(holder, ''), position_commit, position_prepare FROM projection_checkpoints`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[string]checkpoint{}
	for rows.Next() {
		var name string
		var c checkpoint
		if err := rows.Scan(&name, &c.holder, &c.commit, &c.prepare); err != nil {
			return nil, err
		}
		out[name] = c
	}
	return out, rows.Err()
}

// leaderOf is the replica that leads projection name (nil if none alive does).
func (h *Harness) leaderOf(ctx context.Context, name string) (*replica, error) {
	cps, err := h.checkpoints(ctx)
	if err != nil {
		return nil, err
	}
	for _, r := range h.replicas {
		if r.holder() == cps[name].holder {
			return r, nil
		}
	}
	return nil, nil
}

// awaitFailover measures, per projection, the time from since until its
// checkpoint moves past before; for a projection in led (its leader was hit)
// the move must come from another holder than gone.
func (h *Harness) awaitFailover(ctx context.Context, since time.Time, before map[string]checkpoint, led []string, gone string, limit time.Duration) map[string]time.Duration {
	out := map[string]time.Duration{}
	deadline := since.Add(limit)
	for len(out) < len(Projections) && time.Now().Before(deadline) {
		cps, err := h.checkpoints(ctx)
		if err == nil {
			for _, p := range Projections {
				if _, done := out[p]; done {
					continue
				}
				c := cps[p]
				if c.after(before[p]) && (!slices.Contains(led, p) || c.holder != gone) {
					out[p] = time.Since(since)
				}
			}
		}
		select {
		case <-ctx.Done():
			return out
		case <-time.After(50 * time.Millisecond):
		}
	}
	for _, p := range Projections {
		if _, ok := out[p]; !ok {
			out[p] = limit // did not move within the limit
		}
	}
	return out
}

// inject runs one fault and measures it.
func (h *Harness) inject(ctx context.Context, f Fault) (res FaultResult) {
	res.Fault = f
	before, err := h.checkpoints(ctx)
	if err != nil {
		res.Err = err
		return res
	}
	ledBy := func(r *replica) []string {
		var led []string
		for _, p := range Projections {
			if before[p].holder == r.holder() {
				led = append(led, p)
			}
		}
		return led
	}
	limit := 4 * h.cfg.FailoverAim
	switch f {
	case KillLeader, KillReplica:
		target := h.replicas[h.rnd(len(h.replicas))]
		if f == KillLeader {
			if l, err := h.leaderOf(ctx, "read-model"); err == nil && l != nil {
				target = l
			}
		}
		res.Led = ledBy(target)
		gone := target.holder()
		res.Target = target.name + " " + gone[strings.LastIndex(gone, ":")+1:]
		at := time.Now()
		target.kill()
		res.Failover = h.awaitFailover(ctx, at, before, res.Led, gone, limit)
		restart := time.Now()
		if err := target.start(ctx); err != nil {
			res.Err = err
			return res
		}
		res.Notes = append(res.Notes, fmt.Sprintf("restarted ready in %.1fs", time.Since(restart).Seconds()))
	case KillNATS:
		i := h.rnd(len(h.nats.nodes))
		res.Target = "nats " + h.nats.nodes[i].name
		at := time.Now()
		h.nats.kill(i)
		// The publisher may have been connected to it, or the stream's
		// leader may have been on it: either way it must move on.
		res.Aimed = []string{"nats-publisher"}
		res.Failover = h.awaitFailover(ctx, at, before, nil, "", limit)
		// Down for a while under load, then back with its store.
		sleep(ctx, h.cfg.CutFor/2)
		if err := h.nats.start(i); err != nil {
			res.Err = err
			return res
		}
		if err := h.nats.waitReady(ctx, 60*time.Second); err != nil {
			res.Err = err
			return res
		}
		res.Notes = append(res.Notes, fmt.Sprintf("node down %.0fs, back", time.Since(at).Seconds()))
	case CutNATS, CutPostgres:
		lead, proj := "nats-publisher", func(r *replica) []*Proxy { return r.nats }
		if f == CutPostgres {
			lead, proj = "read-model", func(r *replica) []*Proxy { return r.pg }
		}
		target := h.replicas[h.rnd(len(h.replicas))]
		if l, err := h.leaderOf(ctx, lead); err == nil && l != nil {
			target = l
		}
		res.Target = target.name
		// Only what the cut link carries moves elsewhere: a NATS cut
		// leaves the Postgres projections where they are.
		if f == CutPostgres {
			res.Led = ledBy(target)
		} else if before[lead].holder == target.holder() {
			res.Led = []string{lead}
		}
		at := time.Now()
		target.cutFrom(proj(target), true)
		res.Failover = h.awaitFailover(ctx, at, before, res.Led, target.holder(), limit)
		sleep(ctx, h.cfg.CutFor-time.Since(at))
		target.cutFrom(proj(target), false)
		res.Notes = append(res.Notes, fmt.Sprintf("cut %.0fs", time.Since(at).Seconds()))
		if ready := h.awaitReady(ctx, target, 60*time.Second); ready > 0 {
			res.Notes = append(res.Notes, fmt.Sprintf("ready again %.1fs after the cut ended", ready.Seconds()))
		}
	case PauseStandby:
		res.Target = "standby"
		res.Failover = map[string]time.Duration{}
		res.Notes, res.Err = h.pauseStandby(ctx)
	default:
		res.Err = fmt.Errorf("unknown fault %q", f)
		return res
	}
	for _, p := range res.Led {
		if !slices.Contains(res.Aimed, p) {
			res.Aimed = append(res.Aimed, p)
		}
	}
	for _, p := range res.Aimed {
		if d := res.Failover[p]; d > h.cfg.FailoverAim && res.Err == nil {
			res.Err = fmt.Errorf("%s failed over in %.1fs, over the aim of %s", p, d.Seconds(), h.cfg.FailoverAim)
		}
	}
	return res
}

// awaitReady waits until r answers /health/ready with 200; it returns how long that took.
func (h *Harness) awaitReady(ctx context.Context, r *replica, limit time.Duration) time.Duration {
	start := time.Now()
	for time.Since(start) < limit {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, r.base()+"/health/ready", nil)
		if res, err := http.DefaultClient.Do(req); err == nil {
			res.Body.Close()
			if res.StatusCode == http.StatusOK {
				return time.Since(start)
			}
		}
		sleep(ctx, 100*time.Millisecond)
	}
	return limit
}

// pauseStandby pauses the standby's replay for CutFor while a probe writes
// on the primary and reads with the write's token through the replicas:
// every such read must answer 503 with Retry-After (or the change), never
// the row before it; after the resume the read must answer with the change.
func (h *Harness) pauseStandby(ctx context.Context) ([]string, error) {
	id, err := h.createTenant(ctx, "chaos-standby-"+uuid.NewString()[:8])
	if err != nil {
		return nil, err
	}
	if err := h.awaitStatusNot(ctx, id, "PROVISIONING"); err != nil {
		return nil, err
	}
	if err := h.cfg.Pause(ctx); err != nil {
		return nil, fmt.Errorf("pause the standby: %w", err)
	}
	paused := time.Now()
	resumed := false
	defer func() {
		if !resumed {
			_ = h.cfg.Resume(context.WithoutCancel(ctx))
		}
	}()
	var unavailable, fresh, stale int
	var lastToken string
	var lastVersion uint64
	var maxLag float64
	for time.Since(paused) < h.cfg.CutFor {
		a, err := h.command(ctx, http.MethodPatch, "/api/v1/tenants/"+id, map[string]any{"labels": map[string]string{"probe": fmt.Sprint(time.Now().UnixNano())}})
		if err != nil {
			return nil, err
		}
		lastToken, lastVersion = a.token, a.version
		st, v, retryAfter, err := h.readTenant(ctx, id, lastToken)
		switch {
		case err != nil:
			return nil, err
		case st == http.StatusServiceUnavailable && retryAfter:
			unavailable++
		case st == http.StatusOK && v >= lastVersion:
			fresh++ // a replica read before the pause took hold
		case st == http.StatusOK:
			stale++
		default:
			return nil, fmt.Errorf("a read with its token on the paused standby answered %d", st)
		}
		if lag := h.replicaLag(ctx); lag > maxLag {
			maxLag = lag
		}
	}
	if err := h.cfg.Resume(ctx); err != nil {
		return nil, fmt.Errorf("resume the standby: %w", err)
	}
	resumed = true
	at := time.Now()
	var back time.Duration
	for {
		st, v, _, err := h.readTenant(ctx, id, lastToken)
		if err != nil {
			return nil, err
		}
		if st == http.StatusOK && v >= lastVersion {
			back = time.Since(at)
			break
		}
		if time.Since(at) > 60*time.Second {
			return nil, fmt.Errorf("60 s after the standby resumed, a read with the token still answers %d", st)
		}
		sleep(ctx, 50*time.Millisecond)
	}
	notes := []string{fmt.Sprintf("paused %.0fs: token reads 503+Retry-After %d, fresh %d, stale %d; lag up to %.0f KiB; reads fresh %.2fs after resume",
		time.Since(paused).Seconds()-back.Seconds(), unavailable, fresh, stale, maxLag/1024, back.Seconds())}
	if stale > 0 {
		return notes, fmt.Errorf("%d reads with a consistency token answered stale data from the paused standby", stale)
	}
	if unavailable == 0 {
		return notes, fmt.Errorf("no read waited on the paused standby: was it paused?")
	}
	return notes, nil
}

// replicaLag is the standby lag in bytes one replica's readiness reports.
func (h *Harness) replicaLag(ctx context.Context) float64 {
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://chaos/health/ready", nil)
	res, err := h.client.Do(req)
	if err != nil {
		return 0
	}
	defer res.Body.Close()
	var rep struct {
		Replica struct {
			LagBytes float64 `json:"lag_bytes"`
		} `json:"replica"`
	}
	_ = json.NewDecoder(res.Body).Decode(&rep)
	return rep.Replica.LagBytes
}

// ---- the harness's own requests ----

// answer is an acknowledged command.
type answer struct {
	id      string
	version uint64
	token   string
}

// command sends a command with an Idempotency-Key, retried with the same
// key on a 5xx or a broken connection for up to a minute, and records it
// as acknowledged.
func (h *Harness) command(ctx context.Context, method, path string, body any) (answer, error) {
	b, _ := json.Marshal(body)
	key := uuid.NewString()
	deadline := time.Now().Add(time.Minute)
	for {
		req, _ := http.NewRequestWithContext(ctx, method, "http://chaos"+path, bytes.NewReader(b))
		req.Header.Set("Authorization", "Bearer "+h.token)
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Idempotency-Key", key)
		res, err := h.client.Do(req)
		if err == nil {
			data, _ := io.ReadAll(res.Body)
			res.Body.Close()
			if res.StatusCode < 300 {
				var t struct {
					ID      string `json:"id"`
					Version uint64 `json:"version"`
				}
				if err := json.Unmarshal(data, &t); err != nil {
					return answer{}, fmt.Errorf("%s %s: %w", method, path, err)
				}
				a := answer{id: t.ID, version: t.Version, token: res.Header.Get("X-Consistency-Token")}
				h.mu.Lock()
				h.acks = append(h.acks, ack{stream: "tenant-" + t.ID, version: t.Version})
				h.mu.Unlock()
				return a, nil
			}
			if res.StatusCode < 500 {
				return answer{}, fmt.Errorf("%s %s: %d %s", method, path, res.StatusCode, data)
			}
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return answer{}, fmt.Errorf("%s %s: no answer in a minute (last: %v)", method, path, err)
		}
		sleep(ctx, 200*time.Millisecond)
	}
}

// readTenant reads a tenant with a consistency token (none if empty); it
// returns the status, the tenant's version and whether a 503 said when
// to retry. A broken connection is retried.
func (h *Harness) readTenant(ctx context.Context, id, token string) (int, uint64, bool, error) {
	for range 20 {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://chaos/api/v1/tenants/"+id, nil)
		req.Header.Set("Authorization", "Bearer "+h.token)
		if token != "" {
			req.Header.Set("X-Consistency-Token", token)
		}
		res, err := h.client.Do(req)
		if err != nil {
			sleep(ctx, 200*time.Millisecond)
			continue
		}
		data, _ := io.ReadAll(res.Body)
		res.Body.Close()
		var t struct {
			Version uint64 `json:"version"`
		}
		_ = json.Unmarshal(data, &t)
		return res.StatusCode, t.Version, res.Header.Get("Retry-After") != "" && strings.HasPrefix(res.Header.Get("Content-Type"), "application/problem+json"), nil
	}
	return 0, 0, false, fmt.Errorf("GET tenant %s: no answer", id)
}

func (h *Harness) createTenant(ctx context.Context, name string) (string, error) {
	a, err := h.command(ctx, http.MethodPost, "/api/v1/tenants", map[string]any{"name": name, "edition": "professional"})
	return a.id, err
}

func sleep(ctx context.Context, d time.Duration) {
	if d <= 0 {
		return
	}
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}

func randN(n int) int { return rand.IntN(n) }
