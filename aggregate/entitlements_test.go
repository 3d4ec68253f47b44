package aggregate

import (
	"testing"
)

func TestEntitlementsApplyOverridesToTheEdition(t *testing.T) {
	t.Parallel()
	c := DefaultCatalog()
	tests := []struct {
		name      string
		edition   Edition
		overrides Overrides
		features  map[Feature]bool // expected values of these keys
		limits    map[Limit]int64
	}{
		{
			name:     "edition alone",
			edition:  EditionProfessional,
			features: map[Feature]bool{FeatureSSO: true, FeatureIPAllowlist: false, FeatureRESTAPI: true},
			limits:   map[Limit]int64{LimitMaxUsers: 100, LimitStorageGB: 100},
		},
		{
			name:    "feature switched on and off",
			edition: EditionProfessional,
			overrides: Overrides{Features: map[Feature]bool{
				FeatureIPAllowlist: true, FeatureSSO: false,
			}},
			features: map[Feature]bool{FeatureIPAllowlist: true, FeatureSSO: false, FeatureAuditLogs: true},
		},
		{
			name:      "limit raised, lowered and made unlimited",
			edition:   EditionEssentials,
			overrides: Overrides{Limits: map[Limit]int64{LimitMaxUsers: 40, LimitStorageGB: 2, LimitMaxWebhooks: 0}},
			limits:    map[Limit]int64{LimitMaxUsers: 40, LimitStorageGB: 2, LimitMaxWebhooks: 0, LimitMaxAPICallsPerDay: 10000},
		},
		{
			name:    "unknown and negative overrides ignored",
			edition: EditionFree,
			overrides: Overrides{
				Features: map[Feature]bool{"time_travel": true},
				Limits:   map[Limit]int64{"max_moons": 2, LimitMaxUsers: -3},
			},
			features: map[Feature]bool{"time_travel": false},
			limits:   map[Limit]int64{LimitMaxUsers: 5},
		},
		{
			name:     "unknown edition grants nothing and the lowest limits",
			edition:  "gold",
			features: map[Feature]bool{FeatureRESTAPI: false},
			limits:   map[Limit]int64{LimitMaxUsers: 5},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ent := c.Entitlements(tt.edition, tt.overrides)
			if ent.Edition != tt.edition {
				t.Errorf("Edition = %q, want %q", ent.Edition, tt.edition)
			}
			if len(ent.Features) != len(c.Features()) || len(ent.Limits) != len(c.Limits()) {
				t.Errorf("got %d features and %d limits, want every catalog key (%d, %d)",
					len(ent.Features), len(ent.Limits), len(c.Features()), len(c.Limits()))
			}
			for f, want := range tt.features {
				if got, ok := ent.Features[f]; got != want || (!ok && c.hasFeature(f)) {
					t.Errorf("feature %s = %v, want %v", f, got, want)
				}
			}
			for l, want := range tt.limits {
				if got := ent.Limits[l]; got != want {
					t.Errorf("limit %s = %d, want %d", l, got, want)
				}
			}
			if _, ok := ent.Features["time_travel"]; ok {
				t.Error("an unknown override key leaked into the entitlements")
			}
		})
	}
}

func TestValidateFeatureOverride(t *testing.T) {
	t.Parallel()
	c := DefaultCatalog()
	if f, err := c.ValidateFeatureOverride("sso"); err != nil || f != FeatureSSO {
		t.Errorf("ValidateFeatureOverride(sso) = %q, %v", f, err)
	}
	_, err := c.ValidateFeatureOverride("time_travel")
	de, ok := AsError(err)
	if !ok || de.Code != CodeValidation || de.Field != "key" || de.Rule != "known_feature" {
		t.Fatalf("error = %#v, want validation on key/known_feature", err)
	}
}

func TestValidateLimitOverride(t *testing.T) {
	t.Parallel()
	c := DefaultCatalog()
	tests := []struct {
		key         string
		value       int64
		field, rule string // empty: accepted
	}{
		{"max_users", 50, "", ""},
		{"max_users", 0, "", ""}, // unlimited
		{"max_users", -1, "value", "non_negative"},
		{"max_moons", 3, "key", "known_limit"},
	}
	for _, tt := range tests {
		l, err := c.ValidateLimitOverride(tt.key, tt.value)
		if tt.field == "" {
			if err != nil || string(l) != tt.key {
				t.Errorf("ValidateLimitOverride(%s, %d) = %q, %v; want accepted", tt.key, tt.value, l, err)
			}
			continue
		}
		de, ok := AsError(err)
		if !ok || de.Code != CodeValidation || de.Field != tt.field || de.Rule != tt.rule {
			t.Errorf("ValidateLimitOverride(%s, %d) error = %v, want %s/%s", tt.key, tt.value, err, tt.field, tt.rule)
		}
	}
}
