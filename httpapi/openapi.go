package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"slices"
	"strings"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/labstack/echo/v4"

	"github.com/tenancyhq/tenancy/aggregate"
)

// The OpenAPI 3.1 document is built from the route table and the aggregate's
// vocabularies (statuses, editions, regions, reasons, the lifecycle table), so
// it says what the server does. The same document validates every request
// (kin-openapi, JSON Schema 2020-12) before a handler runs.

type schema = map[string]any
type props = map[string]any

func ref(name string) schema { return schema{"$ref": "#/components/schemas/" + name} }

// obj is a closed object: unknown properties are refused.
func obj(p props, required ...string) schema {
	s := schema{"type": "object", "properties": p, "additionalProperties": false}
	if len(required) > 0 {
		s["required"] = required
	}
	return s
}

func str(desc string, maxLen int) schema {
	return schema{"type": "string", "description": desc, "maxLength": maxLen}
}

func arr(items schema) schema { return schema{"type": "array", "items": items} }

func dateTime(desc string) schema {
	return schema{"type": "string", "format": "date-time", "description": desc}
}

func intRange(desc string, min, max int) schema {
	return schema{"type": "integer", "minimum": min, "maximum": max, "description": desc}
}

func enumOf[T ~string](desc string, vals []T) schema {
	out := make([]string, len(vals))
	for i, v := range vals {
		out[i] = string(v)
	}
	return schema{"type": "string", "enum": out, "description": desc}
}

func stringMap(desc string) schema {
	return schema{"type": "object", "additionalProperties": schema{"type": "string", "maxLength": 500}, "description": desc}
}

func contactSchema() schema {
	return obj(props{
		"role":  enumOf("What the contact is for.", []string{"primary", "billing", "technical", "security"}),
		"name":  str("The person's name (personal data).", 200),
		"email": schema{"type": "string", "format": "email", "maxLength": 254, "description": "E-mail address (personal data)."},
		"phone": str("Phone number (personal data).", 50),
	}, "role", "email")
}

func profileProps() props {
	return props{
		"contacts":             arr(contactSchema()),
		"metadata":             stringMap("Free-form string metadata."),
		"labels":               stringMap("Labels (key=value) to filter tenants by."),
		"compliance_standards": arr(enumOf("A standard the tenant must meet.", aggregate.ComplianceStandards())),
	}
}

func createSchema() schema {
	p := profileProps()
	p["id"] = schema{"type": "string", "format": "uuid", "description": "The tenant id to use (default: generated)."}
	p["name"] = str("The organization's name; unique (case, white space and Unicode forms folded).", 200)
	p["edition"] = enumOf("The edition (plan tier).", aggregate.Editions())
	p["region"] = enumOf("Where the tenant's data lives (default: the service's DEFAULT_REGION, us-east-1 unless configured).", aggregate.Regions())
	p["trial"] = schema{"type": "boolean", "description": "Start a trial when provisioning completes (default true)."}
	p["trial_days"] = intRange("The trial's length (default: the edition's).", 0, aggregate.MaxTrialDays)
	return obj(p, "name", "edition")
}

func legacyCreateSchema() schema {
	return obj(props{
		"name":    str("The organization's name.", 200),
		"edition": enumOf("The edition.", aggregate.Editions()),
		"region":  enumOf("The region (default: the service's DEFAULT_REGION).", aggregate.Regions()),
	}, "name", "edition")
}

func legacySuspendSchema() schema {
	return obj(props{
		"reason":         enumOf("Why (default admin_action); the original service's words are mapped: billing → payment_failed, security → security_threat, abuse → abuse_detected, legal → legal_request, administrative, voluntary and scheduled → admin_action (the word is kept in the note when there is none).", legacyReasonWords()),
		"severity":       enumOf("How much the suspension shuts off.", aggregate.Severities()),
		"note":           str("A note.", 1000),
		"auto_resume_at": dateTime("When the suspension ends by itself."),
	})
}

