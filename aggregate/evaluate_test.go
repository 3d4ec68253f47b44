package aggregate

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/")

// now is a Wednesday morning, 10:30:15 UTC.
var now = time.Date(2025, 6, 4, 10, 30, 15, 0, time.UTC)

// tenant returns an active, paid-up tenant of edition e in us-east-1, changed by mods.
func tenant(e Edition, mods ...func(*PolicySubject)) PolicySubject {
	s := PolicySubject{
		Status:        StatusActive,
		Edition:       e,
		Region:        "us-east-1",
		Entitlements:  DefaultCatalog().Entitlements(e, Overrides{}),
		BillingStatus: "active",
	}
	for _, m := range mods {
		m(&s)
	}
	return s
}

// withPolicy adds a policy (validated against unlimited entitlements).
func withPolicy(typ PolicyType, enforced bool, settings string) func(*PolicySubject) {
	return func(s *PolicySubject) {
		if s.Policies == nil {
			s.Policies = map[PolicyType]PolicySetting{}
		}
		s.Policies[typ] = PolicySetting{Type: typ, Enforced: enforced, Settings: json.RawMessage(settings)}
	}
}

func request(action string, mods ...func(*PolicyContext)) PolicyRequest {
	r := PolicyRequest{Action: action}
	for _, m := range mods {
		m(&r.Context)
	}
	return r
}

func usage(l Limit, used int64) func(*PolicyContext) {
	return func(c *PolicyContext) {
		if c.Usage == nil {
			c.Usage = map[Limit]int64{}
		}
		c.Usage[l] = used
	}
}

func inRegion(r Region) func(*PolicyContext) { return func(c *PolicyContext) { c.Region = r } }
func fromIP(ip string) func(*PolicyContext)  { return func(c *PolicyContext) { c.SourceIP = ip } }
func atTime(t time.Time) func(*PolicyContext) {
	return func(c *PolicyContext) { c.Time = &t }
}

// evalCase is one evaluation and what it must decide. Rule, when set, is the
// rule under test and Outcome its expected outcome.
type evalCase struct {
	name     string
	subject  PolicySubject
	req      PolicyRequest
	decision string
	reason   string
	retry    int
	upgrade  Edition
	rule     string
	outcome  string
	mention  string // a word some violation's message (or the rule's explanation) must contain
}

func runEvalCases(t *testing.T, tests []evalCase) {
	t.Helper()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			d := Evaluate(tt.subject, tt.req, now)
			if d.Decision != tt.decision || d.Reason != tt.reason || d.RetryAfterSeconds != tt.retry {
				t.Errorf("got %s/%s retry %d, want %s/%s retry %d\n%s",
					d.Decision, d.Reason, d.RetryAfterSeconds, tt.decision, tt.reason, tt.retry, dump(d))
			}
			if d.UpgradeRequired != (tt.upgrade != "") || d.RequiredEdition != tt.upgrade {
				t.Errorf("upgrade %v to %q, want %q", d.UpgradeRequired, d.RequiredEdition, tt.upgrade)
			}
			checkDecisionShape(t, d)
			if tt.rule != "" {
				i := slices.IndexFunc(d.Rules, func(r RuleResult) bool { return r.Rule == tt.rule })
				if i < 0 || d.Rules[i].Outcome != tt.outcome {
					t.Errorf("rule %s: want outcome %s\n%s", tt.rule, tt.outcome, dump(d))
				}
				if tt.mention != "" && i >= 0 && !strings.Contains(d.Rules[i].Explanation, tt.mention) {
					t.Errorf("rule %s explanation %q does not mention %q", tt.rule, d.Rules[i].Explanation, tt.mention)
				}
			}
		})
	}
}

// checkDecisionShape checks what holds for every decision: the rules in
// order with an explanation each, and a decision that follows from the
// violations.
func checkDecisionShape(t *testing.T, d Decision) {
	t.Helper()
	var names []string
	for _, r := range d.Rules {
		names = append(names, r.Rule)
		if r.Explanation == "" {
			t.Errorf("rule %s has no explanation", r.Rule)
		}
		if !slices.Contains([]string{OutcomePass, OutcomeWarn, OutcomeDeny, OutcomeSkipped}, r.Outcome) {
			t.Errorf("rule %s has outcome %q", r.Rule, r.Outcome)
		}
	}
	if want := []string{RuleStatus, RuleEdition, RuleQuotas, RuleRegion, RuleNetwork, RuleTime}; !slices.Equal(names, want) {
		t.Errorf("rules %v, want %v", names, want)
	}
	if d.Violations == nil {
		t.Error("Violations is nil, want an empty slice")
	}
	deny := slices.ContainsFunc(d.Violations, isDenial)
	switch {
	case deny && d.Decision != DecisionDeny,
		!deny && len(d.Violations) > 0 && d.Decision != DecisionWarn,
		len(d.Violations) == 0 && (d.Decision != DecisionAllow || d.Reason != "ok"):
		t.Errorf("decision %s does not follow from violations %+v", d.Decision, d.Violations)
	}
	for _, v := range d.Violations {
		i := slices.IndexFunc(d.Rules, func(r RuleResult) bool { return r.Rule == v.Rule })
		if i < 0 || (d.Rules[i].Outcome != v.Severity && d.Rules[i].Outcome != OutcomeDeny) {
			t.Errorf("violation %s/%s (%s) does not match its rule's outcome", v.Rule, v.Code, v.Severity)
		}
	}
}

