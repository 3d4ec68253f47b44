// Package aggregate holds the tenant aggregate: its state folded from events,
// the lifecycle state machine, the commands' rules and the events they emit,
// the edition catalog and policy evaluation. It is pure Go: no I/O and no
// clock (time is an argument), so every rule is testable by table.
package aggregate

import (
	"maps"
	"slices"
	"time"

	"github.com/google/uuid"
)

// Tenant is a tenant's state, folded from its events. The zero Tenant is one
// that does not exist yet (Exists() is false).
type Tenant struct {
	ID             uuid.UUID `json:"id"`
	ExternalID     string    `json:"external_id"`
	Name           string    `json:"name"`
	NormalizedName string    `json:"normalized_name"`
	Status         Status    `json:"status"`
	Edition        Edition   `json:"edition"`
	Region         Region    `json:"region"`

	Contacts            []Contact         `json:"contacts"`
	Metadata            map[string]string `json:"metadata"`
	Labels              map[string]string `json:"labels"`
	ComplianceStandards []string          `json:"compliance_standards"`

	Overrides Overrides                    `json:"overrides"`
	Policies  map[PolicyType]PolicySetting `json:"policies"`

	BillingStatus BillingStatus `json:"billing_status"`
	// PaymentOverdueAt is set while the billing status is past_due: the end
	// of the edition's grace, after which dunning suspends the tenant
	// (payment_overdue). It is fixed when past_due begins.
	PaymentOverdueAt *time.Time `json:"payment_overdue_at,omitempty"`
	// billingSeen holds the billing provider's event ids already recorded, and
	// billingAt the provider time of the newest one, for de-duplication.
	billingSeen map[string]bool
	billingAt   *time.Time

	// Trial fields are set while (and after) the tenant had a trial.
	TrialDays   int        `json:"trial_days,omitempty"`
	TrialEndsAt *time.Time `json:"trial_ends_at,omitempty"`

	Suspension   *Suspension   `json:"suspension,omitempty"`
	Cancellation *Cancellation `json:"cancellation,omitempty"`
	Migration    *Migration    `json:"migration,omitempty"`
	Termination  *Termination  `json:"termination,omitempty"`

	CreatedAt time.Time  `json:"created_at"`
	UpdatedAt time.Time  `json:"updated_at"`
	PurgedAt  *time.Time `json:"purged_at,omitempty"`
	// Version is the stream version of the last event folded, from 0.
	Version uint64 `json:"version"`
}

// Suspension says why and how a tenant is suspended.
type Suspension struct {
	Reason       SuspensionReason `json:"reason"`
	Severity     Severity         `json:"severity"`
	Note         string           `json:"note,omitempty"`
	By           string           `json:"by,omitempty"`
	At           time.Time        `json:"at"`
	AutoResumeAt *time.Time       `json:"auto_resume_at,omitempty"`
	// From is the status the tenant was suspended from, the one resume
	// returns it to: TRIAL (with its trial end and timer), ACTIVE or
	// PENDING_CANCELLATION (with its effective date). A failed migration
	// suspends from ACTIVE (the tenant stayed in its old region). Empty in a
	// snapshot written before it was recorded: resume then returns to ACTIVE.
	From Status `json:"from,omitempty"`
}

// ResumesTo is the status resume returns the tenant to.
func (s *Suspension) ResumesTo() Status {
	switch s.From {
	case StatusTrial, StatusPendingCancellation:
		return s.From
	}
	return StatusActive
}

// Cancellation is a pending cancellation.
type Cancellation struct {
	RequestedAt time.Time `json:"requested_at"`
	EffectiveAt time.Time `json:"effective_at"`
	Reason      string    `json:"reason,omitempty"`
	// From is the status revert-cancellation returns the tenant to: TRIAL
	// (with its trial) or ACTIVE. A cancellation requested while suspended
	// returns to where the suspension would have. Empty in an older
	// snapshot: ACTIVE.
	From Status `json:"from,omitempty"`
}

