package httpapi

import (
	"encoding/json"
	"fmt"
	"maps"
	"reflect"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/tenancyhq/tenancy/aggregate"
	"github.com/tenancyhq/tenancy/queries"
)

// The response schemas of the document are derived, by reflection, from the
// Go types the handlers encode (a route names its result by a value of the
// type), so what the document says a body holds is what encoding/json
// writes: a member without omitempty is required, one with it optional, and
// an object names every member it may hold (additionalProperties: false).
// What reflection cannot see is added from the aggregate's vocabularies
// (enums keyed by Go type) and from fieldSchemas (a format, a pattern, the
// event payloads). The strict contract check in the tests
// (internal/contract) proves each response against the result.

// wireSchemas collects the components of the response types.
type wireSchemas struct {
	cat        *aggregate.Catalog
	overrides  map[string]schema
	components schema
	named      map[reflect.Type]string
	// enums are the string types with a closed vocabulary.
	enums map[reflect.Type][]string
}

// componentNames renames wire types whose Go name is not the API's.
var componentNames = map[reflect.Type]string{
	reflect.TypeFor[tenantView]():            "Tenant",
	reflect.TypeFor[tenantPage]():            "TenantPage",
	reflect.TypeFor[eventPage]():             "EventPage",
	reflect.TypeFor[queries.EventRecord]():   "Event",
	reflect.TypeFor[entitlementsView]():      "Entitlements",
	reflect.TypeFor[transitionsView]():       "Transitions",
	reflect.TypeFor[transitionView]():        "Transition",
	reflect.TypeFor[aggregate.Decision]():    "PolicyDecision",
	reflect.TypeFor[legacyDecision]():        "LegacyPolicyDecision",
	reflect.TypeFor[catalogView]():           "Catalog",
	reflect.TypeFor[aggregate.EditionSpec](): "EditionSpec",
	reflect.TypeFor[historyPage]():           "History",
	reflect.TypeFor[exportView]():            "Export",
	reflect.TypeFor[projectionsView]():       "Projections",
	reflect.TypeFor[failuresView]():          "ProjectionFailures",
	reflect.TypeFor[failureAction]():         "FailureAction",
	reflect.TypeFor[tenantCounts]():          "TenantCounts",
	reflect.TypeFor[healthReport]():          "Health",
	reflect.TypeFor[checkResult]():           "CheckResult",
	reflect.TypeFor[serviceInfo]():           "ServiceInfo",
	reflect.TypeFor[aggregate.Metadata]():    "EventMetadata",
	reflect.TypeFor[queries.Change]():        "Change",
}

func newWireSchemas(cat *aggregate.Catalog) *wireSchemas {
	w := &wireSchemas{cat: cat, components: schema{}, named: map[reflect.Type]string{}, enums: map[reflect.Type][]string{
		reflect.TypeFor[aggregate.Status]():           strs(aggregate.Statuses()),
		reflect.TypeFor[aggregate.Edition]():          strs(aggregate.Editions()),
		reflect.TypeFor[aggregate.Region]():           strs(aggregate.Regions()),
		reflect.TypeFor[aggregate.BillingStatus]():    strs(aggregate.BillingStatuses()),
		reflect.TypeFor[aggregate.SuspensionReason](): strs(aggregate.SuspensionReasons()),
		reflect.TypeFor[aggregate.Severity]():         strs(aggregate.Severities()),
		reflect.TypeFor[aggregate.CommandName]():      strs(append(aggregate.Commands(), aggregate.CmdCreate)),
		reflect.TypeFor[aggregate.PolicyType]():       strs(aggregate.PolicyTypes()),
		reflect.TypeFor[aggregate.Feature]():          strs(cat.Features()),
		reflect.TypeFor[aggregate.Limit]():            strs(cat.Limits()),
	}}
	w.overrides = w.fieldSchemas()
	return w
}

func strs[T ~string](vs []T) []string {
	out := make([]string, len(vs))
	for i, v := range vs {
		out[i] = string(v)
	}
	return out
}