func dump(d Decision) string {
	b, _ := json.MarshalIndent(d, "", "  ")
	return string(b)
}

func TestEvaluateStatus(t *testing.T) {
	t.Parallel()
	status := func(st Status) func(*PolicySubject) { return func(s *PolicySubject) { s.Status = st } }
	suspended := func(reason, severity string, resume *time.Time) func(*PolicySubject) {
		return func(s *PolicySubject) {
			s.Status, s.SuspendedReason, s.SuspensionSeverity, s.AutoResumeAt = StatusSuspended, reason, severity, resume
		}
	}
	trialEnds := func(at time.Time) func(*PolicySubject) {
		return func(s *PolicySubject) { s.Status, s.TrialEndsAt, s.BillingStatus = StatusTrial, &at, "trialing" }
	}
	billing := func(b string) func(*PolicySubject) { return func(s *PolicySubject) { s.BillingStatus = b } }
	read, write := request("data.read"), request("data.write")
	pro := EditionProfessional
	tests := []evalCase{
		{name: "active reads", subject: tenant(pro), req: read, decision: "allow", reason: "ok", rule: RuleStatus, outcome: OutcomePass},
		{name: "active writes", subject: tenant(pro), req: write, decision: "allow", reason: "ok", rule: RuleStatus, outcome: OutcomePass},
		{name: "trial far from its end", subject: tenant(pro, trialEnds(now.Add(10*24*time.Hour))), req: write,
			decision: "allow", reason: "ok", rule: RuleStatus, outcome: OutcomePass},
		{name: "trial ending within 3 days warns", subject: tenant(pro, trialEnds(now.Add(50*time.Hour))), req: write,
			decision: "warn", reason: "trial_ending", rule: RuleStatus, outcome: OutcomeWarn, mention: "2 days"},
		{name: "trial ending exactly in 3 days warns", subject: tenant(pro, trialEnds(now.Add(72*time.Hour))), req: read,
			decision: "warn", reason: "trial_ending", rule: RuleStatus, outcome: OutcomeWarn},
		{name: "trial past its end warns", subject: tenant(pro, trialEnds(now.Add(-time.Minute))), req: read,
			decision: "warn", reason: "trial_ended", rule: RuleStatus, outcome: OutcomeWarn},
		{name: "pending cancellation warns with the date", subject: tenant(pro, status(StatusPendingCancellation),
			func(s *PolicySubject) { s.CancellationEffectiveAt = ptr(now.Add(7 * 24 * time.Hour)) }), req: write,
			decision: "warn", reason: "cancellation_pending", rule: RuleStatus, outcome: OutcomeWarn, mention: "2025-06-11T10:30:15Z"},
		{name: "provisioning denies with retry", subject: tenant(pro, status(StatusProvisioning)), req: read,
			decision: "deny", reason: "tenant_provisioning", retry: 30, rule: RuleStatus, outcome: OutcomeDeny},
		{name: "soft suspension reads with a warning", subject: tenant(pro, suspended("payment_failed", "soft", nil)), req: read,
			decision: "warn", reason: "tenant_suspended", rule: RuleStatus, outcome: OutcomeWarn, mention: "payment_failed"},
		{name: "soft suspension refuses writes", subject: tenant(pro, suspended("payment_failed", "soft", nil)), req: write,
			decision: "deny", reason: "tenant_suspended", rule: RuleStatus, outcome: OutcomeDeny},
		{name: "hard suspension refuses reads", subject: tenant(pro, suspended("terms_violation", "hard", nil)), req: read,
			decision: "deny", reason: "tenant_suspended", rule: RuleStatus, outcome: OutcomeDeny},
		{name: "security suspension refuses reads", subject: tenant(pro, suspended("security_threat", "security", nil)), req: request("admin.login"),
			decision: "deny", reason: "tenant_suspended", rule: RuleStatus, outcome: OutcomeDeny},
		{name: "unknown severity counts as hard", subject: tenant(pro, suspended("admin_action", "mild", nil)), req: read,
			decision: "deny", reason: "tenant_suspended", rule: RuleStatus, outcome: OutcomeDeny, mention: "treated as hard"},
		{name: "soft suspension with auto resume retries then", subject: tenant(pro, suspended("payment_failed", "soft", ptr(now.Add(90*time.Minute+500*time.Millisecond)))), req: write,
			decision: "deny", reason: "tenant_suspended", retry: 5401, rule: RuleStatus, outcome: OutcomeDeny},
		{name: "hard suspension with auto resume retries then", subject: tenant(pro, suspended("legal_request", "hard", ptr(now.Add(time.Hour)))), req: read,
			decision: "deny", reason: "tenant_suspended", retry: 3600, rule: RuleStatus, outcome: OutcomeDeny},
		{name: "overdue auto resume gives no retry", subject: tenant(pro, suspended("trial_expired", "hard", ptr(now.Add(-time.Hour)))), req: read,
			decision: "deny", reason: "tenant_suspended", rule: RuleStatus, outcome: OutcomeDeny},
		{name: "migrating reads", subject: tenant(pro, status(StatusMigrating)), req: read,
			decision: "allow", reason: "ok", rule: RuleStatus, outcome: OutcomePass},
		{name: "migrating refuses writes with retry", subject: tenant(pro, status(StatusMigrating)), req: write,
			decision: "deny", reason: "tenant_migrating", retry: 300, rule: RuleStatus, outcome: OutcomeDeny},
		{name: "terminated denies", subject: tenant(pro, status(StatusTerminated)), req: read,
			decision: "deny", reason: "tenant_terminated", rule: RuleStatus, outcome: OutcomeDeny},
		{name: "purged denies", subject: tenant(pro, status(StatusPurged)), req: read,
			decision: "deny", reason: "tenant_purged", rule: RuleStatus, outcome: OutcomeDeny},
		{name: "unknown status denies", subject: tenant(pro, status("ZOMBIE")), req: read,
			decision: "deny", reason: "tenant_status_unknown", rule: RuleStatus, outcome: OutcomeDeny},
		{name: "past due warns", subject: tenant(pro, billing("past_due")), req: write,
			decision: "warn", reason: "billing_past_due", rule: RuleStatus, outcome: OutcomeWarn},
		{name: "unpaid reads with a warning", subject: tenant(pro, billing("unpaid")), req: read,
			decision: "warn", reason: "billing_unpaid", rule: RuleStatus, outcome: OutcomeWarn},
		{name: "unpaid refuses writes", subject: tenant(pro, billing("unpaid")), req: write,
			decision: "deny", reason: "billing_unpaid", rule: RuleStatus, outcome: OutcomeDeny},
		{name: "paused refuses writes", subject: tenant(pro, billing("paused")), req: write,
			decision: "deny", reason: "billing_paused", rule: RuleStatus, outcome: OutcomeDeny},
		{name: "no billing status recorded", subject: tenant(pro, billing("")), req: write,
			decision: "allow", reason: "ok", rule: RuleStatus, outcome: OutcomePass},
		{name: "suspension and unpaid: both reported, suspension first", subject: tenant(pro, suspended("payment_failed", "soft", nil), billing("unpaid")), req: write,
			decision: "deny", reason: "tenant_suspended", rule: RuleStatus, outcome: OutcomeDeny, mention: "unpaid"},
	}
	runEvalCases(t, tests)
}

