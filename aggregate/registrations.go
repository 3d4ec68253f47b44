package aggregate

import (
	"strings"
	"time"

	"github.com/google/uuid"
)

// One registration per command: its fields, its name, its validation and
// its decision, together. The statuses that accept it are the lifecycle
// table's data (lifecycle.go).

// Create makes a new tenant in PROVISIONING.
type Create struct {
	TenantID   uuid.UUID
	ExternalID string
	Name       string
	Edition    Edition
	Region     Region
	// Trial says whether completing provisioning starts a trial (nil: yes).
	Trial *bool
	// TrialDays is the trial's length (0: the edition's default).
	TrialDays           int
	Contacts            []Contact
	Metadata            map[string]string
	Labels              map[string]string
	ComplianceStandards []string
}

func (Create) CommandName() CommandName { return CmdCreate }

func (c Create) validate(now time.Time) error {
	if c.TenantID == uuid.Nil {
		return Invalid("id", "required", "tenant id is required")
	}
	if !IsExternalID(c.ExternalID) {
		return Invalid("external_id", "format", "external id must look like ORG-1A2B3C4D")
	}
	if _, err := ValidateName("name", c.Name); err != nil {
		return err
	}
	if err := validateEdition("edition", c.Edition); err != nil {
		return err
	}
	if err := validateRegion("region", c.Region); err != nil {
		return err
	}
	if c.TrialDays < 0 || c.TrialDays > MaxTrialDays {
		return Invalid("trial_days", "range", "trial_days must be between 1 and %d (0 or absent: the default)", MaxTrialDays)
	}
	return validateProfile(&c.Contacts, &c.Metadata, &c.Labels, &c.ComplianceStandards)
}

func (c Create) decide(t *Tenant, _ time.Time, cat *Catalog) ([]Event, error) {
	if t.Exists() {
		return nil, &Error{Code: CodeConflict, Message: "tenant " + t.ID.String() + " already exists", Status: t.Status, Command: CmdCreate}
	}
	return decideCreate(c, cat), nil
}

// CompleteProvisioning ends PROVISIONING: TRIAL if the tenant was created with
// a trial, ACTIVE otherwise.
type CompleteProvisioning struct{ Steps []string }

func (CompleteProvisioning) CommandName() CommandName { return CmdCompleteProvisioning }

func (CompleteProvisioning) validate(time.Time) error { return nil }

func (c CompleteProvisioning) decide(t *Tenant, now time.Time, cat *Catalog) ([]Event, error) {
	done := ProvisioningCompleted{Steps: c.Steps}
	if t.TrialDays > 0 {
		return []Event{done, TrialStarted{Days: t.TrialDays, EndsAt: now.AddDate(0, 0, t.TrialDays)}}, nil
	}
	return []Event{done, TenantActivated{From: StatusProvisioning}}, nil
}

// FailProvisioning terminates a tenant whose provisioning failed.
type FailProvisioning struct{ Reason string }

func (FailProvisioning) CommandName() CommandName { return CmdFailProvisioning }

func (c FailProvisioning) validate(now time.Time) error {
	return validateText("reason", c.Reason, maxReasonLength)
}

func (c FailProvisioning) decide(t *Tenant, now time.Time, cat *Catalog) ([]Event, error) {
	return []Event{ProvisioningFailed{Reason: c.Reason, DataRetentionUntil: t.retentionUntil(now, 0, cat)}}, nil
}

// ExtendTrial moves a trial's end by Days.
type ExtendTrial struct{ Days int }

func (ExtendTrial) CommandName() CommandName { return CmdExtendTrial }

func (c ExtendTrial) validate(now time.Time) error {
	if c.Days < 1 || c.Days > MaxTrialDays {
		return Invalid("days", "range", "days must be between 1 and %d", MaxTrialDays)
	}
	return nil
}

