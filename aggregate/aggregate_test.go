package aggregate_test

import (
	"encoding/json"
	"slices"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/tenancyhq/tenancy/aggregate"
)

var (
	cat = aggregate.DefaultCatalog()
	t0  = time.Date(2026, 1, 5, 9, 0, 0, 0, time.UTC)
)

// history is a tenant with the events that built it, for tests.
type history struct {
	tenant *aggregate.Tenant
	events []aggregate.Envelope
	now    time.Time
}

// do decides cmd at h.now and folds the events; it fails the test on refusal.
func (h *history) do(t *testing.T, cmd aggregate.Command) []aggregate.Event {
	t.Helper()
	evs, err := h.tenant.Decide(cmd, h.now, cat)
	if err != nil {
		t.Fatalf("%s in %s: %v", cmd.CommandName(), h.tenant.Status, err)
	}
	h.apply(cmd, evs)
	return evs
}

func (h *history) apply(cmd aggregate.Command, evs []aggregate.Event) {
	for _, e := range evs {
		env := aggregate.Envelope{
			EventID: uuid.New(), Type: e.EventType(), SchemaVersion: aggregate.SchemaVersion(e.EventType()),
			Version: uint64(len(h.events)), OccurredAt: h.now,
			Metadata: aggregate.Metadata{OccurredAt: h.now, Command: cmd.CommandName()}, Data: e,
		}
		h.tenant.Apply(env)
		h.events = append(h.events, env)
	}
}

func newHistory(t *testing.T, trial bool) *history {
	t.Helper()
	h := &history{tenant: &aggregate.Tenant{}, now: t0}
	h.do(t, aggregate.Create{
		TenantID: uuid.New(), ExternalID: "ORG-0A1B2C3D", Name: "Acme Corp",
		Edition: aggregate.EditionProfessional, Region: "us-east-1", Trial: &trial,
		Contacts: []aggregate.Contact{{Role: "primary", Name: "Ada Admin", Email: "ada@acme.test"}},
	})
	return h
}

// tenantIn builds a tenant in status s at t0 (plus a few seconds), with one
// limit override and one policy where the status allowed setting them.
func tenantIn(t *testing.T, s aggregate.Status) *history {
	t.Helper()
	h := newHistory(t, true)
	step := func(cmd aggregate.Command) { h.now = h.now.Add(time.Second); h.do(t, cmd) }
	if s == aggregate.StatusProvisioning {
		return h
	}
	step(aggregate.CompleteProvisioning{})
	step(aggregate.SetOverride{Key: "max_users", Value: ptr(int64(100))})
	step(aggregate.SetPolicy{Policy: aggregate.PolicySetting{Type: "mfa_required", Enforced: true}})
	if s == aggregate.StatusTrial {
		return h
	}
	step(aggregate.ConvertTrial{})
	switch s {
	case aggregate.StatusActive:
	case aggregate.StatusSuspended:
		step(aggregate.Suspend{Reason: aggregate.ReasonPaymentFailed, AutoResumeAt: ptr(t0.Add(24 * time.Hour))})
	case aggregate.StatusPendingCancellation:
		step(aggregate.Cancel{EffectiveAt: ptr(t0.Add(24 * time.Hour))})
	case aggregate.StatusMigrating:
		step(aggregate.MigrateRegion{To: "eu-west-1"})
	case aggregate.StatusTerminated:
		step(aggregate.Terminate{Reason: "test"})
	case aggregate.StatusPurged:
		step(aggregate.Terminate{Reason: "test"})
		step(aggregate.Purge{})
	default:
		t.Fatalf("no path to %s", s)
	}
	if h.tenant.Status != s {
		t.Fatalf("built %s, want %s", h.tenant.Status, s)
	}
	return h
}

func ptr[T any](v T) *T { return &v }

