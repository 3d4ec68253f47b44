package aggregate

import (
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strings"
	"time"
)

// Policy evaluation answers "may this tenant do this now?" as a pure
// function of the tenant's state, the catalog, the request and the time.
// Every rule is checked, even after one denies, so a client learns every
// violation at once. The rules, in order (evaluationRules):
//
//  1. status: the lifecycle status (statusAccess, suspensionAccess) and the
//     billing standing (billingAccess), which treat reads and writes apart.
//  2. edition: the action's feature must be in the entitlements.
//  3. quotas: each limit the action counts against, given its usage.
//  4. region: where the data would be processed, against an enforced
//     data_residency policy and residency standards such as GDPR.
//  5. network: the source IP against an ip_allowlist policy.
//  6. time: the time against an access_hours policy.
//
// network sits between region and time: like region it is about where the
// request comes from, and a time window is the last thing to wait for.

// The decisions.
const (
	DecisionAllow = "allow"
	DecisionWarn  = "warn"
	DecisionDeny  = "deny"
)

// The outcomes of one rule. A rule is skipped when it has nothing to check,
// such as quotas without usage or a time rule without an access_hours policy.
const (
	OutcomePass    = "pass"
	OutcomeWarn    = "warn"
	OutcomeDeny    = "deny"
	OutcomeSkipped = "skipped"
)

// The rule names, as they appear in RuleResult.Rule and Violation.Rule.
const (
	RuleStatus  = "status"
	RuleEdition = "edition"
	RuleQuotas  = "quotas"
	RuleRegion  = "region"
	RuleNetwork = "network"
	RuleTime    = "time"
)

// ActionSpec is one row of the actions table: what an action needs and what
// it counts against.
type ActionSpec struct {
	Name string `json:"name"`
	// Feature is the feature the action needs; "" when any edition may.
	Feature Feature `json:"feature,omitempty"`
	// Limits are the quotas the action counts against.
	Limits []Limit `json:"limits,omitempty"`
	// Writes says whether the action changes data: a tenant that may only
	// read (soft suspension, migration, unpaid billing) may not do it.
	Writes      bool   `json:"writes"`
	Description string `json:"description"`
}

// actions is the actions table, sorted by name.
var actions = []ActionSpec{
	{"admin.login", "", nil, false, "An administrator signs in to the tenant."},
	{"analytics.query", FeatureAdvancedAnalytics, nil, false, "An advanced analytics query."},
	{"api.call", FeatureRESTAPI, []Limit{LimitMaxAPICallsPerMinute, LimitMaxAPICallsPerDay}, false,
		"One REST API request, counted against the call quotas; the data it reads or writes is data.read or data.write."},
	{"audit_logs.read", FeatureAuditLogs, nil, false, "Reading the tenant's audit log."},
	{"data.read", "", nil, false, "Reading the tenant's data."},
	{"data.write", "", []Limit{LimitStorageGB}, true, "Writing the tenant's data."},
	{"domain.create", FeatureCustomDomains, []Limit{LimitMaxCustomDomains}, true, "Adding a custom domain."},
	{"sandbox.create", FeatureSandboxEnvironments, []Limit{LimitMaxSandboxes}, true, "Creating a sandbox environment."},
	{"sso.login", FeatureSSO, nil, false, "A user signs in through the tenant's identity provider."},
	{"storage.write", "", []Limit{LimitStorageGB}, true, "Storing a file or object."},
	{"user.create", "", []Limit{LimitMaxUsers}, true, "Adding a user."},
	{"webhook.create", FeatureWebhooks, []Limit{LimitMaxWebhooks}, true, "Adding a webhook endpoint."},
	{"workflow.run", FeatureCustomWorkflows, []Limit{LimitMaxWorkflowRunsPerDay}, true, "Running a custom workflow."},
}

// Actions returns the actions table, sorted by name, for the OpenAPI
// document and for messages that list the known actions.
func Actions() []ActionSpec {
	out := slices.Clone(actions)
	for i := range out {
		out[i].Limits = slices.Clone(out[i].Limits)
	}
	return out
}

func lookupAction(name string) (ActionSpec, bool) {
	i, ok := slices.BinarySearchFunc(actions, name, func(a ActionSpec, n string) int { return strings.Compare(a.Name, n) })
	if !ok {
		return ActionSpec{}, false
	}
	return actions[i], true
}