func TestEvaluateEditionGating(t *testing.T) {
	t.Parallel()
	override := func(f Feature, on bool) func(*PolicySubject) {
		return func(s *PolicySubject) {
			s.Entitlements = DefaultCatalog().Entitlements(s.Edition, Overrides{Features: map[Feature]bool{f: on}})
		}
	}
	tests := []evalCase{
		{name: "free may call the api", subject: tenant(EditionFree), req: request("api.call"),
			decision: "allow", reason: "ok", rule: RuleEdition, outcome: OutcomePass},
		{name: "free may not create webhooks", subject: tenant(EditionFree), req: request("webhook.create"),
			decision: "deny", reason: "feature_not_in_edition", upgrade: EditionEssentials, rule: RuleEdition, outcome: OutcomeDeny, mention: "webhooks"},
		{name: "essentials may not sign in with sso", subject: tenant(EditionEssentials), req: request("sso.login"),
			decision: "deny", reason: "feature_not_in_edition", upgrade: EditionProfessional, rule: RuleEdition, outcome: OutcomeDeny},
		{name: "professional may sign in with sso", subject: tenant(EditionProfessional), req: request("sso.login"),
			decision: "allow", reason: "ok", rule: RuleEdition, outcome: OutcomePass},
		{name: "free may not read audit logs", subject: tenant(EditionFree), req: request("audit_logs.read"),
			decision: "deny", reason: "feature_not_in_edition", upgrade: EditionProfessional, rule: RuleEdition, outcome: OutcomeDeny},
		{name: "essentials may not create sandboxes", subject: tenant(EditionEssentials), req: request("sandbox.create"),
			decision: "deny", reason: "feature_not_in_edition", upgrade: EditionProfessional, rule: RuleEdition, outcome: OutcomeDeny},
		{name: "feature switched on by override", subject: tenant(EditionFree, override(FeatureWebhooks, true)), req: request("webhook.create"),
			decision: "allow", reason: "ok", rule: RuleEdition, outcome: OutcomePass},
		{name: "feature switched off by override: no upgrade helps", subject: tenant(EditionEnterprise, override(FeatureCustomWorkflows, false)), req: request("workflow.run"),
			decision: "deny", reason: "feature_disabled", rule: RuleEdition, outcome: OutcomeDeny, mention: "override"},
		{name: "zero entitlements are the edition's", subject: func() PolicySubject {
			s := tenant(EditionProfessional)
			s.Entitlements = Entitlements{}
			return s
		}(), req: request("analytics.query"), decision: "allow", reason: "ok", rule: RuleEdition, outcome: OutcomePass},
		{name: "an action without a feature", subject: tenant(EditionFree), req: request("data.write"),
			decision: "allow", reason: "ok", rule: RuleEdition, outcome: OutcomePass},
		{name: "unknown action denies", subject: tenant(EditionUnlimited), req: request("rocket.launch"),
			decision: "deny", reason: "unknown_action", rule: RuleEdition, outcome: OutcomeDeny, mention: "user.create"},
	}
	runEvalCases(t, tests)
}