func patchSchema() schema {
	p := profileProps()
	p["name"] = str("A new name (unique).", 200)
	return obj(p)
}

func policySchema() schema {
	return obj(props{
		"enforced": schema{"type": "boolean", "description": "Enforced policies deny; others only warn (default true)."},
		"settings": schema{"type": "object", "description": "The policy type's settings."},
	})
}

func overrideSchema() schema {
	return obj(props{
		"enabled": schema{"type": "boolean", "description": "For a feature key: on or off."},
		"value":   schema{"type": "integer", "minimum": 0, "description": "For a limit key: the limit (0 = unlimited)."},
	})
}

func evaluateSchema() schema {
	actions := make([]string, 0)
	for _, a := range aggregate.Actions() {
		actions = append(actions, a.Name)
	}
	return obj(props{
		"action":   schema{"type": "string", "enum": actions, "description": "What the tenant wants to do."},
		"resource": str("What it acts on.", 500),
		"context": obj(props{
			"region":    enumOf("Where the data would be read or written.", aggregate.Regions()),
			"source_ip": str("The caller's IP address.", 64),
			"usage":     schema{"type": "object", "additionalProperties": schema{"type": "integer", "minimum": 0}, "description": "Current usage per limit."},
			"time":      dateTime("Evaluate as of this time (default now)."),
		}),
	}, "action")
}

// legacyEvaluateSchema is evaluateSchema with any action name.
func legacyEvaluateSchema() schema {
	sc := evaluateSchema()
	sc["properties"].(props)["action"] = schema{"type": "string",
		"description": "What the organization wants to do: any name; one the catalog does not know needs no feature."}
	return sc
}

func listParams() []param {
	return []param{
		{name: "status", description: "Comma-separated statuses.", schema: schema{"type": "string"}},
		{name: "edition", description: "Comma-separated editions.", schema: schema{"type": "string"}},
		{name: "region", description: "Comma-separated regions.", schema: schema{"type": "string"}},
		{name: "billing_status", description: "Comma-separated billing statuses.", schema: schema{"type": "string"}},
		{name: "label", description: "key=value (or key alone: has the label); repeatable.", schema: schema{"type": "string"}},
		{name: "name_prefix", description: "Names starting with this (case and white space folded).", schema: schema{"type": "string", "maxLength": 200}},
		{name: "created_after", description: "RFC 3339 time.", schema: schema{"type": "string"}},
		{name: "created_before", description: "RFC 3339 time.", schema: schema{"type": "string"}},
		{name: "sort", description: "created_at (default), updated_at or name.", schema: schema{"type": "string"}},
		{name: "order", description: "asc (default) or desc.", schema: schema{"type": "string"}},
		{name: "limit", description: "Page size, 1 to 200 (default 50).", schema: schema{"type": "string"}},
		{name: "cursor", description: "next_cursor of the previous page.", schema: schema{"type": "string"}},
		{name: "consistent_with", description: "A consistency token; the read waits until the read model reached it.", schema: schema{"type": "string"}},
	}
}

func eventParams() []param {
	return []param{
		{name: "type", description: "Comma-separated event types.", schema: schema{"type": "string"}},
		{name: "after", description: "Events that occurred at or after this RFC 3339 time.", schema: schema{"type": "string"}},
		{name: "before", description: "Events that occurred before this RFC 3339 time.", schema: schema{"type": "string"}},
		{name: "limit", description: "Page size, 1 to 200 (default 50).", schema: schema{"type": "string"}},
		{name: "cursor", description: "next_cursor of the previous page.", schema: schema{"type": "string"}},
		{name: "consistent_with", description: "A consistency token.", schema: schema{"type": "string"}},
	}
}