func actionNames() string {
	names := make([]string, len(actions))
	for i, a := range actions {
		names[i] = a.Name
	}
	return strings.Join(names, ", ")
}

// PolicySubject is the tenant state policy evaluation reads: a projection of
// the aggregate, so evaluation needs no I/O.
type PolicySubject struct {
	Status  Status
	Edition Edition
	// Region is the tenant's home region.
	Region Region
	// Entitlements are the tenant's edition with its overrides. Left zero,
	// they are the edition's, without overrides.
	Entitlements Entitlements
	Policies     map[PolicyType]PolicySetting
	// SuspendedReason is why a SUSPENDED tenant is suspended, such as payment_failed.
	SuspendedReason string
	// SuspensionSeverity is soft, hard or security; an unknown one counts as hard.
	SuspensionSeverity      string
	AutoResumeAt            *time.Time
	TrialEndsAt             *time.Time
	CancellationEffectiveAt *time.Time
	// BillingStatus is trialing, active, past_due, unpaid, canceled, paused
	// or "" (none recorded).
	BillingStatus string
	// ComplianceStandards are the standards the tenant must meet, such as
	// GDPR, HIPAA, SOC2, PCI_DSS.
	ComplianceStandards []string
}

// PolicyRequest asks whether the tenant may do Action now.
type PolicyRequest struct {
	// Action is a name from the actions table, such as "user.create".
	Action string `json:"action"`
	// Resource names what the action is on; it is echoed in audit logs and
	// does not change the decision.
	Resource string        `json:"resource,omitempty"`
	Context  PolicyContext `json:"context"`
}

// PolicyContext is the circumstances of a request.
type PolicyContext struct {
	// Region is where the request would read or write data; empty means the
	// tenant's home region.
	Region Region `json:"region,omitempty"`
	// SourceIP is the client's address, checked against an ip_allowlist policy.
	SourceIP string `json:"source_ip,omitempty"`
	// Usage is the current usage of the limits the action counts against;
	// a limit without usage is not checked.
	Usage map[Limit]int64 `json:"usage,omitempty"`
	// Time evaluates the request as of this time instead of now.
	Time *time.Time `json:"time,omitempty"`
}

// Decision is the answer of policy evaluation.
type Decision struct {
	// Decision is deny if any rule denies, else warn if any warns, else allow.
	Decision string `json:"decision"`
	// Reason is the code of the first denying violation (else of the first
	// warning), in rule order, or "ok".
	Reason string `json:"reason"`
	// Violations lists every violation found, denials and warnings, in rule order.
	Violations []Violation `json:"violations"`
	// UpgradeRequired says that a higher edition would lift a denial:
	// a missing feature or a used-up capacity quota such as max_users.
	// Denials an upgrade does not lift may remain.
	UpgradeRequired bool `json:"upgrade_required"`
	// RequiredEdition is the lowest edition that lifts every such denial.
	RequiredEdition Edition `json:"required_edition,omitempty"`
	// RetryAfterSeconds is how long to wait before the request could be
	// allowed, set only when every denial lifts by itself in time (a rate
	// quota's window, an access window, an automatic resume).
	RetryAfterSeconds int `json:"retry_after_seconds,omitempty"`
	// Rules is each rule checked, in order, with its outcome and why.
	Rules []RuleResult `json:"rules"`
}

// Allowed reports whether the request may proceed (allow or warn).
func (d Decision) Allowed() bool { return d.Decision != DecisionDeny }

// Violation is one thing a rule found wrong.
type Violation struct {
	Rule string `json:"rule"`
	// Code is machine-readable, such as quota_exceeded.
	Code string `json:"code"`
	// Severity is deny or warn.
	Severity string `json:"severity"`
	Message  string `json:"message"`
	// Limit, Used and Allowed describe a quota violation.
	Limit   Limit `json:"limit,omitempty"`
	Used    int64 `json:"used,omitempty"`
	Allowed int64 `json:"allowed,omitempty"`
	// RetryAfterSeconds is when this denial lifts by itself, if it does.
	RetryAfterSeconds int `json:"retry_after_seconds,omitempty"`
}

// RuleResult is the outcome of one rule and a sentence saying why.
type RuleResult struct {
	Rule        string `json:"rule"`
	Outcome     string `json:"outcome"`
	Explanation string `json:"explanation"`
}

