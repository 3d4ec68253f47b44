package aggregate

import (
	"bytes"
	"encoding/json"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"
)

// Event is the payload of one thing that happened to a tenant. Each type is
// part of the wire contract: its JSON (see testdata/events/*.golden) is what the
// event store keeps, what NATS subscribers receive and what auditors replay.
// Fields tagged `personal:"true"` hold personal data (GDPR): they are masked
// in logs and shredded on purge.
type Event interface {
	EventType() string
}

// Metadata travels with every event: who did it, why, and when.
type Metadata struct {
	// OccurredAt is when the command was decided; every timestamp of the read
	// model comes from here, never from the database clock.
	OccurredAt    time.Time `json:"occurred_at"`
	CorrelationID string    `json:"correlation_id,omitempty"`
	CausationID   string    `json:"causation_id,omitempty"`
	Actor         string    `json:"actor,omitempty"`
	TraceParent   string    `json:"trace_parent,omitempty"`
	// CommandName is the command that produced the event.
	Command CommandName `json:"command,omitempty"`
	// RequestFingerprint is the hash of the request that carried an
	// Idempotency-Key (method, route, path parameters, canonical body), so a
	// retry with the same key is told apart from another request with it.
	RequestFingerprint string `json:"request_fingerprint,omitempty"`
}

// Envelope is an event with its identity and place: DESIGN.md's envelope.
type Envelope struct {
	EventID       uuid.UUID `json:"event_id"`
	Type          string    `json:"type"`
	SchemaVersion int       `json:"schema_version"`
	Stream        string    `json:"stream"`
	// Version is the event's place in its stream, from 0.
	Version    uint64    `json:"version"`
	OccurredAt time.Time `json:"occurred_at"`
	Metadata   Metadata  `json:"metadata"`
	Data       Event     `json:"data"`
}

// StreamName is the stream that holds a tenant's events.
func StreamName(id uuid.UUID) string { return "tenant-" + id.String() }

// StreamPrefix selects every tenant stream in the global feed.
const StreamPrefix = "tenant-"

// Contact is a person to reach at a tenant. Name, e-mail and phone are personal.
type Contact struct {
	Role  string `json:"role"`
	Name  string `json:"name,omitempty" personal:"true"`
	Email string `json:"email" personal:"true"`
	Phone string `json:"phone,omitempty" personal:"true"`
}

// Contact roles.
var contactRoles = []string{"primary", "billing", "technical", "security"}

// ---- the event types ----

// TenantCreated starts a tenant's stream (schema 2: edition and a contact list;
// schema 1 had "plan" and a single "contact_email", upcast on read).
type TenantCreated struct {
	TenantID            uuid.UUID         `json:"tenant_id"`
	ExternalID          string            `json:"external_id"`
	Name                string            `json:"name"`
	NormalizedName      string            `json:"normalized_name"`
	Edition             Edition           `json:"edition"`
	Region              Region            `json:"region"`
	Trial               bool              `json:"trial"`
	TrialDays           int               `json:"trial_days,omitempty"`
	Contacts            []Contact         `json:"contacts"`
	Metadata            map[string]string `json:"metadata"`
	Labels              map[string]string `json:"labels"`
	ComplianceStandards []string          `json:"compliance_standards"`
}

// ProvisioningCompleted: the tenant's resources exist; a TrialStarted or
// TenantActivated follows in the same append.
type ProvisioningCompleted struct {
	Steps []string `json:"steps,omitempty"`
}

// ProvisioningFailed terminates a tenant whose resources could not be made.
type ProvisioningFailed struct {
	Reason             string    `json:"reason"`
	DataRetentionUntil time.Time `json:"data_retention_until"`
}

// TrialStarted puts a tenant in TRIAL until EndsAt.
type TrialStarted struct {
	Days   int       `json:"days"`
	EndsAt time.Time `json:"ends_at"`
}

// TrialExtended moves the trial's end.
type TrialExtended struct {
	Days           int       `json:"days"`
	PreviousEndsAt time.Time `json:"previous_ends_at"`
	EndsAt         time.Time `json:"ends_at"`
}

// TrialConverted: the trial became a paid subscription (ACTIVE).
type TrialConverted struct{}

// TrialExpired suspends a tenant whose trial ended unconverted.
type TrialExpired struct {
	EndedAt  time.Time `json:"ended_at"`
	Severity Severity  `json:"severity"`
}

// TenantActivated makes a tenant ACTIVE (paid) from PROVISIONING or TRIAL.
type TenantActivated struct {
	From Status `json:"from"`
}