// components are the response schemas; responses are documented, not validated.
func components(cat *aggregate.Catalog) schema {
	open := func(p props) schema { return schema{"type": "object", "properties": p} }
	transitions := make([]any, 0)
	for _, t := range aggregate.Transitions() {
		transitions = append(transitions, map[string]string{"from": string(t.From), "to": string(t.To), "command": string(t.Command)})
	}
	decision := func() props {
		return props{"decision": enumOf("", []string{"allow", "deny", "warn"}), "reason": schema{"type": "string"},
			"violations": arr(schema{"type": "object"}), "upgrade_required": schema{"type": "boolean"}, "required_edition": schema{"type": "string"},
			"retry_after_seconds": schema{"type": "integer"}, "rules": arr(schema{"type": "object"})}
	}
	legacy := decision()
	legacy["allowed"] = schema{"type": "boolean", "description": "The original's answer: decision is allow or warn."}
	legacy["required_upgrade"] = schema{"type": []string{"string", "null"}, "description": "The original's answer: the edition that lifts the denial, or null."}
	return schema{
		"Tenant": open(props{
			"id":                   schema{"type": "string", "format": "uuid"},
			"external_id":          schema{"type": "string", "pattern": "^ORG-[0-9A-F]{8}$"},
			"name":                 schema{"type": "string"},
			"normalized_name":      schema{"type": "string"},
			"status":               enumOf("The lifecycle status.", aggregate.Statuses()),
			"edition":              enumOf("The edition.", aggregate.Editions()),
			"region":               enumOf("The region.", aggregate.Regions()),
			"billing_status":       enumOf("The billing standing.", aggregate.BillingStatuses()),
			"contacts":             arr(contactSchema()),
			"metadata":             stringMap(""),
			"labels":               stringMap(""),
			"compliance_standards": arr(schema{"type": "string"}),
			"overrides":            schema{"type": "object"},
			"policies":             schema{"type": "object"},
			"trial_days":           schema{"type": "integer"},
			"trial_ends_at":        dateTime(""),
			"suspension":           schema{"type": "object"},
			"cancellation":         schema{"type": "object"},
			"migration":            schema{"type": "object"},
			"termination":          schema{"type": "object"},
			"created_at":           dateTime(""),
			"updated_at":           dateTime(""),
			"purged_at":            dateTime(""),
			"version":              schema{"type": "integer", "description": "The tenant stream's version; the ETag."},
			"allowed_commands":     arr(enumOf("", append(aggregate.Commands(), aggregate.CmdCreate))),
		}),
		"TenantPage": open(props{"items": arr(ref("Tenant")), "next_cursor": schema{"type": "string"}}),
		"EventPage": open(props{"items": arr(open(props{
			"event_id": schema{"type": "string", "format": "uuid"}, "type": enumOf("", aggregate.EventTypes()),
			"schema_version": schema{"type": "integer"}, "version": schema{"type": "integer"}, "occurred_at": dateTime(""),
			"position": schema{"type": "string"}, "data": schema{"type": "object"}, "metadata": schema{"type": "object"},
		})), "next_cursor": schema{"type": "string"}}),
		"Entitlements": open(props{"edition": enumOf("", aggregate.Editions()), "features": schema{"type": "object"}, "limits": schema{"type": "object"}, "overrides": schema{"type": "object"}}),
		"Transitions": open(props{"status": enumOf("", aggregate.Statuses()), "allowed_commands": arr(schema{"type": "string"}),
			"transitions": arr(open(props{"command": schema{"type": "string"}, "to": schema{"type": "string"}}))}),
		"PolicyDecision":       open(decision()),
		"LegacyPolicyDecision": open(legacy),
		"Catalog":              open(props{"version": schema{"type": "string", "const": cat.Version()}, "editions": arr(schema{"type": "object"})}),
		"History": open(props{"tenant_id": schema{"type": "string", "format": "uuid"}, "redacted": schema{"type": "boolean"},
			"items": arr(open(props{"version": schema{"type": "integer"}, "occurred_at": dateTime(""), "type": enumOf("", aggregate.EventTypes()),
				"event_id": schema{"type": "string"}, "actor": schema{"type": "string"}, "correlation_id": schema{"type": "string"},
				"command": schema{"type": "string"}, "data": schema{"type": "object"}, "changes": arr(schema{"type": "object"})})),
			"next_cursor": schema{"type": "string"}}),
		"Export": open(props{"generated_at": dateTime(""), "tenant": ref("Tenant"), "events": arr(schema{"type": "object"}), "redacted": schema{"type": "boolean"}}),
		"Projections": open(props{"projections": arr(open(props{"name": schema{"type": "string"}, "state": schema{"type": "string"},
			"position": schema{"type": "string"}, "head": schema{"type": "string"}, "lag_events": schema{"type": "integer"},
			"lag_seconds": schema{"type": "number"}, "failures": schema{"type": "integer"}, "holder": schema{"type": "string"},
			"last_error": schema{"type": "string"}}))}),
		"ProjectionFailures": open(props{"projection": schema{"type": "string"}, "failures": arr(open(props{
			"event_id": schema{"type": "string", "format": "uuid"}, "position": schema{"type": "string"}, "stream": schema{"type": "string"},
			"event_type": schema{"type": "string"}, "error": schema{"type": "string"}, "attempts": schema{"type": "integer"},
			"first_failed_at": dateTime(""), "last_failed_at": dateTime(""),
			"status": enumOf("", []string{"halted", "skipped", "retry", "resolved"})}))}),
		"FailureAction": open(props{"projection": schema{"type": "string"}, "skipped": schema{"type": "string", "format": "uuid"},
			"retried": schema{"type": "integer", "description": "How many halted failures were sent back for another try."}}),
		"TenantCounts": open(props{"total": schema{"type": "integer"},
			"by_status":             schema{"type": "object", "additionalProperties": schema{"type": "integer"}},
			"by_edition":            schema{"type": "object", "additionalProperties": schema{"type": "integer"}},
			"by_status_and_edition": schema{"type": "object", "additionalProperties": schema{"type": "object", "additionalProperties": schema{"type": "integer"}}}}),
		"Job": open(props{"id": schema{"type": "string"}, "kind": schema{"type": "string"}, "projection": schema{"type": "string"},
			"state": enumOf("", []string{"running", "succeeded", "failed"}), "phase": schema{"type": "string"}, "processed": schema{"type": "integer"},
			"total": schema{"type": "integer"}, "percent": schema{"type": "number"}, "events_per_second": schema{"type": "number"},
			"eta_seconds": schema{"type": "number"}, "error": schema{"type": "string"}, "started_at": dateTime(""), "finished_at": dateTime("")}),
		"Health": open(props{"status": enumOf("", []string{"ok", "degraded", "down"}), "checks": schema{"type": "object"},
			"replica": open(props{"status": enumOf("", []string{"ok", "paused", "down"}), "standby": schema{"type": "boolean"},
				"replay_paused": schema{"type": "boolean"},
				"lag_bytes":     schema{"type": "integer", "description": "The primary's WAL the read replica (DATABASE_READ_URL) has not replayed yet."},
				"lag_seconds":   schema{"type": "number", "description": "While behind, how long ago the replica replayed its last transaction."},
				"error":         schema{"type": "string"}})}),
		"ServiceInfo": open(props{"service": schema{"type": "string"}, "version": schema{"type": "string"},
			"links": schema{"type": "object", "additionalProperties": schema{"type": "string"}}}),
		"Problem": open(props{
			"type": schema{"type": "string", "format": "uri"}, "title": schema{"type": "string"}, "status": schema{"type": "integer"},
			"detail": schema{"type": "string"}, "instance": schema{"type": "string"}, "field": schema{"type": "string"}, "rule": schema{"type": "string"},
			"errors": arr(schema{"type": "object"}), "current_status": enumOf("", aggregate.Statuses()), "command": schema{"type": "string"},
			"allowed_commands": arr(schema{"type": "string"}), "conflicts": arr(schema{"type": "string"}), "correlation_id": schema{"type": "string"},
		}),
		"LifecycleTable": schema{"description": "The lifecycle state machine, as the server enforces it.", "const": transitions},
	}
}

