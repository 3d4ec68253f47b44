package process_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/tenancyhq/tenancy/aggregate"
	"github.com/tenancyhq/tenancy/commands"
	"github.com/tenancyhq/tenancy/eventstore/postgres"
	"github.com/tenancyhq/tenancy/internal/pgtest"
	"github.com/tenancyhq/tenancy/process"
	"github.com/tenancyhq/tenancy/projections"
	"github.com/tenancyhq/tenancy/tenantlog"
)

// clock is the injected clock shared by the handler and the timer worker.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

type env struct {
	pool    *pgxpool.Pool
	handler *commands.Handler
	clock   *clock
	ids     map[string]uuid.UUID
}

func (e *env) remember(name string, id uuid.UUID) { e.ids[name] = id }

// waitFor polls cond until it holds (without firing timers).
func (e *env) waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// start runs the scheduler projection on a fresh database with the Postgres
// event store, and returns what the tests drive.
func start(t *testing.T, autoProvision bool) *env {
	t.Helper()
	pool, _ := pgtest.NewMigrated(t)
	store := postgres.New(pool)
	clk := &clock{now: time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)}
	h := commands.NewHandler(store, commands.Options{Now: clk.Now})
	ctx, cancel := context.WithCancel(context.Background())
	runner := projections.NewRunner(pool, store, process.Scheduler{AutoProvision: autoProvision}, projections.Options{LockPollInterval: 20 * time.Millisecond, Decode: tenantlog.Decode})
	done := make(chan error, 1)
	go func() { done <- runner.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("scheduler: %v", err)
		}
	})
	return &env{pool: pool, handler: h, clock: clk, ids: map[string]uuid.UUID{}}
}

func (e *env) worker(holder string) *process.Timers {
	return process.NewTimers(e.pool, e.handler, process.TimerOptions{Now: e.clock.Now, Holder: holder})
}

func (e *env) create(t *testing.T, name string, trial bool) uuid.UUID {
	t.Helper()
	res, err := e.handler.Create(context.Background(), aggregate.Create{Name: name, Edition: "professional", Region: "us-east-1", Trial: &trial}, aggregate.Metadata{})
	if err != nil {
		t.Fatal(err)
	}
	return res.TenantID
}