// ValidatePolicyRequest checks a request against the default catalog; see
// Catalog.ValidatePolicyRequest.
func ValidatePolicyRequest(req PolicyRequest) error {
	return DefaultCatalog().ValidatePolicyRequest(req)
}

// ValidatePolicyRequest checks a request before evaluation, so a client's
// mistake is a 400 rather than a denial: the action is known (field
// "action", rule "known_action"), the region is known ("context.region",
// "known_region"), the source IP is an address ("context.source_ip",
// "ip_address") and each usage is of a known limit and not negative
// ("context.usage.<key>", "known_limit" or "non_negative").
func (c *Catalog) ValidatePolicyRequest(req PolicyRequest) error {
	if _, ok := lookupAction(req.Action); !ok {
		return Invalid("action", "known_action", "unknown action %q; known actions: %s", req.Action, actionNames())
	}
	return c.ValidatePolicyContext(req)
}

// ValidatePolicyContext is ValidatePolicyRequest without the action check,
// for EvaluateAnyAction: the action must only be named ("action",
// "required").
func (c *Catalog) ValidatePolicyContext(req PolicyRequest) error {
	if strings.TrimSpace(req.Action) == "" {
		return Invalid("action", "required", "action is required")
	}
	if r := req.Context.Region; r != "" && !r.Valid() {
		return Invalid("context.region", "known_region", "unknown region %q; known regions: %s", r, joinStrings(regions))
	}
	if ip := req.Context.SourceIP; ip != "" {
		if _, err := netip.ParseAddr(ip); err != nil {
			return Invalid("context.source_ip", "ip_address", "source_ip %q is not an IP address", ip)
		}
	}
	for _, l := range slices.Sorted(maps.Keys(req.Context.Usage)) {
		field := "context.usage." + string(l)
		if !c.hasLimit(l) {
			return Invalid(field, "known_limit", "unknown limit %q; known limits: %s", l, joinStrings(c.limits))
		}
		if v := req.Context.Usage[l]; v < 0 {
			return Invalid(field, "non_negative", "usage of %s must be 0 or more, not %d", l, v)
		}
	}
	return nil
}

// Evaluate decides a request against the default catalog; see Catalog.Evaluate.
func Evaluate(s PolicySubject, req PolicyRequest, now time.Time) Decision {
	return DefaultCatalog().Evaluate(s, req, now)
}

// Evaluate decides whether tenant s may make request req at now (or at
// req.Context.Time when given). It is total: an unknown action is denied
// (code unknown_action) rather than an error; call ValidatePolicyRequest
// first to tell client mistakes apart.
func (c *Catalog) Evaluate(s PolicySubject, req PolicyRequest, now time.Time) Decision {
	return c.evaluate(s, req, now, false)
}

// EvaluateAnyAction is Evaluate for the original service's policy route,
// which took any action name: an action the catalog does not know needs no
// feature (the edition rule says so instead of denying) and counts as a
// write; the status, quota, region, network and time rules apply as for any
// action.
func (c *Catalog) EvaluateAnyAction(s PolicySubject, req PolicyRequest, now time.Time) Decision {
	return c.evaluate(s, req, now, true)
}

func (c *Catalog) evaluate(s PolicySubject, req PolicyRequest, now time.Time, anyAction bool) Decision {
	ev := &evaluation{c: c, s: s, req: req, at: now.UTC(), edition: s.Edition, ent: s.Entitlements, anyAction: anyAction}
	if req.Context.Time != nil {
		ev.at = req.Context.Time.UTC()
	}
	if ev.edition == "" {
		ev.edition = s.Entitlements.Edition
	}
	if ev.ent.Features == nil && ev.ent.Limits == nil {
		ev.ent = c.Entitlements(ev.edition, Overrides{})
	}
	ev.action, ev.known = lookupAction(req.Action)
	if !ev.known {
		ev.action = ActionSpec{Name: req.Action, Writes: true} // fail closed
	}

	d := Decision{Violations: []Violation{}, Rules: make([]RuleResult, 0, len(evaluationRules))}
	for _, r := range evaluationRules {
		ck := r.check(ev)
		outcome := OutcomePass
		switch {
		case ck.skipped:
			outcome = OutcomeSkipped
		case slices.ContainsFunc(ck.violations, isDenial):
			outcome = OutcomeDeny
		case len(ck.violations) > 0:
			outcome = OutcomeWarn
		}
		d.Rules = append(d.Rules, RuleResult{Rule: r.name, Outcome: outcome, Explanation: strings.Join(ck.explanation, " ")})
		d.Violations = append(d.Violations, ck.violations...)
		if ck.upgradeTo != "" && ck.upgradeTo.Rank() > d.RequiredEdition.Rank() {
			d.UpgradeRequired, d.RequiredEdition = true, ck.upgradeTo
		}
	}

	d.Decision, d.Reason = DecisionAllow, "ok"
	if i := slices.IndexFunc(d.Violations, isDenial); i >= 0 {
		d.Decision, d.Reason = DecisionDeny, d.Violations[i].Code
		for _, v := range d.Violations {
			if !isDenial(v) {
				continue
			}
			if v.RetryAfterSeconds == 0 { // waiting will not lift this one
				d.RetryAfterSeconds = 0
				break
			}
			d.RetryAfterSeconds = max(d.RetryAfterSeconds, v.RetryAfterSeconds)
		}
	} else if len(d.Violations) > 0 {
		d.Decision, d.Reason = DecisionWarn, d.Violations[0].Code
	}
	return d
}

