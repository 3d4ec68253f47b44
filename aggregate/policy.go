package aggregate

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strings"
	"time"
)

// PolicyType names a kind of tenant policy setting, such as ip_allowlist.
// Each type has a fixed set of settings and may need a feature of the
// tenant's entitlements (see policySpecs).
type PolicyType string

// The policy types.
const (
	PolicyIPAllowlist       PolicyType = "ip_allowlist"
	PolicySSOEnforcement    PolicyType = "sso_enforcement"
	PolicyMFARequired       PolicyType = "mfa_required"
	PolicySessionTimeout    PolicyType = "session_timeout"
	PolicyDataResidency     PolicyType = "data_residency"
	PolicyAccessHours       PolicyType = "access_hours"
	PolicyPasswordPolicy    PolicyType = "password_policy"
	PolicyAuditLogRetention PolicyType = "audit_log_retention"
)

// PolicySetting is one policy of a tenant. A policy that is not Enforced is
// kept and reported: policy evaluation warns where an enforced one would deny,
// so an operator can see what enforcing it would block before doing so.
type PolicySetting struct {
	Type     PolicyType `json:"type"`
	Enforced bool       `json:"enforced"`
	// Settings is a JSON object of the type's settings. ValidatePolicy
	// returns it normalised: compact, keys sorted, values canonical (CIDRs
	// masked, lists de-duplicated and sorted), so equal policies have equal bytes.
	Settings json.RawMessage `json:"settings"`
}

// settingKind is how one setting's value is read and normalised.
type settingKind int

const (
	settingInt     settingKind = iota // a whole number within [min, max]
	settingToken                      // a lower-case identifier of min..max characters
	settingCIDRs                      // a list of CIDR blocks (a bare IP is a /32 or /128), min..max items
	settingRegions                    // a list of regions, min..max items (max 0: no maximum)
	settingDays                       // a list of weekdays (mon..sun), min..max items
)

// settingField describes one setting of a policy type.
type settingField struct {
	name     string
	kind     settingKind
	required bool
	min, max int64
}

// policySpec is one row of the policy table: a type, the feature it needs
// ("" for none) and its settings.
type policySpec struct {
	typ     PolicyType
	feature Feature
	fields  []settingField
}

// policySpecs is the policy table: the single source of truth for which
// settings each policy type takes and which feature it needs.
// Authentication policies (sso_enforcement, mfa_required, session_timeout,
// password_policy) are enforced by the identity layer at sign-in; policy
// evaluation applies ip_allowlist, data_residency and access_hours.
var policySpecs = []policySpec{
	{PolicyIPAllowlist, FeatureIPAllowlist, []settingField{
		{name: "cidrs", kind: settingCIDRs, required: true, min: 1, max: 100},
	}},
	{PolicySSOEnforcement, FeatureSSO, []settingField{
		{name: "provider", kind: settingToken, required: true, min: 1, max: 64},
	}},
	{PolicyMFARequired, "", nil},
	{PolicySessionTimeout, "", []settingField{
		{name: "minutes", kind: settingInt, required: true, min: 5, max: 1440},
	}},
	{PolicyDataResidency, FeatureDataResidency, []settingField{
		{name: "allowed_regions", kind: settingRegions, required: true, min: 1},
	}},
	{PolicyAccessHours, "", []settingField{
		{name: "start_hour", kind: settingInt, required: true, min: 0, max: 23},
		{name: "end_hour", kind: settingInt, required: true, min: 0, max: 23},
		{name: "days", kind: settingDays, min: 1, max: 7},
	}},
	{PolicyPasswordPolicy, "", []settingField{
		{name: "min_length", kind: settingInt, required: true, min: 8, max: 128},
	}},
	{PolicyAuditLogRetention, FeatureAuditLogs, []settingField{
		{name: "days", kind: settingInt, required: true, min: 1, max: 2555},
	}},
}

// PolicyTypes returns every policy type, in the order of the policy table.
func PolicyTypes() []PolicyType {
	out := make([]PolicyType, len(policySpecs))
	for i, s := range policySpecs {
		out[i] = s.typ
	}
	return out
}

// Valid reports whether t is a known policy type.
func (t PolicyType) Valid() bool {
	_, ok := lookupPolicy(t)
	return ok
}

// RequiredFeature returns the feature a tenant needs to set a policy of type
// t, or "" when any edition may.
func (t PolicyType) RequiredFeature() Feature {
	spec, _ := lookupPolicy(t)
	return spec.feature
}

func lookupPolicy(t PolicyType) (policySpec, bool) {
	i := slices.IndexFunc(policySpecs, func(s policySpec) bool { return s.typ == t })
	if i < 0 {
		return policySpec{}, false
	}
	return policySpecs[i], true
}

