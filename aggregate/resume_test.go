package aggregate_test

import (
	"testing"
	"time"

	"github.com/tenancyhq/tenancy/aggregate"
)

// TestResumeReturnsToWhereTheTenantWas suspends tenants from TRIAL, ACTIVE
// and PENDING_CANCELLATION and resumes them: each goes back with what it had
// (the trial's end and billing standing, the cancellation's date), and a
// deadline that passed while suspended is decided on resume.
func TestResumeReturnsToWhereTheTenantWas(t *testing.T) {
	t.Parallel()
	day := 24 * time.Hour
	cases := []struct {
		name   string
		from   aggregate.Status
		cancel bool // request a cancellation (effective t0+10d) before suspending
		after  time.Duration
		// want is the status after resume ("" = refused with rule).
		want    aggregate.Status
		rule    string
		events  []string
		billing aggregate.BillingStatus
	}{
		{name: "trial, before it ends", from: aggregate.StatusTrial, after: 3 * day,
			want: aggregate.StatusTrial, events: []string{"TenantResumed"}, billing: aggregate.BillingTrialing},
		{name: "trial, after it ended", from: aggregate.StatusTrial, after: 30 * day, rule: "trial_ended"},
		{name: "active", from: aggregate.StatusActive, after: 30 * day,
			want: aggregate.StatusActive, events: []string{"TenantResumed"}, billing: aggregate.BillingActive},
		{name: "pending cancellation, before its date", from: aggregate.StatusActive, cancel: true, after: 3 * day,
			want: aggregate.StatusPendingCancellation, events: []string{"TenantResumed"}, billing: aggregate.BillingActive},
		{name: "pending cancellation, after its date", from: aggregate.StatusActive, cancel: true, after: 30 * day,
			want: aggregate.StatusTerminated, events: []string{"TenantResumed", "CancellationCompleted"}, billing: aggregate.BillingActive},
		{name: "trial's pending cancellation", from: aggregate.StatusTrial, cancel: true, after: 3 * day,
			want: aggregate.StatusPendingCancellation, events: []string{"TenantResumed"}, billing: aggregate.BillingTrialing},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			h := tenantIn(t, tc.from)
			trialEnds := h.tenant.TrialEndsAt
			if tc.cancel {
				h.now = h.now.Add(time.Second)
				h.do(t, aggregate.Cancel{EffectiveAt: ptr(t0.Add(10 * day))})
			}
			h.now = h.now.Add(time.Second)
			h.do(t, aggregate.Suspend{Reason: aggregate.ReasonAdminAction})
			h.now = t0.Add(tc.after)
			evs, err := h.tenant.Decide(aggregate.Resume{}, h.now, cat)
			if tc.want == "" {
				de, ok := aggregate.AsError(err)
				if !ok || de.Code != aggregate.CodeInvariant || de.Rule != tc.rule {
					t.Fatalf("err = %v, want rule %s", err, tc.rule)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var types []string
			for _, e := range evs {
				types = append(types, e.EventType())
			}
			if len(types) != len(tc.events) || types[0] != tc.events[0] || types[len(types)-1] != tc.events[len(tc.events)-1] {
				t.Fatalf("events %v, want %v", types, tc.events)
			}
			h.apply(aggregate.Resume{}, evs)
			tn := h.tenant
			if tn.Status != tc.want || tn.BillingStatus != tc.billing {
				t.Fatalf("resumed to %s (billing %s), want %s (billing %s)", tn.Status, tn.BillingStatus, tc.want, tc.billing)
			}
			if tn.Suspension != nil {
				t.Fatalf("suspension kept: %+v", tn.Suspension)
			}
			if tc.from == aggregate.StatusTrial && (tn.TrialEndsAt == nil || !tn.TrialEndsAt.Equal(*trialEnds)) {
				t.Fatalf("trial ends at %v, want %v", tn.TrialEndsAt, trialEnds)
			}
			if tc.want == aggregate.StatusPendingCancellation && (tn.Cancellation == nil || !tn.Cancellation.EffectiveAt.Equal(t0.Add(10*day))) {
				t.Fatalf("cancellation %+v, want effective at %v", tn.Cancellation, t0.Add(10*day))
			}
			if r, ok := evs[0].(aggregate.TenantResumed); !ok || r.To != tc.want && tc.want != aggregate.StatusTerminated {
				t.Fatalf("TenantResumed = %+v, want To %s", evs[0], tc.want)
			}
		})
	}
}