func (c ExtendTrial) decide(t *Tenant, now time.Time, cat *Catalog) ([]Event, error) {
	if err := t.onTrial(CmdExtendTrial); err != nil {
		return nil, err
	}
	if t.TrialDays+c.Days > MaxTotalTrialDays {
		return nil, &Error{Code: CodeInvariant, Field: "days", Rule: "max_total_trial_days",
			Message: "a trial with its extensions may last at most 180 days"}
	}
	prev := *t.TrialEndsAt
	return []Event{TrialExtended{Days: c.Days, PreviousEndsAt: prev, EndsAt: prev.AddDate(0, 0, c.Days)}}, nil
}

// ConvertTrial turns a trial into a paid subscription.
type ConvertTrial struct{}

func (ConvertTrial) CommandName() CommandName { return CmdConvertTrial }

func (ConvertTrial) validate(time.Time) error { return nil }

func (c ConvertTrial) decide(t *Tenant, now time.Time, cat *Catalog) ([]Event, error) {
	if err := t.onTrial(CmdConvertTrial); err != nil {
		return nil, err
	}
	if t.Status == StatusSuspended && t.Suspension.Reason != ReasonTrialExpired {
		return nil, &Error{Code: CodeInvariant, Rule: "suspended", Command: CmdConvertTrial,
			Message: "the tenant is suspended (" + string(t.Suspension.Reason) + "): resume it first; only a suspension for the trial's expiry ends with convert-trial"}
	}
	return []Event{TrialConverted{}}, nil
}

// ExpireTrial suspends a tenant whose trial has ended (issued by the trial timer).
type ExpireTrial struct{}

func (ExpireTrial) CommandName() CommandName { return CmdExpireTrial }

func (ExpireTrial) validate(time.Time) error { return nil }

func (c ExpireTrial) decide(t *Tenant, now time.Time, cat *Catalog) ([]Event, error) {
	if t.TrialEndsAt != nil && now.Before(*t.TrialEndsAt) {
		return nil, &Error{Code: CodeInvariant, Rule: "trial_not_ended",
			Message: "the trial ends at " + t.TrialEndsAt.Format(time.RFC3339) + "; it cannot expire before"}
	}
	ended := now
	if t.TrialEndsAt != nil {
		ended = *t.TrialEndsAt
	}
	return []Event{TrialExpired{EndedAt: ended, Severity: SeveritySoft}}, nil
}

// Activate makes a trial tenant ACTIVE without a trial conversion (for example
// by an administrator).
type Activate struct{}

func (Activate) CommandName() CommandName { return CmdActivate }

func (Activate) validate(time.Time) error { return nil }

func (c Activate) decide(t *Tenant, now time.Time, cat *Catalog) ([]Event, error) {
	return []Event{TenantActivated{From: t.Status}}, nil
}

// MakeActive is the original service's "activate": bring the tenant to
// where it serves, whatever it needs from where it is. It completes
// provisioning (converting the trial that starts), converts a trial,
// resumes a suspension (to where the tenant was), and changes nothing on a
// tenant that is already ACTIVE. One command, so the steps apply together
// or not at all. It carries the name activate, so a refusal names the verb
// the client used.
type MakeActive struct{}

func (MakeActive) CommandName() CommandName { return CmdActivate }

func (MakeActive) validate(time.Time) error { return nil }

func (MakeActive) decide(t *Tenant, now time.Time, cat *Catalog) ([]Event, error) {
	return t.decideMakeActive(now, cat)
}

// decidesItsSteps implements stepwise: its steps are checked against the lifecycle one by one.
func (MakeActive) decidesItsSteps() {}

// Suspend suspends a tenant.
type Suspend struct {
	Reason SuspensionReason
	// Severity defaults from the reason when empty.
	Severity     Severity
	Note         string
	By           string
	AutoResumeAt *time.Time
	// Dunning marks the dunning process manager's suspension (reason
	// payment_overdue): it is refused unless the tenant is still past_due
	// and its grace (PaymentOverdueAt) has run out.
	Dunning bool
}

func (Suspend) CommandName() CommandName { return CmdSuspend }