func TestEvaluateQuotas(t *testing.T) {
	t.Parallel()
	limitOverride := func(l Limit, v int64) func(*PolicySubject) {
		return func(s *PolicySubject) {
			s.Entitlements = DefaultCatalog().Entitlements(s.Edition, Overrides{Limits: map[Limit]int64{l: v}})
		}
	}
	free := EditionFree
	// now is 10:30:15: 45 s to the next minute, 13h29m45s to midnight.
	const toMinute, toMidnight = 45, 13*3600 + 29*60 + 45
	tests := []evalCase{
		{name: "under the quota", subject: tenant(free), req: request("user.create", usage(LimitMaxUsers, 3)),
			decision: "allow", reason: "ok", rule: RuleQuotas, outcome: OutcomePass},
		{name: "at 80% warns", subject: tenant(free), req: request("user.create", usage(LimitMaxUsers, 4)),
			decision: "warn", reason: "quota_nearly_exhausted", rule: RuleQuotas, outcome: OutcomeWarn, mention: "80%"},
		{name: "used up denies, upgrade for more users", subject: tenant(free), req: request("user.create", usage(LimitMaxUsers, 5)),
			decision: "deny", reason: "quota_exceeded", upgrade: EditionEssentials, rule: RuleQuotas, outcome: OutcomeDeny},
		{name: "far over: upgrade to the edition that fits", subject: tenant(free), req: request("user.create", usage(LimitMaxUsers, 400)),
			decision: "deny", reason: "quota_exceeded", upgrade: EditionEnterprise, rule: RuleQuotas, outcome: OutcomeDeny},
		{name: "beyond every finite limit: upgrade to unlimited", subject: tenant(EditionProfessional), req: request("user.create", usage(LimitMaxUsers, 5000)),
			decision: "deny", reason: "quota_exceeded", upgrade: EditionUnlimited, rule: RuleQuotas, outcome: OutcomeDeny},
		{name: "an overridden limit: upgrading does not help", subject: tenant(EditionProfessional, limitOverride(LimitMaxUsers, 10)), req: request("user.create", usage(LimitMaxUsers, 10)),
			decision: "deny", reason: "quota_exceeded", rule: RuleQuotas, outcome: OutcomeDeny},
		{name: "unlimited by edition", subject: tenant(EditionUnlimited), req: request("user.create", usage(LimitMaxUsers, 1_000_000)),
			decision: "allow", reason: "ok", rule: RuleQuotas, outcome: OutcomePass, mention: "unlimited"},
		{name: "unlimited by override", subject: tenant(free, limitOverride(LimitStorageGB, 0)), req: request("storage.write", usage(LimitStorageGB, 500)),
			decision: "allow", reason: "ok", rule: RuleQuotas, outcome: OutcomePass},
		{name: "per-minute quota retries at the next minute", subject: tenant(free), req: request("api.call", usage(LimitMaxAPICallsPerMinute, 60)),
			decision: "deny", reason: "quota_exceeded", retry: toMinute, rule: RuleQuotas, outcome: OutcomeDeny},
		{name: "per-day quota retries at UTC midnight", subject: tenant(free), req: request("api.call", usage(LimitMaxAPICallsPerDay, 1000)),
			decision: "deny", reason: "quota_exceeded", retry: toMidnight, rule: RuleQuotas, outcome: OutcomeDeny, mention: "2025-06-05T00:00:00Z"},
		{name: "both windows used up: wait for the later", subject: tenant(free), req: request("api.call", usage(LimitMaxAPICallsPerMinute, 61), usage(LimitMaxAPICallsPerDay, 1001)),
			decision: "deny", reason: "quota_exceeded", retry: toMidnight, rule: RuleQuotas, outcome: OutcomeDeny},
		{name: "minute used up, day nearly", subject: tenant(free), req: request("api.call", usage(LimitMaxAPICallsPerMinute, 60), usage(LimitMaxAPICallsPerDay, 900)),
			decision: "deny", reason: "quota_exceeded", retry: toMinute, rule: RuleQuotas, outcome: OutcomeDeny},
		{name: "per-minute at a minute boundary waits a full minute", subject: tenant(free),
			req:      request("api.call", usage(LimitMaxAPICallsPerMinute, 60), atTime(time.Date(2025, 6, 4, 10, 31, 0, 0, time.UTC))),
			decision: "deny", reason: "quota_exceeded", retry: 60, rule: RuleQuotas, outcome: OutcomeDeny},
		{name: "per-minute with fractions rounds up", subject: tenant(free),
			req:      request("api.call", usage(LimitMaxAPICallsPerMinute, 60), atTime(time.Date(2025, 6, 4, 10, 31, 59, 500_000_000, time.UTC))),
			decision: "deny", reason: "quota_exceeded", retry: 1, rule: RuleQuotas, outcome: OutcomeDeny},
		{name: "per-day just before midnight", subject: tenant(free),
			req:      request("api.call", usage(LimitMaxAPICallsPerDay, 1000), atTime(time.Date(2025, 12, 31, 23, 59, 30, 0, time.UTC))),
			decision: "deny", reason: "quota_exceeded", retry: 30, rule: RuleQuotas, outcome: OutcomeDeny, mention: "2026-01-01T00:00:00Z"},
		{name: "per-day in another time zone resets at UTC midnight", subject: tenant(free), // 01:00 CEST is 23:00 UTC the day before
			req:      request("api.call", usage(LimitMaxAPICallsPerDay, 1000), atTime(time.Date(2025, 6, 5, 1, 0, 0, 0, time.FixedZone("CEST", 2*3600)))),
			decision: "deny", reason: "quota_exceeded", retry: 3600, rule: RuleQuotas, outcome: OutcomeDeny, mention: "2025-06-05T00:00:00Z"},
		{name: "no usage given: skipped", subject: tenant(free), req: request("user.create"),
			decision: "allow", reason: "ok", rule: RuleQuotas, outcome: OutcomeSkipped},
		{name: "action without quota: skipped", subject: tenant(free), req: request("data.read", usage(LimitMaxUsers, 99)),
			decision: "allow", reason: "ok", rule: RuleQuotas, outcome: OutcomeSkipped},
		{name: "80% rounds up: 5 of 7 passes", subject: tenant(free, limitOverride(LimitMaxUsers, 7)), req: request("user.create", usage(LimitMaxUsers, 5)),
			decision: "allow", reason: "ok", rule: RuleQuotas, outcome: OutcomePass},
		{name: "80% rounds up: 6 of 7 warns", subject: tenant(free, limitOverride(LimitMaxUsers, 7)), req: request("user.create", usage(LimitMaxUsers, 6)),
			decision: "warn", reason: "quota_nearly_exhausted", rule: RuleQuotas, outcome: OutcomeWarn},
		{name: "retry only when every denial waits: provisioning and a minute", subject: tenant(free, func(s *PolicySubject) { s.Status = StatusProvisioning }),
			req:      request("api.call", usage(LimitMaxAPICallsPerMinute, 60)),
			decision: "deny", reason: "tenant_provisioning", retry: toMinute, rule: RuleQuotas, outcome: OutcomeDeny},
		{name: "no retry when a denial does not wait", subject: tenant(free, func(s *PolicySubject) { s.Status = StatusProvisioning }),
			req:      request("webhook.create", usage(LimitMaxWebhooks, 0)),
			decision: "deny", reason: "tenant_provisioning", upgrade: EditionEssentials, rule: RuleEdition, outcome: OutcomeDeny},
	}
	runEvalCases(t, tests)
}