// sampleCommand returns a command with valid fields for every command name.
func sampleCommand(name aggregate.CommandName) aggregate.Command {
	switch name {
	case aggregate.CmdCompleteProvisioning:
		return aggregate.CompleteProvisioning{}
	case aggregate.CmdFailProvisioning:
		return aggregate.FailProvisioning{Reason: "no capacity"}
	case aggregate.CmdExtendTrial:
		return aggregate.ExtendTrial{Days: 7}
	case aggregate.CmdConvertTrial:
		return aggregate.ConvertTrial{}
	case aggregate.CmdExpireTrial:
		return aggregate.ExpireTrial{}
	case aggregate.CmdActivate:
		return aggregate.Activate{}
	case aggregate.CmdSuspend:
		return aggregate.Suspend{Reason: aggregate.ReasonTermsViolation, Note: "n", By: "ops"}
	case aggregate.CmdResume:
		return aggregate.Resume{}
	case aggregate.CmdCancel:
		return aggregate.Cancel{Reason: "too expensive"}
	case aggregate.CmdRevertCancellation:
		return aggregate.RevertCancellation{}
	case aggregate.CmdCompleteCancellation:
		return aggregate.CompleteCancellation{}
	case aggregate.CmdMigrateRegion:
		return aggregate.MigrateRegion{To: "ap-south-1"}
	case aggregate.CmdCompleteMigration:
		return aggregate.CompleteMigration{}
	case aggregate.CmdFailMigration:
		return aggregate.FailMigration{Reason: "disk"}
	case aggregate.CmdRollbackMigration:
		return aggregate.RollbackMigration{Reason: "abort"}
	case aggregate.CmdTerminate:
		return aggregate.Terminate{Reason: "asked", RetentionDays: 60}
	case aggregate.CmdRestore:
		return aggregate.Restore{}
	case aggregate.CmdPurge:
		return aggregate.Purge{}
	case aggregate.CmdChangeEdition:
		return aggregate.ChangeEdition{Edition: aggregate.EditionEnterprise}
	case aggregate.CmdRename:
		return aggregate.Rename{Name: "Acme Holdings"}
	case aggregate.CmdUpdateProfile:
		return aggregate.UpdateProfile{Labels: &map[string]string{"tier": "gold"}}
	case aggregate.CmdSetOverride:
		return aggregate.SetOverride{Key: "max_users", Value: ptr(int64(250))}
	case aggregate.CmdClearOverride:
		return aggregate.ClearOverride{Key: "max_users"}
	case aggregate.CmdSetPolicy:
		return aggregate.SetPolicy{Policy: aggregate.PolicySetting{Type: "mfa_required", Enforced: false}}
	case aggregate.CmdRemovePolicy:
		return aggregate.RemovePolicy{Type: "mfa_required"}
	case aggregate.CmdRecordBillingStatus:
		return aggregate.RecordBillingStatus{Status: aggregate.BillingPastDue, ProviderEventID: "evt_1"}
	}
	panic("no sample for " + name)
}

// wantEvents is what each command emits when accepted from the tenants tenantIn builds.
var wantEvents = map[aggregate.CommandName][]string{
	aggregate.CmdCompleteProvisioning: {"ProvisioningCompleted", "TrialStarted"},
	aggregate.CmdFailProvisioning:     {"ProvisioningFailed"},
	aggregate.CmdExtendTrial:          {"TrialExtended"},
	aggregate.CmdConvertTrial:         {"TrialConverted"},
	aggregate.CmdExpireTrial:          {"TrialExpired"},
	aggregate.CmdActivate:             {"TenantActivated"},
	aggregate.CmdSuspend:              {"TenantSuspended"},
	aggregate.CmdResume:               {"TenantResumed"},
	aggregate.CmdCancel:               {"CancellationRequested"},
	aggregate.CmdRevertCancellation:   {"CancellationReverted"},
	aggregate.CmdCompleteCancellation: {"CancellationCompleted"},
	aggregate.CmdMigrateRegion:        {"RegionMigrationStarted"},
	aggregate.CmdCompleteMigration:    {"RegionMigrationCompleted"},
	aggregate.CmdFailMigration:        {"RegionMigrationFailed"},
	aggregate.CmdRollbackMigration:    {"RegionMigrationRolledBack"},
	aggregate.CmdTerminate:            {"TenantTerminated"},
	aggregate.CmdRestore:              {"TenantRestored"},
	aggregate.CmdPurge:                {"TenantPurged"},
	aggregate.CmdChangeEdition:        {"EditionUpgraded"},
	aggregate.CmdRename:               {"TenantRenamed"},
	aggregate.CmdUpdateProfile:        {"LabelsUpdated"},
	aggregate.CmdSetOverride:          {"LimitOverrideSet"},
	aggregate.CmdClearOverride:        {"LimitOverrideCleared"},
	aggregate.CmdSetPolicy:            {"PolicySet"},
	aggregate.CmdRemovePolicy:         {"PolicyRemoved"},
	aggregate.CmdRecordBillingStatus:  {"BillingStatusChanged"},
}

