package aggregate

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"
)

// entitled returns the entitlements of edition e without overrides.
func entitled(e Edition) Entitlements { return DefaultCatalog().Entitlements(e, Overrides{}) }

func TestPolicyTableNamesCatalogFeatures(t *testing.T) {
	t.Parallel()
	c := DefaultCatalog()
	for _, pt := range PolicyTypes() {
		if !pt.Valid() {
			t.Errorf("%s is listed but not valid", pt)
		}
		if f := pt.RequiredFeature(); f != "" && !c.hasFeature(f) {
			t.Errorf("policy %s needs feature %s, which the catalog does not have", pt, f)
		}
	}
	want := []PolicyType{
		PolicyIPAllowlist, PolicySSOEnforcement, PolicyMFARequired, PolicySessionTimeout,
		PolicyDataResidency, PolicyAccessHours, PolicyPasswordPolicy, PolicyAuditLogRetention,
	}
	if got := PolicyTypes(); !slices.Equal(got, want) {
		t.Errorf("PolicyTypes() = %v, want %v", got, want)
	}
}

func TestValidatePolicyNormalisesSettings(t *testing.T) {
	t.Parallel()
	tests := []struct {
		typ      PolicyType
		settings string
		want     string
	}{
		{PolicyIPAllowlist, `{"cidrs": ["10.1.2.3/8", "192.168.0.1", "10.0.0.0/8", "2001:db8::1/32", "::ffff:172.16.0.0/108"]}`,
			`{"cidrs":["10.0.0.0/8","172.16.0.0/12","192.168.0.1/32","2001:db8::/32"]}`},
		{PolicySSOEnforcement, `{"provider": " Okta "}`, `{"provider":"okta"}`},
		{PolicyMFARequired, `{}`, `{}`},
		{PolicyMFARequired, ``, `{}`},
		{PolicyMFARequired, `null`, `{}`},
		{PolicySessionTimeout, `{"minutes": 30}`, `{"minutes":30}`},
		{PolicySessionTimeout, `{"minutes": 5}`, `{"minutes":5}`},
		{PolicySessionTimeout, `{"minutes": 1440}`, `{"minutes":1440}`},
		{PolicyDataResidency, `{"allowed_regions": ["eu-west-2", "eu-central-1", "eu-west-2"]}`,
			`{"allowed_regions":["eu-central-1","eu-west-2"]}`},
		{PolicyAccessHours, `{"start_hour": 22, "end_hour": 6, "days": ["Friday", "mon", "FRI"]}`,
			`{"days":["mon","fri"],"end_hour":6,"start_hour":22}`},
		{PolicyAccessHours, `{"start_hour": 0, "end_hour": 0}`, `{"end_hour":0,"start_hour":0}`},
		{PolicyPasswordPolicy, `{"min_length": 12}`, `{"min_length":12}`},
		{PolicyAuditLogRetention, `{"days": 2555}`, `{"days":2555}`},
	}
	for _, tt := range tests {
		t.Run(string(tt.typ)+" "+tt.settings, func(t *testing.T) {
			t.Parallel()
			in := PolicySetting{Type: tt.typ, Enforced: true, Settings: json.RawMessage(tt.settings)}
			got, err := ValidatePolicy(DefaultCatalog(), entitled(EditionUnlimited), in)
			if err != nil {
				t.Fatalf("ValidatePolicy: %v", err)
			}
			if string(got.Settings) != tt.want || got.Type != tt.typ || !got.Enforced {
				t.Errorf("got %s %v %s, want %s true %s", got.Type, got.Enforced, got.Settings, tt.typ, tt.want)
			}
			again, err := ValidatePolicy(DefaultCatalog(), entitled(EditionUnlimited), got)
			if err != nil || string(again.Settings) != tt.want {
				t.Errorf("normalising twice gave %s, %v; want the same bytes", again.Settings, err)
			}
		})
	}
}