func TestQuotaViolationCarriesTheNumbers(t *testing.T) {
	t.Parallel()
	d := Evaluate(tenant(EditionFree), request("user.create", usage(LimitMaxUsers, 6)), now)
	want := Violation{Rule: RuleQuotas, Code: "quota_exceeded", Severity: OutcomeDeny, Limit: LimitMaxUsers, Used: 6, Allowed: 5}
	if len(d.Violations) != 1 {
		t.Fatalf("violations %+v, want one", d.Violations)
	}
	got := d.Violations[0]
	got.Message = ""
	if got != want {
		t.Errorf("violation %+v, want %+v", got, want)
	}
}

func TestEvaluateRegionAndResidency(t *testing.T) {
	t.Parallel()
	home := func(r Region) func(*PolicySubject) { return func(s *PolicySubject) { s.Region = r } }
	gdpr := func(std ...string) func(*PolicySubject) {
		return func(s *PolicySubject) { s.ComplianceStandards = std }
	}
	ent := EditionEnterprise
	euOnly := withPolicy(PolicyDataResidency, true, `{"allowed_regions":["eu-west-1","eu-central-1"]}`)
	tests := []evalCase{
		{name: "no residency rule", subject: tenant(ent), req: request("data.write", inRegion("ap-south-1")),
			decision: "allow", reason: "ok", rule: RuleRegion, outcome: OutcomePass},
		{name: "residency policy allows the region", subject: tenant(ent, home("eu-west-1"), euOnly), req: request("data.write", inRegion("eu-central-1")),
			decision: "allow", reason: "ok", rule: RuleRegion, outcome: OutcomePass},
		{name: "residency policy refuses another region", subject: tenant(ent, home("eu-west-1"), euOnly), req: request("data.read", inRegion("us-east-1")),
			decision: "deny", reason: "region_not_allowed", rule: RuleRegion, outcome: OutcomeDeny, mention: "eu-west-1, eu-central-1"},
		{name: "residency policy not enforced only warns", subject: tenant(ent, home("eu-west-1"),
			withPolicy(PolicyDataResidency, false, `{"allowed_regions":["eu-west-1"]}`)), req: request("data.read", inRegion("us-east-1")),
			decision: "warn", reason: "region_not_allowed", rule: RuleRegion, outcome: OutcomeWarn},
		{name: "no request region: the home region is checked", subject: tenant(ent, home("us-west-2"), euOnly), req: request("data.read"),
			decision: "deny", reason: "region_not_allowed", rule: RuleRegion, outcome: OutcomeDeny, mention: "home region"},
		{name: "no region at all: skipped", subject: tenant(ent, home("")), req: request("data.read"),
			decision: "allow", reason: "ok", rule: RuleRegion, outcome: OutcomeSkipped},
		{name: "unknown region denies", subject: tenant(ent), req: request("data.read", inRegion("mars-north-1")),
			decision: "deny", reason: "region_unknown", rule: RuleRegion, outcome: OutcomeDeny},
		{name: "GDPR tenant in the EU may not process in the US", subject: tenant(ent, home("eu-west-1"), gdpr("GDPR")), req: request("data.write", inRegion("us-east-1")),
			decision: "deny", reason: "region_not_allowed", rule: RuleRegion, outcome: OutcomeDeny, mention: "GDPR"},
		{name: "GDPR tenant in the EU may process in another EU region", subject: tenant(ent, home("eu-west-1"), gdpr("SOC2", "GDPR")), req: request("data.write", inRegion("eu-central-1")),
			decision: "allow", reason: "ok", rule: RuleRegion, outcome: OutcomePass},
		{name: "GDPR is matched case-insensitively", subject: tenant(ent, home("eu-central-1"), gdpr("gdpr")), req: request("analytics.query", inRegion("ap-southeast-1")),
			decision: "deny", reason: "region_not_allowed", rule: RuleRegion, outcome: OutcomeDeny},
		{name: "GDPR tenant at home outside the EU is not restricted", subject: tenant(ent, gdpr("GDPR")), req: request("data.write", inRegion("ap-south-1")),
			decision: "allow", reason: "ok", rule: RuleRegion, outcome: OutcomePass},
		{name: "other standards do not restrict regions", subject: tenant(ent, home("eu-west-1"), gdpr("HIPAA", "PCI_DSS")), req: request("data.write", inRegion("us-east-1")),
			decision: "allow", reason: "ok", rule: RuleRegion, outcome: OutcomePass},
		{name: "GDPR and the policy both refuse: two violations", subject: tenant(ent, home("eu-west-1"), gdpr("GDPR"), euOnly), req: request("data.write", inRegion("ca-central-1")),
			decision: "deny", reason: "region_not_allowed", rule: RuleRegion, outcome: OutcomeDeny},
		{name: "a stored residency policy that does not validate denies", subject: tenant(ent, withPolicy(PolicyDataResidency, true, `{"allowed_regions":"eu"}`)), req: request("data.read"),
			decision: "deny", reason: "policy_invalid", rule: RuleRegion, outcome: OutcomeDeny},
	}
	runEvalCases(t, tests)
}