// fixture is a tenant in a status, built along one path: a status reached
// from different places accepts different commands (a suspended trial may be
// converted, a suspended paid tenant not).
type fixture struct {
	name   string
	status aggregate.Status
	build  func(t *testing.T) *history
	// events overrides wantEvents, and refused lists the commands the
	// lifecycle table accepts in the status but this tenant's state refuses
	// (with the rule), where the path makes a difference.
	events  map[aggregate.CommandName][]string
	refused map[aggregate.CommandName]string
}

// fixtures are one tenant per status (tenantIn), and the statuses whose
// commands depend on where the tenant came from, from each place.
func fixtures() []fixture {
	var out []fixture
	for _, s := range aggregate.Statuses() {
		f := fixture{name: string(s), status: s, build: func(t *testing.T) *history { return tenantIn(t, s) }}
		if s == aggregate.StatusSuspended { // suspended from ACTIVE
			f.refused = map[aggregate.CommandName]string{aggregate.CmdExtendTrial: "not_a_trial", aggregate.CmdConvertTrial: "not_a_trial"}
		}
		out = append(out, f)
	}
	return append(out,
		fixture{name: "SUSPENDED from an expired TRIAL", status: aggregate.StatusSuspended,
			build: func(t *testing.T) *history {
				h := tenantIn(t, aggregate.StatusTrial)
				h.now = *h.tenant.TrialEndsAt
				h.do(t, aggregate.ExpireTrial{})
				return h
			},
			refused: map[aggregate.CommandName]string{aggregate.CmdResume: "trial_ended"}},
		fixture{name: "SUSPENDED from PENDING_CANCELLATION", status: aggregate.StatusSuspended,
			build: func(t *testing.T) *history {
				h := tenantIn(t, aggregate.StatusPendingCancellation)
				h.now = h.now.Add(time.Second)
				h.do(t, aggregate.Suspend{Reason: aggregate.ReasonPaymentFailed})
				return h
			},
			// 20 days on, the cancellation is due: resuming completes it.
			events:  map[aggregate.CommandName][]string{aggregate.CmdResume: {"TenantResumed", "CancellationCompleted"}},
			refused: map[aggregate.CommandName]string{aggregate.CmdExtendTrial: "not_a_trial", aggregate.CmdConvertTrial: "not_a_trial"}},
		fixture{name: "PENDING_CANCELLATION from TRIAL", status: aggregate.StatusPendingCancellation,
			build: func(t *testing.T) *history {
				h := tenantIn(t, aggregate.StatusTrial)
				h.now = h.now.Add(time.Second)
				h.do(t, aggregate.Cancel{EffectiveAt: ptr(t0.Add(24 * time.Hour))})
				return h
			},
			// 20 days on, the trial has ended: the revert finds it expired.
			events: map[aggregate.CommandName][]string{aggregate.CmdRevertCancellation: {"CancellationReverted", "TrialExpired"}}},
	)
}

// TestEveryStatusTimesEveryCommand decides every command in every status
// (some statuses reached along several paths): an allowed one emits the
// expected events and lands in a status the lifecycle table allows; a
// refused one is a transition error naming the status and the allowed
// commands, and emits nothing.
func TestEveryStatusTimesEveryCommand(t *testing.T) {
	t.Parallel()
	for _, f := range fixtures() {
		from := f.status
		for _, name := range aggregate.Commands() {
			t.Run(f.name+"/"+string(name), func(t *testing.T) {
				t.Parallel()
				h := f.build(t)
				if h.tenant.Status != from {
					t.Fatalf("fixture in %s, want %s", h.tenant.Status, from)
				}
				// Late enough for every timer-driven command (trial end,
				// cancellation date, auto-resume), early enough to restore.
				now := t0.Add(20 * 24 * time.Hour)
				before := h.tenant.Clone()
				evs, err := h.tenant.Decide(sampleCommand(name), now, cat)
				if !aggregate.Accepts(from, name) {
					de, ok := aggregate.AsError(err)
					if !ok || de.Code != aggregate.CodeTransition {
						t.Fatalf("err = %v, want a transition error", err)
					}
					if de.Status != from || de.Command != name || !slices.Equal(de.Allowed, aggregate.AllowedCommands(from)) {
						t.Fatalf("error names status %s, command %s, allowed %v", de.Status, de.Command, de.Allowed)
					}
					if evs != nil {
						t.Fatalf("refused command emitted %d events", len(evs))
					}
					return
				}
				if rule, ok := f.refused[name]; ok {
					de, isDomain := aggregate.AsError(err)
					if !isDomain || de.Code != aggregate.CodeInvariant || de.Rule != rule || evs != nil {
						t.Fatalf("err = %v (%d events), want an invariant error with rule %s", err, len(evs), rule)
					}
					return
				}
				if err != nil {
					t.Fatalf("allowed command refused: %v", err)
				}
				var types []string
				for _, e := range evs {
					types = append(types, e.EventType())
				}
				want := wantEvents[name]
				if w, ok := f.events[name]; ok {
					want = w
				}
				if !slices.Equal(types, want) {
					t.Fatalf("events %v, want %v", types, want)
				}
				h.now = now
				h.apply(sampleCommand(name), evs)
				to := h.tenant.Status
				if targets := aggregate.TargetsOf(from, name); len(targets) > 0 {
					if !slices.Contains(targets, to) {
						t.Fatalf("moved %s -> %s; the table allows %v", from, to, targets)
					}
				} else if to != from {
					t.Fatalf("in-place command moved %s -> %s", from, to)
				}
				if before.Status != from {
					t.Fatalf("Decide changed the tenant")
				}
			})
		}
	}
}

