package aggregate_test

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/tenancyhq/tenancy/aggregate"
)

// updateGolden reports the -update flag, which evaluate_test.go (an internal
// test in the same binary) defines for every golden file of the package.
func updateGolden() bool {
	f := flag.Lookup("update")
	return f != nil && f.Value.String() == "true"
}

var (
	goldenTime = time.Date(2026, 3, 1, 12, 30, 0, 0, time.UTC)
	goldenID   = uuid.MustParse("0b9e5f9a-7d3c-4a55-9c1e-2f6d8a4b1c00")
)

// sampleEvents has one value of every event type, with every field set, for
// the golden files.
func sampleEvents() []aggregate.Event {
	later := goldenTime.Add(14 * 24 * time.Hour)
	return []aggregate.Event{
		aggregate.TenantCreated{TenantID: goldenID, ExternalID: "ORG-E4900E20", Name: "Test Corp", NormalizedName: "test corp",
			Edition: "professional", Region: "us-east-1", Trial: true, TrialDays: 14,
			Contacts:            []aggregate.Contact{{Role: "primary", Name: "Ada Admin", Email: "ada@test.example", Phone: "+1 555 0100"}},
			Metadata:            map[string]string{"crm_id": "0061"},
			Labels:              map[string]string{"segment": "smb"},
			ComplianceStandards: []string{"SOC2"}},
		aggregate.ProvisioningCompleted{Steps: []string{"database", "dns"}},
		aggregate.ProvisioningFailed{Reason: "no capacity", DataRetentionUntil: later},
		aggregate.TrialStarted{Days: 14, EndsAt: later},
		aggregate.TrialExtended{Days: 7, PreviousEndsAt: later, EndsAt: later.AddDate(0, 0, 7)},
		aggregate.TrialConverted{},
		aggregate.TrialExpired{EndedAt: later, Severity: "soft"},
		aggregate.TenantActivated{From: "TRIAL"},
		aggregate.TenantSuspended{Reason: "payment_failed", Severity: "soft", Note: "card declined", SuspendedBy: "billing", AutoResumeAt: &later},
		aggregate.TenantResumed{Automatic: true, Note: "paid", To: "PENDING_CANCELLATION", TrialEndsAt: &later, CancellationEffectiveAt: &later},
		aggregate.CancellationRequested{EffectiveAt: later, Reason: "too expensive"},
		aggregate.CancellationReverted{To: "TRIAL", TrialEndsAt: &later},
		aggregate.CancellationCompleted{DataRetentionUntil: later},
		aggregate.RegionMigrationStarted{From: "us-east-1", To: "eu-west-1"},
		aggregate.RegionMigrationCompleted{From: "us-east-1", To: "eu-west-1"},
		aggregate.RegionMigrationFailed{From: "us-east-1", To: "eu-west-1", Reason: "replication lag"},
		aggregate.RegionMigrationRolledBack{From: "us-east-1", To: "eu-west-1", Reason: "customer request"},
		aggregate.TenantTerminated{Reason: "contract ended", RetentionDays: 180, DataRetentionUntil: later},
		aggregate.TenantRestored{},
		aggregate.TenantPurged{NormalizedName: "test corp"},
		aggregate.EditionUpgraded{From: "professional", To: "enterprise"},
		aggregate.EditionDowngraded{From: "enterprise", To: "essentials"},
		aggregate.TenantRenamed{From: "Test Corp", To: "Test Holdings", NormalizedName: "test holdings"},
		aggregate.ContactsUpdated{Contacts: []aggregate.Contact{{Role: "billing", Name: "Bo Biller", Email: "bo@test.example"}}},
		aggregate.MetadataUpdated{Metadata: map[string]string{"crm_id": "0062"}},
		aggregate.LabelsUpdated{Labels: map[string]string{"segment": "enterprise"}},
		aggregate.ComplianceStandardsUpdated{Standards: []string{"SOC2", "GDPR"}},
		aggregate.FeatureOverrideSet{Feature: "sso", Enabled: true},
		aggregate.FeatureOverrideCleared{Feature: "sso"},
		aggregate.LimitOverrideSet{Limit: "max_users", Value: 500},
		aggregate.LimitOverrideCleared{Limit: "max_users"},
		aggregate.PolicySet{Policy: aggregate.PolicySetting{Type: "mfa_required", Enforced: true, Settings: json.RawMessage(`{}`)}},
		aggregate.PolicyRemoved{Type: "mfa_required"},
		aggregate.BillingStatusChanged{From: "active", To: "past_due", Provider: "stripe", ProviderEventID: "evt_1Nx", ProviderOccurredAt: &goldenTime, OverdueAt: &later},
	}
}