// TenantSuspended suspends a tenant.
type TenantSuspended struct {
	Reason       SuspensionReason `json:"reason"`
	Severity     Severity         `json:"severity"`
	Note         string           `json:"note,omitempty"`
	SuspendedBy  string           `json:"suspended_by,omitempty"`
	AutoResumeAt *time.Time       `json:"auto_resume_at,omitempty"`
}

// TenantResumed ends a suspension: the tenant returns to the status it was
// suspended from (To), with its trial end or its pending cancellation's
// date, which the scheduler sets the timers again from. To and the dates
// were added to schema 1 as optional fields: an event without them resumed
// to ACTIVE.
type TenantResumed struct {
	Automatic bool   `json:"automatic,omitempty"`
	Note      string `json:"note,omitempty"`
	To        Status `json:"to,omitempty"`
	// TrialEndsAt is set when resumed into TRIAL.
	TrialEndsAt *time.Time `json:"trial_ends_at,omitempty"`
	// CancellationEffectiveAt is set when resumed into PENDING_CANCELLATION.
	CancellationEffectiveAt *time.Time `json:"cancellation_effective_at,omitempty"`
}

// CancellationRequested puts a tenant in PENDING_CANCELLATION until EffectiveAt.
type CancellationRequested struct {
	EffectiveAt time.Time `json:"effective_at"`
	Reason      string    `json:"reason,omitempty"`
}

// CancellationReverted withdraws a pending cancellation: the tenant returns
// to the status the cancellation was requested from (To: TRIAL, with its
// trial end, or ACTIVE). To and TrialEndsAt were added to schema 1 as
// optional fields: an event without them returned to ACTIVE.
type CancellationReverted struct {
	To Status `json:"to,omitempty"`
	// TrialEndsAt is set when reverted into TRIAL.
	TrialEndsAt *time.Time `json:"trial_ends_at,omitempty"`
}

// CancellationCompleted terminates a tenant whose cancellation took effect.
type CancellationCompleted struct {
	DataRetentionUntil time.Time `json:"data_retention_until"`
}

// RegionMigrationStarted moves a tenant to MIGRATING.
type RegionMigrationStarted struct {
	From Region `json:"from"`
	To   Region `json:"to"`
}

// RegionMigrationCompleted moves the tenant's home to the new region.
type RegionMigrationCompleted struct {
	From Region `json:"from"`
	To   Region `json:"to"`
}

// RegionMigrationFailed suspends the tenant in its old region.
type RegionMigrationFailed struct {
	From   Region `json:"from"`
	To     Region `json:"to"`
	Reason string `json:"reason,omitempty"`
}

// RegionMigrationRolledBack returns the tenant to ACTIVE in its old region.
type RegionMigrationRolledBack struct {
	From   Region `json:"from"`
	To     Region `json:"to"`
	Reason string `json:"reason,omitempty"`
}

// TenantTerminated ends service; data is kept until DataRetentionUntil.
type TenantTerminated struct {
	Reason             string    `json:"reason,omitempty"`
	RetentionDays      int       `json:"retention_days"`
	DataRetentionUntil time.Time `json:"data_retention_until"`
}

// TenantRestored brings a terminated tenant back to ACTIVE.
type TenantRestored struct{}

// TenantPurged erases the tenant's personal data and releases its name. It
// carries no personal data itself.
type TenantPurged struct {
	NormalizedName string `json:"normalized_name"`
}

// EditionUpgraded moves a tenant to a higher edition.
type EditionUpgraded struct {
	From Edition `json:"from"`
	To   Edition `json:"to"`
}

// EditionDowngraded moves a tenant to a lower edition.
type EditionDowngraded struct {
	From Edition `json:"from"`
	To   Edition `json:"to"`
}

// TenantRenamed changes the tenant's name.
type TenantRenamed struct {
	From           string `json:"from"`
	To             string `json:"to"`
	NormalizedName string `json:"normalized_name"`
}

// ContactsUpdated replaces the tenant's contacts.
type ContactsUpdated struct {
	Contacts []Contact `json:"contacts"`
}

// MetadataUpdated replaces the tenant's free-form metadata.
type MetadataUpdated struct {
	Metadata map[string]string `json:"metadata"`
}

// LabelsUpdated replaces the tenant's labels.
type LabelsUpdated struct {
	Labels map[string]string `json:"labels"`
}

// ComplianceStandardsUpdated replaces the standards the tenant must meet.
type ComplianceStandardsUpdated struct {
	Standards []string `json:"standards"`
}