func isDenial(v Violation) bool { return v.Severity == OutcomeDeny }

// evaluationRules is the rule order (see the comment at the top of the file).
var evaluationRules = []struct {
	name  string
	check func(*evaluation) check
}{
	{RuleStatus, (*evaluation).checkStatus},
	{RuleEdition, (*evaluation).checkEdition},
	{RuleQuotas, (*evaluation).checkQuotas},
	{RuleRegion, (*evaluation).checkRegion},
	{RuleNetwork, (*evaluation).checkNetwork},
	{RuleTime, (*evaluation).checkTime},
}

// evaluation is one request being evaluated.
type evaluation struct {
	c       *Catalog
	s       PolicySubject
	ent     Entitlements
	edition Edition
	req     PolicyRequest
	action  ActionSpec
	known   bool
	// anyAction: an unknown action needs no feature (EvaluateAnyAction).
	anyAction bool
	at        time.Time
}

// check is what one rule found.
type check struct {
	skipped     bool
	explanation []string // sentences
	violations  []Violation
	upgradeTo   Edition // the lowest edition that would lift this rule's denials
}

func (ck *check) say(format string, args ...any) {
	ck.explanation = append(ck.explanation, fmt.Sprintf(format, args...))
}

// violate records a violation and its message as part of the explanation.
func (ck *check) violate(v Violation) {
	ck.violations = append(ck.violations, v)
	ck.explanation = append(ck.explanation, v.Message)
}

// access is how a state treats reads and writes: each pass, warn or deny,
// with the code of the violation and, for a denial that lifts by itself, a
// retry delay.
type access struct {
	read, write string
	code        string
	retryAfter  int
	why         string
}

// statusAccess is what each lifecycle status allows; SUSPENDED depends on
// the severity (suspensionAccess).
var statusAccess = map[Status]access{
	StatusProvisioning:        {OutcomeDeny, OutcomeDeny, "tenant_provisioning", 30, "The tenant is still being provisioned."},
	StatusTrial:               {OutcomePass, OutcomePass, "", 0, "The tenant is in its trial."},
	StatusActive:              {OutcomePass, OutcomePass, "", 0, "The tenant is active."},
	StatusPendingCancellation: {OutcomeWarn, OutcomeWarn, "cancellation_pending", 0, "The tenant's cancellation is pending."},
	StatusMigrating:           {OutcomePass, OutcomeDeny, "tenant_migrating", 300, "The tenant's data is being migrated to another region: reads are served, writes wait for the migration to end."},
	StatusTerminated:          {OutcomeDeny, OutcomeDeny, "tenant_terminated", 0, "The tenant is terminated."},
	StatusPurged:              {OutcomeDeny, OutcomeDeny, "tenant_purged", 0, "The tenant is purged."},
}

// suspensionAccess is what a suspension allows, by severity: a soft one (such
// as a failed payment) keeps the tenant's data readable; hard and security
// ones stop everything.
var suspensionAccess = map[string]access{
	"soft":     {OutcomeWarn, OutcomeDeny, "tenant_suspended", 0, "reads are served, writes are refused"},
	"hard":     {OutcomeDeny, OutcomeDeny, "tenant_suspended", 0, "every action is refused"},
	"security": {OutcomeDeny, OutcomeDeny, "tenant_suspended", 0, "every action is refused until the threat is cleared"},
}

