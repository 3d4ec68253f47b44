package aggregate

import (
	"maps"
	"net/mail"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"
)

// Command is a request to change a tenant. Each type's decide rule is in
// Tenant.Decide; the command handler loads, decides and appends generically.
type Command interface {
	CommandName() CommandName
}

// Rules every command's fields share.
const (
	MaxTrialDays        = 90  // one trial or one extension
	MaxTotalTrialDays   = 180 // a trial with all its extensions
	MinRetentionDays    = 1
	MaxRetentionDays    = 2555
	DefaultCancelDays   = 30 // a cancellation without a date takes effect after this
	maxNoteLength       = 1000
	maxContacts         = 20
	maxMapEntries       = 64
	maxMetadataValueLen = 500
	maxReasonLength     = 500
)

// ComplianceStandardsKnown are the standards a tenant may declare.
var complianceStandards = []string{"SOC2", "ISO27001", "HIPAA", "GDPR", "PCI_DSS", "FEDRAMP", "CCPA"}

// ComplianceStandards returns every standard a tenant may declare.
func ComplianceStandards() []string { return slices.Clone(complianceStandards) }

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

// CompleteProvisioning ends PROVISIONING: TRIAL if the tenant was created with
// a trial, ACTIVE otherwise.
type CompleteProvisioning struct{ Steps []string }

// FailProvisioning terminates a tenant whose provisioning failed.
type FailProvisioning struct{ Reason string }

// ExtendTrial moves a trial's end by Days.
type ExtendTrial struct{ Days int }

// ConvertTrial turns a trial into a paid subscription.
type ConvertTrial struct{}

// ExpireTrial suspends a tenant whose trial has ended (issued by the trial timer).
type ExpireTrial struct{}

// Activate makes a trial tenant ACTIVE without a trial conversion (for example
// by an administrator).
type Activate struct{}

// MakeActive is the original service's "activate": bring the tenant to
// where it serves, whatever it needs from where it is. It completes
// provisioning (converting the trial that starts), converts a trial,
// resumes a suspension (to where the tenant was), and changes nothing on a
// tenant that is already ACTIVE. One command, so the steps apply together
// or not at all. It carries the name activate, so a refusal names the verb
// the client used.
type MakeActive struct{}

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

// Resume ends a suspension. Automatic resumes (by the timer) are accepted only
// once the suspension's auto_resume_at has passed.
type Resume struct {
	Automatic bool
	Note      string
	// IfReason, when set, resumes only a suspension for that reason (dunning
	// resumes its own payment_overdue suspensions, never another kind).
	IfReason SuspensionReason
}

// Cancel starts a cancellation that takes effect at EffectiveAt (nil: in
// DefaultCancelDays days).
type Cancel struct {
	EffectiveAt *time.Time
	Reason      string
}

// RevertCancellation withdraws a pending cancellation.
type RevertCancellation struct{}

// CompleteCancellation makes a due cancellation take effect (issued by the timer).
type CompleteCancellation struct{}

// MigrateRegion starts moving the tenant to another region.
type MigrateRegion struct{ To Region }

// CompleteMigration finishes a region migration.
type CompleteMigration struct{}

// FailMigration records a failed migration; the tenant is suspended in its old region.
type FailMigration struct{ Reason string }

// RollbackMigration abandons a migration; the tenant stays in its old region.
type RollbackMigration struct{ Reason string }

// Terminate ends service. Data is kept RetentionDays (0: the edition's default).
type Terminate struct {
	Reason        string
	RetentionDays int
}

// Restore brings a terminated tenant back before its retention date.
type Restore struct{}

// Purge erases a terminated tenant's personal data and releases its name.
type Purge struct{}

// ChangeEdition moves the tenant to another edition.
type ChangeEdition struct{ Edition Edition }

// Rename changes the tenant's name.
type Rename struct{ Name string }

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

