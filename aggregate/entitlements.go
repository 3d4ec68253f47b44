package aggregate

import "slices"

// Overrides are a tenant's exceptions to its edition: features switched on
// or off and limits raised or lowered, one key at a time. They survive
// edition changes, so a deal struck for one tenant is not lost on upgrade.
type Overrides struct {
	Features map[Feature]bool `json:"features,omitempty"`
	Limits   map[Limit]int64  `json:"limits,omitempty"`
}

// Entitlements are what a tenant may use: its edition's features and limits
// with its overrides applied. They list every feature and every limit of the
// catalog, so a reader never has to guess what a missing key means.
type Entitlements struct {
	Edition Edition `json:"edition"`
	// Features maps every catalog feature to whether the tenant has it.
	Features map[Feature]bool `json:"features"`
	// Limits maps every catalog limit to its value; 0 means unlimited.
	Limits map[Limit]int64 `json:"limits"`
}

// Has reports whether the entitlements include feature f.
func (e Entitlements) Has(f Feature) bool { return e.Features[f] }

// Entitlements returns edition e's features and limits with overrides o
// applied. Override keys the catalog does not know, and negative limits, are
// ignored: they were refused when set, and a catalog that later drops a key
// must not break old tenants. An unknown edition grants no feature and the
// lowest edition's limits, so a bad edition never widens access.
func (c *Catalog) Entitlements(e Edition, o Overrides) Entitlements {
	spec, ok := c.editions[e]
	if !ok {
		spec = EditionSpec{Limits: c.editions[editions[0]].Limits}
	}
	ent := Entitlements{
		Edition:  e,
		Features: make(map[Feature]bool, len(c.features)),
		Limits:   make(map[Limit]int64, len(c.limits)),
	}
	for _, f := range c.features {
		ent.Features[f] = slices.Contains(spec.Features, f)
	}
	for _, l := range c.limits {
		ent.Limits[l] = spec.Limits[l]
	}
	for f, on := range o.Features {
		if c.hasFeature(f) {
			ent.Features[f] = on
		}
	}
	for l, v := range o.Limits {
		if c.hasLimit(l) && v >= 0 {
			ent.Limits[l] = v
		}
	}
	return ent
}

// ValidateFeatureOverride checks that key names a catalog feature, for the
// set-override and clear-override commands. An unknown key is a validation
// error on field "key", rule "known_feature", listing the known features.
func (c *Catalog) ValidateFeatureOverride(key string) (Feature, error) {
	f := Feature(key)
	if !c.hasFeature(f) {
		return "", Invalid("key", "known_feature", "unknown feature %q; known features: %s", key, joinStrings(c.features))
	}
	return f, nil
}

// ValidateLimitOverride checks that key names a catalog limit and value is a
// valid limit (0 = unlimited). An unknown key is a validation error on field
// "key", rule "known_limit"; a negative value one on field "value", rule
// "non_negative".
func (c *Catalog) ValidateLimitOverride(key string, value int64) (Limit, error) {
	l := Limit(key)
	if !c.hasLimit(l) {
		return "", Invalid("key", "known_limit", "unknown limit %q; known limits: %s", key, joinStrings(c.limits))
	}
	if value < 0 {
		return "", Invalid("value", "non_negative", "limit %s must be 0 (unlimited) or more, not %d", key, value)
	}
	return l, nil
}