// eventually fires due timers until cond holds.
func (e *env) eventually(t *testing.T, w *process.Timers, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		if _, err := w.FireDue(context.Background()); err != nil {
			t.Fatal(err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func (e *env) tenant(t *testing.T, id uuid.UUID) (*aggregate.Tenant, []aggregate.Envelope) {
	t.Helper()
	tn, envs, err := e.handler.Load(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	return tn, envs
}

func count(envs []aggregate.Envelope, typ string) int {
	n := 0
	for _, e := range envs {
		if e.Type == typ {
			n++
		}
	}
	return n
}

func TestCreatedTenantIsProvisionedWithoutAnotherCall(t *testing.T) {
	t.Parallel()
	e := start(t, true)
	w := e.worker("a")
	trial := e.create(t, "Trial Co", true)
	paid := e.create(t, "Paid Co", false)
	e.eventually(t, w, "both provisioned", func() bool {
		a, _ := e.tenant(t, trial)
		b, _ := e.tenant(t, paid)
		return a.Status == aggregate.StatusTrial && b.Status == aggregate.StatusActive
	})
	_, envs := e.tenant(t, trial)
	if envs[1].Metadata.Actor != "system:timer" || envs[1].Type != "ProvisioningCompleted" {
		t.Fatalf("provisioning event %s by %q", envs[1].Type, envs[1].Metadata.Actor)
	}
}

func TestExternalProvisioningModeLeavesTenantsProvisioning(t *testing.T) {
	t.Parallel()
	e := start(t, false)
	id := e.create(t, "External Co", true)
	time.Sleep(300 * time.Millisecond) // let the scheduler see the event
	if n, err := e.worker("a").FireDue(context.Background()); err != nil || n != 0 {
		t.Fatalf("fired %d timers (err %v), want none", n, err)
	}
	if tn, _ := e.tenant(t, id); tn.Status != aggregate.StatusProvisioning {
		t.Fatalf("status %s, want PROVISIONING", tn.Status)
	}
}

type failingProvisioner struct{}

func (failingProvisioner) Provision(context.Context, *aggregate.Tenant) ([]string, error) {
	return nil, errors.New("no capacity in region")
}

func TestFailedProvisioningTerminatesTheTenant(t *testing.T) {
	t.Parallel()
	e := start(t, true)
	w := process.NewTimers(e.pool, e.handler, process.TimerOptions{Now: e.clock.Now, Provisioner: failingProvisioner{}})
	id := e.create(t, "Doomed Co", true)
	e.eventually(t, w, "terminated", func() bool { tn, _ := e.tenant(t, id); return tn.Status == aggregate.StatusTerminated })
}

func TestExpiredTrialIsSuspendedWithTrialExpired(t *testing.T) {
	t.Parallel()
	e := start(t, true)
	w := e.worker("a")
	id := e.create(t, "Expiring Co", true)
	e.eventually(t, w, "trial", func() bool { tn, _ := e.tenant(t, id); return tn.Status == aggregate.StatusTrial })
	e.eventually(t, w, "the trial timer", func() bool {
		ts, err := process.Pending(context.Background(), e.pool, id)
		return err == nil && len(ts) == 1 && ts[0].Kind == process.TimerTrialExpiry
	})
	// Not due yet: nothing happens.
	e.clock.Advance(13 * 24 * time.Hour)
	if _, err := w.FireDue(context.Background()); err != nil {
		t.Fatal(err)
	}
	if tn, _ := e.tenant(t, id); tn.Status != aggregate.StatusTrial {
		t.Fatalf("status %s a day before the trial ends", tn.Status)
	}
	e.clock.Advance(36 * time.Hour)
	e.eventually(t, w, "suspension", func() bool { tn, _ := e.tenant(t, id); return tn.Status == aggregate.StatusSuspended })
	tn, envs := e.tenant(t, id)
	if tn.Suspension.Reason != aggregate.ReasonTrialExpired || count(envs, "TrialExpired") != 1 {
		t.Fatalf("suspension %+v, %d TrialExpired events", tn.Suspension, count(envs, "TrialExpired"))
	}
}

func TestOtherTimersFireAtTheirTime(t *testing.T) {
	t.Parallel()
	e := start(t, true)
	w := e.worker("a")
	ctx := context.Background()
	exec := func(id uuid.UUID, cmd aggregate.Command) {
		t.Helper()
		if _, err := e.handler.Execute(ctx, commands.Request{TenantID: id, Command: cmd}); err != nil {
			t.Fatalf("%s: %v", cmd.CommandName(), err)
		}
	}
	resumes, cancels, purges := e.create(t, "Resumes", false), e.create(t, "Cancels", false), e.create(t, "Purges", false)
	e.eventually(t, w, "active", func() bool {
		for _, id := range []uuid.UUID{resumes, cancels, purges} {
			if tn, _ := e.tenant(t, id); tn.Status != aggregate.StatusActive {
				return false
			}
		}
		return true
	})
	at := e.clock.Now().Add(2 * time.Hour)
	exec(resumes, aggregate.Suspend{Reason: aggregate.ReasonPaymentFailed, AutoResumeAt: &at})
	exec(cancels, aggregate.Cancel{EffectiveAt: &at})
	exec(purges, aggregate.Terminate{RetentionDays: 1})
	e.clock.Advance(25 * time.Hour)
	e.eventually(t, w, "resume, cancellation and purge", func() bool {
		a, _ := e.tenant(t, resumes)
		b, _ := e.tenant(t, cancels)
		c, _ := e.tenant(t, purges)
		return a.Status == aggregate.StatusActive && b.Status == aggregate.StatusTerminated && c.Status == aggregate.StatusPurged
	})
}

// TestTwoReplicasFireEachTimerOnce runs two timer workers against the same
// due timers at once: each tenant's trial expires exactly once.
func TestTwoReplicasFireEachTimerOnce(t *testing.T) {
	t.Parallel()
	e := start(t, true)
	a, b := e.worker("replica-a"), e.worker("replica-b")
	var ids []uuid.UUID
	for i := 0; i < 20; i++ {
		ids = append(ids, e.create(t, fmt.Sprintf("Replica %d", i), true))
	}
	allIn := func(s aggregate.Status) func() bool {
		return func() bool {
			for _, id := range ids {
				if tn, _ := e.tenant(t, id); tn.Status != s {
					return false
				}
			}
			return true
		}
	}
	e.eventually(t, a, "trials", allIn(aggregate.StatusTrial))
	e.eventually(t, a, "trial timers", func() bool {
		var n int
		_ = e.pool.QueryRow(context.Background(), `SELECT count(*) FROM timers WHERE kind = 'trial_expiry'`).Scan(&n)
		return n == len(ids)
	})
	e.clock.Advance(15 * 24 * time.Hour)
	var wg sync.WaitGroup
	for _, w := range []*process.Timers{a, b, a, b} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 20; i++ {
				if _, err := w.FireDue(context.Background()); err != nil {
					t.Error(err)
				}
			}
		}()
	}
	wg.Wait()
	e.eventually(t, a, "suspensions", allIn(aggregate.StatusSuspended))
	for _, id := range ids {
		if _, envs := e.tenant(t, id); count(envs, "TrialExpired") != 1 {
			t.Fatalf("tenant %s expired %d times", id, count(envs, "TrialExpired"))
		}
	}
}

// TestRedeliveredTimerAppendsNothing fires a timer, puts it back as if the
// worker had died before deleting it, and fires it again.
func TestRedeliveredTimerAppendsNothing(t *testing.T) {
	t.Parallel()
	e := start(t, true)
	w := e.worker("a")
	id := e.create(t, "Twice", true)
	e.eventually(t, w, "trial", func() bool { tn, _ := e.tenant(t, id); return tn.Status == aggregate.StatusTrial })
	var due time.Time
	e.eventually(t, w, "the trial timer", func() bool {
		ts, _ := process.Pending(context.Background(), e.pool, id)
		if len(ts) == 1 {
			due = ts[0].DueAt
		}
		return len(ts) == 1
	})
	e.clock.Advance(15 * 24 * time.Hour)
	e.eventually(t, w, "suspension", func() bool { tn, _ := e.tenant(t, id); return tn.Status == aggregate.StatusSuspended })
	_, before := e.tenant(t, id)
	// The timer again, at the same due time: a redelivery.
	pgtest.Exec(t, e.pool, `INSERT INTO timers (tenant_id, kind, due_at, set_by) VALUES ($1, 'trial_expiry', $2, $3)`, id, due, uuid.New())
	if _, err := w.FireDue(context.Background()); err != nil {
		t.Fatal(err)
	}
	_, after := e.tenant(t, id)
	if len(after) != len(before) {
		t.Fatalf("redelivered timer appended %d events", len(after)-len(before))
	}
}

// TestResumedTrialStillExpires: a trial suspended past its end keeps no
// timer (fired while suspended, it was moot), is extended and resumed, and
// the trial-expiry timer is back: the trial ends at its new date.
func TestResumedTrialStillExpires(t *testing.T) {
	t.Parallel()
	e := start(t, true)
	w := e.worker("a")
	ctx := context.Background()
	exec := func(id uuid.UUID, cmd aggregate.Command) {
		t.Helper()
		if _, err := e.handler.Execute(ctx, commands.Request{TenantID: id, Command: cmd}); err != nil {
			t.Fatalf("%s: %v", cmd.CommandName(), err)
		}
	}
	id := e.create(t, "Paused Trial", true)
	e.eventually(t, w, "trial", func() bool { tn, _ := e.tenant(t, id); return tn.Status == aggregate.StatusTrial })
	exec(id, aggregate.Suspend{Reason: aggregate.ReasonAdminAction})
	e.clock.Advance(15 * 24 * time.Hour) // past the trial's end, suspended
	e.eventually(t, w, "the moot trial timer dropped", func() bool {
		ts, err := process.Pending(ctx, e.pool, id)
		return err == nil && len(ts) == 0
	})
	if tn, _ := e.tenant(t, id); tn.Status != aggregate.StatusSuspended || tn.Suspension.Reason != aggregate.ReasonAdminAction {
		t.Fatalf("status %s %+v, want still suspended for admin_action", tn.Status, tn.Suspension)
	}
	exec(id, aggregate.ExtendTrial{Days: 10})
	exec(id, aggregate.Resume{})
	tn, _ := e.tenant(t, id)
	if tn.Status != aggregate.StatusTrial {
		t.Fatalf("resumed into %s, want TRIAL", tn.Status)
	}
	e.eventually(t, w, "the trial timer set again", func() bool {
		ts, err := process.Pending(ctx, e.pool, id)
		return err == nil && len(ts) == 1 && ts[0].Kind == process.TimerTrialExpiry && ts[0].DueAt.Equal(*tn.TrialEndsAt)
	})
	e.clock.Advance(10 * 24 * time.Hour)
	e.eventually(t, w, "the trial expired", func() bool {
		tn, _ := e.tenant(t, id)
		return tn.Status == aggregate.StatusSuspended && tn.Suspension.Reason == aggregate.ReasonTrialExpired
	})
}
