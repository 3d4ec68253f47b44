// Package process holds the process managers: they react to events and issue
// ordinary commands, so every step they take is an event like any other and
// idempotent under redelivery.
//
//   - Scheduler (a projection) keeps the due times in the timers table:
//     provisioning (due when the tenant is created), trial expiry, automatic
//     resume, cancellation taking effect, purge after retention, and
//     dunning's (see dunning.go).
//   - Timers (a worker) fires them: it runs the provisioning steps and issues
//     the commands, outside any projection transaction (a long provisioning
//     step must not hold back the event feed).
package process

import (
	"context"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/tenancyhq/tenancy/aggregate"
	"github.com/tenancyhq/tenancy/eventstore"
	"github.com/tenancyhq/tenancy/projections"
	"github.com/tenancyhq/tenancy/tenantlog"
)

// SchedulerName is the scheduler projection's name in projection_checkpoints.
const SchedulerName = "scheduler"

// TimerKind is one time-driven lifecycle step.
type TimerKind string

// The timer kinds and the command each fires.
const (
	TimerProvision    TimerKind = "provision"    // the Provisioner, then CompleteProvisioning or FailProvisioning
	TimerTrialExpiry  TimerKind = "trial_expiry" // ExpireTrial
	TimerAutoResume   TimerKind = "auto_resume"  // Resume{Automatic: true}
	TimerCancellation TimerKind = "cancellation" // CompleteCancellation
	TimerPurge        TimerKind = "purge"        // Purge
	// The dunning process manager's (see dunning.go).
	TimerPaymentOverdue   TimerKind = "payment_overdue"   // Suspend{payment_overdue, Dunning}
	TimerPaymentRecovered TimerKind = "payment_recovered" // Resume{IfReason: payment_overdue}
)

// command is what a timer issues when due.
func (k TimerKind) command() (aggregate.Command, bool) {
	switch k {
	case TimerTrialExpiry:
		return aggregate.ExpireTrial{}, true
	case TimerAutoResume:
		return aggregate.Resume{Automatic: true, Note: "suspension ended at its auto_resume_at"}, true
	case TimerCancellation:
		return aggregate.CompleteCancellation{}, true
	case TimerPurge:
		return aggregate.Purge{}, true
	case TimerPaymentOverdue:
		return dunningSuspend, true
	case TimerPaymentRecovered:
		return dunningResume, true
	}
	return nil, false
}

// Scheduler is the projection that keeps the timers table: each event that
// sets a due time upserts its timer, each that makes one moot deletes it. A
// timer left behind by mistake is harmless: the aggregate refuses its
// command (wrong status, not yet due) and the worker drops it.
type Scheduler struct {
	// AutoProvision sets a provision timer for each new tenant
	// (PROVISIONING_MODE=auto); without it an outside provisioner calls
	// complete-provisioning (PROVISIONING_MODE=external).
	AutoProvision bool
	// name and table are a rebuild's checkpoint and shadow table; empty: the
	// live ones (SchedulerName, timers).
	name, table string
}

// Name implements projections.Projection.
func (s Scheduler) Name() string {
	if s.name != "" {
		return s.name
	}
	return SchedulerName
}

// timersTable is the table the scheduler keeps, quoted.
func (s Scheduler) timersTable() string {
	if s.table != "" {
		return pgx.Identifier{s.table}.Sanitize()
	}
	return "timers"
}

// Filter implements projections.Projection.
func (Scheduler) Filter() eventstore.Filter {
	return eventstore.Filter{StreamPrefixes: []string{aggregate.StreamPrefix}}
}

