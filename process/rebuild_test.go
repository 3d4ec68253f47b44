package process_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/tenancyhq/tenancy/aggregate"
	"github.com/tenancyhq/tenancy/commands"
	"github.com/tenancyhq/tenancy/eventstore/postgres"
	"github.com/tenancyhq/tenancy/process"
	"github.com/tenancyhq/tenancy/projections"
)

// pendingTimers is every pending timer as (kind, tenant, due time), sorted.
func pendingTimers(t *testing.T, e *env) []string {
	t.Helper()
	rows, err := e.pool.Query(context.Background(), `SELECT kind || ' ' || tenant_id || ' ' || to_char(due_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US') FROM timers ORDER BY 1`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			t.Fatal(err)
		}
		out = append(out, s)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestRebuildSchedulerKeepsEveryTimer rebuilds the scheduler on a database
// with pending timers of every kind: the same timers (kind, tenant, due
// time) are pending before and after, at every moment in between the live
// table answers, and the live scheduler's checkpoint stands where the
// rebuild ended, not back at the start.
func TestRebuildSchedulerKeepsEveryTimer(t *testing.T) {
	t.Parallel()
	e := start(t, true)
	ctx := context.Background()
	exec := func(tn string, cmd aggregate.Command) {
		t.Helper()
		if _, err := e.handler.Execute(ctx, commands.Request{TenantID: e.ids[tn], Command: cmd}); err != nil {
			t.Fatalf("%s %s: %v", tn, cmd.CommandName(), err)
		}
	}
	for _, n := range []string{"provisioning", "trial", "suspended", "cancelling", "terminated", "overdue", "recovered"} {
		e.remember(n, e.create(t, "Rebuild "+n, n == "trial"))
	}
	for _, n := range []string{"trial", "suspended", "cancelling", "terminated", "overdue", "recovered"} {
		exec(n, aggregate.CompleteProvisioning{})
	}
	later := e.clock.Now().Add(48 * time.Hour)
	exec("suspended", aggregate.Suspend{Reason: aggregate.ReasonAdminAction, AutoResumeAt: &later})
	exec("cancelling", aggregate.Cancel{EffectiveAt: &later})
	exec("terminated", aggregate.Terminate{})
	exec("overdue", aggregate.RecordBillingStatus{Status: aggregate.BillingPastDue, ProviderEventID: "evt_1"})
	exec("recovered", aggregate.RecordBillingStatus{Status: aggregate.BillingPastDue, ProviderEventID: "evt_2"})
	exec("recovered", aggregate.RecordBillingStatus{Status: aggregate.BillingActive, ProviderEventID: "evt_3"})

	kinds := func(ts []string) []string {
		var ks []string
		for _, s := range ts {
			k := s[:len(s)-len(" 00000000-0000-0000-0000-000000000000 2026-01-01T00:00:00.000000")]
			if !slices.Contains(ks, k) {
				ks = append(ks, k)
			}
		}
		slices.Sort(ks)
		return ks
	}
	allKinds := []string{"auto_resume", "cancellation", "payment_overdue", "payment_recovered", "provision", "purge", "trial_expiry"}
	var before []string
	e.waitFor(t, "every kind of timer", func() bool {
		before = pendingTimers(t, e)
		return slices.Equal(kinds(before), allKinds) && len(before) == 7
	})

	feed := postgres.New(e.pool)
	// While it rebuilds, the live table keeps answering with every timer.
	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	watched := make(chan []string, 1)
	go func() {
		var shortest []string
		for rctx.Err() == nil {
			if ts := pendingTimers(t, e); shortest == nil || len(ts) < len(shortest) {
				shortest = ts
			}
			time.Sleep(5 * time.Millisecond)
		}
		watched <- shortest
	}()
	var last projections.RebuildProgress
	err := process.RebuildScheduler(ctx, e.pool, feed, process.RebuildOptions{AutoProvision: true, ProgressEvery: 20 * time.Millisecond,
		Progress: func(p projections.RebuildProgress) { last = p }})
	cancel()
	if err != nil {
		t.Fatal(err)
	}
	if during := <-watched; len(during) != len(before) {
		t.Errorf("during the rebuild the live table once held %d timers, want %d", len(during), len(before))
	}
	if after := pendingTimers(t, e); !slices.Equal(after, before) {
		t.Fatalf("timers after the rebuild:\n%v\nwant\n%v", after, before)
	}
	if last.Phase != "done" || last.Processed == 0 || last.Rate <= 0 {
		t.Errorf("last progress %+v, want done with events and a rate", last)
	}
	st, err := projections.Status(ctx, e.pool, feed, process.SchedulerName)
	if err != nil {
		t.Fatal(err)
	}
	if st.Position == (projections.ProjectionStatus{}).Position || st.LagEvents != 0 {
		t.Errorf("live scheduler at %v with %d events to go after the rebuild, want caught up", st.Position, st.LagEvents)
	}
}