func (c Suspend) validate(now time.Time) error {
	if c.Reason == "" {
		return Invalid("reason", "required", "reason is required; one of %s", join(SuspensionReasons()))
	}
	if !c.Reason.Valid() {
		return Invalid("reason", "enum", "reason must be one of %s", join(SuspensionReasons()))
	}
	if c.Severity != "" && !c.Severity.Valid() {
		return Invalid("severity", "enum", "severity must be one of %s", join(Severities()))
	}
	if c.AutoResumeAt != nil && !c.AutoResumeAt.After(now) {
		return Invalid("auto_resume_at", "future", "auto_resume_at must be in the future")
	}
	if c.Dunning && c.Reason != ReasonPaymentOverdue {
		return Invalid("reason", "dunning", "a dunning suspension has reason payment_overdue")
	}
	return validateText("note", c.Note, maxNoteLength)
}

func (c Suspend) decide(t *Tenant, now time.Time, cat *Catalog) ([]Event, error) {
	if c.Dunning && (t.BillingStatus != BillingPastDue || t.PaymentOverdueAt == nil || now.Before(*t.PaymentOverdueAt)) {
		return nil, &Error{Code: CodeInvariant, Rule: "not_overdue", Command: CmdSuspend,
			Message: "the tenant's payment is not overdue (billing status " + string(t.BillingStatus) + ")"}
	}
	sev := c.Severity
	if sev == "" {
		sev = c.Reason.DefaultSeverity()
	}
	return []Event{TenantSuspended{Reason: c.Reason, Severity: sev, Note: c.Note, SuspendedBy: c.By, AutoResumeAt: clonePtr(c.AutoResumeAt)}}, nil
}

// Resume ends a suspension. Automatic resumes (by the timer) are accepted only
// once the suspension's auto_resume_at has passed.
type Resume struct {
	Automatic bool
	Note      string
	// IfReason, when set, resumes only a suspension for that reason (dunning
	// resumes its own payment_overdue suspensions, never another kind).
	IfReason SuspensionReason
}

func (Resume) CommandName() CommandName { return CmdResume }

func (c Resume) validate(now time.Time) error {
	return validateText("note", c.Note, maxNoteLength)
}

func (c Resume) decide(t *Tenant, now time.Time, cat *Catalog) ([]Event, error) {
	return t.decideResume(c, now, cat)
}

// Cancel starts a cancellation that takes effect at EffectiveAt (nil: in
// DefaultCancelDays days).
type Cancel struct {
	EffectiveAt *time.Time
	Reason      string
}

func (Cancel) CommandName() CommandName { return CmdCancel }

func (c Cancel) validate(now time.Time) error {
	if c.EffectiveAt != nil && c.EffectiveAt.Before(now.Add(-time.Minute)) {
		return Invalid("effective_at", "not_past", "effective_at must not be in the past")
	}
	return validateText("reason", c.Reason, maxReasonLength)
}

func (c Cancel) decide(t *Tenant, now time.Time, cat *Catalog) ([]Event, error) {
	eff := now.AddDate(0, 0, DefaultCancelDays)
	if c.EffectiveAt != nil {
		eff = c.EffectiveAt.UTC()
	}
	return []Event{CancellationRequested{EffectiveAt: eff, Reason: c.Reason}}, nil
}

// RevertCancellation withdraws a pending cancellation.
type RevertCancellation struct{}

func (RevertCancellation) CommandName() CommandName { return CmdRevertCancellation }

func (RevertCancellation) validate(time.Time) error { return nil }

func (c RevertCancellation) decide(t *Tenant, now time.Time, cat *Catalog) ([]Event, error) {
	to := t.Cancellation.RevertsTo()
	reverted := CancellationReverted{To: to}
	if to == StatusTrial {
		reverted.TrialEndsAt = clonePtr(t.TrialEndsAt)
	}
	evs := []Event{reverted}
	if to == StatusTrial && t.trialEnded(now) {
		// The trial ended while the cancellation was pending: the revert
		// returns to a trial that has expired.
		evs = append(evs, TrialExpired{EndedAt: *t.TrialEndsAt, Severity: SeveritySoft})
	}
	return evs, nil
}

// CompleteCancellation makes a due cancellation take effect (issued by the timer).
type CompleteCancellation struct{}