// buildDocument writes the OpenAPI 3.1 document of routes.
func buildDocument(routes []route, cat *aggregate.Catalog, version string) schema {
	if version == "" {
		version = "dev"
	}
	problem := func(desc string) schema {
		return schema{"description": desc, "content": schema{"application/problem+json": schema{"schema": ref("Problem")}}}
	}
	paths := schema{}
	for _, r := range routes {
		item, _ := paths[r.path].(schema)
		if item == nil {
			item = schema{}
			paths[r.path] = item
		}
		var params []any
		for _, name := range pathParams(r.path) {
			params = append(params, schema{"name": name, "in": "path", "required": true, "schema": schema{"type": "string", "maxLength": 200},
				"description": map[string]string{"id": "Tenant id (UUID) or external id (ORG-XXXXXXXX).", "type": "Policy type.", "key": "Feature or limit key.",
					"name": "Projection name.", "job": "Job id.", "event": "Event id (UUID)."}[name]})
		}
		for _, p := range r.query {
			params = append(params, schema{"name": p.name, "in": "query", "required": p.required, "schema": p.schema, "description": p.description})
		}
		if r.command {
			params = append(params,
				schema{"name": "If-Match", "in": "header", "schema": schema{"type": "string"}, "description": "Fail with 412 unless the tenant is at this version (an ETag)."},
				schema{"name": "Idempotency-Key", "in": "header", "schema": schema{"type": "string", "maxLength": 255},
					"description": "Makes the command idempotent. The key is the caller's own (token subject and tenant binding) and is bound to the request (method, route, path parameters, canonical body): the same request with the same key answers the first outcome again (Idempotent-Replayed: true) and applies nothing twice; another request with the same key answers 422. A copy sent while the first is in flight waits for it. A refused command is not remembered. Keys do not expire."})
		}
		if r.consistent {
			params = append(params, schema{"name": "X-Consistency-Token", "in": "header", "schema": schema{"type": "string"},
				"description": "Wait (up to 2 s) until the read model has reached this token from a command's response; 503 otherwise. A token beyond the last event the store holds answers 400 at once."})
			desc := "strong (the default): the read waits (up to 2 s) until the read model holds the caller's own last write (remembered per token subject, and carried in the tenancy_last_write cookie for other replicas), so a client reads its own writes without a token. eventual: answer from the read model as it is."
			if r.operationID == "getTenant" || r.operationID == "legacyGetOrganization" {
				desc = "strong (the default): the read waits (up to 2 s) until the read model holds every change made to the tenant so far, so a client reads its own writes without a token. eventual: answer from the read model as it is."
			}
			params = append(params, schema{"name": "Consistency", "in": "header", "schema": schema{"type": "string", "enum": []string{"strong", "eventual"}}, "description": desc})
		}
		responses := schema{
			"400": problem("The request breaks a rule; field and rule say which (a JSON body must be valid UTF-8 and name each member once)."),
			"404": problem("No such tenant."),
			"500": problem("Internal error."),
		}
		ok := schema{"description": "Success."}
		if r.result != "" {
			ok["content"] = schema{"application/json": schema{"schema": ref(r.result)}}
		}
		if r.stream {
			ok["content"] = schema{"text/event-stream": schema{"schema": schema{"type": "string",
				"description": "Server-sent events: each has id (its feed position) and data (one JSON object: event_id, type, stream, tenant_id, version, position, occurred_at, actor, correlation_id, command)."}}}
		}
		if r.command {
			ok["headers"] = schema{
				"ETag":                schema{"schema": schema{"type": "string"}, "description": "The tenant's new version."},
				"X-Consistency-Token": schema{"schema": schema{"type": "string"}, "description": "Send on a read to see this write."},
			}
			responses["409"] = problem("Not allowed in the tenant's status (current_status, allowed_commands), a rule of its state, or a conflict.")
			responses["412"] = problem("If-Match does not match the tenant's version.")
			responses["413"] = problem("Body larger than 1 MiB, or (on EventStoreDB) events larger than the store takes in one write: field names the largest member, rule max_append_size.")
			responses["422"] = problem("Idempotency-Key reused with another request.")
		}
		if r.consistent {
			responses["503"] = problem("The read model did not reach the consistency token in time, or the database cannot be reached (Retry-After).")
		} else if r.tag != "health" {
			responses["503"] = problem("The database cannot be reached right now (Retry-After); retry, a command with the same Idempotency-Key.")
		}
		if r.method != http.MethodGet {
			responses["408"] = problem("The request body did not arrive within the body deadline (HTTP_BODY_TIMEOUT, default 30 s).")
		}
		if scope := r.scopeFor(); scope != "" {
			responses["401"] = problem("No valid bearer token.")
			responses["403"] = problem("The token lacks the scope " + scope + " (or is bound to one tenant and the route is not for it).")
		}
		responses[fmt.Sprint(r.status)] = ok
		op := schema{"operationId": r.operationID, "summary": r.summary, "tags": []string{r.tag}, "responses": responses}
		if scope := r.scopeFor(); scope != "" {
			op["security"] = []any{schema{"bearer": []string{scope}}}
		} else {
			op["security"] = []any{}
		}
		if r.description != "" {
			op["description"] = r.description
		}
		if len(params) > 0 {
			op["parameters"] = params
		}
		if r.body != nil {
			op["requestBody"] = schema{"required": r.bodyRequired, "content": schema{"application/json": schema{"schema": r.body}}}
		}
		item[strings.ToLower(r.method)] = op
	}
	return schema{
		"openapi": "3.1.0",
		"info": schema{"title": "Tenancy service", "version": version,
			"description": "The system of record for tenant organizations: lifecycle, editions, policies and billing standing. " +
				"Every change is an event; commands answer from the tenant's event stream, reads from the read model. " +
				"Errors are RFC 9457 problem details. " +
				"Operators: the [console](/console/) finds tenants, shows their history and acts on them through this API."},
		"paths": paths,
		"components": schema{"schemas": components(cat), "securitySchemes": schema{
			"bearer": schema{"type": "http", "scheme": "bearer", "bearerFormat": "JWT",
				"description": "Scopes (claim scope, space-separated): tenancy:read, tenancy:write, tenancy:admin, each including the ones before it. A claim tenant_id binds the token to one tenant."},
		}},
		"security": []any{schema{"bearer": []string{}}},
	}
}