func TestEvaluateIPAllowlist(t *testing.T) {
	t.Parallel()
	ent := EditionEnterprise
	office := withPolicy(PolicyIPAllowlist, true, `{"cidrs":["10.0.0.0/8","2001:db8::/32"]}`)
	tests := []evalCase{
		{name: "no allowlist", subject: tenant(ent), req: request("admin.login", fromIP("203.0.113.9")),
			decision: "allow", reason: "ok", rule: RuleNetwork, outcome: OutcomeSkipped},
		{name: "inside the allowlist", subject: tenant(ent, office), req: request("admin.login", fromIP("10.20.30.40")),
			decision: "allow", reason: "ok", rule: RuleNetwork, outcome: OutcomePass},
		{name: "inside, IPv6", subject: tenant(ent, office), req: request("admin.login", fromIP("2001:db8:1::5")),
			decision: "allow", reason: "ok", rule: RuleNetwork, outcome: OutcomePass},
		{name: "inside, IPv4-mapped IPv6", subject: tenant(ent, office), req: request("admin.login", fromIP("::ffff:10.1.2.3")),
			decision: "allow", reason: "ok", rule: RuleNetwork, outcome: OutcomePass},
		{name: "outside the allowlist", subject: tenant(ent, office), req: request("data.read", fromIP("203.0.113.9")),
			decision: "deny", reason: "ip_not_allowed", rule: RuleNetwork, outcome: OutcomeDeny, mention: "10.0.0.0/8"},
		{name: "no source IP: not checked", subject: tenant(ent, office), req: request("data.read"),
			decision: "allow", reason: "ok", rule: RuleNetwork, outcome: OutcomeSkipped},
		{name: "not enforced only warns", subject: tenant(ent, withPolicy(PolicyIPAllowlist, false, `{"cidrs":["10.0.0.0/8"]}`)), req: request("data.read", fromIP("192.0.2.1")),
			decision: "warn", reason: "ip_not_allowed", rule: RuleNetwork, outcome: OutcomeWarn},
		{name: "a source IP that is not an address denies", subject: tenant(ent, office), req: request("data.read", fromIP("not-an-ip")),
			decision: "deny", reason: "source_ip_invalid", rule: RuleNetwork, outcome: OutcomeDeny},
	}
	runEvalCases(t, tests)
}

func TestEvaluateAccessHours(t *testing.T) {
	t.Parallel()
	at := func(day, hour, minute int) func(*PolicyContext) {
		return atTime(time.Date(2025, 6, day, hour, minute, 0, 0, time.UTC)) // June 2: a Monday
	}
	pro := EditionProfessional
	office := withPolicy(PolicyAccessHours, true, `{"start_hour":9,"end_hour":17,"days":["mon","tue","wed","thu","fri"]}`)
	night := withPolicy(PolicyAccessHours, true, `{"start_hour":22,"end_hour":6}`)
	tests := []evalCase{
		{name: "no access_hours policy", subject: tenant(pro), req: request("data.read"),
			decision: "allow", reason: "ok", rule: RuleTime, outcome: OutcomeSkipped},
		{name: "inside office hours", subject: tenant(pro, office), req: request("data.read"),
			decision: "allow", reason: "ok", rule: RuleTime, outcome: OutcomePass},
		{name: "after hours waits for the next morning", subject: tenant(pro, office), req: request("data.read", at(4, 18, 0)),
			decision: "deny", reason: "outside_access_hours", retry: 15 * 3600, rule: RuleTime, outcome: OutcomeDeny, mention: "2025-06-05T09:00:00Z"},
		{name: "before hours", subject: tenant(pro, office), req: request("data.read", at(4, 8, 59)),
			decision: "deny", reason: "outside_access_hours", retry: 60, rule: RuleTime, outcome: OutcomeDeny},
		{name: "saturday waits for monday", subject: tenant(pro, office), req: request("data.read", at(7, 12, 0)),
			decision: "deny", reason: "outside_access_hours", retry: 45 * 3600, rule: RuleTime, outcome: OutcomeDeny},
		{name: "overnight window, before midnight", subject: tenant(pro, night), req: request("data.read", at(4, 23, 0)),
			decision: "allow", reason: "ok", rule: RuleTime, outcome: OutcomePass},
		{name: "overnight window, after midnight", subject: tenant(pro, night), req: request("data.read", at(5, 5, 59)),
			decision: "allow", reason: "ok", rule: RuleTime, outcome: OutcomePass},
		{name: "overnight window, daytime", subject: tenant(pro, night), req: request("data.read", at(5, 6, 0)),
			decision: "deny", reason: "outside_access_hours", retry: 16 * 3600, rule: RuleTime, outcome: OutcomeDeny},
		{name: "not enforced only warns, without retry", subject: tenant(pro, withPolicy(PolicyAccessHours, false, `{"start_hour":9,"end_hour":17}`)), req: request("data.read", at(4, 20, 0)),
			decision: "warn", reason: "outside_access_hours", rule: RuleTime, outcome: OutcomeWarn},
		{name: "uses the evaluation time, not the caller's zone", subject: tenant(pro, office),
			req:      request("data.read", atTime(time.Date(2025, 6, 4, 10, 0, 0, 0, time.FixedZone("PDT", -7*3600)))), // 17:00 UTC
			decision: "deny", reason: "outside_access_hours", retry: 16 * 3600, rule: RuleTime, outcome: OutcomeDeny},
	}
	runEvalCases(t, tests)
}

