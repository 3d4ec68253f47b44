package aggregate

import (
	"bytes"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
)

// Edition is a tenant's plan tier (the plan_tier enum). Editions are ranked:
// a change to a higher rank is an upgrade, to a lower one a downgrade.
type Edition string

// The editions, from the lowest rank to the highest.
const (
	EditionFree         Edition = "free"
	EditionEssentials   Edition = "essentials"
	EditionProfessional Edition = "professional"
	EditionEnterprise   Edition = "enterprise"
	EditionUnlimited    Edition = "unlimited"
)

// editions holds every edition in rank order; an edition's index is its rank.
var editions = []Edition{EditionFree, EditionEssentials, EditionProfessional, EditionEnterprise, EditionUnlimited}

// Editions returns every edition in rank order, lowest first.
func Editions() []Edition { return slices.Clone(editions) }

// Valid reports whether e is a known edition.
func (e Edition) Valid() bool { return slices.Contains(editions, e) }

// Rank orders editions: free is 0, unlimited 4, and an unknown edition -1, so
// comparing ranks tells an upgrade from a downgrade.
func (e Edition) Rank() int { return slices.Index(editions, e) }

// ParseEdition returns s as an Edition, or a validation error (field
// "edition", rule "known_edition") naming the known editions, for commands
// that take an edition from a client.
func ParseEdition(s string) (Edition, error) {
	e := Edition(s)
	if !e.Valid() {
		return "", Invalid("edition", "known_edition", "unknown edition %q; known editions: %s", s, joinStrings(editions))
	}
	return e, nil
}

// Feature is a capability an edition may include, such as sso. Its
// vocabulary is the catalog's; the constants name the keys code refers to.
type Feature string

// The features the code refers to; the catalog test checks that these are
// exactly the catalog's features.
const (
	FeatureRESTAPI             Feature = "rest_api"
	FeatureWebhooks            Feature = "webhooks"
	FeatureCustomDomains       Feature = "custom_domains"
	FeatureSSO                 Feature = "sso"
	FeatureAuditLogs           Feature = "audit_logs"
	FeatureSandboxEnvironments Feature = "sandbox_environments"
	FeatureAdvancedAnalytics   Feature = "advanced_analytics"
	FeatureCustomWorkflows     Feature = "custom_workflows"
	FeatureIPAllowlist         Feature = "ip_allowlist"
	FeatureDataResidency       Feature = "data_residency"
	FeaturePrioritySupport     Feature = "priority_support"
)

// Limit is a quota an edition sets, such as max_users. A limit's value 0
// means unlimited.
type Limit string

// The limits the code refers to; the catalog test checks that these are
// exactly the catalog's limits.
const (
	LimitMaxUsers              Limit = "max_users"
	LimitMaxAPICallsPerDay     Limit = "max_api_calls_per_day"
	LimitMaxAPICallsPerMinute  Limit = "max_api_calls_per_minute"
	LimitStorageGB             Limit = "storage_gb"
	LimitMaxWebhooks           Limit = "max_webhooks"
	LimitMaxSandboxes          Limit = "max_sandboxes"
	LimitMaxWorkflowRunsPerDay Limit = "max_workflow_runs_per_day"
	LimitMaxCustomDomains      Limit = "max_custom_domains"
)

// Limit windows: a windowed limit counts usage per minute or per UTC day and
// resets at the window's end; a limit without a window counts what exists.
const (
	windowNone   = ""
	windowMinute = "minute"
	windowDay    = "day"
)

// Bounds and defaults the catalog's editions must respect (DESIGN.md, Lifecycle).
const (
	minRetentionDays = 1
	maxRetentionDays = 2555
	defaultTrialDays = 14
	// maxPaymentGraceDays bounds the dunning grace of an edition.
	maxPaymentGraceDays = 365
)

// EditionSpec is what one edition of the catalog grants.
type EditionSpec struct {
	Name        Edition `json:"name"`
	DisplayName string  `json:"display_name"`
	// Features lists the features the edition includes, in catalog order.
	Features []Feature `json:"features"`
	// Limits has a value for every limit of the catalog; 0 means unlimited.
	// A limit whose feature the edition lacks (max_webhooks on free) is what
	// the tenant gets if an override switches the feature on.
	Limits map[Limit]int64 `json:"limits"`
	// DefaultRetentionDays is how long a terminated tenant's data is kept
	// unless the termination says otherwise.
	DefaultRetentionDays int `json:"default_retention_days"`
	// TrialDays is the length of a trial on this edition (14 when the
	// catalog omits it).
	TrialDays int `json:"trial_days,omitempty"`
	// PaymentGraceDays is how long a tenant may stay past_due before
	// dunning suspends it with payment_overdue (0: the next moment).
	PaymentGraceDays int `json:"payment_grace_days"`
}