var pathParamPattern = regexp.MustCompile(`\{([a-z_]+)\}`)

func pathParams(p string) []string {
	var out []string
	for _, m := range pathParamPattern.FindAllStringSubmatch(p, -1) {
		out = append(out, m[1])
	}
	return out
}

// openAPI holds the loaded document and the routes' operations for validation.
type openAPI struct {
	json []byte
	doc  *openapi3.T
	ops  map[string]*routers.Route // "METHOD echoPath" -> route
}

func newOpenAPI(doc schema) (*openAPI, error) {
	b, err := json.Marshal(doc)
	if err != nil {
		return nil, err
	}
	loaded, err := openapi3.NewLoader().LoadFromData(b)
	if err != nil {
		return nil, err
	}
	if err := loaded.Validate(context.Background()); err != nil {
		return nil, fmt.Errorf("invalid document: %w", err)
	}
	oa := &openAPI{json: b, doc: loaded, ops: map[string]*routers.Route{}}
	// Requests are validated against the same schemas, read as OpenAPI 3.0:
	// for a 3.1 document kin-openapi compiles a JSON Schema 2020-12 validator
	// on every call (for the body and each parameter), which cost a command
	// request about a fifth of its CPU. The request schemas use only
	// keywords that mean the same in both (requestKeywords; a test holds
	// them to it), so the answer is the same.
	asOpenAPI30 := *loaded
	asOpenAPI30.OpenAPI = "3.0.3"
	for path, item := range loaded.Paths.Map() {
		for method, op := range item.Operations() {
			// The server authenticates itself (authenticate): checking the
			// document's security requirements again, with a no-op, only
			// cost each request allocations.
			unsecured := *op
			unsecured.Security = &openapi3.SecurityRequirements{}
			oa.ops[method+" "+echoPath(path)] = &routers.Route{Spec: &asOpenAPI30, Path: path, PathItem: item, Method: method, Operation: &unsecured}
		}
	}
	return oa, nil
}