// billingAccess is what each billing standing allows, apart from the
// lifecycle status.
var billingAccess = map[string]access{
	"":         {OutcomePass, OutcomePass, "", 0, "No billing status is recorded."},
	"trialing": {OutcomePass, OutcomePass, "", 0, "Billing is trialing."},
	"active":   {OutcomePass, OutcomePass, "", 0, "Billing is active."},
	"past_due": {OutcomeWarn, OutcomeWarn, "billing_past_due", 0, "Billing is past due: a payment is overdue and the tenant may be suspended."},
	"unpaid":   {OutcomeWarn, OutcomeDeny, "billing_unpaid", 0, "Billing is unpaid: reads are served, writes are refused until payment."},
	"paused":   {OutcomeWarn, OutcomeDeny, "billing_paused", 0, "Billing is paused: reads are served, writes are refused until billing resumes."},
	"canceled": {OutcomeWarn, OutcomeWarn, "billing_canceled", 0, "The subscription is canceled."},
}

// trialEndingWarning is how long before its end a trial warns.
const trialEndingWarning = 72 * time.Hour

func (ev *evaluation) checkStatus() check {
	var ck check
	s := ev.s
	later := "" // a closing sentence: when a suspension ends
	acc, ok := statusAccess[s.Status]
	switch {
	case s.Status == StatusSuspended:
		sev := s.SuspensionSeverity
		if acc, ok = suspensionAccess[sev]; !ok {
			sev, acc = s.SuspensionSeverity+", treated as hard", suspensionAccess["hard"]
		}
		reason := s.SuspendedReason
		if reason == "" {
			reason = "not given"
		}
		acc.why = fmt.Sprintf("The tenant is suspended (reason %s, severity %s): %s.", reason, sev, acc.why)
		if s.AutoResumeAt != nil && s.AutoResumeAt.After(ev.at) {
			acc.retryAfter = ceilSeconds(s.AutoResumeAt.Sub(ev.at))
			later = fmt.Sprintf(" It resumes automatically at %s.", stamp(*s.AutoResumeAt))
		}
	case !ok:
		acc = access{OutcomeDeny, OutcomeDeny, "tenant_status_unknown", 0, fmt.Sprintf("The tenant's status %q is unknown.", s.Status)}
	case s.Status == StatusPendingCancellation && s.CancellationEffectiveAt != nil:
		acc.why = fmt.Sprintf("The tenant's cancellation is pending: it takes effect at %s.", stamp(*s.CancellationEffectiveAt))
	case s.Status == StatusTrial && s.TrialEndsAt != nil:
		switch end := *s.TrialEndsAt; {
		case !ev.at.Before(end):
			acc = access{OutcomeWarn, OutcomeWarn, "trial_ended", 0, fmt.Sprintf("The tenant's trial ended at %s; the tenant is about to be suspended.", stamp(end))}
		case end.Sub(ev.at) <= trialEndingWarning:
			acc = access{OutcomeWarn, OutcomeWarn, "trial_ending", 0, fmt.Sprintf("The tenant's trial ends at %s, in %s.", stamp(end), roughly(end.Sub(ev.at)))}
		default:
			acc.why = fmt.Sprintf("The tenant is in its trial, which ends at %s.", stamp(end))
		}
	}
	ev.apply(&ck, acc, later)

	b, ok := billingAccess[s.BillingStatus]
	if !ok {
		b = access{OutcomeWarn, OutcomeWarn, "billing_status_unknown", 0, fmt.Sprintf("Billing status %q is unknown.", s.BillingStatus)}
	}
	ev.apply(&ck, b, "")
	return ck
}

// apply records what acc means for the action: a violation when it is not
// passed, with the retry delay for a denial. later ends the message.
func (ev *evaluation) apply(ck *check, acc access, later string) {
	outcome := acc.read
	if ev.action.Writes {
		outcome = acc.write
	}
	msg := acc.why
	if acc.read != acc.write {
		kind := "only reads"
		if ev.action.Writes {
			kind = "writes"
		}
		verdict := map[string]string{OutcomePass: "allowed", OutcomeWarn: "allowed with a warning", OutcomeDeny: "refused"}[outcome]
		msg += fmt.Sprintf(" Action %s %s, so it is %s.", ev.action.Name, kind, verdict)
	}
	msg += later
	if outcome == OutcomePass {
		ck.say("%s", msg)
		return
	}
	v := Violation{Rule: RuleStatus, Code: acc.code, Severity: outcome, Message: msg}
	if outcome == OutcomeDeny {
		v.RetryAfterSeconds = acc.retryAfter
	}
	ck.violate(v)
}