// Catalog is the edition catalog: for each edition its features, limits,
// retention and trial length. It is data (catalog.json, embedded and
// versioned) so that the code, the tests and the OpenAPI document read one
// source. A Catalog is immutable: every accessor returns copies.
type Catalog struct {
	version     string
	editions    map[Edition]EditionSpec
	features    []Feature // sorted
	limits      []Limit   // sorted
	limitWindow map[Limit]string
}

//go:embed catalog.json
var catalogJSON []byte

// defaultCatalog parses the embedded catalog on first use.
var defaultCatalog = sync.OnceValue(func() *Catalog {
	c, err := parseCatalog(catalogJSON)
	if err != nil {
		panic("aggregate: embedded catalog.json: " + err.Error())
	}
	return c
})

// DefaultCatalog returns the catalog embedded in the binary. It is parsed
// once; a bad embedded file is a programming error, so it panics (and
// TestDefaultCatalogParses catches it before a release does).
func DefaultCatalog() *Catalog { return defaultCatalog() }

// catalogFile is the layout of catalog.json.
type catalogFile struct {
	Version  string `json:"version"`
	Features []struct {
		Key         Feature `json:"key"`
		Description string  `json:"description"`
	} `json:"features"`
	Limits []struct {
		Key         Limit  `json:"key"`
		Description string `json:"description"`
		Window      string `json:"window,omitempty"`
	} `json:"limits"`
	Editions []EditionSpec `json:"editions"`
}

// parseCatalog decodes and checks a catalog: known keys only, every edition
// of Editions in rank order, every limit set in every edition, no negative
// limit, retention within bounds. Whether higher editions grant at least as
// much is checked by the tests, not here.
func parseCatalog(data []byte) (*Catalog, error) {
	var f catalogFile
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&f); err != nil {
		return nil, fmt.Errorf("decode: %w", err)
	}
	if dec.More() {
		return nil, errors.New("decode: trailing data after the catalog object")
	}
	if f.Version == "" {
		return nil, errors.New("version is empty")
	}
	c := &Catalog{
		version:     f.Version,
		editions:    make(map[Edition]EditionSpec, len(f.Editions)),
		limitWindow: make(map[Limit]string, len(f.Limits)),
	}
	for _, ft := range f.Features {
		if !isKey(string(ft.Key)) {
			return nil, fmt.Errorf("feature %q: key must be lower snake_case", ft.Key)
		}
		if slices.Contains(c.features, ft.Key) {
			return nil, fmt.Errorf("feature %q: listed twice", ft.Key)
		}
		c.features = append(c.features, ft.Key)
	}
	for _, l := range f.Limits {
		if !isKey(string(l.Key)) {
			return nil, fmt.Errorf("limit %q: key must be lower snake_case", l.Key)
		}
		if _, dup := c.limitWindow[l.Key]; dup {
			return nil, fmt.Errorf("limit %q: listed twice", l.Key)
		}
		switch l.Window {
		case windowNone, windowMinute, windowDay:
		default:
			return nil, fmt.Errorf("limit %q: window %q is not one of \"\", minute, day", l.Key, l.Window)
		}
		c.limits = append(c.limits, l.Key)
		c.limitWindow[l.Key] = l.Window
	}
	if len(f.Editions) != len(editions) {
		return nil, fmt.Errorf("catalog has %d editions, want %d (%s)", len(f.Editions), len(editions), joinStrings(editions))
	}
	for i, spec := range f.Editions {
		if spec.Name != editions[i] {
			return nil, fmt.Errorf("edition %d is %q, want %q: editions are listed in rank order", i, spec.Name, editions[i])
		}
		if spec.DisplayName == "" {
			return nil, fmt.Errorf("edition %s: display_name is empty", spec.Name)
		}
		for j, ft := range spec.Features {
			if !slices.Contains(c.features, ft) {
				return nil, fmt.Errorf("edition %s: unknown feature %q", spec.Name, ft)
			}
			if slices.Contains(spec.Features[:j], ft) {
				return nil, fmt.Errorf("edition %s: feature %q listed twice", spec.Name, ft)
			}
		}
		for l, v := range spec.Limits {
			if _, known := c.limitWindow[l]; !known {
				return nil, fmt.Errorf("edition %s: unknown limit %q", spec.Name, l)
			}
			if v < 0 {
				return nil, fmt.Errorf("edition %s: limit %s is %d; limits are >= 0 (0 = unlimited)", spec.Name, l, v)
			}
		}
		for _, l := range c.limits {
			if _, ok := spec.Limits[l]; !ok {
				return nil, fmt.Errorf("edition %s: limit %q is missing", spec.Name, l)
			}
		}
		if spec.DefaultRetentionDays < minRetentionDays || spec.DefaultRetentionDays > maxRetentionDays {
			return nil, fmt.Errorf("edition %s: default_retention_days %d is outside %d..%d", spec.Name, spec.DefaultRetentionDays, minRetentionDays, maxRetentionDays)
		}
		if spec.TrialDays < 0 {
			return nil, fmt.Errorf("edition %s: trial_days %d is negative", spec.Name, spec.TrialDays)
		}
		if spec.TrialDays == 0 {
			spec.TrialDays = defaultTrialDays
		}
		if spec.PaymentGraceDays < 0 || spec.PaymentGraceDays > maxPaymentGraceDays {
			return nil, fmt.Errorf("edition %s: payment_grace_days %d is outside 0..%d", spec.Name, spec.PaymentGraceDays, maxPaymentGraceDays)
		}
		c.editions[spec.Name] = spec
	}
	slices.Sort(c.features)
	slices.Sort(c.limits)
	return c, nil
}