// FeatureOverrideSet turns a feature on or off regardless of the edition.
type FeatureOverrideSet struct {
	Feature Feature `json:"feature"`
	Enabled bool    `json:"enabled"`
}

// FeatureOverrideCleared returns a feature to the edition's value.
type FeatureOverrideCleared struct {
	Feature Feature `json:"feature"`
}

// LimitOverrideSet sets a limit regardless of the edition (0 = unlimited).
type LimitOverrideSet struct {
	Limit Limit `json:"limit"`
	Value int64 `json:"value"`
}

// LimitOverrideCleared returns a limit to the edition's value.
type LimitOverrideCleared struct {
	Limit Limit `json:"limit"`
}

// PolicySet sets (or replaces) one policy.
type PolicySet struct {
	Policy PolicySetting `json:"policy"`
}

// PolicyRemoved removes one policy.
type PolicyRemoved struct {
	Type PolicyType `json:"type"`
}

// BillingStatusChanged records the billing provider's view of the account.
type BillingStatusChanged struct {
	From            BillingStatus `json:"from"`
	To              BillingStatus `json:"to"`
	Provider        string        `json:"provider,omitempty"`
	ProviderEventID string        `json:"provider_event_id"`
	// ProviderOccurredAt orders the provider's events: an older one arriving
	// late is ignored.
	ProviderOccurredAt *time.Time `json:"provider_occurred_at,omitempty"`
	// OverdueAt is set when To is past_due: the end of the edition's grace
	// (from when past_due began), after which dunning suspends the tenant.
	// An optional field added to schema 1.
	OverdueAt *time.Time `json:"overdue_at,omitempty"`
}

func (TenantCreated) EventType() string              { return "TenantCreated" }
func (ProvisioningCompleted) EventType() string      { return "ProvisioningCompleted" }
func (ProvisioningFailed) EventType() string         { return "ProvisioningFailed" }
func (TrialStarted) EventType() string               { return "TrialStarted" }
func (TrialExtended) EventType() string              { return "TrialExtended" }
func (TrialConverted) EventType() string             { return "TrialConverted" }
func (TrialExpired) EventType() string               { return "TrialExpired" }
func (TenantActivated) EventType() string            { return "TenantActivated" }
func (TenantSuspended) EventType() string            { return "TenantSuspended" }
func (TenantResumed) EventType() string              { return "TenantResumed" }
func (CancellationRequested) EventType() string      { return "CancellationRequested" }
func (CancellationReverted) EventType() string       { return "CancellationReverted" }
func (CancellationCompleted) EventType() string      { return "CancellationCompleted" }
func (RegionMigrationStarted) EventType() string     { return "RegionMigrationStarted" }
func (RegionMigrationCompleted) EventType() string   { return "RegionMigrationCompleted" }
func (RegionMigrationFailed) EventType() string      { return "RegionMigrationFailed" }
func (RegionMigrationRolledBack) EventType() string  { return "RegionMigrationRolledBack" }
func (TenantTerminated) EventType() string           { return "TenantTerminated" }
func (TenantRestored) EventType() string             { return "TenantRestored" }
func (TenantPurged) EventType() string               { return "TenantPurged" }
func (EditionUpgraded) EventType() string            { return "EditionUpgraded" }
func (EditionDowngraded) EventType() string          { return "EditionDowngraded" }
func (TenantRenamed) EventType() string              { return "TenantRenamed" }
func (ContactsUpdated) EventType() string            { return "ContactsUpdated" }
func (MetadataUpdated) EventType() string            { return "MetadataUpdated" }
func (LabelsUpdated) EventType() string              { return "LabelsUpdated" }
func (ComplianceStandardsUpdated) EventType() string { return "ComplianceStandardsUpdated" }
func (FeatureOverrideSet) EventType() string         { return "FeatureOverrideSet" }
func (FeatureOverrideCleared) EventType() string     { return "FeatureOverrideCleared" }
func (LimitOverrideSet) EventType() string           { return "LimitOverrideSet" }
func (LimitOverrideCleared) EventType() string       { return "LimitOverrideCleared" }
func (PolicySet) EventType() string                  { return "PolicySet" }
func (PolicyRemoved) EventType() string              { return "PolicyRemoved" }
func (BillingStatusChanged) EventType() string       { return "BillingStatusChanged" }

// ---- the registry: type names, schema versions, upcasters ----

// Upcaster turns the JSON of one schema version into the next version's JSON.
type Upcaster func(data []byte) ([]byte, error)

type eventSpec struct {
	newEvent func() Event
	// version is the current schema version; upcasters[v] lifts version v to v+1.
	version   int
	upcasters map[int]Upcaster
}