// requestKeywords are the JSON Schema keywords request schemas may use: the
// ones whose meaning OpenAPI 3.0 and JSON Schema 2020-12 share.
var requestKeywords = []string{
	"type", "properties", "additionalProperties", "required", "items", "enum",
	"maxLength", "minimum", "maximum", "format", "description",
}

// validate checks the request against its operation in the document.
func (oa *openAPI) validate(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		rt, ok := oa.ops[c.Request().Method+" "+c.Path()]
		if !ok {
			return next(c)
		}
		params := map[string]string{}
		for i, n := range c.ParamNames() {
			params[n] = c.ParamValues()[i]
		}
		check := func() error {
			return openapi3filter.ValidateRequest(c.Request().Context(), &openapi3filter.RequestValidationInput{
				Request: c.Request(), PathParams: params, Route: rt,
				Options: &openapi3filter.Options{AuthenticationFunc: openapi3filter.NoopAuthenticationFunc, MultiError: true},
			})
		}
		err := check()
		if err != nil && canonicalizeRequest(c.Request(), rt.Operation) {
			// An enumeration spelt another way (see canonicalizeRequest):
			// the request now holds the canonical spelling.
			err = check()
		}
		if err != nil {
			// Reading the body can fail on the body limit (a chunked body
			// over 1 MiB): that is a 413, not a schema error.
			var he *echo.HTTPError
			if errors.As(err, &he) {
				return he
			}
			return validationProblem(err)
		}
		return next(c)
	}
}

