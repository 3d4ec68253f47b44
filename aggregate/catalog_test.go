package aggregate

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"
)

func TestDefaultCatalogParses(t *testing.T) {
	t.Parallel()
	c, err := parseCatalog(catalogJSON)
	if err != nil {
		t.Fatalf("embedded catalog.json: %v", err)
	}
	if c.Version() == "" {
		t.Error("catalog has no version")
	}
	if DefaultCatalog() != DefaultCatalog() {
		t.Error("DefaultCatalog parses the embedded file more than once")
	}
}

func TestCatalogKeysAreTheGoConstants(t *testing.T) {
	t.Parallel()
	c := DefaultCatalog()
	features := []Feature{
		FeatureRESTAPI, FeatureWebhooks, FeatureCustomDomains, FeatureSSO, FeatureAuditLogs,
		FeatureSandboxEnvironments, FeatureAdvancedAnalytics, FeatureCustomWorkflows,
		FeatureIPAllowlist, FeatureDataResidency, FeaturePrioritySupport,
	}
	slices.Sort(features)
	if got := c.Features(); !slices.Equal(got, features) {
		t.Errorf("catalog features = %v, Go constants = %v", got, features)
	}
	limits := []Limit{
		LimitMaxUsers, LimitMaxAPICallsPerDay, LimitMaxAPICallsPerMinute, LimitStorageGB,
		LimitMaxWebhooks, LimitMaxSandboxes, LimitMaxWorkflowRunsPerDay, LimitMaxCustomDomains,
	}
	slices.Sort(limits)
	if got := c.Limits(); !slices.Equal(got, limits) {
		t.Errorf("catalog limits = %v, Go constants = %v", got, limits)
	}
	if c.limitWindow[LimitMaxAPICallsPerMinute] != windowMinute || c.limitWindow[LimitMaxAPICallsPerDay] != windowDay {
		t.Errorf("api call limits have windows %q and %q, want minute and day",
			c.limitWindow[LimitMaxAPICallsPerMinute], c.limitWindow[LimitMaxAPICallsPerDay])
	}
}

func TestEveryEditionHasEveryLimit(t *testing.T) {
	t.Parallel()
	c := DefaultCatalog()
	for _, e := range Editions() {
		spec, ok := c.Edition(e)
		if !ok {
			t.Fatalf("edition %s missing from the catalog", e)
		}
		for _, l := range c.Limits() {
			v, ok := spec.Limits[l]
			if !ok {
				t.Errorf("edition %s has no value for limit %s", e, l)
			}
			if v < 0 {
				t.Errorf("edition %s: limit %s = %d, want >= 0", e, l, v)
			}
		}
		if len(spec.Limits) != len(c.Limits()) {
			t.Errorf("edition %s has %d limits, catalog has %d", e, len(spec.Limits), len(c.Limits()))
		}
	}
}

// atLeast reports whether limit value hi grants at least as much as lo, 0
// meaning unlimited.
func atLeast(hi, lo int64) bool {
	switch {
	case hi == 0:
		return true
	case lo == 0:
		return false
	default:
		return hi >= lo
	}
}

func TestHigherEditionNeverGrantsLess(t *testing.T) {
	t.Parallel()
	c := DefaultCatalog()
	eds := Editions()
	for i := 1; i < len(eds); i++ {
		lo, hi := eds[i-1], eds[i]
		if lo.Rank() >= hi.Rank() {
			t.Errorf("rank(%s)=%d is not below rank(%s)=%d", lo, lo.Rank(), hi, hi.Rank())
		}
		loSpec, _ := c.Edition(lo)
		hiSpec, _ := c.Edition(hi)
		for _, f := range loSpec.Features {
			if !slices.Contains(hiSpec.Features, f) {
				t.Errorf("%s has feature %s but the higher %s does not", lo, f, hi)
			}
		}
		for _, l := range c.Limits() {
			if !atLeast(hiSpec.Limits[l], loSpec.Limits[l]) {
				t.Errorf("limit %s: %s grants %d, the higher %s only %d (0 = unlimited)",
					l, lo, loSpec.Limits[l], hi, hiSpec.Limits[l])
			}
		}
		if hiSpec.DefaultRetentionDays < loSpec.DefaultRetentionDays {
			t.Errorf("%s keeps data %d days, the higher %s only %d", lo, loSpec.DefaultRetentionDays, hi, hiSpec.DefaultRetentionDays)
		}
	}
}