func spec[E Event](version int, up map[int]Upcaster) eventSpec {
	return eventSpec{newEvent: func() Event { var e E; return e }, version: version, upcasters: up}
}

// registry is every event type the service reads and writes.
var registry = map[string]eventSpec{
	"TenantCreated":              spec[TenantCreated](2, map[int]Upcaster{1: upcastTenantCreatedV1}),
	"ProvisioningCompleted":      spec[ProvisioningCompleted](1, nil),
	"ProvisioningFailed":         spec[ProvisioningFailed](1, nil),
	"TrialStarted":               spec[TrialStarted](1, nil),
	"TrialExtended":              spec[TrialExtended](1, nil),
	"TrialConverted":             spec[TrialConverted](1, nil),
	"TrialExpired":               spec[TrialExpired](1, nil),
	"TenantActivated":            spec[TenantActivated](1, nil),
	"TenantSuspended":            spec[TenantSuspended](1, nil),
	"TenantResumed":              spec[TenantResumed](1, nil),
	"CancellationRequested":      spec[CancellationRequested](1, nil),
	"CancellationReverted":       spec[CancellationReverted](1, nil),
	"CancellationCompleted":      spec[CancellationCompleted](1, nil),
	"RegionMigrationStarted":     spec[RegionMigrationStarted](1, nil),
	"RegionMigrationCompleted":   spec[RegionMigrationCompleted](1, nil),
	"RegionMigrationFailed":      spec[RegionMigrationFailed](1, nil),
	"RegionMigrationRolledBack":  spec[RegionMigrationRolledBack](1, nil),
	"TenantTerminated":           spec[TenantTerminated](1, nil),
	"TenantRestored":             spec[TenantRestored](1, nil),
	"TenantPurged":               spec[TenantPurged](1, nil),
	"EditionUpgraded":            spec[EditionUpgraded](1, nil),
	"EditionDowngraded":          spec[EditionDowngraded](1, nil),
	"TenantRenamed":              spec[TenantRenamed](1, nil),
	"ContactsUpdated":            spec[ContactsUpdated](1, nil),
	"MetadataUpdated":            spec[MetadataUpdated](1, nil),
	"LabelsUpdated":              spec[LabelsUpdated](1, nil),
	"ComplianceStandardsUpdated": spec[ComplianceStandardsUpdated](1, nil),
	"FeatureOverrideSet":         spec[FeatureOverrideSet](1, nil),
	"FeatureOverrideCleared":     spec[FeatureOverrideCleared](1, nil),
	"LimitOverrideSet":           spec[LimitOverrideSet](1, nil),
	"LimitOverrideCleared":       spec[LimitOverrideCleared](1, nil),
	"PolicySet":                  spec[PolicySet](1, nil),
	"PolicyRemoved":              spec[PolicyRemoved](1, nil),
	"BillingStatusChanged":       spec[BillingStatusChanged](1, nil),
}

// EventTypes returns every event type name, sorted.
func EventTypes() []string {
	out := make([]string, 0, len(registry))
	for t := range registry {
		out = append(out, t)
	}
	slices.Sort(out)
	return out
}

// NewEvent returns the zero payload of an event type, for documentation and tests.
func NewEvent(eventType string) (Event, bool) {
	s, ok := registry[eventType]
	if !ok {
		return nil, false
	}
	return s.newEvent(), true
}

// SchemaVersion is the schema version the service writes for an event type.
func SchemaVersion(eventType string) int { return registry[eventType].version }

// EncodeEvent returns the event's JSON and its current schema version.
func EncodeEvent(e Event) (data []byte, schemaVersion int, err error) {
	s, ok := registry[e.EventType()]
	if !ok {
		return nil, 0, fmt.Errorf("encode %s: unknown event type", e.EventType())
	}
	data, err = json.Marshal(e)
	if err != nil {
		return nil, 0, fmt.Errorf("encode %s: %w", e.EventType(), err)
	}
	return data, s.version, nil
}

