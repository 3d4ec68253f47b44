package aggregate_test

import (
	"testing"
	"time"

	"github.com/tenancyhq/tenancy/aggregate"
)

// TestDunningDecisions: past_due fixes the end of the edition's grace; the
// dunning suspension is refused before it, or once billing recovered; the
// dunning resume lifts a payment_overdue suspension and no other.
func TestDunningDecisions(t *testing.T) {
	t.Parallel()
	day := 24 * time.Hour
	h := tenantIn(t, aggregate.StatusActive) // professional: 14 days' grace
	h.do(t, aggregate.RecordBillingStatus{Status: aggregate.BillingPastDue, ProviderEventID: "e1"})
	if want := h.now.AddDate(0, 0, 14); h.tenant.PaymentOverdueAt == nil || !h.tenant.PaymentOverdueAt.Equal(want) {
		t.Fatalf("overdue at %v, want %v", h.tenant.PaymentOverdueAt, want)
	}
	started := h.now
	h.now = h.now.Add(3 * day)
	h.do(t, aggregate.RecordBillingStatus{Status: aggregate.BillingPastDue, ProviderEventID: "e2"})
	if want := started.AddDate(0, 0, 14); !h.tenant.PaymentOverdueAt.Equal(want) {
		t.Fatalf("a second past_due moved the grace to %v, want %v", h.tenant.PaymentOverdueAt, want)
	}
	dun := aggregate.Suspend{Reason: aggregate.ReasonPaymentOverdue, Dunning: true}
	if _, err := h.tenant.Decide(dun, started.Add(13*day), cat); !aggregate.HasCode(err, aggregate.CodeInvariant) {
		t.Fatalf("dunning before the grace ends: %v", err)
	}
	h.now = started.Add(14 * day)
	h.do(t, dun)
	if s := h.tenant.Suspension; s == nil || s.Reason != aggregate.ReasonPaymentOverdue || s.Severity != aggregate.SeveritySoft {
		t.Fatalf("suspension %+v", s)
	}
	recover := aggregate.Resume{IfReason: aggregate.ReasonPaymentOverdue}
	h.do(t, aggregate.RecordBillingStatus{Status: aggregate.BillingActive, ProviderEventID: "e3"})
	h.do(t, recover)
	if h.tenant.Status != aggregate.StatusActive || h.tenant.PaymentOverdueAt != nil {
		t.Fatalf("after recovery: %s, overdue at %v", h.tenant.Status, h.tenant.PaymentOverdueAt)
	}
	// Recovered before the grace ended: the dunning suspension is moot.
	h.do(t, aggregate.RecordBillingStatus{Status: aggregate.BillingPastDue, ProviderEventID: "e4"})
	h.do(t, aggregate.RecordBillingStatus{Status: aggregate.BillingActive, ProviderEventID: "e5"})
	if _, err := h.tenant.Decide(dun, h.now.Add(30*day), cat); !aggregate.HasCode(err, aggregate.CodeInvariant) {
		t.Fatalf("dunning after recovery: %v", err)
	}
	// Another kind of suspension is not dunning's to lift.
	h.do(t, aggregate.Suspend{Reason: aggregate.ReasonTermsViolation})
	if _, err := h.tenant.Decide(recover, h.now, cat); !aggregate.HasCode(err, aggregate.CodeInvariant) {
		t.Fatalf("dunning resume of a terms_violation suspension: %v", err)
	}
}