func TestEveryFeatureIsInSomeEdition(t *testing.T) {
	t.Parallel()
	c := DefaultCatalog()
	for _, f := range c.Features() {
		if _, ok := c.MinimumEditionFor(f); !ok {
			t.Errorf("feature %s is in no edition", f)
		}
	}
}

func TestRetentionDaysByEdition(t *testing.T) {
	t.Parallel()
	c := DefaultCatalog()
	tests := []struct {
		edition Edition
		want    int
	}{
		{EditionFree, 30},
		{EditionEssentials, 90},
		{EditionProfessional, 180},
		{EditionEnterprise, 365},
		{EditionUnlimited, 730},
		{"platinum", 730}, // unknown: the longest, never shorter
	}
	for _, tt := range tests {
		if got := c.RetentionDays(tt.edition); got != tt.want {
			t.Errorf("RetentionDays(%q) = %d, want %d", tt.edition, got, tt.want)
		}
	}
}

func TestTrialDaysDefaultToFourteen(t *testing.T) {
	t.Parallel()
	for _, e := range Editions() {
		spec, _ := DefaultCatalog().Edition(e)
		if spec.TrialDays != 14 {
			t.Errorf("edition %s: trial_days = %d, want 14", e, spec.TrialDays)
		}
	}
	data := strings.Replace(string(catalogJSON), `"trial_days": 14`, `"trial_days": 0`, 1)
	c, err := parseCatalog([]byte(data))
	if err != nil {
		t.Fatal(err)
	}
	if spec, _ := c.Edition(EditionFree); spec.TrialDays != defaultTrialDays {
		t.Errorf("omitted trial_days parsed as %d, want %d", spec.TrialDays, defaultTrialDays)
	}
}

func TestMinimumEditionFor(t *testing.T) {
	t.Parallel()
	c := DefaultCatalog()
	tests := []struct {
		feature Feature
		want    Edition
		ok      bool
	}{
		{FeatureRESTAPI, EditionFree, true},
		{FeatureWebhooks, EditionEssentials, true},
		{FeatureSSO, EditionProfessional, true},
		{FeatureAuditLogs, EditionProfessional, true},
		{FeatureIPAllowlist, EditionEnterprise, true},
		{FeatureDataResidency, EditionEnterprise, true},
		{"teleportation", "", false},
	}
	for _, tt := range tests {
		got, ok := c.MinimumEditionFor(tt.feature)
		if got != tt.want || ok != tt.ok {
			t.Errorf("MinimumEditionFor(%s) = %q, %v; want %q, %v", tt.feature, got, ok, tt.want, tt.ok)
		}
	}
}

func TestEditionRankAndValidity(t *testing.T) {
	t.Parallel()
	for i, e := range Editions() {
		if e.Rank() != i || !e.Valid() {
			t.Errorf("%s: rank %d valid %v, want rank %d valid", e, e.Rank(), e.Valid(), i)
		}
	}
	if Edition("gold").Valid() || Edition("gold").Rank() != -1 {
		t.Error("unknown edition gold is valid or ranked")
	}
	if e, err := ParseEdition("enterprise"); err != nil || e != EditionEnterprise {
		t.Errorf("ParseEdition(enterprise) = %q, %v", e, err)
	}
	_, err := ParseEdition("gold")
	if de, ok := AsError(err); !ok || de.Code != CodeValidation || de.Field != "edition" || de.Rule != "known_edition" {
		t.Errorf("ParseEdition(gold) error = %v, want validation on edition/known_edition", err)
	}
}