// fieldSchemas say of a member what its Go type does not ("Type.member",
// the Go type's name and the JSON name); they replace the derived schema
// but keep its requiredness.
func (w *wireSchemas) fieldSchemas() map[string]schema {
	eventType := schema{"type": "string", "enum": aggregate.EventTypes(), "description": "The event's type."}
	return map[string]schema{
		"Tenant.external_id":          {"type": "string", "pattern": "^ORG-[0-9A-F]{8}$", "description": "The external id, ORG- and 8 hex digits; a path may use it instead of the id."},
		"Tenant.version":              {"type": "integer", "minimum": 0, "description": "The tenant stream's version; the ETag."},
		"Tenant.compliance_standards": arr(enumOf("A standard the tenant must meet.", aggregate.ComplianceStandards())),
		"Contact.role":                enumOf("What the contact is for.", []string{"primary", "billing", "technical", "security"}),
		"Contact.email":               redactable(schema{"type": "string", "format": "email", "description": "E-mail address (personal data)."}),
		"Event.type":                  eventType,
		"Event.position":              positionSchema("The event's position in the feed; a consistency token."),
		"TimelineEntry.type":          eventType,
		"PolicySetting.settings":      policySettings(),
		"LegacyPolicyDecision.required_upgrade": {"anyOf": []any{enumOf("", aggregate.Editions()), schema{"type": "null"}},
			"description": "The original's answer: the edition that lifts the denial, or null."},
		"LegacyPolicyDecision.allowed":  {"type": "boolean", "description": "The original's answer: the decision is allow or warn."},
		"LegacyPolicyDecision.decision": enumOf("deny if any rule denies, else warn if any warns, else allow.", []string{aggregate.DecisionAllow, aggregate.DecisionWarn, aggregate.DecisionDeny}),
		"PolicyDecision.decision":       enumOf("deny if any rule denies, else warn if any warns, else allow.", []string{aggregate.DecisionAllow, aggregate.DecisionWarn, aggregate.DecisionDeny}),
		"Violation.severity":            enumOf("deny or warn.", []string{aggregate.DecisionDeny, aggregate.DecisionWarn}),
		"RuleResult.outcome":            enumOf("What the rule concluded.", []string{aggregate.OutcomePass, aggregate.OutcomeWarn, aggregate.OutcomeDeny, aggregate.OutcomeSkipped}),
		"Catalog.version":               schema{"type": "string", "const": w.cat.Version(), "description": "The catalog's version."},
		"Job.state":                     enumOf("running, succeeded or failed.", []string{"running", "succeeded", "failed"}),
		"ProjectionFailure.status":      enumOf("halted, skipped, retry or resolved.", []string{"halted", "skipped", "retry", "resolved"}),
		"Health.status":                 enumOf("ok, degraded (a non-critical dependency is down) or down.", []string{"ok", "degraded", "down"}),
		"CheckResult.status":            enumOf("ok or down.", []string{"ok", "down"}),
		"Problem.type":                  schema{"type": "string", "format": "uri", "description": "The kind of error: " + ProblemBase + " and a name."},
		"Problem.status":                schema{"type": "integer", "minimum": 400, "maximum": 599, "description": "The HTTP status."},
		"Problem.allowed_commands":      arr(enumOf("", strs(append(aggregate.Commands(), aggregate.CmdCreate)))),
	}
}

// special are the members whose schema refers to other components.
func (w *wireSchemas) special(member string) schema {
	switch member {
	case "Event.data", "TimelineEntry.data":
		return w.eventData()
	case "Event.metadata":
		return w.refType(reflect.TypeFor[aggregate.Metadata]())
	case "Change.from", "Change.to":
		return w.memberValue()
	}
	return nil
}

// memberValue is the value of one of the tenant's members (a Change's from
// and to; null: it had none): any of the Tenant schema's members.
func (w *wireSchemas) memberValue() schema {
	const name = "TenantMemberValue"
	ref := schema{"$ref": "#/components/schemas/" + name}
	if _, done := w.components[name]; done {
		return ref
	}
	w.components[name] = schema{}
	seen := map[string]bool{}
	one := []any{schema{"type": "null"}}
	// A change names a member at any depth of objects ("labels.team",
	// "policies.ip_allowlist", "suspension.note"): every schema of a member
	// reachable through objects is a value it may hold.
	var walk func(s schema)
	walk = func(s schema) {
		if r, ok := s["$ref"].(string); ok {
			s = w.components[strings.TrimPrefix(r, "#/components/schemas/")].(schema)
		}
		for _, key := range []string{"properties", "patternProperties"} {
			ps, _ := s[key].(props)
			if key == "patternProperties" {
				if pp, ok := s[key].(schema); ok {
					ps = props(pp)
				}
			}
			for _, k := range slices.Sorted(maps.Keys(ps)) {
				m := ps[k].(schema)
				b, _ := json.Marshal(m)
				if !seen[string(b)] {
					seen[string(b)] = true
					one = append(one, m)
					walk(m)
				}
			}
		}
	}
	walk(w.refType(reflect.TypeFor[tenantView]()))
	w.components[name] = schema{"description": "The value of a tenant member (see Tenant), or null where it had none.", "anyOf": one}
	return ref
}

