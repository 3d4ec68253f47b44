package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"regexp"
	"slices"
	"strconv"
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

// nameSchema is an organization name: it must hold a visible character.
func nameSchema(desc string) schema {
	return withRule(schema{"type": "string", "description": desc, "minLength": 1, "maxLength": 200, "pattern": `\S`}, "required")
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
	p["id"] = withRule(schema{"type": "string", "format": "uuid", "pattern": uuidPattern, "description": "The tenant id to use (default: generated)."}, "uuid")
	p["name"] = nameSchema("The organization's name; unique (case, white space and Unicode forms folded).")
	p["edition"] = enumOf("The edition (plan tier).", aggregate.Editions())
	p["region"] = enumOf("Where the tenant's data lives (default: the service's DEFAULT_REGION, us-east-1 unless configured).", aggregate.Regions())
	p["trial"] = schema{"type": "boolean", "description": "Start a trial when provisioning completes (default true)."}
	p["trial_days"] = intRange("The trial's length (default: the edition's).", 0, aggregate.MaxTrialDays)
	return obj(p, "name", "edition")
}

func legacyCreateSchema() schema {
	return obj(props{
		"name":    nameSchema("The organization's name."),
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
	p["name"] = nameSchema("A new name (unique).")
	s := obj(p)
	s["minProperties"] = 1
	s["x-rule"] = "at_least_one_field"
	return s
}

func policySchema() schema {
	return obj(props{
		"enforced": schema{"type": "boolean", "description": "Enforced policies deny; others only warn (default true)."},
		"settings": schema{"type": "object", "description": "The policy type's settings: whole numbers, names and lists of names, by setting (minutes, cidrs, allowed_regions, start_hour…).",
			"additionalProperties": schema{"anyOf": []any{
				schema{"type": "integer"}, schema{"type": "string", "maxLength": 200},
				schema{"type": "array", "items": schema{"type": "string", "maxLength": 200}},
			}}},
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

// param is one query or header parameter of an operation.
type param struct {
	name, description string
	schema            schema
	required          bool
	// in is "query" (the default) or "header"; list: a comma-separated
	// array (style form, explode false).
	in   string
	list bool
}

// withRule names the rule the server reports (field rule, x-rule) when a
// value breaks the schema s, where it is not the keyword's own.
func withRule(s schema, rule string) schema {
	s["x-rule"] = rule
	return s
}

func listOf[T ~string](desc string, vals []T) param {
	return param{description: desc, list: true, schema: schema{"type": "array", "items": enumOf("", vals)}}
}

func named(name string, p param) param { p.name = name; return p }

func limitParamOf(max, def int) param {
	return param{name: "limit", description: fmt.Sprintf("Page size, 1 to %d (default %d).", max, def),
		schema: withRule(schema{"type": "integer", "minimum": 1, "maximum": max}, "range")}
}

var (
	cursorParam     = param{name: "cursor", description: "next_cursor of the previous page.", schema: schema{"type": "string", "maxLength": 2000}}
	consistentParam = param{name: "consistent_with", description: "A consistency token (X-Consistency-Token of a command's response): the read waits until the read model reached it.",
		schema: withRule(schema{"type": "string", "pattern": positionPattern, "maxLength": 64}, "consistency_token")}
)

// uuidPattern is a UUID in its usual form (the request validator does not
// check format uuid).
const uuidPattern = `^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$`

// positionPattern is a feed position as the API hands it out (commit/prepare).
const positionPattern = `^[0-9]+/[0-9]+$`

func timeParamOf(name, desc string) param {
	return param{name: name, description: desc + " (RFC 3339).", schema: withRule(schema{"type": "string", "format": "date-time"}, "date_time")}
}

func listParams() []param {
	return []param{
		named("status", listOf("Comma-separated statuses.", aggregate.Statuses())),
		named("edition", listOf("Comma-separated editions.", aggregate.Editions())),
		named("region", listOf("Comma-separated regions.", aggregate.Regions())),
		named("billing_status", listOf("Comma-separated billing statuses.", aggregate.BillingStatuses())),
		{name: "label", description: "key=value (or key alone: has the label); repeatable.", schema: schema{"type": "array", "items": schema{"type": "string", "maxLength": 500}}},
		{name: "name_prefix", description: "Names starting with this (case and white space folded).", schema: schema{"type": "string", "maxLength": 200}},
		timeParamOf("created_after", "Tenants created at or after this time"),
		timeParamOf("created_before", "Tenants created before this time"),
		{name: "sort", description: "What to sort by (default created_at).", schema: enumOf("", []string{"created_at", "updated_at", "name"})},
		{name: "order", description: "asc (default) or desc.", schema: enumOf("", []string{"asc", "desc"})},
		limitParamOf(200, 50),
		cursorParam,
		consistentParam,
	}
}

func eventParams() []param {
	return []param{
		named("type", listOf("Comma-separated event types.", aggregate.EventTypes())),
		timeParamOf("after", "Events that occurred at or after this time"),
		timeParamOf("before", "Events that occurred before this time"),
		limitParamOf(200, 50),
		cursorParam,
		consistentParam,
	}
}

// pathParamSchemas describe the path parameters, by name.
func pathParamSchemas(cat *aggregate.Catalog) map[string]param {
	keys := append(strs(cat.Features()), strs(cat.Limits())...)
	return map[string]param{
		"id":    {description: "Tenant id (UUID) or external id (ORG-XXXXXXXX); anything else answers 404.", schema: schema{"type": "string", "maxLength": 200}},
		"type":  {description: "Policy type.", schema: withRule(enumOf("", aggregate.PolicyTypes()), "known_policy_type")},
		"key":   {description: "A feature (set with enabled) or a limit (set with value) of the catalog.", schema: withRule(enumOf("", keys), "known_key")},
		"name":  {description: "Projection name.", schema: schema{"type": "string", "maxLength": 200}},
		"job":   {description: "Job id.", schema: schema{"type": "string", "maxLength": 200}},
		"event": {description: "Event id (UUID).", schema: withRule(schema{"type": "string", "format": "uuid", "pattern": uuidPattern}, "uuid")},
	}
}

// The headers the server sends, as components.
func headerComponents() schema {
	h := func(desc string, s schema) schema { return schema{"description": desc, "schema": s} }
	str := schema{"type": "string"}
	return schema{
		"X-Correlation-Id": h("The request's correlation id (the client's X-Correlation-Id, or a new one); also in problems and in the events the request wrote.", str),
		"ETag":             h("The tenant's version as a weak entity tag (W/\"3\"); send it in If-Match or If-None-Match.", schema{"type": "string", "pattern": `^W/"[0-9]+"$`}),
		"X-Consistency-Token": h("The position of the command's last event: send it on a read (header or consistent_with) to see this write.",
			schema{"type": "string", "pattern": positionPattern}),
		"Location":            h("Where the created resource is.", str),
		"Idempotent-Replayed": h("true when the answer is the first outcome of this Idempotency-Key, sent again.", schema{"type": "string", "enum": []string{"true"}}),
		"WWW-Authenticate":    h("The bearer challenge (RFC 6750): error and scope say what was wrong.", str),
		"Retry-After":         h("Seconds to wait before retrying.", schema{"type": "integer", "minimum": 0}),
		"Content-Disposition": h("attachment, with a file name for the export.", str),
	}
}

func headerRefs(names ...string) schema {
	out := schema{}
	for _, n := range names {
		out[n] = schema{"$ref": "#/components/headers/" + n}
	}
	return out
}

// buildDocument writes the OpenAPI 3.1 document of routes. The response
// schemas are derived from the routes' result types (wireSchemas).
func buildDocument(routes []route, cat *aggregate.Catalog, version string) schema {
	if version == "" {
		version = "dev"
	}
	w := newWireSchemas(cat)
	problemRef := w.ref(Problem{})
	// The problem responses are components, each named for its status and
	// meaning, so an operation refers to them instead of repeating them.
	responseComponents := schema{}
	problem := func(name, desc string, headers ...string) schema {
		responseComponents[name] = schema{"description": desc, "headers": headerRefs(append([]string{"X-Correlation-Id"}, headers...)...),
			"content": schema{"application/problem+json": schema{"schema": problemRef}}}
		return schema{"$ref": "#/components/responses/" + name}
	}
	paths := schema{}
	pathSchemas := pathParamSchemas(cat)
	tags := map[string]bool{}
	for _, r := range routes {
		tags[r.tag] = true
		item, _ := paths[r.path].(schema)
		if item == nil {
			item = schema{}
			paths[r.path] = item
		}
		var params []any
		for _, name := range pathParams(r.path) {
			p := pathSchemas[name]
			params = append(params, schema{"name": name, "in": "path", "required": true, "schema": p.schema, "description": p.description})
		}
		for _, p := range r.query {
			in := p.in
			if in == "" {
				in = "query"
			}
			ps := schema{"name": p.name, "in": in, "required": p.required, "schema": p.schema, "description": p.description}
			if p.list {
				ps["style"], ps["explode"] = "form", false
			}
			params = append(params, ps)
		}
		if r.command {
			params = append(params,
				schema{"name": "If-Match", "in": "header", "schema": withRule(schema{"type": "string", "pattern": `^(\*|(W/)?"?[0-9]+"?)$`, "maxLength": 30}, "etag"),
					"description": "Fail with 412 unless the tenant is at this version (an ETag this API returned, such as W/\"3\")."})
		}
		if r.idempotent() {
			params = append(params, schema{"name": "Idempotency-Key", "in": "header", "schema": schema{"type": "string", "maxLength": 255},
				"description": "Makes the command idempotent. The key is the caller's own (token subject and tenant binding) and is bound to the request (method, route, path parameters, canonical body): the same request with the same key answers the first outcome again (Idempotent-Replayed: true) and applies nothing twice; another request with the same key answers 422. A copy sent while the first is in flight waits for it. A refused command is not remembered. Keys do not expire."})
		}
		if r.consistent {
			params = append(params, schema{"name": "X-Consistency-Token", "in": "header", "schema": withRule(schema{"type": "string", "pattern": positionPattern, "maxLength": 64}, "consistency_token"),
				"description": "Wait (up to 2 s) until the read model has reached this token from a command's response; 503 otherwise. A token beyond the last event the store holds answers 400 at once."})
			desc := "strong (the default): the read waits (up to 2 s) until the read model holds the caller's own last write (remembered per token subject, and carried in the tenancy_last_write cookie for other replicas), so a client reads its own writes without a token. eventual: answer from the read model as it is."
			if r.operationID == "getTenant" || r.operationID == "legacyGetOrganization" {
				desc = "strong (the default): the read waits (up to 2 s) until the read model holds every change made to the tenant so far, so a client reads its own writes without a token. eventual: answer from the read model as it is."
				params = append(params, schema{"name": "If-None-Match", "in": "header", "schema": schema{"type": "string", "maxLength": 30},
					"description": "An ETag from an earlier read: 304 (no body) while the tenant is still at that version."})
			}
			params = append(params, schema{"name": "Consistency", "in": "header", "schema": schema{"type": "string", "enum": []string{"strong", "eventual"}}, "description": desc})
		}
		responses := schema{
			"400": problem("BadRequest", "The request breaks a rule: field and rule say which, errors[] lists each one (a JSON body must be valid UTF-8 and name each member once)."),
			"404": problem("NotFound", "No such tenant, projection, job or event (or no such route)."),
			"500": problem("InternalError", "Internal error (logged with the correlation id)."),
		}
		okHeaders := []string{"X-Correlation-Id"}
		if r.command {
			okHeaders = append(okHeaders, "ETag", "X-Consistency-Token")
			if r.idempotent() {
				okHeaders = append(okHeaders, "Idempotent-Replayed")
			}
			responses["412"] = problem("PreconditionFailed", "If-Match does not match the tenant's version.")
		}
		if r.status == http.StatusCreated || r.status == http.StatusAccepted {
			okHeaders = append(okHeaders, "Location")
		}
		if r.operationID == "getTenant" || r.operationID == "legacyGetOrganization" {
			okHeaders = append(okHeaders, "ETag")
			responses["304"] = schema{"description": "Not modified: the tenant is still at the version If-None-Match names.", "headers": headerRefs("X-Correlation-Id", "ETag")}
		}
		if r.operationID == "exportTenant" {
			okHeaders = append(okHeaders, "ETag", "Content-Disposition")
		}
		if r.method != http.MethodGet {
			responses["409"] = problem("Conflict", "Not allowed in the tenant's status (current_status, allowed_commands), a rule of its state, a feature its edition lacks (feature, required_edition), or a conflict (such as a rebuild already running); concurrent-modification carries Retry-After.", "Retry-After")
			responses["408"] = problem("RequestTimeout", "The request body did not arrive within the body deadline (HTTP_BODY_TIMEOUT, default 30 s).")
			responses["413"] = problem("PayloadTooLarge", "Body larger than 1 MiB, or (on EventStoreDB) events larger than the store takes in one write: field names the largest member, rule max_append_size.")
			responses["415"] = problem("UnsupportedMediaType", "The body is not application/json.")
		}
		if r.idempotent() {
			responses["422"] = problem("IdempotencyKeyReused", "Idempotency-Key reused with another request.")
		}
		switch {
		case r.tag == "health":
			responses["503"] = schema{"description": "Not ready, or a critical dependency is down (status down).", "headers": headerRefs("X-Correlation-Id"),
				"content": schema{"application/json": schema{"schema": w.ref(r.result)}}}
		case r.consistent:
			responses["503"] = problem("ReadModelBehind", "The read model did not reach the consistency token in time, or the database cannot be reached.", "Retry-After")
		default:
			responses["503"] = problem("Unavailable", "The database cannot be reached right now; retry (a command with the same Idempotency-Key).", "Retry-After")
		}
		if scope := r.scopeFor(); scope != "" {
			responses["401"] = problem("Unauthorized", "No valid bearer token.", "WWW-Authenticate")
			responses["403"] = problem("Forbidden", "The token lacks the operation's scope (see security), or is bound to one tenant and the route is not for it.", "WWW-Authenticate")
		}
		ok := schema{"description": "Success.", "headers": headerRefs(okHeaders...)}
		if r.result != nil {
			ok["content"] = schema{"application/json": schema{"schema": w.ref(r.result)}}
		}
		if r.stream {
			ok["content"] = schema{"text/event-stream": schema{"schema": schema{"type": "string",
				"description": "Server-sent events: each has id (its feed position) and data (one JSON object: event_id, type, stream, tenant_id, version, position, occurred_at, actor, correlation_id, command)."}}}
		}
		responses[fmt.Sprint(r.status)] = ok
		desc := r.description
		if desc == "" {
			desc = r.summary + "."
		}
		op := schema{"operationId": r.operationID, "summary": r.summary, "description": desc, "tags": []string{r.tag}, "responses": responses}
		if scope := r.scopeFor(); scope != "" {
			op["security"] = []any{schema{"bearer": []string{scope}}}
		} else {
			op["security"] = []any{}
		}
		if len(params) > 0 {
			op["parameters"] = params
		}
		if r.body != nil {
			op["requestBody"] = schema{"required": r.bodyRequired || r.body["required"] != nil || r.body["minProperties"] != nil,
				"content": schema{"application/json": schema{"schema": r.body}}}
		}
		item[strings.ToLower(r.method)] = op
	}
	var tagList []any
	for _, t := range slices.Sorted(maps.Keys(tags)) {
		tagList = append(tagList, schema{"name": t, "description": tagDescriptions[t]})
	}
	transitions := make([]any, 0)
	for _, t := range aggregate.Transitions() {
		transitions = append(transitions, map[string]string{"from": string(t.From), "to": string(t.To), "command": string(t.Command)})
	}
	schemas := w.components
	schemas["LifecycleTable"] = schema{"description": "The lifecycle state machine, as the server enforces it.", "const": transitions}
	return schema{
		"openapi": "3.1.0",
		"info": schema{"title": "Tenancy service", "version": version,
			"license": schema{"name": "Apache-2.0", "identifier": "Apache-2.0"},
			"contact": schema{"name": "Tenancy maintainers", "url": "https://tenancy.dev"},
			"description": "The system of record for tenant organizations: lifecycle, editions, policies and billing standing. " +
				"Every change is an event; commands answer from the tenant's event stream, reads from the read model. " +
				"Errors are RFC 9457 problem details; a method a path does not serve answers 405 (method-not-allowed). " +
				"Enum values are listed in their canonical spelling; requests may also use other letter cases (edition PROFESSIONAL, region US_EAST_1), which the server normalises. " +
				"Operators: the [console](/console/) finds tenants, shows their history and acts on them through this API."},
		"servers": []any{schema{"url": "/", "description": "The service itself (the document is served at /openapi.json)."}},
		"tags":    tagList,
		"paths":   paths,
		"components": schema{"schemas": schemas, "responses": responseComponents, "headers": headerComponents(), "securitySchemes": schema{
			"bearer": schema{"type": "http", "scheme": "bearer", "bearerFormat": "JWT",
				"description": "Scopes (claim scope, space-separated): tenancy:read, tenancy:write, tenancy:admin, each including the ones before it. A claim tenant_id binds the token to one tenant."},
		}},
		"security": []any{schema{"bearer": []string{}}},
	}
}

// tagDescriptions describe the operations' groups.
var tagDescriptions = map[string]string{
	"tenants":      "Create, read, list and change tenants.",
	"lifecycle":    "The lifecycle commands and the transitions a tenant accepts.",
	"policies":     "A tenant's policies and their evaluation.",
	"entitlements": "Editions, features, limits and overrides.",
	"audit":        "A tenant's history and export, from its event stream.",
	"legacy":       "The original service's routes, kept working.",
	"admin":        "Projection operations and the live event feed (tenancy:admin).",
	"health":       "Probes and service information.",
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
	"maxLength", "minLength", "pattern", "minProperties", "minimum", "maximum", "format", "description", "anyOf",
	"x-rule", // not a keyword: the rule the server names (withRule)
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
	if se.Schema != nil {
		if r, ok := se.Schema.Extensions["x-rule"].(string); ok {
			rule = r
		}
	}
	if field == "additionalProperties" || field == "required" {
		if m := quotedProperty.FindStringSubmatch(se.Reason); m != nil && (len(path) == 0 || path[len(path)-1] != m[1]) {
			path = append(slices.Clone(path), m[1])
		}
	}
	if len(path) == 0 {
		return "body", rule
	}
	return fieldPath(path), rule
}

// fieldPath writes a path of members and indices as every error names a
// field: contacts[0].email (the one shape, also checkJSON's).
func fieldPath(segments []string) string {
	var b strings.Builder
	for _, seg := range segments {
		if _, err := strconv.Atoi(seg); err == nil && b.Len() > 0 {
			b.WriteString("[" + seg + "]")
			continue
		}
		if b.Len() > 0 {
			b.WriteByte('.')
		}
		b.WriteString(seg)
	}
	return b.String()
}