func TestEvaluateReportsEveryViolation(t *testing.T) {
	t.Parallel()
	s := tenant(EditionFree, func(s *PolicySubject) {
		s.Status, s.SuspendedReason, s.SuspensionSeverity = StatusSuspended, "payment_failed", "soft"
		s.Region, s.ComplianceStandards = "eu-west-1", []string{"GDPR"}
		s.BillingStatus = "past_due"
	}, withPolicy(PolicyAccessHours, true, `{"start_hour":0,"end_hour":6}`),
		withPolicy(PolicyIPAllowlist, true, `{"cidrs":["10.0.0.0/8"]}`))
	req := request("webhook.create", usage(LimitMaxWebhooks, 1), inRegion("us-east-1"), fromIP("192.0.2.7"))
	d := Evaluate(s, req, now)
	var codes []string
	for _, v := range d.Violations {
		codes = append(codes, v.Rule+"/"+v.Code+"/"+v.Severity)
	}
	want := []string{
		"status/tenant_suspended/deny",
		"status/billing_past_due/warn",
		"edition/feature_not_in_edition/deny",
		"quotas/quota_exceeded/deny",
		"region/region_not_allowed/deny",
		"network/ip_not_allowed/deny",
		"time/outside_access_hours/deny",
	}
	if !slices.Equal(codes, want) {
		t.Errorf("violations\n%q\nwant\n%q", codes, want)
	}
	if d.Decision != DecisionDeny || d.Reason != "tenant_suspended" || d.RetryAfterSeconds != 0 || d.RequiredEdition != EditionEssentials {
		t.Errorf("got %s/%s retry %d upgrade %s", d.Decision, d.Reason, d.RetryAfterSeconds, d.RequiredEdition)
	}
	checkDecisionShape(t, d)
}

func TestEvaluateUsesContextTimeOverNow(t *testing.T) {
	t.Parallel()
	end := now.Add(24 * time.Hour)
	s := tenant(EditionProfessional, func(s *PolicySubject) { s.Status, s.TrialEndsAt = StatusTrial, &end })
	if d := Evaluate(s, request("data.read"), now); d.Reason != "trial_ending" {
		t.Errorf("as of now: %s, want trial_ending", d.Reason)
	}
	if d := Evaluate(s, request("data.read", atTime(now.Add(-30*24*time.Hour))), now); d.Reason != "ok" {
		t.Errorf("as of a month earlier: %s, want ok", d.Reason)
	}
}