// TestExpiredTrialWaysOut: a tenant suspended for its trial's expiry is
// converted (ACTIVE, billing active), or extended and resumed into TRIAL;
// resuming without either is refused, naming both.
func TestExpiredTrialWaysOut(t *testing.T) {
	t.Parallel()
	expired := func(t *testing.T) *history {
		h := tenantIn(t, aggregate.StatusTrial)
		h.now = *h.tenant.TrialEndsAt
		h.do(t, aggregate.ExpireTrial{})
		h.now = h.now.Add(time.Hour)
		return h
	}
	h := expired(t)
	_, err := h.tenant.Decide(aggregate.Resume{}, h.now, cat)
	if de, ok := aggregate.AsError(err); !ok || de.Rule != "trial_ended" {
		t.Fatalf("resume of an expired trial: %v", err)
	}
	h.do(t, aggregate.ConvertTrial{})
	if h.tenant.Status != aggregate.StatusActive || h.tenant.BillingStatus != aggregate.BillingActive || h.tenant.Suspension != nil {
		t.Fatalf("converted: %s, billing %s, suspension %+v", h.tenant.Status, h.tenant.BillingStatus, h.tenant.Suspension)
	}

	h = expired(t)
	h.do(t, aggregate.ExtendTrial{Days: 7})
	h.do(t, aggregate.Resume{})
	if h.tenant.Status != aggregate.StatusTrial || h.tenant.BillingStatus != aggregate.BillingTrialing {
		t.Fatalf("extended and resumed: %s, billing %s", h.tenant.Status, h.tenant.BillingStatus)
	}

	// Suspended for another reason from a trial: convert-trial waits for the resume.
	h = tenantIn(t, aggregate.StatusTrial)
	h.do(t, aggregate.Suspend{Reason: aggregate.ReasonAbuseDetected})
	if _, err := h.tenant.Decide(aggregate.ConvertTrial{}, h.now, cat); !aggregate.HasCode(err, aggregate.CodeInvariant) {
		t.Fatalf("convert while suspended for abuse: %v", err)
	}
}

// TestRevertedCancellationReturnsToTheTrial: a trial that is cancelled and
// the cancellation withdrawn is a trial again, not a paid tenant; if the
// trial ended meanwhile, it has expired.
func TestRevertedCancellationReturnsToTheTrial(t *testing.T) {
	t.Parallel()
	h := tenantIn(t, aggregate.StatusTrial)
	h.do(t, aggregate.Cancel{})
	h.now = h.now.Add(time.Hour)
	h.do(t, aggregate.RevertCancellation{})
	if h.tenant.Status != aggregate.StatusTrial || h.tenant.BillingStatus != aggregate.BillingTrialing {
		t.Fatalf("reverted: %s, billing %s", h.tenant.Status, h.tenant.BillingStatus)
	}
	h.do(t, aggregate.Cancel{})
	h.now = h.tenant.TrialEndsAt.Add(time.Hour)
	h.do(t, aggregate.RevertCancellation{})
	if h.tenant.Status != aggregate.StatusSuspended || h.tenant.Suspension.Reason != aggregate.ReasonTrialExpired {
		t.Fatalf("reverted after the trial's end: %s, %+v", h.tenant.Status, h.tenant.Suspension)
	}
}

// TestActivatingATrialMakesItPaid: activate (an administrator's conversion)
// records the billing standing as active, like convert-trial.
func TestActivatingATrialMakesItPaid(t *testing.T) {
	t.Parallel()
	h := tenantIn(t, aggregate.StatusTrial)
	h.do(t, aggregate.Activate{})
	if h.tenant.BillingStatus != aggregate.BillingActive {
		t.Fatalf("billing %s after activate", h.tenant.BillingStatus)
	}
}