// SetOverride overrides one feature (Enabled) or limit (Value) of the edition.
type SetOverride struct {
	Key     string
	Enabled *bool
	Value   *int64
}

// ClearOverride returns a feature or limit to the edition's value.
type ClearOverride struct{ Key string }

// SetPolicy sets or replaces a policy.
type SetPolicy struct{ Policy PolicySetting }

// RemovePolicy removes a policy.
type RemovePolicy struct{ Type PolicyType }

// RecordBillingStatus records the billing provider's status for the account.
// Redeliveries (same ProviderEventID) and events older than the newest one
// recorded are ignored.
type RecordBillingStatus struct {
	Status             BillingStatus
	Provider           string
	ProviderEventID    string
	ProviderOccurredAt *time.Time
}

func (Create) CommandName() CommandName               { return CmdCreate }
func (CompleteProvisioning) CommandName() CommandName { return CmdCompleteProvisioning }
func (FailProvisioning) CommandName() CommandName     { return CmdFailProvisioning }
func (ExtendTrial) CommandName() CommandName          { return CmdExtendTrial }
func (ConvertTrial) CommandName() CommandName         { return CmdConvertTrial }
func (ExpireTrial) CommandName() CommandName          { return CmdExpireTrial }
func (Activate) CommandName() CommandName             { return CmdActivate }
func (MakeActive) CommandName() CommandName           { return CmdActivate }
func (Suspend) CommandName() CommandName              { return CmdSuspend }
func (Resume) CommandName() CommandName               { return CmdResume }
func (Cancel) CommandName() CommandName               { return CmdCancel }
func (RevertCancellation) CommandName() CommandName   { return CmdRevertCancellation }
func (CompleteCancellation) CommandName() CommandName { return CmdCompleteCancellation }
func (MigrateRegion) CommandName() CommandName        { return CmdMigrateRegion }
func (CompleteMigration) CommandName() CommandName    { return CmdCompleteMigration }
func (FailMigration) CommandName() CommandName        { return CmdFailMigration }
func (RollbackMigration) CommandName() CommandName    { return CmdRollbackMigration }
func (Terminate) CommandName() CommandName            { return CmdTerminate }
func (Restore) CommandName() CommandName              { return CmdRestore }
func (Purge) CommandName() CommandName                { return CmdPurge }
func (ChangeEdition) CommandName() CommandName        { return CmdChangeEdition }
func (Rename) CommandName() CommandName               { return CmdRename }
func (UpdateProfile) CommandName() CommandName        { return CmdUpdateProfile }
func (SetOverride) CommandName() CommandName          { return CmdSetOverride }
func (ClearOverride) CommandName() CommandName        { return CmdClearOverride }
func (SetPolicy) CommandName() CommandName            { return CmdSetPolicy }
func (RemovePolicy) CommandName() CommandName         { return CmdRemovePolicy }
func (RecordBillingStatus) CommandName() CommandName  { return CmdRecordBillingStatus }

