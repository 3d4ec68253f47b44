package process_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/tenancyhq/tenancy/aggregate"
	"github.com/tenancyhq/tenancy/commands"
	"github.com/tenancyhq/tenancy/internal/pgtest"
	"github.com/tenancyhq/tenancy/process"
)

// TestDunningSuspendsOverdueAndResumesOnRecovery drives dunning with an
// injected clock: a tenant past_due for its edition's grace (professional,
// 14 days) is suspended with payment_overdue, soft, exactly once although
// two replicas fire at once; when billing is active again the suspension is
// lifted, and a redelivered timer appends nothing. A tenant that recovers
// within the grace is never suspended; one suspended for another reason is
// not resumed by a recovery.
func TestDunningSuspendsOverdueAndResumesOnRecovery(t *testing.T) {
	t.Parallel()
	e := start(t, true)
	a, b := e.worker("replica-a"), e.worker("replica-b")
	ctx := context.Background()
	exec := func(id uuid.UUID, cmd aggregate.Command) {
		t.Helper()
		if _, err := e.handler.Execute(ctx, commands.Request{TenantID: id, Command: cmd}); err != nil {
			t.Fatalf("%s: %v", cmd.CommandName(), err)
		}
	}
	billing := func(id uuid.UUID, s aggregate.BillingStatus) {
		t.Helper()
		exec(id, aggregate.RecordBillingStatus{Status: s, Provider: "stripe", ProviderEventID: uuid.NewString()})
	}
	status := func(id uuid.UUID) *aggregate.Tenant { tn, _ := e.tenant(t, id); return tn }
	overdue, onTime, other := e.create(t, "Overdue Co", false), e.create(t, "On Time Co", false), e.create(t, "Other Co", false)
	e.eventually(t, a, "active", func() bool {
		return status(overdue).Status == aggregate.StatusActive && status(onTime).Status == aggregate.StatusActive && status(other).Status == aggregate.StatusActive
	})
	for _, id := range []uuid.UUID{overdue, onTime, other} {
		billing(id, aggregate.BillingPastDue)
	}
	e.waitFor(t, "the overdue timers", func() bool {
		var n int
		_ = e.pool.QueryRow(ctx, `SELECT count(*) FROM timers WHERE kind = 'payment_overdue'`).Scan(&n)
		return n == 3
	})
	exec(other, aggregate.Suspend{Reason: aggregate.ReasonTermsViolation})

	e.clock.Advance(13 * 24 * time.Hour)
	billing(onTime, aggregate.BillingActive) // paid within the grace
	if _, err := a.FireDue(ctx); err != nil {
		t.Fatal(err)
	}
	if s := status(overdue); s.Status != aggregate.StatusActive {
		t.Fatalf("suspended a day before the grace ends: %s", s.Status)
	}

	e.clock.Advance(36 * time.Hour)
	var wg sync.WaitGroup
	for _, w := range []*process.Timers{a, b, a, b} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 10; i++ {
				if _, err := w.FireDue(ctx); err != nil {
					t.Error(err)
				}
			}
		}()
	}
	wg.Wait()
	e.eventually(t, a, "the dunning suspension", func() bool { return status(overdue).Status == aggregate.StatusSuspended })
	tn, envs := e.tenant(t, overdue)
	if tn.Suspension.Reason != aggregate.ReasonPaymentOverdue || tn.Suspension.Severity != aggregate.SeveritySoft || count(envs, "TenantSuspended") != 1 {
		t.Fatalf("suspension %+v, %d TenantSuspended events", tn.Suspension, count(envs, "TenantSuspended"))
	}
	if s := status(onTime); s.Status != aggregate.StatusActive {
		t.Fatalf("a tenant that paid within the grace is %s", s.Status)
	}
	if s := status(other); s.Suspension.Reason != aggregate.ReasonTermsViolation {
		t.Fatalf("the other tenant's suspension became %+v", s.Suspension)
	}

	// Redelivery of the fired overdue timer: nothing more.
	_, before := e.tenant(t, overdue)
	pgtest.Exec(t, e.pool, `INSERT INTO timers (tenant_id, kind, due_at, set_by) VALUES ($1, 'payment_overdue', $2, $3)`,
		overdue, *tn.PaymentOverdueAt, uuid.New())
	if _, err := a.FireDue(ctx); err != nil {
		t.Fatal(err)
	}
	if _, after := e.tenant(t, overdue); len(after) != len(before) {
		t.Fatalf("redelivered dunning timer appended %d events", len(after)-len(before))
	}

	// Payment recovers: the payment_overdue suspension, and only it, is lifted.
	billing(overdue, aggregate.BillingActive)
	billing(other, aggregate.BillingActive)
	e.eventually(t, b, "the recovery resume", func() bool { return status(overdue).Status == aggregate.StatusActive })
	e.eventually(t, b, "the recovery timers fired", func() bool {
		var n int
		_ = e.pool.QueryRow(ctx, `SELECT count(*) FROM timers WHERE kind = 'payment_recovered'`).Scan(&n)
		return n == 0
	})
	if s := status(other); s.Status != aggregate.StatusSuspended || s.Suspension.Reason != aggregate.ReasonTermsViolation {
		t.Fatalf("recovery resumed a terms_violation suspension: %s %+v", s.Status, s.Suspension)
	}
	if _, envs := e.tenant(t, overdue); count(envs, "TenantResumed") != 1 {
		t.Fatalf("%d TenantResumed events, want 1", count(envs, "TenantResumed"))
	}
}