func (ev *evaluation) checkEdition() check {
	var ck check
	a := ev.action
	switch {
	case !ev.known && ev.anyAction:
		ck.say("Action %q is not in the catalog, so it needs no feature; it counts as a write, and the status, quota, region, network and time rules apply to it as to any action.", a.Name)
	case !ev.known:
		ck.violate(Violation{Rule: RuleEdition, Code: "unknown_action", Severity: OutcomeDeny,
			Message: fmt.Sprintf("Action %q is not known, so what it needs cannot be checked; known actions: %s.", a.Name, actionNames())})
	case a.Feature == "":
		ck.say("Action %s needs no feature.", a.Name)
	case ev.ent.Has(a.Feature):
		ck.say("Action %s needs feature %s, which the tenant has.", a.Name, a.Feature)
	case ev.editionIncludes(a.Feature):
		ck.violate(Violation{Rule: RuleEdition, Code: "feature_disabled", Severity: OutcomeDeny,
			Message: fmt.Sprintf("Action %s needs feature %s, which edition %s includes but an override switches off for this tenant.", a.Name, a.Feature, editionName(ev.edition))})
	default:
		up, ok := ev.c.editionAbove(ev.edition.Rank(), func(spec EditionSpec) bool { return slices.Contains(spec.Features, a.Feature) })
		if !ok {
			ck.violate(Violation{Rule: RuleEdition, Code: "feature_not_available", Severity: OutcomeDeny,
				Message: fmt.Sprintf("Action %s needs feature %s, which no edition above %s includes.", a.Name, a.Feature, editionName(ev.edition))})
			break
		}
		ck.upgradeTo = up
		ck.violate(Violation{Rule: RuleEdition, Code: "feature_not_in_edition", Severity: OutcomeDeny,
			Message: fmt.Sprintf("Action %s needs feature %s, which edition %s does not include; it is available from edition %s.", a.Name, a.Feature, editionName(ev.edition), up)})
	}
	return ck
}

// editionName writes e for messages, quoted when it is not a known edition.
func editionName(e Edition) string {
	if e.Valid() {
		return string(e)
	}
	return fmt.Sprintf("%q", e)
}

// editionIncludes reports whether the tenant's edition, before overrides, includes f.
func (ev *evaluation) editionIncludes(f Feature) bool {
	spec, ok := ev.c.editions[ev.edition]
	return ok && slices.Contains(spec.Features, f)
}

func (ev *evaluation) checkQuotas() check {
	var ck check
	a := ev.action
	if len(a.Limits) == 0 {
		ck.skipped = true
		ck.say("Action %s counts against no quota.", a.Name)
		return ck
	}
	checked := false
	for _, l := range a.Limits {
		used, given := ev.req.Context.Usage[l]
		if !given {
			ck.say("Usage of %s was not given, so it was not checked.", l)
			continue
		}
		checked = true
		allowed := ev.limit(l)
		switch {
		case allowed == 0:
			ck.say("Quota %s is unlimited (%d used).", l, used)
		case used >= allowed:
			v := Violation{Rule: RuleQuotas, Code: "quota_exceeded", Severity: OutcomeDeny, Limit: l, Used: used, Allowed: allowed,
				Message: fmt.Sprintf("Quota %s is used up: %d of %d used.", l, used, allowed)}
			if reset, ok := ev.quotaReset(l); ok {
				v.RetryAfterSeconds = ceilSeconds(reset.Sub(ev.at))
				v.Message += fmt.Sprintf(" It resets at %s.", stamp(reset))
			} else if up, ok := ev.upgradeForLimit(l, used, allowed); ok {
				if up.Rank() > ck.upgradeTo.Rank() {
					ck.upgradeTo = up
				}
				v.Message += fmt.Sprintf(" Edition %s allows more.", up)
			}
			ck.violate(v)
		case used >= allowed-allowed/5: // at least 80%, rounded up
			ck.violate(Violation{Rule: RuleQuotas, Code: "quota_nearly_exhausted", Severity: OutcomeWarn, Limit: l, Used: used, Allowed: allowed,
				Message: fmt.Sprintf("Quota %s is nearly used up: %d of %d used (%d%%).", l, used, allowed, percent(used, allowed))})
		default:
			ck.say("Quota %s: %d of %d used.", l, used, allowed)
		}
	}
	ck.skipped = !checked
	return ck
}