func TestDecisionJSONHasEmptyListsNotNull(t *testing.T) {
	t.Parallel()
	d := Evaluate(tenant(EditionProfessional), request("data.read"), now)
	b, err := json.Marshal(d)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"decision":"allow"`, `"reason":"ok"`, `"violations":[]`, `"upgrade_required":false`, `"rules":[{`} {
		if !bytes.Contains(b, []byte(want)) {
			t.Errorf("%s lacks %s", b, want)
		}
	}
	if bytes.Contains(b, []byte("null")) || bytes.Contains(b, []byte("retry_after_seconds")) || bytes.Contains(b, []byte("required_edition")) {
		t.Errorf("%s has a null or an empty optional field", b)
	}
	if got := (Decision{}).Allowed(); !got {
		t.Error("zero Decision is not allowed") // "" is not deny
	}
	if !d.Allowed() {
		t.Error("allow decision is not Allowed")
	}
}

func TestEvaluateIsDeterministic(t *testing.T) {
	t.Parallel()
	s := tenant(EditionEnterprise, func(s *PolicySubject) { s.Region, s.ComplianceStandards = "eu-west-1", []string{"GDPR"} },
		withPolicy(PolicyDataResidency, true, `{"allowed_regions":["eu-west-1"]}`),
		withPolicy(PolicyIPAllowlist, true, `{"cidrs":["10.0.0.0/8"]}`),
		withPolicy(PolicyAccessHours, true, `{"start_hour":9,"end_hour":17}`))
	req := request("api.call", usage(LimitMaxAPICallsPerDay, 999_999), usage(LimitMaxAPICallsPerMinute, 4_999), inRegion("us-east-1"), fromIP("192.0.2.1"))
	first := dump(Evaluate(s, req, now))
	for range 20 {
		if got := dump(Evaluate(s, req, now)); got != first {
			t.Fatalf("decisions differ:\n%s\n%s", first, got)
		}
	}
}

func TestActionsTableNamesCatalogKeys(t *testing.T) {
	t.Parallel()
	c := DefaultCatalog()
	names := make([]string, 0, len(actions))
	for _, a := range Actions() {
		names = append(names, a.Name)
		if a.Feature != "" && !c.hasFeature(a.Feature) {
			t.Errorf("action %s needs unknown feature %s", a.Name, a.Feature)
		}
		for _, l := range a.Limits {
			if !c.hasLimit(l) {
				t.Errorf("action %s counts against unknown limit %s", a.Name, l)
			}
		}
		if a.Description == "" {
			t.Errorf("action %s has no description", a.Name)
		}
	}
	if !slices.IsSorted(names) || len(slices.Compact(slices.Clone(names))) != len(names) {
		t.Errorf("actions %v are not sorted and unique (lookup relies on it)", names)
	}
	for _, want := range []string{"api.call", "user.create", "webhook.create", "sandbox.create", "sso.login", "storage.write",
		"analytics.query", "workflow.run", "audit_logs.read", "data.read", "data.write", "admin.login"} {
		if _, ok := lookupAction(want); !ok {
			t.Errorf("action %s missing", want)
		}
	}
}

func TestValidatePolicyRequest(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name        string
		req         PolicyRequest
		field, rule string // empty: valid
	}{
		{"valid", request("api.call", inRegion("eu-west-1"), fromIP("10.0.0.1"), usage(LimitMaxAPICallsPerDay, 10)), "", ""},
		{"valid IPv6", request("data.read", fromIP("2001:db8::1")), "", ""},
		{"unknown action", request("rocket.launch"), "action", "known_action"},
		{"no action", request(""), "action", "known_action"},
		{"unknown region", request("data.read", inRegion("mars-1")), "context.region", "known_region"},
		{"bad source IP", request("data.read", fromIP("10.0.0.256")), "context.source_ip", "ip_address"},
		{"unknown usage key", request("data.read", usage("max_moons", 1)), "context.usage.max_moons", "known_limit"},
		{"negative usage", request("data.read", usage(LimitMaxUsers, -1)), "context.usage.max_users", "non_negative"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			err := ValidatePolicyRequest(tt.req)
			if tt.field == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			de, ok := AsError(err)
			if !ok || de.Code != CodeValidation || de.Field != tt.field || de.Rule != tt.rule {
				t.Fatalf("error = %v, want validation on %s/%s", err, tt.field, tt.rule)
			}
		})
	}
	err := ValidatePolicyRequest(request("rocket.launch"))
	if !strings.Contains(err.Error(), "webhook.create") {
		t.Errorf("unknown action error %q does not list the known actions", err)
	}
}

func TestPolicyRequestJSON(t *testing.T) {
	t.Parallel()
	var req PolicyRequest
	in := `{"action":"api.call","resource":"orders","context":{"region":"eu-west-1","source_ip":"10.0.0.1",
		"usage":{"max_api_calls_per_minute":59},"time":"2025-06-04T10:30:15Z"}}`
	if err := json.Unmarshal([]byte(in), &req); err != nil {
		t.Fatal(err)
	}
	if err := ValidatePolicyRequest(req); err != nil {
		t.Fatal(err)
	}
	if req.Context.Usage[LimitMaxAPICallsPerMinute] != 59 || req.Context.Time == nil || !req.Context.Time.Equal(now) {
		t.Errorf("decoded %+v", req)
	}
}

// TestEvaluateGolden keeps whole decisions, explanations included, under
// testdata/evaluate/, so a change of wording or order shows in review. Run
// with -update to rewrite them on purpose.
func TestEvaluateGolden(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		subject PolicySubject
		req     PolicyRequest
	}{
		{"allowed", tenant(EditionProfessional), request("api.call", usage(LimitMaxAPICallsPerMinute, 10), usage(LimitMaxAPICallsPerDay, 100))},
		{"soft_suspension_write", tenant(EditionEssentials, func(s *PolicySubject) {
			s.Status, s.SuspendedReason, s.SuspensionSeverity, s.AutoResumeAt = StatusSuspended, "payment_failed", "soft", ptr(now.Add(2*time.Hour))
			s.BillingStatus = "past_due"
		}), request("data.write", usage(LimitStorageGB, 9))},
		{"free_webhook_upgrade", tenant(EditionFree), request("webhook.create", usage(LimitMaxWebhooks, 1))},
		{"gdpr_outside_hours", tenant(EditionEnterprise, func(s *PolicySubject) {
			s.Region, s.ComplianceStandards = "eu-central-1", []string{"GDPR", "SOC2"}
		}, withPolicy(PolicyAccessHours, true, `{"start_hour":22,"end_hour":6,"days":["fri","sat"]}`),
			withPolicy(PolicyIPAllowlist, false, `{"cidrs":["10.0.0.0/8"]}`)),
			request("data.read", inRegion("us-west-2"), fromIP("192.0.2.10"))},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := json.MarshalIndent(Evaluate(tt.subject, tt.req, now), "", "  ")
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, '\n')
			path := filepath.Join("testdata", "evaluate", tt.name+".json")
			if *update {
				if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(path, got, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run go test -run TestEvaluateGolden -update to create it)", err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("decision differs from %s (run with -update if intended):\n%s", path, got)
			}
		})
	}
}