func (CompleteCancellation) CommandName() CommandName { return CmdCompleteCancellation }

func (CompleteCancellation) validate(time.Time) error { return nil }

func (c CompleteCancellation) decide(t *Tenant, now time.Time, cat *Catalog) ([]Event, error) {
	if now.Before(t.Cancellation.EffectiveAt) {
		return nil, &Error{Code: CodeInvariant, Rule: "cancellation_not_due",
			Message: "the cancellation takes effect at " + t.Cancellation.EffectiveAt.Format(time.RFC3339)}
	}
	return []Event{CancellationCompleted{DataRetentionUntil: t.retentionUntil(now, 0, cat)}}, nil
}

// MigrateRegion starts moving the tenant to another region.
type MigrateRegion struct{ To Region }

func (MigrateRegion) CommandName() CommandName { return CmdMigrateRegion }

func (c MigrateRegion) validate(now time.Time) error {
	return validateRegion("target_region", c.To)
}

func (c MigrateRegion) decide(t *Tenant, now time.Time, cat *Catalog) ([]Event, error) {
	if c.To == t.Region {
		return nil, &Error{Code: CodeInvariant, Field: "target_region", Rule: "different_region",
			Message: "the tenant is already in " + string(t.Region)}
	}
	return []Event{RegionMigrationStarted{From: t.Region, To: c.To}}, nil
}

// CompleteMigration finishes a region migration.
type CompleteMigration struct{}

func (CompleteMigration) CommandName() CommandName { return CmdCompleteMigration }

func (CompleteMigration) validate(time.Time) error { return nil }

func (c CompleteMigration) decide(t *Tenant, now time.Time, cat *Catalog) ([]Event, error) {
	return []Event{RegionMigrationCompleted{From: t.Migration.From, To: t.Migration.To}}, nil
}

// FailMigration records a failed migration; the tenant is suspended in its old region.
type FailMigration struct{ Reason string }

func (FailMigration) CommandName() CommandName { return CmdFailMigration }

func (c FailMigration) validate(now time.Time) error {
	return validateText("reason", c.Reason, maxReasonLength)
}

func (c FailMigration) decide(t *Tenant, now time.Time, cat *Catalog) ([]Event, error) {
	return []Event{RegionMigrationFailed{From: t.Migration.From, To: t.Migration.To, Reason: c.Reason}}, nil
}

// RollbackMigration abandons a migration; the tenant stays in its old region.
type RollbackMigration struct{ Reason string }

func (RollbackMigration) CommandName() CommandName { return CmdRollbackMigration }

func (c RollbackMigration) validate(now time.Time) error {
	return validateText("reason", c.Reason, maxReasonLength)
}

func (c RollbackMigration) decide(t *Tenant, now time.Time, cat *Catalog) ([]Event, error) {
	return []Event{RegionMigrationRolledBack{From: t.Migration.From, To: t.Migration.To, Reason: c.Reason}}, nil
}

// Terminate ends service. Data is kept RetentionDays (0: the edition's default).
type Terminate struct {
	Reason        string
	RetentionDays int
}

func (Terminate) CommandName() CommandName { return CmdTerminate }

func (c Terminate) validate(now time.Time) error {
	if c.RetentionDays != 0 && (c.RetentionDays < MinRetentionDays || c.RetentionDays > MaxRetentionDays) {
		return Invalid("retention_days", "range", "retention_days must be between %d and %d", MinRetentionDays, MaxRetentionDays)
	}
	return validateText("reason", c.Reason, maxReasonLength)
}

func (c Terminate) decide(t *Tenant, now time.Time, cat *Catalog) ([]Event, error) {
	days := c.RetentionDays
	if days == 0 {
		days = cat.RetentionDays(t.Edition)
	}
	return []Event{TenantTerminated{Reason: c.Reason, RetentionDays: days, DataRetentionUntil: now.AddDate(0, 0, days)}}, nil
}

// Restore brings a terminated tenant back before its retention date.
type Restore struct{}

func (Restore) CommandName() CommandName { return CmdRestore }