// Decide validates cmd against the tenant's state at time now and returns the
// events that carry it out (none for a command that changes nothing, such as
// a redelivered billing event), or a *Error. It does not change t.
func (t *Tenant) Decide(cmd Command, now time.Time, cat *Catalog) ([]Event, error) {
	now = now.UTC()
	if err := validate(cmd, now); err != nil {
		return nil, err
	}
	if create, ok := cmd.(Create); ok {
		if t.Exists() {
			return nil, &Error{Code: CodeConflict, Message: "tenant " + t.ID.String() + " already exists", Status: t.Status, Command: CmdCreate}
		}
		return decideCreate(create, cat), nil
	}
	if !t.Exists() {
		return nil, &Error{Code: CodeNotFound, Message: "tenant not found", Command: cmd.CommandName()}
	}
	if _, ok := cmd.(MakeActive); ok {
		return t.decideMakeActive(now, cat)
	}
	if !Accepts(t.Status, cmd.CommandName()) {
		return nil, refuse(t.Status, cmd.CommandName())
	}
	switch c := cmd.(type) {
	case CompleteProvisioning:
		done := ProvisioningCompleted{Steps: c.Steps}
		if t.TrialDays > 0 {
			return []Event{done, TrialStarted{Days: t.TrialDays, EndsAt: now.AddDate(0, 0, t.TrialDays)}}, nil
		}
		return []Event{done, TenantActivated{From: StatusProvisioning}}, nil
	case FailProvisioning:
		return []Event{ProvisioningFailed{Reason: c.Reason, DataRetentionUntil: t.retentionUntil(now, 0, cat)}}, nil
	case ExtendTrial:
		if err := t.onTrial(CmdExtendTrial); err != nil {
			return nil, err
		}
		if t.TrialDays+c.Days > MaxTotalTrialDays {
			return nil, &Error{Code: CodeInvariant, Field: "days", Rule: "max_total_trial_days",
				Message: "a trial with its extensions may last at most 180 days"}
		}
		prev := *t.TrialEndsAt
		return []Event{TrialExtended{Days: c.Days, PreviousEndsAt: prev, EndsAt: prev.AddDate(0, 0, c.Days)}}, nil
	case ConvertTrial:
		if err := t.onTrial(CmdConvertTrial); err != nil {
			return nil, err
		}
		if t.Status == StatusSuspended && t.Suspension.Reason != ReasonTrialExpired {
			return nil, &Error{Code: CodeInvariant, Rule: "suspended", Command: CmdConvertTrial,
				Message: "the tenant is suspended (" + string(t.Suspension.Reason) + "): resume it first; only a suspension for the trial's expiry ends with convert-trial"}
		}
		return []Event{TrialConverted{}}, nil
	case ExpireTrial:
		if t.TrialEndsAt != nil && now.Before(*t.TrialEndsAt) {
			return nil, &Error{Code: CodeInvariant, Rule: "trial_not_ended",
				Message: "the trial ends at " + t.TrialEndsAt.Format(time.RFC3339) + "; it cannot expire before"}
		}
		ended := now
		if t.TrialEndsAt != nil {
			ended = *t.TrialEndsAt
		}
		return []Event{TrialExpired{EndedAt: ended, Severity: SeveritySoft}}, nil
	case Activate:
		return []Event{TenantActivated{From: t.Status}}, nil
	case Suspend:
		if c.Dunning && (t.BillingStatus != BillingPastDue || t.PaymentOverdueAt == nil || now.Before(*t.PaymentOverdueAt)) {
			return nil, &Error{Code: CodeInvariant, Rule: "not_overdue", Command: CmdSuspend,
				Message: "the tenant's payment is not overdue (billing status " + string(t.BillingStatus) + ")"}
		}
		sev := c.Severity
		if sev == "" {
			sev = c.Reason.DefaultSeverity()
		}
		return []Event{TenantSuspended{Reason: c.Reason, Severity: sev, Note: c.Note, SuspendedBy: c.By, AutoResumeAt: clonePtr(c.AutoResumeAt)}}, nil
	case Resume:
		return t.decideResume(c, now, cat)
	case Cancel:
		eff := now.AddDate(0, 0, DefaultCancelDays)
		if c.EffectiveAt != nil {
			eff = c.EffectiveAt.UTC()
		}
		return []Event{CancellationRequested{EffectiveAt: eff, Reason: c.Reason}}, nil
	case RevertCancellation:
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
	case CompleteCancellation:
		if now.Before(t.Cancellation.EffectiveAt) {
			return nil, &Error{Code: CodeInvariant, Rule: "cancellation_not_due",
				Message: "the cancellation takes effect at " + t.Cancellation.EffectiveAt.Format(time.RFC3339)}
		}
		return []Event{CancellationCompleted{DataRetentionUntil: t.retentionUntil(now, 0, cat)}}, nil
	case MigrateRegion:
		if c.To == t.Region {
			return nil, &Error{Code: CodeInvariant, Field: "target_region", Rule: "different_region",
				Message: "the tenant is already in " + string(t.Region)}
		}
		return []Event{RegionMigrationStarted{From: t.Region, To: c.To}}, nil
	case CompleteMigration:
		return []Event{RegionMigrationCompleted{From: t.Migration.From, To: t.Migration.To}}, nil
	case FailMigration:
		return []Event{RegionMigrationFailed{From: t.Migration.From, To: t.Migration.To, Reason: c.Reason}}, nil
	case RollbackMigration:
		return []Event{RegionMigrationRolledBack{From: t.Migration.From, To: t.Migration.To, Reason: c.Reason}}, nil
	case Terminate:
		days := c.RetentionDays
		if days == 0 {
			days = cat.RetentionDays(t.Edition)
		}
		return []Event{TenantTerminated{Reason: c.Reason, RetentionDays: days, DataRetentionUntil: now.AddDate(0, 0, days)}}, nil
	case Restore:
		if !now.Before(t.Termination.DataRetentionUntil) {
			return nil, &Error{Code: CodeInvariant, Rule: "retention_expired",
				Message: "the tenant's data was kept until " + t.Termination.DataRetentionUntil.Format(time.RFC3339) + "; it can no longer be restored"}
		}
		return []Event{TenantRestored{}}, nil
	case Purge:
		return []Event{TenantPurged{NormalizedName: t.NormalizedName}}, nil
	case ChangeEdition:
		return t.decideChangeEdition(c, cat)
	case Rename:
		name, _ := ValidateName("name", c.Name)
		if name == t.Name {
			return nil, &Error{Code: CodeInvariant, Field: "name", Rule: "unchanged", Message: "the tenant already has this name"}
		}
		return []Event{TenantRenamed{From: t.Name, To: name, NormalizedName: NormalizeName(name)}}, nil
	case UpdateProfile:
		return t.decideUpdateProfile(c), nil
	case SetOverride:
		return t.decideSetOverride(c, cat)
	case ClearOverride:
		return t.decideClearOverride(c, cat)
	case SetPolicy:
		p, err := ValidatePolicy(cat, t.Entitlements(cat), c.Policy)
		if err != nil {
			return nil, err
		}
		if old, ok := t.Policies[p.Type]; ok && old.Enforced == p.Enforced && string(old.Settings) == string(p.Settings) {
			return nil, nil
		}
		return []Event{PolicySet{Policy: p}}, nil
	case RemovePolicy:
		if _, ok := t.Policies[c.Type]; !ok {
			return nil, &Error{Code: CodeNotFound, Field: "type", Rule: "policy_set", Message: "the tenant has no policy " + string(c.Type)}
		}
		return []Event{PolicyRemoved{Type: c.Type}}, nil
	case RecordBillingStatus:
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
	return nil, Invalid("command", "known_command", "unknown command %s", cmd.CommandName())
}

// decideResume returns the tenant to the status it was suspended from, with
// what it had there (a trial's end and timer, a pending cancellation's
// date). A deadline that passed while it was suspended is decided here: a
// due cancellation takes effect in the same append (TERMINATED); a trial that
// ended cannot be resumed into, so the resume is refused, naming the ways on
// (extend-trial, then resume; or convert-trial).
func (t *Tenant) decideResume(c Resume, now time.Time, cat *Catalog) ([]Event, error) {
	s := t.Suspension
	if c.IfReason != "" && s.Reason != c.IfReason {
		return nil, &Error{Code: CodeInvariant, Rule: "other_suspension", Command: CmdResume,
			Message: "the tenant is suspended for " + string(s.Reason) + ", not " + string(c.IfReason)}
	}
	if c.Automatic && (s.AutoResumeAt == nil || now.Before(*s.AutoResumeAt)) {
		return nil, &Error{Code: CodeInvariant, Rule: "auto_resume_not_due", Command: CmdResume, Message: "the suspension is not due to resume automatically"}
	}
	resumed := TenantResumed{Automatic: c.Automatic, Note: c.Note, To: s.ResumesTo()}
	switch resumed.To {
	case StatusTrial:
		resumed.TrialEndsAt = clonePtr(t.TrialEndsAt)
		if t.trialEnded(now) {
			next := "extend the trial (extend-trial), then resume"
			if s.Reason == ReasonTrialExpired {
				next = "convert the trial (convert-trial: ACTIVE, paid), or extend it (extend-trial) and resume"
			}
			return nil, &Error{Code: CodeInvariant, Rule: "trial_ended", Command: CmdResume,
				Message: "the tenant was suspended from its trial, which ended at " + t.TrialEndsAt.Format(time.RFC3339) +
					": it cannot resume into an expired trial; " + next}
		}
	case StatusPendingCancellation:
		if t.Cancellation == nil { // a snapshot that lost it: nothing to resume into
			resumed.To = StatusActive
			break
		}
		resumed.CancellationEffectiveAt = ptr(t.Cancellation.EffectiveAt)
		if !now.Before(t.Cancellation.EffectiveAt) {
			return []Event{resumed, CancellationCompleted{DataRetentionUntil: t.retentionUntil(now, 0, cat)}}, nil
		}
	}
	return []Event{resumed}, nil
}

// onTrial refuses a trial command (extend-trial, convert-trial) for a
// suspended tenant that was not suspended from its trial.
func (t *Tenant) onTrial(c CommandName) error {
	if t.Status == StatusSuspended && t.Suspension.ResumesTo() != StatusTrial {
		return &Error{Code: CodeInvariant, Rule: "not_a_trial", Command: c,
			Message: "the tenant was suspended from " + string(t.Suspension.ResumesTo()) + ", not from a trial"}
	}
	return nil
}

// trialEnded reports whether the tenant's trial has ended by now.
func (t *Tenant) trialEnded(now time.Time) bool {
	return t.TrialEndsAt != nil && !now.Before(*t.TrialEndsAt)
}

func decideCreate(c Create, cat *Catalog) []Event {
	name, _ := ValidateName("name", c.Name)
	trial := c.Trial == nil || *c.Trial
	days := 0
	if trial {
		days = c.TrialDays
		if days == 0 {
			days = 14
			if spec, ok := cat.Edition(c.Edition); ok && spec.TrialDays > 0 {
				days = spec.TrialDays
			}
		}
	}
	return []Event{TenantCreated{
		TenantID:            c.TenantID,
		ExternalID:          c.ExternalID,
		Name:                name,
		NormalizedName:      NormalizeName(name),
		Edition:             c.Edition,
		Region:              c.Region,
		Trial:               trial,
		TrialDays:           days,
		Contacts:            nonNil(c.Contacts),
		Metadata:            nonNilMap(c.Metadata),
		Labels:              nonNilMap(c.Labels),
		ComplianceStandards: nonNil(c.ComplianceStandards),
	}}
}

func (t *Tenant) retentionUntil(now time.Time, days int, cat *Catalog) time.Time {
	if days == 0 {
		days = cat.RetentionDays(t.Edition)
	}
	return now.AddDate(0, 0, days)
}

func (t *Tenant) decideChangeEdition(c ChangeEdition, cat *Catalog) ([]Event, error) {
	if c.Edition == t.Edition {
		return nil, &Error{Code: CodeInvariant, Field: "edition", Rule: "different_edition", Message: "the tenant is already on edition " + string(t.Edition)}
	}
	if c.Edition.Rank() > t.Edition.Rank() {
		return []Event{EditionUpgraded{From: t.Edition, To: c.Edition}}, nil
	}
	if conflicts := PolicyConflicts(cat, cat.Entitlements(c.Edition, t.Overrides), t.Policies); len(conflicts) > 0 {
		return nil, &Error{Code: CodeConflict, Field: "edition", Rule: "enforced_policies_supported",
			Message: "downgrading to " + string(c.Edition) + " would break enforced policies", Conflicts: conflicts}
	}
	return []Event{EditionDowngraded{From: t.Edition, To: c.Edition}}, nil
}

func (t *Tenant) decideUpdateProfile(c UpdateProfile) []Event {
	var out []Event
	if c.Name != nil {
		if name, _ := ValidateName("name", *c.Name); name != t.Name {
			out = append(out, TenantRenamed{From: t.Name, To: name, NormalizedName: NormalizeName(name)})
		}
	}
	if c.Contacts != nil && !slices.Equal(*c.Contacts, t.Contacts) {
		out = append(out, ContactsUpdated{Contacts: nonNil(*c.Contacts)})
	}
	if c.Metadata != nil && !maps.Equal(*c.Metadata, t.Metadata) {
		out = append(out, MetadataUpdated{Metadata: nonNilMap(*c.Metadata)})
	}
	if c.Labels != nil && !maps.Equal(*c.Labels, t.Labels) {
		out = append(out, LabelsUpdated{Labels: nonNilMap(*c.Labels)})
	}
	if c.ComplianceStandards != nil && !slices.Equal(*c.ComplianceStandards, t.ComplianceStandards) {
		out = append(out, ComplianceStandardsUpdated{Standards: nonNil(*c.ComplianceStandards)})
	}
	return out
}

func (t *Tenant) decideSetOverride(c SetOverride, cat *Catalog) ([]Event, error) {
	if c.Enabled != nil {
		f, err := cat.ValidateFeatureOverride(c.Key)
		if err != nil {
			return nil, err
		}
		if v, ok := t.Overrides.Features[f]; ok && v == *c.Enabled {
			return nil, nil
		}
		if !*c.Enabled {
			if err := t.checkOverrideConflicts(cat, func(o *Overrides) { o.Features = setKey(maps.Clone(o.Features), f, false) }); err != nil {
				return nil, err
			}
		}
		return []Event{FeatureOverrideSet{Feature: f, Enabled: *c.Enabled}}, nil
	}
	l, err := cat.ValidateLimitOverride(c.Key, *c.Value)
	if err != nil {
		return nil, err
	}
	if v, ok := t.Overrides.Limits[l]; ok && v == *c.Value {
		return nil, nil
	}
	return []Event{LimitOverrideSet{Limit: l, Value: *c.Value}}, nil
}

func (t *Tenant) decideClearOverride(c ClearOverride, cat *Catalog) ([]Event, error) {
	if _, ok := t.Overrides.Features[Feature(c.Key)]; ok {
		f := Feature(c.Key)
		if err := t.checkOverrideConflicts(cat, func(o *Overrides) { o.Features = maps.Clone(o.Features); delete(o.Features, f) }); err != nil {
			return nil, err
		}
		return []Event{FeatureOverrideCleared{Feature: f}}, nil
	}
	if _, ok := t.Overrides.Limits[Limit(c.Key)]; ok {
		return []Event{LimitOverrideCleared{Limit: Limit(c.Key)}}, nil
	}
	return nil, &Error{Code: CodeNotFound, Field: "key", Rule: "override_set", Message: "the tenant has no override for " + c.Key}
}

// checkOverrideConflicts refuses an override change that would switch off a
// feature an enforced policy needs.
func (t *Tenant) checkOverrideConflicts(cat *Catalog, change func(*Overrides)) error {
	o := t.Overrides
	change(&o)
	if conflicts := PolicyConflicts(cat, cat.Entitlements(t.Edition, o), t.Policies); len(conflicts) > 0 {
		return &Error{Code: CodeConflict, Field: "key", Rule: "enforced_policies_supported",
			Message: "switching off this feature would break enforced policies", Conflicts: conflicts}
	}
	return nil
}

// ---- field validation (independent of state) ----

var (
	labelKeyPattern   = regexp.MustCompile(`^[a-z0-9]([a-z0-9_.-]{0,61}[a-z0-9])?$`)
	labelValuePattern = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9_.-]{0,61}[A-Za-z0-9])?$|^$`)
)

// validate checks a command's fields. Every refusal names the field and the rule.
func validate(cmd Command, now time.Time) error {
	switch c := cmd.(type) {
	case Create:
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
	case FailProvisioning:
		return validateText("reason", c.Reason, maxReasonLength)
	case ExtendTrial:
		if c.Days < 1 || c.Days > MaxTrialDays {
			return Invalid("days", "range", "days must be between 1 and %d", MaxTrialDays)
		}
	case Suspend:
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
	case Resume:
		return validateText("note", c.Note, maxNoteLength)
	case Cancel:
		if c.EffectiveAt != nil && c.EffectiveAt.Before(now.Add(-time.Minute)) {
			return Invalid("effective_at", "not_past", "effective_at must not be in the past")
		}
		return validateText("reason", c.Reason, maxReasonLength)
	case MigrateRegion:
		return validateRegion("target_region", c.To)
	case FailMigration:
		return validateText("reason", c.Reason, maxReasonLength)
	case RollbackMigration:
		return validateText("reason", c.Reason, maxReasonLength)
	case Terminate:
		if c.RetentionDays != 0 && (c.RetentionDays < MinRetentionDays || c.RetentionDays > MaxRetentionDays) {
			return Invalid("retention_days", "range", "retention_days must be between %d and %d", MinRetentionDays, MaxRetentionDays)
		}
		return validateText("reason", c.Reason, maxReasonLength)
	case ChangeEdition:
		return validateEdition("edition", c.Edition)
	case Rename:
		_, err := ValidateName("name", c.Name)
		return err
	case UpdateProfile:
		if c.Name == nil && c.Contacts == nil && c.Metadata == nil && c.Labels == nil && c.ComplianceStandards == nil {
			return Invalid("body", "at_least_one_field", "give at least one of name, contacts, metadata, labels, compliance_standards")
		}
		if c.Name != nil {
			if _, err := ValidateName("name", *c.Name); err != nil {
				return err
			}
		}
		return validateProfile(c.Contacts, c.Metadata, c.Labels, c.ComplianceStandards)
	case SetOverride:
		if (c.Enabled == nil) == (c.Value == nil) {
			return Invalid("body", "one_of", "give exactly one of enabled (a feature) or value (a limit)")
		}
		if c.Key == "" {
			return Invalid("key", "required", "key is required")
		}
	case ClearOverride:
		if c.Key == "" {
			return Invalid("key", "required", "key is required")
		}
	case RemovePolicy:
		if c.Type == "" {
			return Invalid("type", "required", "policy type is required")
		}
	case RecordBillingStatus:
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
	return nil
}

func validateEdition(field string, e Edition) error {
	if e == "" {
		return Invalid(field, "required", "%s is required; one of %s", field, join(Editions()))
	}
	if !e.Valid() {
		return Invalid(field, "enum", "%s must be one of %s", field, join(Editions()))
	}
	return nil
}

func validateRegion(field string, r Region) error {
	if r == "" {
		return Invalid(field, "required", "%s is required; one of %s", field, join(Regions()))
	}
	if !r.Valid() {
		return Invalid(field, "enum", "%s must be one of %s", field, join(Regions()))
	}
	return nil
}

func validateText(field, s string, max int) error {
	if !utf8.ValidString(s) {
		return Invalid(field, "utf8", "%s must be valid UTF-8", field)
	}
	if utf8.RuneCountInString(s) > max {
		return Invalid(field, "max_length", "%s must be at most %d characters", field, max)
	}
	return nil
}

func validateProfile(contacts *[]Contact, metadata, labels *map[string]string, standards *[]string) error {
	if contacts != nil {
		if len(*contacts) > maxContacts {
			return Invalid("contacts", "max_items", "at most %d contacts", maxContacts)
		}
		for i, c := range *contacts {
			f := "contacts[" + strconv.Itoa(i) + "]"
			if !slices.Contains(contactRoles, c.Role) {
				return Invalid(f+".role", "enum", "role must be one of %s", strings.Join(contactRoles, ", "))
			}
			if addr, err := mail.ParseAddress(c.Email); err != nil || addr.Address != c.Email || addr.Name != "" {
				return Invalid(f+".email", "email", "email must be a plain e-mail address")
			}
			if err := validateText(f+".name", c.Name, 200); err != nil {
				return err
			}
			if err := validateText(f+".phone", c.Phone, 50); err != nil {
				return err
			}
		}
	}
	if metadata != nil {
		if len(*metadata) > maxMapEntries {
			return Invalid("metadata", "max_items", "at most %d metadata entries", maxMapEntries)
		}
		for k, v := range *metadata {
			if k == "" || utf8.RuneCountInString(k) > 63 || !utf8.ValidString(k) {
				return Invalid("metadata."+k, "key", "metadata keys must be 1 to 63 characters")
			}
			if err := validateText("metadata."+k, v, maxMetadataValueLen); err != nil {
				return err
			}
		}
	}
	if labels != nil {
		if len(*labels) > maxMapEntries {
			return Invalid("labels", "max_items", "at most %d labels", maxMapEntries)
		}
		for k, v := range *labels {
			if !labelKeyPattern.MatchString(k) {
				return Invalid("labels."+k, "label_key", "label keys are 1 to 63 of a-z 0-9 _ . - and start and end alphanumeric")
			}
			if !labelValuePattern.MatchString(v) {
				return Invalid("labels."+k, "label_value", "label values are up to 63 of A-Z a-z 0-9 _ . - and start and end alphanumeric")
			}
		}
	}
	if standards != nil {
		seen := map[string]bool{}
		for i, s := range *standards {
			if !slices.Contains(complianceStandards, s) {
				return Invalid("compliance_standards["+strconv.Itoa(i)+"]", "enum", "standard must be one of %s", strings.Join(complianceStandards, ", "))
			}
			if seen[s] {
				return Invalid("compliance_standards["+strconv.Itoa(i)+"]", "unique", "%s is listed twice", s)
			}
			seen[s] = true
		}
	}
	return nil
}

func join[T ~string](vs []T) string {
	s := make([]string, len(vs))
	for i, v := range vs {
		s[i] = string(v)
	}
	return strings.Join(s, ", ")
}

func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return slices.Clone(s)
}

func nonNilMap(m map[string]string) map[string]string {
	if m == nil {
		return map[string]string{}
	}
	return maps.Clone(m)
}

// decideMakeActive decides MakeActive as the steps it takes from the
// tenant's status, each decided on the state the one before leaves.
func (t *Tenant) decideMakeActive(now time.Time, cat *Catalog) ([]Event, error) {
	var steps []Command
	switch t.Status {
	case StatusActive:
		return nil, nil
	case StatusProvisioning:
		steps = []Command{CompleteProvisioning{}, Activate{}}
	case StatusSuspended:
		steps = []Command{Resume{}}
	default:
		steps = []Command{Activate{}}
	}
	state := t.Clone()
	var out []Event
	for _, step := range steps {
		if state.Status == StatusActive {
			break
		}
		events, err := state.Decide(step, now, cat)
		if err != nil {
			return nil, err
		}
		for _, e := range events {
			state.Apply(Envelope{Type: e.EventType(), Version: state.Version + 1, OccurredAt: now, Data: e})
		}
		out = append(out, events...)
	}
	return out, nil
}