func TestSameStatusTransitionsAreRefused(t *testing.T) {
	t.Parallel()
	cases := []struct {
		status aggregate.Status
		cmd    aggregate.Command
	}{
		{aggregate.StatusSuspended, aggregate.Suspend{Reason: aggregate.ReasonAdminAction}},
		{aggregate.StatusActive, aggregate.Resume{}},
		{aggregate.StatusActive, aggregate.Activate{}},
		{aggregate.StatusPendingCancellation, aggregate.Cancel{}},
		{aggregate.StatusMigrating, aggregate.MigrateRegion{To: "ap-south-1"}},
		{aggregate.StatusTerminated, aggregate.Terminate{}},
		{aggregate.StatusTrial, aggregate.CompleteProvisioning{}},
	}
	for _, tc := range cases {
		h := tenantIn(t, tc.status)
		_, err := h.tenant.Decide(tc.cmd, h.now, cat)
		if !aggregate.HasCode(err, aggregate.CodeTransition) {
			t.Errorf("%s in %s: err = %v, want a transition error", tc.cmd.CommandName(), tc.status, err)
		}
	}
}

func TestTransitionTableIsDesignTable(t *testing.T) {
	t.Parallel()
	// DESIGN.md's lifecycle table: from -> allowed next statuses.
	want := map[aggregate.Status][]aggregate.Status{
		"PROVISIONING": {"TRIAL", "ACTIVE", "TERMINATED"},
		"TRIAL":        {"ACTIVE", "SUSPENDED", "PENDING_CANCELLATION", "TERMINATED"},
		"ACTIVE":       {"SUSPENDED", "PENDING_CANCELLATION", "MIGRATING", "TERMINATED"},
		// resume and revert-cancellation return to where the tenant came from.
		"SUSPENDED":            {"TRIAL", "ACTIVE", "PENDING_CANCELLATION", "TERMINATED"},
		"PENDING_CANCELLATION": {"TRIAL", "ACTIVE", "SUSPENDED", "TERMINATED"},
		"MIGRATING":            {"ACTIVE", "SUSPENDED", "TERMINATED"},
		"TERMINATED":           {"ACTIVE", "PURGED"},
		"PURGED":               nil,
	}
	for _, from := range aggregate.Statuses() {
		for _, to := range aggregate.Statuses() {
			if got, exp := aggregate.CanTransition(from, to), slices.Contains(want[from], to); got != exp {
				t.Errorf("CanTransition(%s, %s) = %v, want %v", from, to, got, exp)
			}
		}
	}
	if got := aggregate.AllowedCommands(aggregate.StatusPurged); len(got) != 0 {
		t.Errorf("PURGED accepts %v, want nothing", got)
	}
}