// DecodeEvent reads an event's JSON written at any schema version the
// registry knows, upcasting older versions to the current type.
func DecodeEvent(eventType string, schemaVersion int, data []byte) (Event, error) {
	s, ok := registry[eventType]
	if !ok {
		return nil, fmt.Errorf("decode %s: unknown event type", eventType)
	}
	if schemaVersion < 1 || schemaVersion > s.version {
		return nil, fmt.Errorf("decode %s: schema version %d not in 1..%d", eventType, schemaVersion, s.version)
	}
	for v := schemaVersion; v < s.version; v++ {
		up, ok := s.upcasters[v]
		if !ok {
			return nil, fmt.Errorf("decode %s: no upcaster from schema version %d", eventType, v)
		}
		var err error
		if data, err = up(data); err != nil {
			return nil, fmt.Errorf("decode %s: upcast from version %d: %w", eventType, v, err)
		}
	}
	ptr := reflect.New(reflect.TypeOf(s.newEvent()))
	if err := json.Unmarshal(data, ptr.Interface()); err != nil {
		return nil, fmt.Errorf("decode %s: %w", eventType, err)
	}
	return ptr.Elem().Interface().(Event), nil
}

// upcastTenantCreatedV1 lifts schema 1 ({"plan": ..., "contact_email": ...})
// to schema 2 ({"edition": ..., "contacts": [...]}).
func upcastTenantCreatedV1(data []byte) ([]byte, error) {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(data, &m); err != nil {
		return nil, err
	}
	if plan, ok := m["plan"]; ok {
		m["edition"] = plan
		delete(m, "plan")
	}
	if email, ok := m["contact_email"]; ok {
		var e string
		if err := json.Unmarshal(email, &e); err != nil {
			return nil, fmt.Errorf("contact_email: %w", err)
		}
		delete(m, "contact_email")
		if e != "" {
			contacts, err := json.Marshal([]Contact{{Role: "primary", Email: e}})
			if err != nil {
				return nil, err
			}
			m["contacts"] = contacts
		}
	}
	return json.Marshal(m)
}

// ---- personal data ----

// PersonalFields lists the JSON paths of an event type's personal fields,
// such as "contacts[].email", from the `personal:"true"` tags.
// It is read for every event the crypto-shredding store handles, so the
// paths are worked out once, from the registry, on first use.
func PersonalFields(eventType string) []string {
	return slices.Clone(personalFields()[eventType])
}

// personalFields maps every registered event type to its personal fields.
var personalFields = sync.OnceValue(func() map[string][]string {
	out := make(map[string][]string, len(registry))
	for typ, s := range registry {
		var paths []string
		collectPersonal(reflect.TypeOf(s.newEvent()), "", &paths)
		out[typ] = paths
	}
	return out
})

// HasPersonalFields reports whether an event type holds personal data,
// without copying its paths.
func HasPersonalFields(eventType string) bool { return len(personalFields()[eventType]) > 0 }

func collectPersonal(t reflect.Type, prefix string, out *[]string) {
	for t.Kind() == reflect.Pointer || t.Kind() == reflect.Slice {
		if t.Kind() == reflect.Slice {
			prefix += "[]"
		}
		t = t.Elem()
	}
	if t.Kind() != reflect.Struct {
		return
	}
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if name == "" || name == "-" {
			continue
		}
		path := name
		if prefix != "" {
			path = prefix + "." + name
		}
		if f.Tag.Get("personal") == "true" {
			*out = append(*out, path)
			continue
		}
		collectPersonal(f.Type, path, out)
	}
}

// Redacted is what a personal value reads after it has been erased or masked.
const Redacted = "[redacted]"

// RedactPersonal returns a copy of e with every personal field replaced by
// Redacted (empty fields stay empty). Logs use it; purge uses it for replays.
func RedactPersonal(e Event) Event {
	v := reflect.New(reflect.TypeOf(e)).Elem()
	v.Set(deepCopy(reflect.ValueOf(e)))
	redactValue(v)
	return v.Interface().(Event)
}

func deepCopy(v reflect.Value) reflect.Value {
	// A JSON round trip is the simplest faithful deep copy for event payloads.
	b, err := json.Marshal(v.Interface())
	if err != nil {
		return v
	}
	p := reflect.New(v.Type())
	if err := json.NewDecoder(bytes.NewReader(b)).Decode(p.Interface()); err != nil {
		return v
	}
	return p.Elem()
}

func redactValue(v reflect.Value) {
	switch v.Kind() {
	case reflect.Pointer:
		if !v.IsNil() {
			redactValue(v.Elem())
		}
	case reflect.Slice:
		for i := 0; i < v.Len(); i++ {
			redactValue(v.Index(i))
		}
	case reflect.Struct:
		t := v.Type()
		for i := 0; i < t.NumField(); i++ {
			f := t.Field(i)
			if f.Tag.Get("personal") == "true" && f.Type.Kind() == reflect.String {
				if v.Field(i).String() != "" {
					v.Field(i).SetString(Redacted)
				}
				continue
			}
			redactValue(v.Field(i))
		}
	}
}