func (Restore) validate(time.Time) error { return nil }

func (c Restore) decide(t *Tenant, now time.Time, cat *Catalog) ([]Event, error) {
	if !now.Before(t.Termination.DataRetentionUntil) {
		return nil, &Error{Code: CodeInvariant, Rule: "retention_expired",
			Message: "the tenant's data was kept until " + t.Termination.DataRetentionUntil.Format(time.RFC3339) + "; it can no longer be restored"}
	}
	return []Event{TenantRestored{}}, nil
}

// Purge erases a terminated tenant's personal data and releases its name.
type Purge struct{}

func (Purge) CommandName() CommandName { return CmdPurge }

func (Purge) validate(time.Time) error { return nil }

func (c Purge) decide(t *Tenant, now time.Time, cat *Catalog) ([]Event, error) {
	return []Event{TenantPurged{NormalizedName: t.NormalizedName}}, nil
}

// ChangeEdition moves the tenant to another edition.
type ChangeEdition struct{ Edition Edition }

func (ChangeEdition) CommandName() CommandName { return CmdChangeEdition }

func (c ChangeEdition) validate(now time.Time) error {
	return validateEdition("edition", c.Edition)
}

func (c ChangeEdition) decide(t *Tenant, now time.Time, cat *Catalog) ([]Event, error) {
	return t.decideChangeEdition(c, cat)
}

// Rename changes the tenant's name.
type Rename struct{ Name string }

func (Rename) CommandName() CommandName { return CmdRename }

func (c Rename) validate(now time.Time) error {
	_, err := ValidateName("name", c.Name)
	return err
}

func (c Rename) decide(t *Tenant, now time.Time, cat *Catalog) ([]Event, error) {
	name, _ := ValidateName("name", c.Name)
	if name == t.Name {
		return nil, &Error{Code: CodeInvariant, Field: "name", Rule: "unchanged", Message: "the tenant already has this name"}
	}
	return []Event{TenantRenamed{From: t.Name, To: name, NormalizedName: NormalizeName(name)}}, nil
}

// UpdateProfile replaces the parts of the profile that are not nil. A Name
// renames the tenant in the same command (PATCH with a name and a profile
// is one command: all of it applies, or none); a name equal to the current
// one is no change.
type UpdateProfile struct {
	Name                *string
	Contacts            *[]Contact
	Metadata            *map[string]string
	Labels              *map[string]string
	ComplianceStandards *[]string
}

func (UpdateProfile) CommandName() CommandName { return CmdUpdateProfile }

func (c UpdateProfile) validate(now time.Time) error {
	if c.Name == nil && c.Contacts == nil && c.Metadata == nil && c.Labels == nil && c.ComplianceStandards == nil {
		return Invalid("body", "at_least_one_field", "give at least one of name, contacts, metadata, labels, compliance_standards")
	}
	if c.Name != nil {
		if _, err := ValidateName("name", *c.Name); err != nil {
			return err
		}
	}
	return validateProfile(c.Contacts, c.Metadata, c.Labels, c.ComplianceStandards)
}

func (c UpdateProfile) decide(t *Tenant, now time.Time, cat *Catalog) ([]Event, error) {
	return t.decideUpdateProfile(c), nil
}

// SetOverride overrides one feature (Enabled) or limit (Value) of the edition.
type SetOverride struct {
	Key     string
	Enabled *bool
	Value   *int64
}

func (SetOverride) CommandName() CommandName { return CmdSetOverride }

func (c SetOverride) validate(now time.Time) error {
	if (c.Enabled == nil) == (c.Value == nil) {
		return Invalid("body", "one_of", "give exactly one of enabled (a feature) or value (a limit)")
	}
	if c.Key == "" {
		return Invalid("key", "required", "key is required")
	}
	return nil
}

func (c SetOverride) decide(t *Tenant, now time.Time, cat *Catalog) ([]Event, error) {
	return t.decideSetOverride(c, cat)
}

// ClearOverride returns a feature or limit to the edition's value.
type ClearOverride struct{ Key string }