// redactable allows a personal value to read "[redacted]" once purged.
func redactable(s schema) schema {
	return schema{"anyOf": []any{s, schema{"type": "string", "const": aggregate.Redacted, "description": "The value after the tenant was purged."}}}
}

func positionSchema(desc string) schema {
	return schema{"type": "string", "description": desc}
}

// policySettings is a policy's settings: an object of numbers, names and
// lists (which ones a policy type takes is its type's business; the
// server validates them when a policy is set).
func policySettings() schema {
	return schema{"type": "object", "description": "The policy type's settings (see setPolicy).", "additionalProperties": false,
		"patternProperties": schema{"^[a-z_]+$": schema{"anyOf": []any{
			schema{"type": "integer"}, schema{"type": "string"},
			schema{"type": "array", "items": schema{"type": "string"}},
		}}}}
}

// eventData is an event's payload: one of the event types' (all of them
// are objects with named members).
func (w *wireSchemas) eventData() schema {
	const name = "EventData"
	ref := schema{"$ref": "#/components/schemas/" + name}
	if _, done := w.components[name]; done {
		return ref
	}
	w.components[name] = schema{}
	var one []any
	for _, t := range aggregate.EventTypes() {
		e, _ := aggregate.NewEvent(t)
		rt := reflect.TypeOf(e)
		if _, ok := w.named[rt]; !ok {
			w.named[rt] = t + "Data"
		}
		one = append(one, w.refType(rt))
	}
	w.components[name] = schema{"description": "An event's payload: the members of its type's (the event's type names which).", "anyOf": one}
	return ref
}

// ref returns the reference to the component of v's type.
func (w *wireSchemas) ref(v any) schema { return w.refType(reflect.TypeOf(v)) }

func (w *wireSchemas) refType(t reflect.Type) schema {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	name, ok := w.named[t]
	if !ok {
		name = componentNames[t]
		if name == "" {
			name = t.Name()
		}
		if name == "" || strings.ToLower(name[:1]) == name[:1] {
			panic(fmt.Sprintf("wire type %v needs a component name (componentNames)", t))
		}
		w.named[t] = name
	}
	if _, done := w.components[name]; !done {
		w.components[name] = schema{} // a placeholder against recursion
		w.components[name] = w.object(t, name)
	}
	return schema{"$ref": "#/components/schemas/" + name}
}

var (
	timeType = reflect.TypeFor[time.Time]()
	uuidType = reflect.TypeFor[uuid.UUID]()
	rawType  = reflect.TypeFor[json.RawMessage]()
)

// of is the schema of a value of type t.
func (w *wireSchemas) of(t reflect.Type) schema {
	switch t {
	case timeType:
		return schema{"type": "string", "format": "date-time"}
	case uuidType:
		return schema{"type": "string", "format": "uuid"}
	case rawType:
		panic("a json.RawMessage member needs a fieldSchemas entry")
	}
	if vals, ok := w.enums[t]; ok {
		return schema{"type": "string", "enum": vals}
	}
	switch t.Kind() {
	case reflect.Pointer:
		return w.of(t.Elem())
	case reflect.String:
		return schema{"type": "string"}
	case reflect.Bool:
		return schema{"type": "boolean"}
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return schema{"type": "integer"}
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return schema{"type": "integer", "minimum": 0}
	case reflect.Float32, reflect.Float64:
		return schema{"type": "number"}
	case reflect.Slice, reflect.Array:
		return schema{"type": "array", "items": w.of(t.Elem())}
	case reflect.Map:
		// A map keyed by a vocabulary (features, limits, policy types,
		// statuses) names each key; any other is a pattern of keys. Either
		// way every member is declared (strict validation flags members
		// that only additionalProperties admits).
		elem := w.of(t.Elem())
		if vals, ok := w.enums[t.Key()]; ok {
			ps := props{}
			for _, v := range vals {
				ps[v] = elem
			}
			return schema{"type": "object", "properties": ps, "additionalProperties": false}
		}
		return schema{"type": "object", "patternProperties": schema{"^.*$": elem}, "additionalProperties": false}
	case reflect.Struct:
		return w.refType(t)
	}
	panic(fmt.Sprintf("no schema for wire type %v", t))
}