func TestCatalogEditionReturnsACopy(t *testing.T) {
	t.Parallel()
	c := DefaultCatalog()
	spec, _ := c.Edition(EditionFree)
	spec.Features[0] = "stolen"
	spec.Limits[LimitMaxUsers] = 0
	again, _ := c.Edition(EditionFree)
	if again.Features[0] == "stolen" || again.Limits[LimitMaxUsers] == 0 {
		t.Error("changing the returned EditionSpec changed the catalog")
	}
}

// catalogWith returns the embedded catalog decoded into a generic value,
// changed by edit, and encoded again.
func catalogWith(t *testing.T, edit func(m map[string]any)) []byte {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(catalogJSON, &m); err != nil {
		t.Fatal(err)
	}
	edit(m)
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestParseCatalogRefusesBadData(t *testing.T) {
	t.Parallel()
	edition := func(m map[string]any, i int) map[string]any {
		return m["editions"].([]any)[i].(map[string]any)
	}
	tests := []struct {
		name string
		edit func(m map[string]any)
		want string
	}{
		{"no version", func(m map[string]any) { m["version"] = "" }, "version"},
		{"unknown top-level field", func(m map[string]any) { m["colour"] = "blue" }, "unknown field"},
		{"missing limit", func(m map[string]any) {
			delete(edition(m, 2)["limits"].(map[string]any), "max_users")
		}, `limit "max_users" is missing`},
		{"negative limit", func(m map[string]any) {
			edition(m, 0)["limits"].(map[string]any)["storage_gb"] = -1
		}, "storage_gb is -1"},
		{"unknown feature", func(m map[string]any) {
			edition(m, 1)["features"] = []any{"rest_api", "time_travel"}
		}, `unknown feature "time_travel"`},
		{"unknown limit", func(m map[string]any) {
			edition(m, 1)["limits"].(map[string]any)["max_moons"] = 3
		}, `unknown limit "max_moons"`},
		{"editions out of rank order", func(m map[string]any) {
			eds := m["editions"].([]any)
			eds[0], eds[1] = eds[1], eds[0]
		}, "rank order"},
		{"missing edition", func(m map[string]any) {
			m["editions"] = m["editions"].([]any)[:4]
		}, "4 editions"},
		{"retention out of bounds", func(m map[string]any) {
			edition(m, 4)["default_retention_days"] = 3000
		}, "default_retention_days 3000"},
		{"bad window", func(m map[string]any) {
			m["limits"].([]any)[0].(map[string]any)["window"] = "fortnight"
		}, "fortnight"},
		{"duplicate feature key", func(m map[string]any) {
			fs := m["features"].([]any)
			m["features"] = append(fs, fs[0])
		}, "listed twice"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := parseCatalog(catalogWith(t, tt.edit))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("parseCatalog error = %v, want one containing %q", err, tt.want)
			}
		})
	}
}

func TestPaymentGraceDaysByEdition(t *testing.T) {
	t.Parallel()
	c := DefaultCatalog()
	for e, want := range map[Edition]int{EditionFree: 7, EditionEssentials: 14, EditionProfessional: 14, EditionEnterprise: 30, EditionUnlimited: 30, "platinum": 30} {
		if got := c.PaymentGraceDays(e); got != want {
			t.Errorf("PaymentGraceDays(%q) = %d, want %d", e, got, want)
		}
	}
	bad := strings.Replace(string(catalogJSON), `"payment_grace_days": 7`, `"payment_grace_days": -1`, 1)
	if _, err := parseCatalog([]byte(bad)); err == nil || !strings.Contains(err.Error(), "payment_grace_days") {
		t.Errorf("negative grace parsed: %v", err)
	}
}