// ValidatePolicy checks policy p for a tenant with entitlements ent and
// returns it with normalised settings. It checks, in this order, that the
// type is known (field "type", rule "known_policy_type"), that ent includes
// the feature the type needs (CodeFeatureRequired, naming the feature and
// the lowest edition that has it: no point fixing settings the tenant may
// not have), and that the settings are valid: a JSON object (field
// "settings", rule "object") with no unknown setting (field
// "settings.<name>", rule "unknown_field") and every setting valid (field
// "settings.<name>", rules such as "required", "integer", "range", "cidr",
// "known_region", "day").
func ValidatePolicy(c *Catalog, ent Entitlements, p PolicySetting) (PolicySetting, error) {
	spec, ok := lookupPolicy(p.Type)
	if !ok {
		return PolicySetting{}, Invalid("type", "known_policy_type", "unknown policy type %q; known types: %s", p.Type, joinStrings(PolicyTypes()))
	}
	if spec.feature != "" && !ent.Has(spec.feature) {
		return PolicySetting{}, featureRequired(c, ent.Edition, p.Type, spec.feature)
	}
	settings, err := spec.normalize(p.Settings)
	if err != nil {
		return PolicySetting{}, err
	}
	p.Settings = settings
	return p, nil
}

// featureRequired is the refusal of a policy type whose feature the tenant
// lacks. It says whether an override switched the feature off or which
// edition to upgrade to.
func featureRequired(c *Catalog, e Edition, t PolicyType, f Feature) *Error {
	msg := fmt.Sprintf("policy %s requires feature %s", t, f)
	var required Edition
	if spec, ok := c.editions[e]; ok && slices.Contains(spec.Features, f) {
		msg += ", which an override switches off for this tenant"
	} else if min, ok := c.MinimumEditionFor(f); ok {
		msg += fmt.Sprintf(", which edition %s does not include; it is available from edition %s", editionName(e), min)
		required = min
	} else {
		msg += ", which no edition includes"
	}
	return &Error{Code: CodeFeatureRequired, Field: "type", Rule: "feature_required", Message: msg, Feature: f, RequiredEdition: required}
}

// PolicyConflicts lists the enforced policies that entitlements ent would
// not allow, one "<type>: requires feature <feature>" per policy, sorted.
// The edition-change and override commands refuse a change with conflicts
// (CodeConflict, Error.Conflicts) rather than silently dropping a security
// setting such as an IP allowlist. Policies that are not enforced do not
// conflict: they are reports, and evaluation ignores a policy's feature.
func PolicyConflicts(c *Catalog, ent Entitlements, policies map[PolicyType]PolicySetting) []string {
	var out []string
	for _, t := range slices.Sorted(maps.Keys(policies)) {
		p := policies[t]
		spec, ok := lookupPolicy(t)
		if !ok || !p.Enforced || spec.feature == "" || ent.Has(spec.feature) {
			continue
		}
		out = append(out, fmt.Sprintf("%s: requires feature %s", t, spec.feature))
	}
	return out
}

// normalize validates raw against the type's settings and returns it as
// compact JSON with sorted keys and canonical values.
func (s policySpec) normalize(raw json.RawMessage) (json.RawMessage, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || string(raw) == "null" {
		raw = []byte("{}")
	}
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(raw, &obj); err != nil {
		return nil, Invalid("settings", "object", "settings of policy %s must be a JSON object", s.typ)
	}
	names := make([]string, len(s.fields))
	for i, f := range s.fields {
		names[i] = f.name
	}
	for _, k := range slices.Sorted(maps.Keys(obj)) {
		if !slices.Contains(names, k) {
			known := "none"
			if len(names) > 0 {
				known = strings.Join(names, ", ")
			}
			return nil, Invalid("settings."+k, "unknown_field", "policy %s has no setting %q; its settings: %s", s.typ, k, known)
		}
	}
	out := make(map[string]any, len(s.fields))
	for _, f := range s.fields {
		v, ok := obj[f.name]
		if !ok || string(bytes.TrimSpace(v)) == "null" {
			if f.required {
				return nil, Invalid("settings."+f.name, "required", "policy %s needs setting %s", s.typ, f.name)
			}
			continue
		}
		nv, err := f.normalize(v)
		if err != nil {
			return nil, err
		}
		out[f.name] = nv
	}
	b, err := json.Marshal(out)
	if err != nil {
		return nil, fmt.Errorf("encode settings of policy %s: %w", s.typ, err)
	}
	return b, nil
}