func TestDomainRules(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name   string
		status aggregate.Status
		cmd    aggregate.Command
		now    time.Duration // after t0
		code   aggregate.Code
		field  string
	}{
		{"trial cannot expire early", aggregate.StatusTrial, aggregate.ExpireTrial{}, time.Hour, aggregate.CodeInvariant, ""},
		{"cancellation cannot complete early", aggregate.StatusPendingCancellation, aggregate.CompleteCancellation{}, time.Hour, aggregate.CodeInvariant, ""},
		{"no restore after retention", aggregate.StatusTerminated, aggregate.Restore{}, 400 * 24 * time.Hour, aggregate.CodeInvariant, ""},
		{"automatic resume not before its time", aggregate.StatusSuspended, aggregate.Resume{Automatic: true}, time.Hour, aggregate.CodeInvariant, ""},
		{"migration needs another region", aggregate.StatusActive, aggregate.MigrateRegion{To: "us-east-1"}, time.Hour, aggregate.CodeInvariant, "target_region"},
		{"unknown region", aggregate.StatusActive, aggregate.MigrateRegion{To: "mars-1"}, time.Hour, aggregate.CodeValidation, "target_region"},
		{"retention too long", aggregate.StatusActive, aggregate.Terminate{RetentionDays: 2556}, time.Hour, aggregate.CodeValidation, "retention_days"},
		{"retention negative", aggregate.StatusActive, aggregate.Terminate{RetentionDays: -1}, time.Hour, aggregate.CodeValidation, "retention_days"},
		{"same edition", aggregate.StatusActive, aggregate.ChangeEdition{Edition: aggregate.EditionProfessional}, time.Hour, aggregate.CodeInvariant, "edition"},
		{"unknown edition", aggregate.StatusActive, aggregate.ChangeEdition{Edition: "gold"}, time.Hour, aggregate.CodeValidation, "edition"},
		{"suspend needs a reason", aggregate.StatusActive, aggregate.Suspend{}, time.Hour, aggregate.CodeValidation, "reason"},
		{"auto resume in the past", aggregate.StatusActive, aggregate.Suspend{Reason: "admin_action", AutoResumeAt: ptr(t0)}, time.Hour, aggregate.CodeValidation, "auto_resume_at"},
		{"trial extension too long", aggregate.StatusTrial, aggregate.ExtendTrial{Days: 91}, time.Hour, aggregate.CodeValidation, "days"},
		{"billing needs a provider event id", aggregate.StatusActive, aggregate.RecordBillingStatus{Status: "past_due"}, time.Hour, aggregate.CodeValidation, "provider_event_id"},
		{"empty profile patch", aggregate.StatusActive, aggregate.UpdateProfile{}, time.Hour, aggregate.CodeValidation, "body"},
		{"bad contact e-mail", aggregate.StatusActive, aggregate.UpdateProfile{Contacts: &[]aggregate.Contact{{Role: "primary", Email: "nope"}}}, time.Hour, aggregate.CodeValidation, "contacts[0].email"},
		{"bad label", aggregate.StatusActive, aggregate.UpdateProfile{Labels: &map[string]string{"Bad Key": "x"}}, time.Hour, aggregate.CodeValidation, "labels.Bad Key"},
		{"rename to blank", aggregate.StatusActive, aggregate.Rename{Name: "  "}, time.Hour, aggregate.CodeValidation, "name"},
		{"remove a policy not set", aggregate.StatusActive, aggregate.RemovePolicy{Type: "ip_allowlist"}, time.Hour, aggregate.CodeNotFound, "type"},
		{"clear an override not set", aggregate.StatusActive, aggregate.ClearOverride{Key: "sso"}, time.Hour, aggregate.CodeNotFound, "key"},
		{"override needs enabled or value", aggregate.StatusActive, aggregate.SetOverride{Key: "sso"}, time.Hour, aggregate.CodeValidation, "body"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			h := tenantIn(t, tc.status)
			evs, err := h.tenant.Decide(tc.cmd, t0.Add(tc.now), cat)
			de, ok := aggregate.AsError(err)
			if !ok || de.Code != tc.code || de.Field != tc.field {
				t.Fatalf("err = %#v, want code %s field %q", err, tc.code, tc.field)
			}
			if evs != nil {
				t.Fatalf("emitted %d events", len(evs))
			}
		})
	}
}

func TestSuspensionSeverityDefaultsFromReason(t *testing.T) {
	t.Parallel()
	want := map[aggregate.SuspensionReason]aggregate.Severity{
		"payment_failed": "soft", "payment_overdue": "soft", "terms_violation": "hard",
		"security_threat": "security", "abuse_detected": "hard", "legal_request": "hard",
		"admin_action": "soft", "trial_expired": "soft",
	}
	for _, r := range aggregate.SuspensionReasons() {
		h := tenantIn(t, aggregate.StatusActive)
		h.do(t, aggregate.Suspend{Reason: r})
		if got := h.tenant.Suspension.Severity; got != want[r] {
			t.Errorf("%s: severity %s, want %s", r, got, want[r])
		}
	}
	h := tenantIn(t, aggregate.StatusActive)
	h.do(t, aggregate.Suspend{Reason: "payment_failed", Severity: "security"})
	if h.tenant.Suspension.Severity != "security" {
		t.Errorf("explicit severity not kept: %s", h.tenant.Suspension.Severity)
	}
}