// TestEventWireContract compares every event type's envelope JSON with its
// golden file. A failing test means the wire contract changed: if on purpose,
// bump the type's schema version, add an upcaster, and run with -update.
func TestEventWireContract(t *testing.T) {
	t.Parallel()
	seen := map[string]bool{}
	for i, e := range sampleEvents() {
		seen[e.EventType()] = true
		data, version, err := aggregate.EncodeEvent(e)
		if err != nil {
			t.Fatal(err)
		}
		env := map[string]any{
			"event_id":       uuid.NewSHA1(goldenID, []byte(e.EventType())),
			"type":           e.EventType(),
			"schema_version": version,
			"stream":         aggregate.StreamName(goldenID),
			"version":        i,
			"occurred_at":    goldenTime,
			"metadata": aggregate.Metadata{OccurredAt: goldenTime, CorrelationID: "corr-1", CausationID: "cause-1",
				Actor: "user:alice", TraceParent: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", Command: "create"},
			"data":            json.RawMessage(data),
			"personal_fields": aggregate.PersonalFields(e.EventType()),
		}
		got, err := json.MarshalIndent(env, "", "  ")
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, '\n')
		path := filepath.Join("testdata", "events", e.EventType()+".golden")
		if updateGolden() {
			if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(path, got, 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		want, err := os.ReadFile(path)
		if err != nil {
			t.Fatalf("%s: %v (run go test ./aggregate -update to create it)", e.EventType(), err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s: wire JSON changed:\n got %s\nwant %s", e.EventType(), got, want)
		}
		// And it decodes back to the same value.
		back, err := aggregate.DecodeEvent(e.EventType(), version, data)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(back, e) {
			t.Errorf("%s: round trip gave %+v, want %+v", e.EventType(), back, e)
		}
	}
	for _, typ := range aggregate.EventTypes() {
		if !seen[typ] {
			t.Errorf("event type %s has no sample and no golden file", typ)
		}
	}
}

func TestTenantCreatedV1Upcasts(t *testing.T) {
	t.Parallel()
	v1 := []byte(`{"tenant_id":"0b9e5f9a-7d3c-4a55-9c1e-2f6d8a4b1c00","external_id":"ORG-E4900E20","name":"Test Corp",
		"normalized_name":"test corp","plan":"enterprise","region":"eu-west-1","trial":false,"contact_email":"ops@test.example"}`)
	e, err := aggregate.DecodeEvent("TenantCreated", 1, v1)
	if err != nil {
		t.Fatal(err)
	}
	got := e.(aggregate.TenantCreated)
	if got.Edition != "enterprise" || len(got.Contacts) != 1 || got.Contacts[0].Email != "ops@test.example" || got.Contacts[0].Role != "primary" {
		t.Fatalf("upcast v1 = %+v", got)
	}
	if _, err := aggregate.DecodeEvent("TenantCreated", 3, v1); err == nil {
		t.Fatal("a schema version from the future decoded")
	}
	if _, err := aggregate.DecodeEvent("NoSuchEvent", 1, v1); err == nil {
		t.Fatal("an unknown event type decoded")
	}
}

func TestRedactPersonalLeavesOriginalAlone(t *testing.T) {
	t.Parallel()
	e := sampleEvents()[0].(aggregate.TenantCreated)
	r := aggregate.RedactPersonal(e).(aggregate.TenantCreated)
	if r.Contacts[0].Email != aggregate.Redacted || r.Contacts[0].Role != "primary" || r.Name != "Test Corp" {
		t.Errorf("redacted = %+v", r.Contacts[0])
	}
	if e.Contacts[0].Email != "ada@test.example" {
		t.Errorf("original changed: %+v", e.Contacts[0])
	}
}