// limit returns the tenant's value for l; a limit its entitlements lack
// (recorded under an older catalog) is the edition's.
func (ev *evaluation) limit(l Limit) int64 {
	if v, ok := ev.ent.Limits[l]; ok {
		return v
	}
	return ev.c.Entitlements(ev.edition, Overrides{}).Limits[l]
}

// quotaReset returns when a windowed quota resets after the evaluation time:
// the next minute for a per-minute limit, the next UTC midnight for a
// per-day one. A quota without a window (such as max_users) does not reset.
func (ev *evaluation) quotaReset(l Limit) (time.Time, bool) {
	switch ev.c.limitWindow[l] {
	case windowMinute:
		return ev.at.Truncate(time.Minute).Add(time.Minute), true
	case windowDay:
		y, m, d := ev.at.Date()
		return time.Date(y, m, d+1, 0, 0, 0, 0, time.UTC), true
	}
	return time.Time{}, false
}

// upgradeForLimit returns the lowest edition above the tenant's that allows
// more than used of l. It finds none when the tenant's value is an override,
// because overrides outlive an edition change.
func (ev *evaluation) upgradeForLimit(l Limit, used, allowed int64) (Edition, bool) {
	spec, ok := ev.c.editions[ev.edition]
	if !ok || spec.Limits[l] != allowed {
		return "", false
	}
	return ev.c.editionAbove(ev.edition.Rank(), func(spec EditionSpec) bool {
		v := spec.Limits[l]
		return v == 0 || v > used
	})
}

// residencyStandards are compliance standards that keep data in a
// jurisdiction: a tenant that must meet Standard and whose home region is in
// Jurisdiction may not have its data processed outside it.
var residencyStandards = []struct {
	standard, jurisdiction, name string
}{
	{"GDPR", "eu", "the EU"},
}

func (ev *evaluation) checkRegion() check {
	var ck check
	region, where := ev.req.Context.Region, "the requested region"
	if region == "" {
		region, where = ev.s.Region, "the tenant's home region"
	}
	if region == "" {
		ck.skipped = true
		ck.say("No region was given and the tenant has no home region.")
		return ck
	}
	if !region.Valid() {
		ck.violate(Violation{Rule: RuleRegion, Code: "region_unknown", Severity: OutcomeDeny,
			Message: fmt.Sprintf("Region %q is not a known region.", region)})
		return ck
	}
	ck.say("Data would be processed in %s (%s).", region, where)
	if p, ok := ev.s.Policies[PolicyDataResidency]; ok {
		dr, err := decodePolicy[dataResidency](p, PolicyDataResidency)
		switch {
		case err != nil:
			ck.violate(invalidPolicy(RuleRegion, p, PolicyDataResidency, err))
		case slices.Contains(dr.AllowedRegions, region):
			ck.say("The data_residency policy allows %s.", region)
		default:
			ck.violate(policyViolation(RuleRegion, p, "region_not_allowed", fmt.Sprintf(
				"The data_residency policy allows only %s, not %s.", joinStrings(dr.AllowedRegions), region), 0))
		}
	}
	home := ev.s.Region.Jurisdiction()
	for _, rs := range residencyStandards {
		if !slices.ContainsFunc(ev.s.ComplianceStandards, func(s string) bool { return strings.EqualFold(s, rs.standard) }) || home != rs.jurisdiction {
			continue
		}
		if region.Jurisdiction() != rs.jurisdiction {
			ck.violate(Violation{Rule: RuleRegion, Code: "region_not_allowed", Severity: OutcomeDeny,
				Message: fmt.Sprintf("Under %s, data of a tenant at home in %s (%s) may not be processed in %s.", rs.standard, ev.s.Region, rs.name, region)})
		} else {
			ck.say("%s keeps the data in %s, and %s is there.", rs.standard, rs.name, region)
		}
	}
	return ck
}

