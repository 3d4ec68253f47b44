package process

import (
	"time"

	"github.com/tenancyhq/tenancy/aggregate"
)

// Dunning is the process manager that turns billing standing into the
// lifecycle, with two timers of the scheduler:
//
//   - payment_overdue: when the billing status becomes past_due, the
//     aggregate fixes when the edition's grace ends (catalog.json,
//     payment_grace_days; BillingStatusChanged.OverdueAt) and the scheduler
//     sets the timer then. Fired, it suspends the tenant with
//     payment_overdue (soft), a command the aggregate refuses (so the timer
//     is moot) unless the tenant is still past_due past its grace. Any other
//     billing status clears the timer.
//   - payment_recovered: when the billing status becomes active, a timer due
//     at once resumes the tenant if, and only if, it is suspended with
//     payment_overdue (Resume.IfReason); any other suspension, or none, makes
//     it moot.
//
// Both are ordinary commands issued by the timer worker: claimed by one
// replica at a time, with idempotency keys, so redelivery and several
// replicas apply each once.
var (
	dunningSuspend = aggregate.Suspend{Reason: aggregate.ReasonPaymentOverdue, Severity: aggregate.SeveritySoft, Dunning: true,
		By: "system:dunning", Note: "billing status past_due beyond the edition's grace"}
	dunningResume = aggregate.Resume{IfReason: aggregate.ReasonPaymentOverdue, Note: "payment recovered: billing status active"}
)

// dunning keeps the dunning timers of one billing status change.
func dunning(e aggregate.BillingStatusChanged, at time.Time, set func(TimerKind, time.Time), clear func(...TimerKind)) {
	if e.OverdueAt != nil {
		set(TimerPaymentOverdue, *e.OverdueAt)
	} else {
		clear(TimerPaymentOverdue)
	}
	if e.To == aggregate.BillingActive {
		set(TimerPaymentRecovered, at)
	} else {
		clear(TimerPaymentRecovered)
	}
}
