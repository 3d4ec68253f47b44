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
)

// Command is a request to change a tenant. Each type's decide rule is in
// Tenant.Decide; the command handler loads, decides and appends generically.
type Command interface {
	CommandName() CommandName
	// validate checks the command's own fields, whatever the tenant's state.
	validate(now time.Time) error
	// decide returns the events that carry the command out on t, which
	// Decide has found in a status that accepts it.
	decide(t *Tenant, now time.Time, cat *Catalog) ([]Event, error)
}

// stepwise is a command made of other commands (MakeActive): Decide does
// not check its own name against the lifecycle, its steps are checked.
type stepwise interface{ decidesItsSteps() }

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

// Decide validates cmd against the tenant's state at time now and returns the
// events that carry it out (none for a command that changes nothing, such as
// a redelivered billing event), or a *Error. It does not change t.
func (t *Tenant) Decide(cmd Command, now time.Time, cat *Catalog) ([]Event, error) {
	now = now.UTC()
	if err := cmd.validate(now); err != nil {
		return nil, err
	}
	_, create := cmd.(Create)
	if !create && !t.Exists() {
		return nil, &Error{Code: CodeNotFound, Message: "tenant not found", Command: cmd.CommandName()}
	}
	// A create decides on its own (an existing tenant is a conflict); a
	// stepwise command has its steps checked.
	if _, steps := cmd.(stepwise); !create && !steps && !Accepts(t.Status, cmd.CommandName()) {
		return nil, refuse(t.Status, cmd.CommandName())
	}
	return cmd.decide(t, now, cat)
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

// validateEdition and the helpers below check commands' fields (each
// command's validate): every refusal names the field and the rule.
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