func TestRetentionDefaultsByEdition(t *testing.T) {
	t.Parallel()
	want := map[aggregate.Edition]int{"free": 30, "essentials": 90, "professional": 180, "enterprise": 365, "unlimited": 730}
	for ed, days := range want {
		h := tenantIn(t, aggregate.StatusActive)
		if ed != h.tenant.Edition {
			h.do(t, aggregate.ChangeEdition{Edition: ed})
		}
		h.do(t, aggregate.Terminate{})
		if got := h.tenant.Termination.DataRetentionUntil; !got.Equal(h.now.AddDate(0, 0, days)) {
			t.Errorf("%s: retained until %v, want %d days after %v", ed, got, days, h.now)
		}
	}
}

func TestEditionChangeDistinguishesUpgradeAndDowngrade(t *testing.T) {
	t.Parallel()
	h := tenantIn(t, aggregate.StatusActive)
	if evs := h.do(t, aggregate.ChangeEdition{Edition: "enterprise"}); evs[0].EventType() != "EditionUpgraded" {
		t.Errorf("professional -> enterprise emitted %s", evs[0].EventType())
	}
	if evs := h.do(t, aggregate.ChangeEdition{Edition: "essentials"}); evs[0].EventType() != "EditionDowngraded" {
		t.Errorf("enterprise -> essentials emitted %s", evs[0].EventType())
	}
}

func TestBillingStatusIsDeduplicatedByProviderEventID(t *testing.T) {
	t.Parallel()
	h := tenantIn(t, aggregate.StatusActive)
	at := t0.Add(time.Hour)
	h.do(t, aggregate.RecordBillingStatus{Status: "past_due", ProviderEventID: "evt_1", ProviderOccurredAt: &at})
	if evs := h.do(t, aggregate.RecordBillingStatus{Status: "past_due", ProviderEventID: "evt_1", ProviderOccurredAt: &at}); len(evs) != 0 {
		t.Errorf("redelivery emitted %d events", len(evs))
	}
	later := at.Add(time.Hour)
	h.do(t, aggregate.RecordBillingStatus{Status: "active", ProviderEventID: "evt_2", ProviderOccurredAt: &later})
	// evt_0 happened before evt_1 and arrives late: ignored.
	early := at.Add(-time.Minute)
	if evs := h.do(t, aggregate.RecordBillingStatus{Status: "unpaid", ProviderEventID: "evt_0", ProviderOccurredAt: &early}); len(evs) != 0 {
		t.Errorf("out-of-order provider event emitted %d events", len(evs))
	}
	if h.tenant.BillingStatus != "active" {
		t.Errorf("billing status %s, want active", h.tenant.BillingStatus)
	}
}

func TestNormalizeName(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"Acme Corp":        "acme corp",
		"  ACME   CORP  ":  "acme corp",
		"Ａｃｍｅ Corp":        "acme corp",
		"Acme\tCorp":       "acme corp",
		"Straße GmbH":      "strasse gmbh",
		"ﬁne Corp":         "fine corp",
		"Ünïcødé\u00a0Ltd": "ünïcødé ltd",
	} {
		if got := aggregate.NormalizeName(in); got != want {
			t.Errorf("NormalizeName(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestPurgeRedactsContacts(t *testing.T) {
	t.Parallel()
	h := tenantIn(t, aggregate.StatusPurged)
	for _, c := range h.tenant.Contacts {
		if c.Email != aggregate.Redacted || c.Name != aggregate.Redacted {
			t.Errorf("contact after purge: %+v", c)
		}
	}
	if got := aggregate.PersonalFields("TenantCreated"); !slices.Equal(got, []string{"contacts[].name", "contacts[].email", "contacts[].phone"}) {
		t.Errorf("personal fields of TenantCreated = %v", got)
	}
	if got := aggregate.PersonalFields("TenantPurged"); len(got) != 0 {
		t.Errorf("TenantPurged has personal fields %v", got)
	}
}

func TestStateJSONRoundTrips(t *testing.T) {
	t.Parallel()
	h := tenantIn(t, aggregate.StatusSuspended)
	b, err := json.Marshal(h.tenant)
	if err != nil {
		t.Fatal(err)
	}
	var back map[string]any
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if back["status"] != "SUSPENDED" || back["external_id"] != "ORG-0A1B2C3D" {
		t.Fatalf("state JSON: %s", b)
	}
}