func TestValidatePolicyRefusesBadSettings(t *testing.T) {
	t.Parallel()
	tests := []struct {
		typ      PolicyType
		settings string
		field    string
		rule     string
	}{
		{"firewall", `{}`, "type", "known_policy_type"},
		{PolicyMFARequired, `[]`, "settings", "object"},
		{PolicyMFARequired, `"on"`, "settings", "object"},
		{PolicyMFARequired, `{"methods": ["totp"]}`, "settings.methods", "unknown_field"},
		{PolicySessionTimeout, `{"minutes": 30, "warn": true}`, "settings.warn", "unknown_field"},
		{PolicySessionTimeout, `{}`, "settings.minutes", "required"},
		{PolicySessionTimeout, `{"minutes": null}`, "settings.minutes", "required"},
		{PolicySessionTimeout, `{"minutes": 4}`, "settings.minutes", "range"},
		{PolicySessionTimeout, `{"minutes": 1441}`, "settings.minutes", "range"},
		{PolicySessionTimeout, `{"minutes": 30.5}`, "settings.minutes", "integer"},
		{PolicySessionTimeout, `{"minutes": "30"}`, "settings.minutes", "integer"},
		{PolicyPasswordPolicy, `{"min_length": 7}`, "settings.min_length", "range"},
		{PolicyPasswordPolicy, `{"min_length": 129}`, "settings.min_length", "range"},
		{PolicyAuditLogRetention, `{"days": 0}`, "settings.days", "range"},
		{PolicyAuditLogRetention, `{"days": 2556}`, "settings.days", "range"},
		{PolicyIPAllowlist, `{"cidrs": []}`, "settings.cidrs", "min_items"},
		{PolicyIPAllowlist, `{"cidrs": ["10.0.0.0/33"]}`, "settings.cidrs", "cidr"},
		{PolicyIPAllowlist, `{"cidrs": ["example.com"]}`, "settings.cidrs", "cidr"},
		{PolicyIPAllowlist, `{"cidrs": "10.0.0.0/8"}`, "settings.cidrs", "string_list"},
		{PolicySSOEnforcement, `{}`, "settings.provider", "required"},
		{PolicySSOEnforcement, `{"provider": ""}`, "settings.provider", "pattern"},
		{PolicySSOEnforcement, `{"provider": "okta; drop"}`, "settings.provider", "pattern"},
		{PolicySSOEnforcement, `{"provider": 7}`, "settings.provider", "string"},
		{PolicyDataResidency, `{"allowed_regions": ["eu-north-9"]}`, "settings.allowed_regions", "known_region"},
		{PolicyDataResidency, `{"allowed_regions": []}`, "settings.allowed_regions", "min_items"},
		{PolicyAccessHours, `{"start_hour": 24, "end_hour": 6}`, "settings.start_hour", "range"},
		{PolicyAccessHours, `{"start_hour": 9}`, "settings.end_hour", "required"},
		{PolicyAccessHours, `{"start_hour": 9, "end_hour": -1}`, "settings.end_hour", "range"},
		{PolicyAccessHours, `{"start_hour": 9, "end_hour": 17, "days": ["funday"]}`, "settings.days", "day"},
		{PolicyAccessHours, `{"start_hour": 9, "end_hour": 17, "days": []}`, "settings.days", "min_items"},
	}
	for _, tt := range tests {
		t.Run(string(tt.typ)+" "+tt.settings, func(t *testing.T) {
			t.Parallel()
			in := PolicySetting{Type: tt.typ, Enforced: true, Settings: json.RawMessage(tt.settings)}
			_, err := ValidatePolicy(DefaultCatalog(), entitled(EditionUnlimited), in)
			de, ok := AsError(err)
			if !ok || de.Code != CodeValidation || de.Field != tt.field || de.Rule != tt.rule {
				t.Fatalf("error = %v, want validation on %s/%s", err, tt.field, tt.rule)
			}
			if de.Message == "" {
				t.Error("refusal has no message")
			}
		})
	}
}