// normalize validates one setting and returns its canonical value.
func (f settingField) normalize(raw json.RawMessage) (any, error) {
	field := "settings." + f.name
	switch f.kind {
	case settingInt:
		dec := json.NewDecoder(bytes.NewReader(raw))
		dec.UseNumber()
		var v any
		_ = dec.Decode(&v)        // raw is one valid JSON value: it came out of an object
		num, _ := v.(json.Number) // "" unless v is a number
		n, err := num.Int64()
		if err != nil {
			return nil, Invalid(field, "integer", "%s must be a whole number, not %s", field, raw)
		}
		if n < f.min || n > f.max {
			return nil, Invalid(field, "range", "%s must be between %d and %d, not %d", field, f.min, f.max, n)
		}
		return n, nil

	case settingToken:
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return nil, Invalid(field, "string", "%s must be a string, not %s", field, raw)
		}
		s = strings.ToLower(strings.TrimSpace(s))
		if !isToken(s) || int64(len(s)) < f.min || int64(len(s)) > f.max {
			return nil, Invalid(field, "pattern", "%s must be %d to %d characters of a-z, 0-9, '.', '_' and '-', starting with a letter or digit", field, f.min, f.max)
		}
		return s, nil

	case settingCIDRs:
		items, err := stringList(field, raw)
		if err != nil {
			return nil, err
		}
		var prefixes []netip.Prefix
		for i, s := range items {
			p, err := parsePrefix(s)
			if err != nil {
				return nil, Invalid(field, "cidr", "%s[%d]: %q is not an IP address or CIDR block", field, i, s)
			}
			prefixes = append(prefixes, p)
		}
		slices.SortFunc(prefixes, func(a, b netip.Prefix) int { return a.Compare(b) })
		prefixes = slices.Compact(prefixes)
		out := make([]string, len(prefixes))
		for i, p := range prefixes {
			out[i] = p.String()
		}
		return out, f.countWithin(field, len(out))

	case settingRegions:
		items, err := stringList(field, raw)
		if err != nil {
			return nil, err
		}
		for i, s := range items {
			if !Region(s).Valid() {
				return nil, Invalid(field, "known_region", "%s[%d]: unknown region %q; known regions: %s", field, i, s, joinStrings(regions))
			}
		}
		var out []Region
		for _, r := range regions { // region-table order, de-duplicated
			if slices.Contains(items, string(r)) {
				out = append(out, r)
			}
		}
		return out, f.countWithin(field, len(out))

	case settingDays:
		items, err := stringList(field, raw)
		if err != nil {
			return nil, err
		}
		seen := make([]bool, len(weekdays))
		for i, s := range items {
			d := weekdayIndex(s)
			if d < 0 {
				return nil, Invalid(field, "day", "%s[%d]: %q is not a weekday (mon, tue, wed, thu, fri, sat, sun)", field, i, s)
			}
			seen[d] = true
		}
		var out []string
		for i, w := range weekdays { // week order, de-duplicated
			if seen[i] {
				out = append(out, w.short)
			}
		}
		return out, f.countWithin(field, len(out))
	}
	return nil, fmt.Errorf("setting %s: unknown kind %d", f.name, f.kind)
}

// countWithin checks a list's length (after de-duplication) against the
// field's bounds; max 0 means no maximum.
func (f settingField) countWithin(field string, n int) error {
	if int64(n) < f.min {
		return Invalid(field, "min_items", "%s needs at least %d item(s)", field, f.min)
	}
	if f.max > 0 && int64(n) > f.max {
		return Invalid(field, "max_items", "%s takes at most %d items, not %d", field, f.max, n)
	}
	return nil
}

// stringList decodes a JSON array of strings.
func stringList(field string, raw json.RawMessage) ([]string, error) {
	var items []string
	if err := json.Unmarshal(raw, &items); err != nil {
		return nil, Invalid(field, "string_list", "%s must be a list of strings, not %s", field, raw)
	}
	return items, nil
}

// isToken reports whether s is an identifier such as "okta" or "azure-ad".
func isToken(s string) bool {
	for i, r := range s {
		alnum := (r >= 'a' && r <= 'z') || (r >= '0' && r <= '9')
		if !alnum && (i == 0 || (r != '.' && r != '_' && r != '-')) {
			return false
		}
	}
	return s != ""
}

// parsePrefix reads a CIDR block or a bare IP address (a single-address
// block), masked so that 10.1.2.3/8 and 10.0.0.0/8 are the same block.
func parsePrefix(s string) (netip.Prefix, error) {
	s = strings.TrimSpace(s)
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return netip.Prefix{}, err
		}
		if a := p.Addr(); a.Is4In6() && p.Bits() >= 96 {
			// ::ffff:10.0.0.0/104 is 10.0.0.0/8, as an address would be.
			return netip.PrefixFrom(a.Unmap(), p.Bits()-96).Masked(), nil
		}
		return p.Masked(), nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, err
	}
	a = a.Unmap()
	return netip.PrefixFrom(a, a.BitLen()), nil
}