func (ClearOverride) CommandName() CommandName { return CmdClearOverride }

func (c ClearOverride) validate(now time.Time) error {
	if c.Key == "" {
		return Invalid("key", "required", "key is required")
	}
	return nil
}

func (c ClearOverride) decide(t *Tenant, now time.Time, cat *Catalog) ([]Event, error) {
	return t.decideClearOverride(c, cat)
}

// SetPolicy sets or replaces a policy.
type SetPolicy struct{ Policy PolicySetting }

func (SetPolicy) CommandName() CommandName { return CmdSetPolicy }

func (SetPolicy) validate(time.Time) error { return nil }

func (c SetPolicy) decide(t *Tenant, now time.Time, cat *Catalog) ([]Event, error) {
	p, err := ValidatePolicy(cat, t.Entitlements(cat), c.Policy)
	if err != nil {
		return nil, err
	}
	if old, ok := t.Policies[p.Type]; ok && old.Enforced == p.Enforced && string(old.Settings) == string(p.Settings) {
		return nil, nil
	}
	return []Event{PolicySet{Policy: p}}, nil
}

// RemovePolicy removes a policy.
type RemovePolicy struct{ Type PolicyType }

func (RemovePolicy) CommandName() CommandName { return CmdRemovePolicy }

func (c RemovePolicy) validate(now time.Time) error {
	if c.Type == "" {
		return Invalid("type", "required", "policy type is required")
	}
	return nil
}

func (c RemovePolicy) decide(t *Tenant, now time.Time, cat *Catalog) ([]Event, error) {
	if _, ok := t.Policies[c.Type]; !ok {
		return nil, &Error{Code: CodeNotFound, Field: "type", Rule: "policy_set", Message: "the tenant has no policy " + string(c.Type)}
	}
	return []Event{PolicyRemoved{Type: c.Type}}, nil
}

// RecordBillingStatus records the billing provider's status for the account.
// Redeliveries (same ProviderEventID) and events older than the newest one
// recorded are ignored.
type RecordBillingStatus struct {
	Status             BillingStatus
	Provider           string
	ProviderEventID    string
	ProviderOccurredAt *time.Time
}

func (RecordBillingStatus) CommandName() CommandName { return CmdRecordBillingStatus }

func (c RecordBillingStatus) validate(now time.Time) error {
	if !c.Status.Valid() {
		return Invalid("status", "enum", "status must be one of %s", join(BillingStatuses()))
	}
	if strings.TrimSpace(c.ProviderEventID) == "" {
		return Invalid("provider_event_id", "required", "provider_event_id is required (it de-duplicates redeliveries)")
	}
	if len(c.ProviderEventID) > 255 {
		return Invalid("provider_event_id", "max_length", "provider_event_id must be at most 255 characters")
	}
	return validateText("provider", c.Provider, 100)
}

func (c RecordBillingStatus) decide(t *Tenant, now time.Time, cat *Catalog) ([]Event, error) {
	if t.billingSeen[c.ProviderEventID] {
		return nil, nil // a redelivery
	}
	if c.ProviderOccurredAt != nil && t.billingAt != nil && !c.ProviderOccurredAt.After(*t.billingAt) {
		return nil, nil // older than what we have: arrived out of order
	}
	changed := BillingStatusChanged{From: t.BillingStatus, To: c.Status, Provider: c.Provider,
		ProviderEventID: c.ProviderEventID, ProviderOccurredAt: clonePtr(c.ProviderOccurredAt)}
	if c.Status == BillingPastDue {
		if t.BillingStatus == BillingPastDue && t.PaymentOverdueAt != nil {
			changed.OverdueAt = clonePtr(t.PaymentOverdueAt) // still the same stretch of past_due
		} else {
			since := now
			if c.ProviderOccurredAt != nil && c.ProviderOccurredAt.Before(now) {
				since = c.ProviderOccurredAt.UTC()
			}
			changed.OverdueAt = ptr(since.AddDate(0, 0, cat.PaymentGraceDays(t.Edition)))
		}
	}
	return []Event{changed}, nil
}