// RevertsTo is the status revert-cancellation returns the tenant to.
func (c *Cancellation) RevertsTo() Status {
	if c.From == StatusTrial {
		return StatusTrial
	}
	return StatusActive
}

// Migration is a region migration in progress.
type Migration struct {
	From      Region    `json:"from"`
	To        Region    `json:"to"`
	StartedAt time.Time `json:"started_at"`
}

// Termination says when and why a tenant was terminated, and until when its
// data is kept.
type Termination struct {
	At                 time.Time `json:"at"`
	Reason             string    `json:"reason,omitempty"`
	DataRetentionUntil time.Time `json:"data_retention_until"`
}

// Exists reports whether the tenant has been created.
func (t *Tenant) Exists() bool { return t.Status != "" }

// Fold builds a tenant from its events in stream order.
func Fold(events []Envelope) *Tenant {
	t := &Tenant{}
	for i := range events {
		t.Apply(events[i])
	}
	return t
}

// Apply folds one event into the state. It never fails: an event is a fact,
// already validated when it was decided.
func (t *Tenant) Apply(env Envelope) {
	at := env.OccurredAt
	t.Version = env.Version
	t.UpdatedAt = at
	switch e := env.Data.(type) {
	case TenantCreated:
		t.ID = e.TenantID
		t.ExternalID = e.ExternalID
		t.Name = e.Name
		t.NormalizedName = e.NormalizedName
		t.Status = StatusProvisioning
		t.Edition = e.Edition
		t.Region = e.Region
		t.Contacts = slices.Clone(e.Contacts)
		t.Metadata = maps.Clone(e.Metadata)
		t.Labels = maps.Clone(e.Labels)
		t.ComplianceStandards = slices.Clone(e.ComplianceStandards)
		t.Policies = map[PolicyType]PolicySetting{}
		t.TrialDays = 0
		if e.Trial {
			t.TrialDays = e.TrialDays
			t.BillingStatus = BillingTrialing
		} else {
			t.BillingStatus = BillingActive
		}
		t.CreatedAt = at
	case ProvisioningCompleted:
	case ProvisioningFailed:
		t.Status = StatusTerminated
		t.Termination = &Termination{At: at, Reason: "provisioning failed: " + e.Reason, DataRetentionUntil: e.DataRetentionUntil}
	case TrialStarted:
		t.Status = StatusTrial
		t.TrialDays = e.Days
		t.TrialEndsAt = ptr(e.EndsAt)
	case TrialExtended:
		t.TrialDays += e.Days
		t.TrialEndsAt = ptr(e.EndsAt)
	case TrialConverted:
		// From TRIAL, or from a suspension for the trial's expiry.
		t.Status = StatusActive
		t.BillingStatus = BillingActive
		t.Suspension = nil
	case TrialExpired:
		t.Status = StatusSuspended
		t.Suspension = &Suspension{Reason: ReasonTrialExpired, Severity: e.Severity, At: at, By: "system", From: StatusTrial}
	case TenantActivated:
		t.Status = StatusActive
		if e.From == StatusTrial {
			t.BillingStatus = BillingActive // activated as a paid tenant
		}
	case TenantSuspended:
		from := t.Status
		t.Status = StatusSuspended
		t.Suspension = &Suspension{Reason: e.Reason, Severity: e.Severity, Note: e.Note, By: e.SuspendedBy, At: at, AutoResumeAt: clonePtr(e.AutoResumeAt), From: from}
		if from != StatusPendingCancellation {
			t.Cancellation = nil // a pending cancellation is kept, to resume into
		}
	case TenantResumed:
		switch {
		case e.To != "":
			t.Status = e.To
		case t.Suspension != nil:
			t.Status = t.Suspension.ResumesTo()
		default:
			t.Status = StatusActive
		}
		t.Suspension = nil
		if t.Status != StatusPendingCancellation {
			t.Cancellation = nil
		}
	case CancellationRequested:
		from := t.Status
		if s := t.Suspension; from == StatusSuspended && s != nil {
			// Requested while suspended: the suspension ends; a revert
			// returns to where it would have resumed to.
			from = s.ResumesTo()
			if from == StatusPendingCancellation && t.Cancellation != nil {
				from = t.Cancellation.From
			}
		}
		if from != StatusTrial {
			from = StatusActive
		}
		t.Status = StatusPendingCancellation
		t.Cancellation = &Cancellation{RequestedAt: at, EffectiveAt: e.EffectiveAt, Reason: e.Reason, From: from}
		t.Suspension = nil
	case CancellationReverted:
		switch {
		case e.To != "":
			t.Status = e.To
		case t.Cancellation != nil:
			t.Status = t.Cancellation.RevertsTo()
		default:
			t.Status = StatusActive
		}
		t.Cancellation = nil
	case CancellationCompleted:
		t.Status = StatusTerminated
		reason := "cancelled"
		if t.Cancellation != nil && t.Cancellation.Reason != "" {
			reason = "cancelled: " + t.Cancellation.Reason
		}
		t.Termination = &Termination{At: at, Reason: reason, DataRetentionUntil: e.DataRetentionUntil}
		t.Cancellation = nil
	case RegionMigrationStarted:
		t.Status = StatusMigrating
		t.Migration = &Migration{From: e.From, To: e.To, StartedAt: at}
	case RegionMigrationCompleted:
		t.Status = StatusActive
		t.Region = e.To
		t.Migration = nil
	case RegionMigrationFailed:
		t.Status = StatusSuspended
		t.Suspension = &Suspension{Reason: ReasonAdminAction, Severity: SeverityHard, Note: migrationFailedNote(e), At: at, By: "system", From: StatusActive}
		t.Migration = nil
	case RegionMigrationRolledBack:
		t.Status = StatusActive
		t.Migration = nil
	case TenantTerminated:
		t.Status = StatusTerminated
		t.Termination = &Termination{At: at, Reason: e.Reason, DataRetentionUntil: e.DataRetentionUntil}
		t.Suspension, t.Cancellation, t.Migration = nil, nil, nil
	case TenantRestored:
		t.Status = StatusActive
		t.Termination = nil
		t.Suspension, t.Cancellation, t.Migration = nil, nil, nil
	case TenantPurged:
		t.Status = StatusPurged
		t.PurgedAt = ptr(at)
		t.Contacts = redactContacts(t.Contacts)
	case EditionUpgraded:
		t.Edition = e.To
	case EditionDowngraded:
		t.Edition = e.To
	case TenantRenamed:
		t.Name = e.To
		t.NormalizedName = e.NormalizedName
	case ContactsUpdated:
		t.Contacts = slices.Clone(e.Contacts)
	case MetadataUpdated:
		t.Metadata = maps.Clone(e.Metadata)
	case LabelsUpdated:
		t.Labels = maps.Clone(e.Labels)
	case ComplianceStandardsUpdated:
		t.ComplianceStandards = slices.Clone(e.Standards)
	case FeatureOverrideSet:
		t.Overrides.Features = setKey(t.Overrides.Features, e.Feature, e.Enabled)
	case FeatureOverrideCleared:
		delete(t.Overrides.Features, e.Feature)
		if len(t.Overrides.Features) == 0 {
			t.Overrides.Features = nil
		}
	case LimitOverrideSet:
		t.Overrides.Limits = setKey(t.Overrides.Limits, e.Limit, e.Value)
	case LimitOverrideCleared:
		delete(t.Overrides.Limits, e.Limit)
		if len(t.Overrides.Limits) == 0 {
			t.Overrides.Limits = nil
		}
	case PolicySet:
		t.Policies = setKey(t.Policies, e.Policy.Type, e.Policy)
	case PolicyRemoved:
		delete(t.Policies, e.Type)
	case BillingStatusChanged:
		t.BillingStatus = e.To
		t.PaymentOverdueAt = nil
		if e.To == BillingPastDue {
			t.PaymentOverdueAt = clonePtr(e.OverdueAt)
		}
		t.billingSeen = setKey(t.billingSeen, e.ProviderEventID, true)
		if e.ProviderOccurredAt != nil {
			t.billingAt = clonePtr(e.ProviderOccurredAt)
		}
	}
}