func TestValidatePolicyRequiresTheFeature(t *testing.T) {
	t.Parallel()
	c := DefaultCatalog()
	withOverride := func(e Edition, f Feature, on bool) Entitlements {
		return c.Entitlements(e, Overrides{Features: map[Feature]bool{f: on}})
	}
	tests := []struct {
		name    string
		typ     PolicyType
		ent     Entitlements
		refused bool
		mention []string // words the refusal's message must contain
	}{
		{"ip allowlist on professional", PolicyIPAllowlist, entitled(EditionProfessional), true, []string{"ip_allowlist", "enterprise"}},
		{"ip allowlist on enterprise", PolicyIPAllowlist, entitled(EditionEnterprise), false, nil},
		{"ip allowlist switched on for professional", PolicyIPAllowlist, withOverride(EditionProfessional, FeatureIPAllowlist, true), false, nil},
		{"ip allowlist switched off for enterprise", PolicyIPAllowlist, withOverride(EditionEnterprise, FeatureIPAllowlist, false), true, []string{"ip_allowlist", "override"}},
		{"sso on essentials", PolicySSOEnforcement, entitled(EditionEssentials), true, []string{"sso", "professional"}},
		{"audit retention on free", PolicyAuditLogRetention, entitled(EditionFree), true, []string{"audit_logs", "professional"}},
		{"data residency on professional", PolicyDataResidency, entitled(EditionProfessional), true, []string{"data_residency", "enterprise"}},
		{"mfa on free", PolicyMFARequired, entitled(EditionFree), false, nil},
		{"access hours on free", PolicyAccessHours, entitled(EditionFree), false, nil},
	}
	settings := map[PolicyType]string{
		PolicyIPAllowlist:       `{"cidrs":["10.0.0.0/8"]}`,
		PolicySSOEnforcement:    `{"provider":"okta"}`,
		PolicyAuditLogRetention: `{"days":90}`,
		PolicyDataResidency:     `{"allowed_regions":["eu-west-1"]}`,
		PolicyMFARequired:       `{}`,
		PolicyAccessHours:       `{"start_hour":9,"end_hour":17}`,
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			// Bad settings too: the feature is checked first.
			p := PolicySetting{Type: tt.typ, Enforced: true, Settings: json.RawMessage(settings[tt.typ])}
			_, err := ValidatePolicy(c, tt.ent, p)
			if !tt.refused {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			de, ok := AsError(err)
			if !ok || de.Code != CodeFeatureRequired || de.Field != "type" || de.Rule != "feature_required" {
				t.Fatalf("error = %#v, want feature_required on type", err)
			}
			for _, w := range tt.mention {
				if !strings.Contains(de.Message, w) {
					t.Errorf("message %q does not mention %q", de.Message, w)
				}
			}
		})
	}
}

func TestFeatureIsCheckedBeforeSettings(t *testing.T) {
	t.Parallel()
	p := PolicySetting{Type: PolicyIPAllowlist, Settings: json.RawMessage(`{"nonsense":1}`)}
	_, err := ValidatePolicy(DefaultCatalog(), entitled(EditionFree), p)
	if !HasCode(err, CodeFeatureRequired) {
		t.Errorf("error = %v, want feature_required", err)
	}
}