// isKey reports whether s is a lower snake_case key such as max_users.
func isKey(s string) bool {
	if s == "" || s[0] < 'a' || s[0] > 'z' {
		return false
	}
	for _, r := range s {
		if (r < 'a' || r > 'z') && (r < '0' || r > '9') && r != '_' {
			return false
		}
	}
	return true
}

// Version identifies the catalog's data (its "version" field); events that
// record entitlements can carry it so a later reader knows which catalog
// granted them.
func (c *Catalog) Version() string { return c.version }

// Edition returns what edition e grants, as a copy the caller may change.
func (c *Catalog) Edition(e Edition) (EditionSpec, bool) {
	spec, ok := c.editions[e]
	if !ok {
		return EditionSpec{}, false
	}
	spec.Features = slices.Clone(spec.Features)
	spec.Limits = maps.Clone(spec.Limits)
	return spec, true
}

// Features returns every feature of the catalog, sorted.
func (c *Catalog) Features() []Feature { return slices.Clone(c.features) }

// Limits returns every limit of the catalog, sorted.
func (c *Catalog) Limits() []Limit { return slices.Clone(c.limits) }

// hasFeature reports whether f is a feature of the catalog.
func (c *Catalog) hasFeature(f Feature) bool {
	_, ok := slices.BinarySearch(c.features, f)
	return ok
}

// hasLimit reports whether l is a limit of the catalog.
func (c *Catalog) hasLimit(l Limit) bool {
	_, ok := c.limitWindow[l]
	return ok
}

// RetentionDays returns how many days a terminated tenant of edition e keeps
// its data by default. For an unknown edition it returns the longest
// retention of the catalog, so a bad edition never shortens retention.
func (c *Catalog) RetentionDays(e Edition) int {
	if spec, ok := c.editions[e]; ok {
		return spec.DefaultRetentionDays
	}
	longest := 0
	for _, spec := range c.editions {
		longest = max(longest, spec.DefaultRetentionDays)
	}
	return longest
}

// PaymentGraceDays returns how many days a tenant of edition e may stay
// past_due before dunning suspends it. For an unknown edition it returns the
// longest grace of the catalog, so a bad edition never hastens a suspension.
func (c *Catalog) PaymentGraceDays(e Edition) int {
	if spec, ok := c.editions[e]; ok {
		return spec.PaymentGraceDays
	}
	longest := 0
	for _, spec := range c.editions {
		longest = max(longest, spec.PaymentGraceDays)
	}
	return longest
}

// MinimumEditionFor returns the lowest-ranked edition that includes feature
// f: the edition a tenant must upgrade to, at least, to get it.
func (c *Catalog) MinimumEditionFor(f Feature) (Edition, bool) {
	return c.editionAbove(-1, func(spec EditionSpec) bool { return slices.Contains(spec.Features, f) })
}

// editionAbove returns the lowest-ranked edition ranked above rank that
// satisfies ok.
func (c *Catalog) editionAbove(rank int, ok func(EditionSpec) bool) (Edition, bool) {
	for _, e := range editions[max(rank+1, 0):] {
		if spec, found := c.editions[e]; found && ok(spec) {
			return e, true
		}
	}
	return "", false
}

// joinStrings joins string-like values with ", " for error messages.
func joinStrings[S ~string](vs []S) string {
	ss := make([]string, len(vs))
	for i, v := range vs {
		ss[i] = string(v)
	}
	return strings.Join(ss, ", ")
}