func migrationFailedNote(e RegionMigrationFailed) string {
	note := "region migration from " + string(e.From) + " to " + string(e.To) + " failed"
	if e.Reason != "" {
		note += ": " + e.Reason
	}
	return note
}

func redactContacts(cs []Contact) []Contact {
	out := make([]Contact, len(cs))
	for i, c := range cs {
		out[i] = RedactPersonal(ContactsUpdated{Contacts: []Contact{c}}).(ContactsUpdated).Contacts[0]
	}
	return out
}

// Entitlements are the tenant's effective features and limits: its edition's,
// with its overrides on top.
func (t *Tenant) Entitlements(c *Catalog) Entitlements {
	return c.Entitlements(t.Edition, t.Overrides)
}

// PolicySubject is the part of the state policy evaluation reads.
func (t *Tenant) PolicySubject(c *Catalog) PolicySubject {
	s := PolicySubject{
		Status:              t.Status,
		Edition:             t.Edition,
		Region:              t.Region,
		Entitlements:        t.Entitlements(c),
		Policies:            t.Policies,
		TrialEndsAt:         t.TrialEndsAt,
		BillingStatus:       string(t.BillingStatus),
		ComplianceStandards: t.ComplianceStandards,
	}
	if t.Suspension != nil {
		s.SuspendedReason = string(t.Suspension.Reason)
		s.SuspensionSeverity = string(t.Suspension.Severity)
		s.AutoResumeAt = t.Suspension.AutoResumeAt
	}
	if t.Cancellation != nil {
		s.CancellationEffectiveAt = &t.Cancellation.EffectiveAt
	}
	return s
}