// validationProblem turns kin-openapi's errors into one problem naming every
// field and rule. Only the leaf schema errors are used: their messages carry
// the rule, never the schema or the offending value (which may be personal).
func validationProblem(err error) error {
	var fields []FieldError
	collectFieldErrors(err, "", &fields)
	if len(fields) == 0 {
		fields = []FieldError{{Field: "request", Rule: "invalid", Message: "The request does not match the API document."}}
	}
	slices.SortStableFunc(fields, func(a, b FieldError) int { return strings.Compare(a.Field, b.Field) })
	fields = slices.CompactFunc(fields, func(a, b FieldError) bool { return a == b })
	first := fields[0]
	if first.Rule == "media_type" {
		return newProblem(http.StatusUnsupportedMediaType, typeMediaType, "Unsupported media type", first.Message)
	}
	p := invalidField(first.Field, first.Rule, first.Message)
	p.Errors = fields
	if len(fields) > 1 {
		p.Detail = fmt.Sprintf("%d fields break the API's rules: %s; see errors.", len(fields), joinFields(fields))
	}
	return p
}

func joinFields(fs []FieldError) string {
	names := make([]string, len(fs))
	for i, f := range fs {
		names[i] = f.Field + " (" + f.Rule + ")"
	}
	return strings.Join(names, ", ")
}