// Apply implements projections.Projection.
func (s Scheduler) Apply(ctx context.Context, tx pgx.Tx, events []projections.Event) error {
	batch := &pgx.Batch{}
	table := s.timersTable()
	for _, ev := range events {
		env := ev.Envelope
		if env.Type == "" {
			return fmt.Errorf("scheduler: event %s was not decoded (set projections.Options.Decode)", ev.ID)
		}
		id, err := tenantlog.TenantID(ev.Stream)
		if err != nil {
			return fmt.Errorf("scheduler: %w", err)
		}
		set := func(k TimerKind, at time.Time) {
			batch.Queue(`INSERT INTO `+table+` (tenant_id, kind, due_at, set_by) VALUES ($1, $2, $3, $4)
				ON CONFLICT (tenant_id, kind) DO UPDATE
				SET due_at = EXCLUDED.due_at, set_by = EXCLUDED.set_by, claimed_by = NULL, claimed_until = NULL, attempts = 0, last_error = NULL`,
				id, string(k), at, env.EventID)
		}
		clear := func(kinds ...TimerKind) {
			ks := make([]string, len(kinds))
			for i, k := range kinds {
				ks[i] = string(k)
			}
			batch.Queue(`DELETE FROM `+table+` WHERE tenant_id = $1 AND kind = ANY($2)`, id, ks)
		}
		switch e := env.Data.(type) {
		case aggregate.TenantCreated:
			if s.AutoProvision {
				set(TimerProvision, env.OccurredAt)
			}
		case aggregate.ProvisioningCompleted:
			clear(TimerProvision)
		case aggregate.TrialStarted:
			set(TimerTrialExpiry, e.EndsAt)
		case aggregate.TrialExtended:
			set(TimerTrialExpiry, e.EndsAt)
		case aggregate.TrialConverted:
			// From TRIAL, or from a suspension for the trial's expiry.
			clear(TimerTrialExpiry, TimerAutoResume)
		case aggregate.TenantActivated, aggregate.TrialExpired:
			clear(TimerTrialExpiry)
		case aggregate.TenantSuspended:
			if e.AutoResumeAt != nil {
				set(TimerAutoResume, *e.AutoResumeAt)
			} else {
				clear(TimerAutoResume)
			}
		case aggregate.TenantResumed:
			// Back where it was suspended from: that status's timer again
			// (the one set before was dropped as moot if it came due
			// meanwhile).
			clear(TimerAutoResume)
			if e.TrialEndsAt != nil {
				set(TimerTrialExpiry, *e.TrialEndsAt)
			}
			if e.CancellationEffectiveAt != nil {
				set(TimerCancellation, *e.CancellationEffectiveAt)
			}
		case aggregate.CancellationRequested:
			set(TimerCancellation, e.EffectiveAt)
		case aggregate.CancellationReverted:
			clear(TimerCancellation)
			if e.TrialEndsAt != nil { // back into the trial
				set(TimerTrialExpiry, *e.TrialEndsAt)
			}
		case aggregate.CancellationCompleted:
			clear(TimerCancellation)
		case aggregate.BillingStatusChanged:
			dunning(e, env.OccurredAt, set, clear)
		case aggregate.TenantTerminated:
			clear(TimerTrialExpiry, TimerAutoResume, TimerCancellation, TimerPaymentOverdue, TimerPaymentRecovered)
			set(TimerPurge, e.DataRetentionUntil)
		case aggregate.ProvisioningFailed:
			clear(TimerProvision)
			set(TimerPurge, e.DataRetentionUntil)
		case aggregate.TenantRestored:
			clear(TimerPurge)
		case aggregate.TenantPurged:
			clear(TimerProvision, TimerTrialExpiry, TimerAutoResume, TimerCancellation, TimerPurge, TimerPaymentOverdue, TimerPaymentRecovered)
		}
		if cc, ok := env.Data.(aggregate.CancellationCompleted); ok {
			set(TimerPurge, cc.DataRetentionUntil)
		}
	}
	if batch.Len() == 0 {
		return nil
	}
	if err := tx.SendBatch(ctx, batch).Close(); err != nil {
		return fmt.Errorf("scheduler: write timers: %w", err)
	}
	return nil
}

// Timer is one due time.
type Timer struct {
	TenantID uuid.UUID `json:"tenant_id"`
	Kind     TimerKind `json:"kind"`
	DueAt    time.Time `json:"due_at"`
}
