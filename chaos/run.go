package chaos

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"
)

// Result is a whole run: a line per fault and per end check.
type Result struct {
	Faults []FaultResult
	Checks []CheckResult
	Load   LoadReport
}

// Err joins every broken promise of the run (nil: none).
func (r Result) Err() error {
	var errs []error
	for _, f := range r.Faults {
		if f.Err != nil {
			errs = append(errs, fmt.Errorf("fault %s: %w", f.Fault, f.Err))
		}
	}
	for _, c := range r.Checks {
		if c.Err != nil {
			errs = append(errs, fmt.Errorf("check %s: %w", c.Name, c.Err))
		}
	}
	return errors.Join(errs...)
}

// Run drives the load, injects the faults in order with Settle of steady
// load around each, stops the load and runs the end checks. Every fault
// and check prints its line as it ends.
func (h *Harness) Run(ctx context.Context) (Result, error) {
	var res Result
	loadCtx, stopLoad := context.WithCancel(ctx)
	defer stopLoad()
	type loadDone struct {
		rep LoadReport
		err error
	}
	done := make(chan loadDone, 1)
	start := time.Now()
	go func() {
		rep, err := h.cfg.Load.Drive(loadCtx, Target{BaseURL: "http://chaos", Client: &http.Client{Timeout: 10 * time.Second, Transport: h.balancer},
			Token: h.token, NATSURL: h.nats.URLs(), Rate: h.cfg.Rate, Concurrency: h.cfg.Concurrency},
			func(ok, failed int64) { h.okOps.Store(ok); h.failedOps.Store(failed) })
		done <- loadDone{rep, err}
	}()
	// The load's setup (its tenants) must be done before the first fault.
	for h.okOps.Load() == 0 {
		select {
		case d := <-done:
			return res, fmt.Errorf("the load ended before it began: %v", d.err)
		case <-ctx.Done():
			return res, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
		if time.Since(start) > 3*time.Minute {
			return res, errors.New("the load did not start within 3 minutes")
		}
	}
	h.printf("chaos: load running (%.0f req/s target, %d workers) after %.1fs of setup", h.cfg.Rate, h.cfg.Concurrency, time.Since(start).Seconds())
	timersCtx, stopTimers := context.WithCancel(ctx)
	timers := h.startTimers(timersCtx, 3)
	sleep(ctx, h.cfg.Settle)
	for _, f := range h.cfg.Faults {
		ok0, failed0 := h.okOps.Load(), h.failedOps.Load()
		r := h.inject(ctx, f)
		sleep(ctx, h.cfg.Settle)
		r.OK, r.Failed = h.okOps.Load()-ok0, h.failedOps.Load()-failed0
		h.printf("%s", r.Line())
		res.Faults = append(res.Faults, r)
	}
	stopTimers()
	cycles := timers.wait()
	stopLoad()
	d := <-done
	if d.err != nil {
		return res, fmt.Errorf("load: %w", d.err)
	}
	res.Load = d.rep
	for _, l := range d.rep.Summary {
		h.printf("%s", l)
	}
	h.mu.Lock()
	acks := append(append([]ack(nil), d.rep.Acks...), h.acks...)
	h.mu.Unlock()
	res.Checks = h.check(ctx, acks, cycles, d.rep)
	return res, nil
}

// ---- timers that fall due during the run ----

// timerDriver suspends tenants of its own with an automatic resume a few
// seconds later, one cycle after another, so timers fall due (and must
// fire exactly once) all through the faults. The service's own provision
// timers (every create) are checked too.
type timerDriver struct {
	wg     sync.WaitGroup
	mu     sync.Mutex
	cycles map[string]int // tenant id → suspensions acknowledged
	errs   []error
}

func (h *Harness) startTimers(ctx context.Context, tenants int) *timerDriver {
	d := &timerDriver{cycles: map[string]int{}}
	for i := range tenants {
		d.wg.Go(func() {
			id, err := h.createTenant(ctx, fmt.Sprintf("chaos-timer-%d-%s", i, uuid.NewString()[:8]))
			if err != nil {
				d.fail(err)
				return
			}
			for ctx.Err() == nil {
				if err := h.awaitStatusNot(ctx, id, "PROVISIONING", "SUSPENDED"); err != nil {
					if ctx.Err() == nil {
						d.fail(err)
					}
					return
				}
				if ctx.Err() != nil {
					return
				}
				at := time.Now().Add(3 * time.Second).UTC()
				if _, err := h.command(ctx, http.MethodPost, "/api/v1/tenants/"+id+"/suspend",
					map[string]any{"reason": "admin_action", "note": "chaos timer", "auto_resume_at": at}); err != nil {
					if ctx.Err() == nil {
						d.fail(err)
					}
					return
				}
				d.mu.Lock()
				d.cycles[id]++
				d.mu.Unlock()
			}
		})
	}
	return d
}

func (d *timerDriver) fail(err error) {
	d.mu.Lock()
	d.errs = append(d.errs, err)
	d.mu.Unlock()
}

// wait ends the cycles and returns them.
func (d *timerDriver) wait() timerCycles {
	d.wg.Wait()
	return timerCycles{suspensions: d.cycles, err: errors.Join(d.errs...)}
}

type timerCycles struct {
	suspensions map[string]int
	err         error
}

// awaitStatusNot waits until the tenant's status is none of statuses
// (read with Consistency: eventual, through the balancer).
func (h *Harness) awaitStatusNot(ctx context.Context, id string, statuses ...string) error {
	deadline := time.Now().Add(2 * time.Minute)
	for ctx.Err() == nil {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://chaos/api/v1/tenants/"+id, nil)
		req.Header.Set("Authorization", "Bearer "+h.token)
		res, err := h.client.Do(req)
		if err == nil {
			var t struct {
				Status string `json:"status"`
			}
			err = decodeJSON(res, &t)
			if err == nil && t.Status != "" && !containsString(statuses, t.Status) {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("tenant %s still %s after 2 minutes", id, strings.Join(statuses, " or "))
		}
		sleep(ctx, 200*time.Millisecond)
	}
	return ctx.Err()
}
