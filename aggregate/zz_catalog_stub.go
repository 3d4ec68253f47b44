package aggregate

// TEMPORARY stub of the catalog/policy API being written on branch policy.
// Deleted when that branch is merged.

import (
	"encoding/json"
	"time"
)

type Edition string

const (
	EditionFree         Edition = "free"
	EditionEssentials   Edition = "essentials"
	EditionProfessional Edition = "professional"
	EditionEnterprise   Edition = "enterprise"
	EditionUnlimited    Edition = "unlimited"
)

func Editions() []Edition {
	return []Edition{EditionFree, EditionEssentials, EditionProfessional, EditionEnterprise, EditionUnlimited}
}
func (e Edition) Valid() bool { return e.Rank() >= 0 }
func (e Edition) Rank() int {
	for i, x := range Editions() {
		if x == e {
			return i
		}
	}
	return -1
}

type Feature string
type Limit string
type Catalog struct{}

func DefaultCatalog() *Catalog { return &Catalog{} }

type EditionSpec struct{ TrialDays int }

func (c *Catalog) Edition(e Edition) (EditionSpec, bool) {
	return EditionSpec{TrialDays: 14}, e.Valid()
}
func (c *Catalog) RetentionDays(e Edition) int {
	return map[Edition]int{EditionFree: 30, EditionEssentials: 90, EditionProfessional: 180, EditionEnterprise: 365, EditionUnlimited: 730}[e]
}

type Overrides struct {
	Features map[Feature]bool `json:"features,omitempty"`
	Limits   map[Limit]int64  `json:"limits,omitempty"`
}
type Entitlements struct {
	Edition  Edition          `json:"edition"`
	Features map[Feature]bool `json:"features"`
	Limits   map[Limit]int64  `json:"limits"`
}

func (c *Catalog) Entitlements(e Edition, o Overrides) Entitlements { return Entitlements{Edition: e} }
func (c *Catalog) ValidateFeatureOverride(key string) (Feature, error) {
	if key == "sso" || key == "webhooks" || key == "ip_allowlist" {
		return Feature(key), nil
	}
	return "", Invalid("key", "known_feature", "unknown")
}
func (c *Catalog) ValidateLimitOverride(key string, value int64) (Limit, error) {
	if key == "max_users" && value >= 0 {
		return Limit(key), nil
	}
	return "", Invalid("key", "known_limit", "unknown")
}

type PolicyType string
type PolicySetting struct {
	Type     PolicyType      `json:"type"`
	Enforced bool            `json:"enforced"`
	Settings json.RawMessage `json:"settings"`
}

func PolicyTypes() []PolicyType { return []PolicyType{"mfa_required", "ip_allowlist"} }
func ValidatePolicy(c *Catalog, ent Entitlements, p PolicySetting) (PolicySetting, error) {
	if p.Type != "mfa_required" && p.Type != "ip_allowlist" {
		return p, Invalid("type", "known_policy_type", "unknown")
	}
	if len(p.Settings) == 0 {
		p.Settings = json.RawMessage(`{}`)
	}
	return p, nil
}
func PolicyConflicts(c *Catalog, ent Entitlements, policies map[PolicyType]PolicySetting) []string {
	return nil
}

type PolicySubject struct {
	Status                  Status
	Edition                 Edition
	Region                  Region
	Entitlements            Entitlements
	Policies                map[PolicyType]PolicySetting
	SuspendedReason         string
	SuspensionSeverity      string
	AutoResumeAt            *time.Time
	TrialEndsAt             *time.Time
	CancellationEffectiveAt *time.Time
	BillingStatus           string
	ComplianceStandards     []string
}