// weekday is a day an access_hours policy may name.
type weekday struct {
	short string // as settings are normalised: "mon"
	day   time.Weekday
}

// weekdays lists the days an access_hours policy may name, in week order.
var weekdays = []weekday{
	{"mon", time.Monday}, {"tue", time.Tuesday}, {"wed", time.Wednesday}, {"thu", time.Thursday},
	{"fri", time.Friday}, {"sat", time.Saturday}, {"sun", time.Sunday},
}

// weekdayIndex returns the index in weekdays of a day written short ("mon")
// or long ("Monday"), or -1.
func weekdayIndex(s string) int {
	s = strings.ToLower(strings.TrimSpace(s))
	return slices.IndexFunc(weekdays, func(w weekday) bool {
		return s == w.short || s == strings.ToLower(w.day.String())
	})
}

// decodePolicy validates a stored policy again and decodes its settings into
// T, so evaluation never trusts bytes that skipped ValidatePolicy.
func decodePolicy[T any](p PolicySetting, t PolicyType) (T, error) {
	var v T
	spec, _ := lookupPolicy(t)
	raw, err := spec.normalize(p.Settings)
	if err != nil {
		return v, err
	}
	if err := json.Unmarshal(raw, &v); err != nil {
		return v, fmt.Errorf("decode %s settings: %w", t, err)
	}
	return v, nil
}

// ipAllowlist is the settings of an ip_allowlist policy.
type ipAllowlist struct {
	CIDRs []string `json:"cidrs"`
}

// allows reports whether addr is inside one of the allowlist's blocks.
func (a ipAllowlist) allows(addr netip.Addr) bool {
	addr = addr.Unmap()
	for _, s := range a.CIDRs {
		if p, err := parsePrefix(s); err == nil && p.Contains(addr) {
			return true
		}
	}
	return false
}

// dataResidency is the settings of a data_residency policy.
type dataResidency struct {
	AllowedRegions []Region `json:"allowed_regions"`
}

// accessHours is the settings of an access_hours policy: a daily window in
// UTC from StartHour:00 to EndHour:00 on the listed days (every day when none
// are listed). A window with EndHour before StartHour runs overnight and
// belongs to the day it opens on: start 22, end 6, days [fri] is open from
// Friday 22:00 to Saturday 06:00. StartHour equal to EndHour is a 24-hour
// window.
type accessHours struct {
	StartHour int      `json:"start_hour"`
	EndHour   int      `json:"end_hour"`
	Days      []string `json:"days,omitempty"`
}

// length is how long the window stays open once it opens.
func (a accessHours) length() time.Duration {
	h := (a.EndHour - a.StartHour + 24) % 24
	if h == 0 {
		h = 24
	}
	return time.Duration(h) * time.Hour
}

// opensOn reports whether the window opens on weekday d.
func (a accessHours) opensOn(d time.Weekday) bool {
	if len(a.Days) == 0 {
		return true
	}
	return slices.ContainsFunc(a.Days, func(s string) bool {
		i := weekdayIndex(s)
		return i >= 0 && weekdays[i].day == d
	})
}

// openAt reports whether the window is open at t: whether the window that
// opened today, or the one that opened yesterday and may run overnight,
// contains t.
func (a accessHours) openAt(t time.Time) bool {
	t = t.UTC()
	for back := 0; back <= 1; back++ {
		y, m, d := t.AddDate(0, 0, -back).Date()
		opens := time.Date(y, m, d, a.StartHour, 0, 0, 0, time.UTC)
		if a.opensOn(opens.Weekday()) && !t.Before(opens) && t.Before(opens.Add(a.length())) {
			return true
		}
	}
	return false
}

// nextOpening returns the first time after t at which the window opens.
func (a accessHours) nextOpening(t time.Time) (time.Time, bool) {
	t = t.UTC()
	y, m, d := t.Date()
	for ahead := 0; ahead <= 7; ahead++ {
		opens := time.Date(y, m, d+ahead, a.StartHour, 0, 0, 0, time.UTC)
		if opens.After(t) && a.opensOn(opens.Weekday()) {
			return opens, true
		}
	}
	return time.Time{}, false
}

// describe says the window in words, such as "09:00–17:00 UTC on mon, tue".
func (a accessHours) describe() string {
	days := "every day"
	if len(a.Days) > 0 && len(a.Days) < len(weekdays) {
		days = "on " + strings.Join(a.Days, ", ")
	}
	return fmt.Sprintf("%02d:00–%02d:00 UTC %s", a.StartHour, a.EndHour, days)
}