// Clone returns a deep copy, so a caller may fold further events without
// changing the original.
func (t *Tenant) Clone() *Tenant {
	c := *t
	c.Contacts = slices.Clone(t.Contacts)
	c.Metadata = maps.Clone(t.Metadata)
	c.Labels = maps.Clone(t.Labels)
	c.ComplianceStandards = slices.Clone(t.ComplianceStandards)
	c.Overrides = Overrides{Features: maps.Clone(t.Overrides.Features), Limits: maps.Clone(t.Overrides.Limits)}
	c.Policies = maps.Clone(t.Policies)
	c.billingSeen = maps.Clone(t.billingSeen)
	c.billingAt = clonePtr(t.billingAt)
	c.TrialEndsAt = clonePtr(t.TrialEndsAt)
	c.PaymentOverdueAt = clonePtr(t.PaymentOverdueAt)
	c.PurgedAt = clonePtr(t.PurgedAt)
	if t.Suspension != nil {
		s := *t.Suspension
		s.AutoResumeAt = clonePtr(s.AutoResumeAt)
		c.Suspension = &s
	}
	if t.Cancellation != nil {
		x := *t.Cancellation
		c.Cancellation = &x
	}
	if t.Migration != nil {
		x := *t.Migration
		c.Migration = &x
	}
	if t.Termination != nil {
		x := *t.Termination
		c.Termination = &x
	}
	return &c
}

func ptr[T any](v T) *T { return &v }

func clonePtr[T any](p *T) *T {
	if p == nil {
		return nil
	}
	v := *p
	return &v
}

func setKey[K comparable, V any](m map[K]V, k K, v V) map[K]V {
	if m == nil {
		m = make(map[K]V)
	}
	m[k] = v
	return m
}