// object is the schema of struct type t: its JSON members as encoding/json
// writes them (embedded structs' members promoted, the outer one winning).
func (w *wireSchemas) object(t reflect.Type, name string) schema {
	ps := props{}
	var required []string
	var walk func(t reflect.Type)
	walk = func(t reflect.Type) {
		for i := range t.NumField() {
			f := t.Field(i)
			tag := f.Tag.Get("json")
			if tag == "-" || (!f.IsExported() && !f.Anonymous) {
				continue
			}
			jname, opts, _ := strings.Cut(tag, ",")
			ft := f.Type
			for ft.Kind() == reflect.Pointer {
				ft = ft.Elem()
			}
			if f.Anonymous && jname == "" && ft.Kind() == reflect.Struct {
				defer walk(ft) // after the outer members, which shadow the promoted ones
				continue
			}
			if !f.IsExported() {
				continue
			}
			if jname == "" {
				jname = f.Name
			}
			if _, shadowed := ps[jname]; shadowed {
				continue
			}
			var s schema
			if o, ok := w.overrides[name+"."+jname]; ok {
				s = o
			} else if o := w.special(name + "." + jname); o != nil {
				s = o
			} else if f.Type.Kind() == reflect.Interface {
				panic(fmt.Sprintf("%s.%s: an interface member needs a fieldSchemas entry", name, jname))
			} else {
				s = w.of(f.Type)
				if f.Tag.Get("personal") == "true" {
					s = redactable(s)
				}
			}
			if d, ok := fieldDescriptions[name+"."+jname]; ok {
				s = withDescription(s, d)
			}
			ps[jname] = s
			if !strings.Contains(opts, "omitempty") && !strings.Contains(opts, "omitzero") {
				required = append(required, jname)
			}
		}
	}
	walk(t)
	out := schema{"type": "object", "properties": ps, "additionalProperties": false}
	if len(required) > 0 {
		out["required"] = required
	}
	if d, ok := fieldDescriptions[name]; ok {
		out["description"] = d
	}
	return out
}

// withDescription adds a description to s.
func withDescription(s schema, d string) schema {
	if _, isRef := s["$ref"]; isRef {
		return s // the component describes itself; siblings of $ref confuse some tools
	}
	out := schema{}
	for k, v := range s {
		out[k] = v
	}
	out["description"] = d
	return out
}

// fieldDescriptions document components and their members ("Type" or
// "Type.member").
var fieldDescriptions = map[string]string{
	"Tenant":                   "A tenant organization as the read model holds it, with the commands its status accepts.",
	"Tenant.id":                "The tenant id.",
	"Tenant.name":              "The organization's name; unique (case, white space and Unicode forms folded).",
	"Tenant.normalized_name":   "The name as compared for uniqueness.",
	"Tenant.status":            "The lifecycle status.",
	"Tenant.edition":           "The edition (plan tier).",
	"Tenant.region":            "Where the tenant's data lives.",
	"Tenant.billing_status":    "The billing standing.",
	"Tenant.contacts":          "The tenant's contacts (personal data: \"[redacted]\" after a purge).",
	"Tenant.metadata":          "Free-form string metadata.",
	"Tenant.labels":            "Labels (key=value) to filter tenants by.",
	"Tenant.overrides":         "Features and limits set apart from the edition's.",
	"Tenant.policies":          "The tenant's policies, by type.",
	"Tenant.trial_days":        "The trial's length, when it has one.",
	"Tenant.trial_ends_at":     "When the trial ends.",
	"Tenant.suspension":        "Why and how the tenant is suspended (while SUSPENDED).",
	"Tenant.cancellation":      "The pending cancellation (while PENDING_CANCELLATION).",
	"Tenant.migration":         "The region migration under way (while MIGRATING).",
	"Tenant.termination":       "Why and when the tenant was terminated, and how long its data is kept.",
	"Tenant.purged_at":         "When the tenant's personal data was erased.",
	"Tenant.allowed_commands":  "The commands the tenant's status accepts now.",
	"Entitlements.features":    "Every catalog feature and whether the tenant has it.",
	"Entitlements.limits":      "Every catalog limit and its value (0: unlimited).",
	"Health.version":           "The service's version.",
	"Health.checks":            "Each dependency's check, by name.",
	"Health.projections":       "Each projection's lag (on /health/dependencies).",
	"ProjectionHealth.holder":  "The replica that runs the projection now.",
	"Problem":                  "An RFC 9457 problem: type names the kind of error; field and rule (and errors[] for each one) say what to fix.",
	"Problem.field":            "The request member, parameter or header at fault, as a[0].b.",
	"Problem.rule":             "The rule it broke.",
	"Problem.errors":           "Every field that broke a rule (on every 400 validation-error).",
	"Problem.current_status":   "The tenant's status, on a refused transition.",
	"Problem.command":          "The refused command.",
	"Problem.allowed_commands": "What the tenant's status accepts, on a refused transition.",
	"Problem.conflicts":        "What the request conflicts with.",
	"Problem.feature":          "The feature the request needs, on feature-required.",
	"Problem.required_edition": "The lowest edition with that feature.",
	"Problem.correlation_id":   "The request's correlation id (X-Correlation-Id), for support.",
}