func (ev *evaluation) checkNetwork() check {
	var ck check
	p, ok := ev.s.Policies[PolicyIPAllowlist]
	ip := ev.req.Context.SourceIP
	switch {
	case !ok:
		ck.skipped = true
		ck.say("The tenant has no ip_allowlist policy.")
		return ck
	case ip == "":
		ck.skipped = true
		ck.say("No source IP was given, so the ip_allowlist policy was not checked.")
		return ck
	}
	al, err := decodePolicy[ipAllowlist](p, PolicyIPAllowlist)
	if err != nil {
		ck.violate(invalidPolicy(RuleNetwork, p, PolicyIPAllowlist, err))
		return ck
	}
	addr, err := netip.ParseAddr(ip)
	switch {
	case err != nil:
		ck.violate(policyViolation(RuleNetwork, p, "source_ip_invalid", fmt.Sprintf("Source IP %q is not an address, so the ip_allowlist policy cannot allow it.", ip), 0))
	case al.allows(addr):
		ck.say("Source IP %s is in the ip_allowlist.", addr)
	default:
		ck.violate(policyViolation(RuleNetwork, p, "ip_not_allowed", fmt.Sprintf("Source IP %s is outside the ip_allowlist (%s).", addr, strings.Join(al.CIDRs, ", ")), 0))
	}
	return ck
}

func (ev *evaluation) checkTime() check {
	var ck check
	p, ok := ev.s.Policies[PolicyAccessHours]
	if !ok {
		ck.skipped = true
		ck.say("The tenant has no access_hours policy.")
		return ck
	}
	ah, err := decodePolicy[accessHours](p, PolicyAccessHours)
	if err != nil {
		ck.violate(invalidPolicy(RuleTime, p, PolicyAccessHours, err))
		return ck
	}
	when := fmt.Sprintf("At %s (%s)", stamp(ev.at), ev.at.Weekday())
	if ah.openAt(ev.at) {
		ck.say("%s the access window %s is open.", when, ah.describe())
		return ck
	}
	next, _ := ah.nextOpening(ev.at) // a valid window always opens within a week
	ck.violate(policyViolation(RuleTime, p, "outside_access_hours", fmt.Sprintf(
		"%s the access window %s is closed; it opens next at %s.", when, ah.describe(), stamp(next)), ceilSeconds(next.Sub(ev.at))))
	return ck
}

// policyViolation is a violation of policy p: a denial (retrying after
// retryAfter seconds, if not 0) when p is enforced, a warning otherwise.
func policyViolation(rule string, p PolicySetting, code, msg string, retryAfter int) Violation {
	v := Violation{Rule: rule, Code: code, Severity: OutcomeDeny, Message: msg, RetryAfterSeconds: retryAfter}
	if !p.Enforced {
		v.Severity, v.RetryAfterSeconds = OutcomeWarn, 0
		v.Message += " The policy is not enforced, so this is only reported."
	}
	return v
}

// invalidPolicy is the violation of a stored policy that does not validate:
// an enforced one denies (fail closed), one that is not enforced warns.
func invalidPolicy(rule string, p PolicySetting, t PolicyType, err error) Violation {
	return policyViolation(rule, p, "policy_invalid", fmt.Sprintf("The tenant's %s policy is invalid: %v.", t, err), 0)
}

// ceilSeconds returns d in whole seconds, rounded up; 0 for d <= 0.
func ceilSeconds(d time.Duration) int {
	if d <= 0 {
		return 0
	}
	return int((d + time.Second - 1) / time.Second)
}

// stamp formats t for messages: RFC 3339 in UTC.
func stamp(t time.Time) string { return t.UTC().Format(time.RFC3339) }

// roughly says a duration in words: "2 days", "5 hours", "12 minutes".
func roughly(d time.Duration) string {
	plural := func(n int64, unit string) string {
		if n == 1 {
			return "1 " + unit
		}
		return fmt.Sprintf("%d %ss", n, unit)
	}
	switch {
	case d >= 48*time.Hour:
		return plural(int64(d/(24*time.Hour)), "day")
	case d >= time.Hour:
		return plural(int64(d/time.Hour), "hour")
	default:
		return plural(int64(ceilSeconds(d)+59)/60, "minute")
	}
}

// percent returns used as a whole percentage of allowed (> 0), rounded down.
func percent(used, allowed int64) int64 {
	return int64(float64(used) / float64(allowed) * 100)
}