// collectFieldErrors walks kin-openapi's error tree down to its leaves.
// param names the query or header parameter the errors belong to.
func collectFieldErrors(err error, param string, out *[]FieldError) {
	var me openapi3.MultiError
	if m, ok := err.(openapi3.MultiError); ok {
		me = m
		for _, e := range me {
			collectFieldErrors(e, param, out)
		}
		return
	}
	var re *openapi3filter.RequestError
	if errors.As(err, &re) && err == error(re) {
		// kin-openapi reports a body of another media type with a Reason and
		// no Err; only its Reason is matched, as the Error of a schema error
		// may quote the client's value.
		switch {
		case re.RequestBody != nil && strings.HasPrefix(re.Reason, "header Content-Type"):
			*out = append(*out, FieldError{Field: "Content-Type", Rule: "media_type", Message: "Send the body as application/json."})
			return
		case re.RequestBody != nil && errors.Is(re.Err, openapi3filter.ErrInvalidRequired):
			*out = append(*out, FieldError{Field: "body", Rule: "required", Message: "A JSON body is required."})
			return
		case re.RequestBody != nil && errors.As(re.Err, new(*openapi3filter.ParseError)):
			*out = append(*out, FieldError{Field: "body", Rule: "json_syntax", Message: "The body is not valid JSON."})
			return
		}
		if re.Parameter != nil {
			param = re.Parameter.Name
		}
		n := len(*out)
		if re.Err != nil {
			collectFieldErrors(re.Err, param, out)
		}
		if len(*out) == n {
			field := param
			if field == "" {
				field = "body"
			}
			*out = append(*out, FieldError{Field: field, Rule: "invalid", Message: "The value does not match the API document."})
		}
		return
	}
	var se *openapi3.SchemaError
	if errors.As(err, &se) {
		if inner := errors.Unwrap(se); inner != nil {
			var nested openapi3.MultiError
			if errors.As(inner, &nested) {
				collectFieldErrors(nested, param, out)
				return
			}
		}
		field, rule := schemaField(se)
		if param != "" {
			field = param
		}
		*out = append(*out, FieldError{Field: field, Rule: rule, Message: cleanReason(se.Reason)})
		return
	}
	if u := errors.Unwrap(err); u != nil {
		collectFieldErrors(u, param, out)
	}
}

// cleanReason keeps the rule's sentence of a schema error ("value must be
// one of …"), dropping kin-openapi's location prefixes.
func cleanReason(r string) string {
	if i := strings.LastIndex(r, "': "); i >= 0 {
		r = r[i+3:]
	}
	if i := strings.Index(r, "\n"); i >= 0 {
		r = r[:i]
	}
	if r == "" {
		return "The value does not match the API document."
	}
	return strings.ToUpper(r[:1]) + r[1:] + "."
}

var quotedProperty = regexp.MustCompile(`propert(?:y|ies) ['"]([^'"]+)['"]`)

// schemaField names the JSON field and our rule name of a schema error.
func schemaField(se *openapi3.SchemaError) (string, string) {
	path := se.JSONPointer()
	field := se.SchemaField
	// The 3.0 validator reports a property additionalProperties: false
	// refuses under "properties".
	if field == "properties" && strings.HasSuffix(se.Reason, "is unsupported") {
		field = "additionalProperties"
	}
	rule := map[string]string{
		"additionalProperties": "unknown_field", "required": "required", "enum": "enum", "type": "type",
		"maxLength": "max_length", "minLength": "min_length", "minimum": "range", "maximum": "range",
		"format": "format", "pattern": "format", "maxItems": "max_items", "const": "const",
	}[field]
	if rule == "" {
		rule = field
	}
	if field == "additionalProperties" || field == "required" {
		if m := quotedProperty.FindStringSubmatch(se.Reason); m != nil && (len(path) == 0 || path[len(path)-1] != m[1]) {
			path = append(slices.Clone(path), m[1])
		}
	}
	if len(path) == 0 {
		return "body", rule
	}
	return strings.Join(path, "."), rule
}