func TestPolicyConflictsOnDowngrade(t *testing.T) {
	t.Parallel()
	c := DefaultCatalog()
	policies := map[PolicyType]PolicySetting{}
	for typ, s := range map[PolicyType]string{
		PolicyIPAllowlist:       `{"cidrs":["10.0.0.0/8"]}`,
		PolicyDataResidency:     `{"allowed_regions":["eu-west-1"]}`,
		PolicySSOEnforcement:    `{"provider":"okta"}`,
		PolicyAuditLogRetention: `{"days":365}`,
		PolicyMFARequired:       `{}`,
		PolicySessionTimeout:    `{"minutes":60}`,
	} {
		p, err := ValidatePolicy(c, entitled(EditionEnterprise), PolicySetting{Type: typ, Enforced: true, Settings: json.RawMessage(s)})
		if err != nil {
			t.Fatal(err)
		}
		policies[typ] = p
	}
	tests := []struct {
		name string
		ent  Entitlements
		want []string
	}{
		{"to unlimited", entitled(EditionUnlimited), nil},
		{"to enterprise", entitled(EditionEnterprise), nil},
		{"to professional", entitled(EditionProfessional), []string{
			"data_residency: requires feature data_residency",
			"ip_allowlist: requires feature ip_allowlist",
		}},
		{"to free", entitled(EditionFree), []string{
			"audit_log_retention: requires feature audit_logs",
			"data_residency: requires feature data_residency",
			"ip_allowlist: requires feature ip_allowlist",
			"sso_enforcement: requires feature sso",
		}},
		{"to professional keeping the allowlist by override",
			c.Entitlements(EditionProfessional, Overrides{Features: map[Feature]bool{FeatureIPAllowlist: true}}),
			[]string{"data_residency: requires feature data_residency"}},
		{"switching sso off on enterprise",
			c.Entitlements(EditionEnterprise, Overrides{Features: map[Feature]bool{FeatureSSO: false}}),
			[]string{"sso_enforcement: requires feature sso"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			for range 3 { // map order must not matter
				if got := PolicyConflicts(c, tt.ent, policies); !slices.Equal(got, tt.want) {
					t.Fatalf("PolicyConflicts = %q, want %q", got, tt.want)
				}
			}
		})
	}
}

func TestPolicyThatIsNotEnforcedDoesNotConflict(t *testing.T) {
	t.Parallel()
	policies := map[PolicyType]PolicySetting{
		PolicyIPAllowlist: {Type: PolicyIPAllowlist, Enforced: false, Settings: json.RawMessage(`{"cidrs":["10.0.0.0/8"]}`)},
	}
	if got := PolicyConflicts(DefaultCatalog(), entitled(EditionFree), policies); len(got) != 0 {
		t.Errorf("PolicyConflicts = %q, want none", got)
	}
}

func TestAccessHoursWindow(t *testing.T) {
	t.Parallel()
	// 2025-06-02 is a Monday.
	at := func(day, hour, minute int) time.Time { return time.Date(2025, 6, day, hour, minute, 0, 0, time.UTC) }
	office := accessHours{StartHour: 9, EndHour: 17, Days: []string{"mon", "tue", "wed", "thu", "fri"}}
	night := accessHours{StartHour: 22, EndHour: 6, Days: []string{"fri"}}
	always := accessHours{StartHour: 0, EndHour: 0}
	tests := []struct {
		name string
		w    accessHours
		t    time.Time
		open bool
		next time.Time // when closed
	}{
		{"office, monday 09:00 opens", office, at(2, 9, 0), true, time.Time{}},
		{"office, monday 16:59", office, at(2, 16, 59), true, time.Time{}},
		{"office, monday 17:00 closes", office, at(2, 17, 0), false, at(3, 9, 0)},
		{"office, monday 08:30", office, at(2, 8, 30), false, at(2, 9, 0)},
		{"office, friday evening waits for monday", office, at(6, 18, 0), false, at(9, 9, 0)},
		{"office, saturday", office, at(7, 12, 0), false, at(9, 9, 0)},
		{"overnight, friday 22:00 opens", night, at(6, 22, 0), true, time.Time{}},
		{"overnight, saturday 05:59 still open", night, at(7, 5, 59), true, time.Time{}},
		{"overnight, saturday 06:00 closed", night, at(7, 6, 0), false, at(13, 22, 0)},
		{"overnight, saturday 22:00 is not a window day", night, at(7, 23, 0), false, at(13, 22, 0)},
		{"overnight, friday 03:00 belongs to thursday", night, at(6, 3, 0), false, at(6, 22, 0)},
		{"24 hours every day", always, at(4, 3, 17), true, time.Time{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := tt.w.openAt(tt.t); got != tt.open {
				t.Fatalf("openAt(%s) = %v, want %v", tt.t, got, tt.open)
			}
			if tt.open {
				return
			}
			next, ok := tt.w.nextOpening(tt.t)
			if !ok || !next.Equal(tt.next) {
				t.Errorf("nextOpening(%s) = %s, %v; want %s", tt.t, next, ok, tt.next)
			}
		})
	}
}
