package httpapi_test

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"

	"github.com/tenancyhq/tenancy/aggregate"
	"github.com/tenancyhq/tenancy/httpapi"
)

// served are the routes that serve the document itself, not operations in it.
var served = []string{"GET /openapi.json", "GET /docs", "GET /docs/*"}

// TestOpenAPIDocumentMatchesTheRoutesAndTheAggregate is the drift test: the
// document the service serves has exactly the routes Echo serves, loads and
// validates with kin-openapi, and its vocabularies and lifecycle table are
// the aggregate's.
func TestOpenAPIDocumentMatchesTheRoutesAndTheAggregate(t *testing.T) {
	t.Parallel()
	s := startService(t)
	r := s.must(200, "GET", "/openapi.json", nil)
	if ct := r.header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Errorf("Content-Type %q", ct)
	}

	doc, err := openapi3.NewLoader().LoadFromData(r.body)
	if err != nil {
		t.Fatalf("load /openapi.json: %v", err)
	}
	if err := doc.Validate(context.Background()); err != nil {
		t.Fatalf("validate /openapi.json: %v", err)
	}
	if doc.OpenAPI != "3.1.0" {
		t.Errorf("openapi %q", doc.OpenAPI)
	}

	// Every route is an operation and every operation a route.
	var ops []string
	for path, item := range doc.Paths.Map() {
		for method, op := range item.Operations() {
			ops = append(ops, method+" "+path)
			if op.OperationID == "" || op.Summary == "" {
				t.Errorf("%s %s: no operationId or summary", method, path)
			}
		}
	}
	slices.Sort(ops)
	// The routes Echo serves, from a server built like the service's (the
	// service's handler wraps it beside /metrics).
	api, err := httpapi.New(httpapi.Deps{}, httpapi.Options{})
	if err != nil {
		t.Fatal(err)
	}
	var routes []string
	for _, rt := range api.Routes() {
		if !slices.Contains(served, rt) {
			routes = append(routes, rt)
		}
	}
	for _, rt := range routes {
		if _, found := slices.BinarySearch(ops, rt); !found {
			t.Errorf("route %s is not in /openapi.json", rt)
		}
	}
	for _, op := range ops {
		if !slices.Contains(routes, op) {
			t.Errorf("operation %s is not a route", op)
		}
	}
	if len(ops) < 40 {
		t.Errorf("only %d operations", len(ops))
	}

	// Every enum that holds a status, an edition or a region holds exactly
	// the aggregate's list, in its order.
	var raw map[string]any
	if err := json.Unmarshal(r.body, &raw); err != nil {
		t.Fatal(err)
	}
	vocabularies := []struct {
		name string
		want []string
	}{
		{"statuses", strs(aggregate.Statuses())},
		{"editions", strs(aggregate.Editions())},
		{"regions", strs(aggregate.Regions())},
	}
	found := map[string]int{}
	walkEnums(raw, "#", func(at string, enum []string) {
		for _, v := range vocabularies {
			if slices.ContainsFunc(enum, func(e string) bool { return slices.Contains(v.want, e) }) {
				found[v.name]++
				if !slices.Equal(enum, v.want) {
					t.Errorf("%s: enum %v, want the %s %v", at, enum, v.name, v.want)
				}
			}
		}
	})
	// Where they must appear at least.
	for name, min := range map[string]int{"statuses": 3, "editions": 5, "regions": 5} {
		if found[name] < min {
			t.Errorf("%d enums of %s, want at least %d", found[name], name, min)
		}
	}
	props := func(schema string) map[string]any {
		return raw["components"].(map[string]any)["schemas"].(map[string]any)[schema].(map[string]any)["properties"].(map[string]any)
	}
	for _, f := range []struct {
		schema, prop string
		want         []string
	}{
		{"Tenant", "status", strs(aggregate.Statuses())},
		{"Tenant", "edition", strs(aggregate.Editions())},
		{"Tenant", "region", strs(aggregate.Regions())},
		{"Problem", "current_status", strs(aggregate.Statuses())},
	} {
		if got := anyStrs(props(f.schema)[f.prop].(map[string]any)["enum"]); !slices.Equal(got, f.want) {
			t.Errorf("%s.%s enum %v, want %v", f.schema, f.prop, got, f.want)
		}
	}

	// The lifecycle table is the aggregate's.
	table := raw["components"].(map[string]any)["schemas"].(map[string]any)["LifecycleTable"].(map[string]any)["const"].([]any)
	var got, want []string
	for _, row := range table {
		m := row.(map[string]any)
		got = append(got, fmt.Sprintf("%v -%v-> %v", m["from"], m["command"], m["to"]))
	}
	for _, tr := range aggregate.Transitions() {
		want = append(want, fmt.Sprintf("%s -%s-> %s", tr.From, tr.Command, tr.To))
	}
	if !slices.Equal(got, want) {
		t.Errorf("LifecycleTable:\n got %v\nwant %v", got, want)
	}
}

// TestDocsServeHTML: /docs leads to an HTML page that loads /openapi.json.
func TestDocsServeHTML(t *testing.T) {
	t.Parallel()
	s := startService(t)
	r := s.must(200, "GET", "/docs", nil) // the client follows the redirect to /docs/
	if ct := r.header.Get("Content-Type"); !strings.HasPrefix(ct, "text/html") {
		t.Errorf("/docs Content-Type %q", ct)
	}
	if !strings.Contains(strings.ToLower(string(r.body)), "<html") || !strings.Contains(string(r.body), "openapi.json") {
		t.Errorf("/docs is not an HTML page pointing at /openapi.json:\n%.500s", r.body)
	}
	var v any
	if err := json.Unmarshal(s.must(200, "GET", "/openapi.json", nil).body, &v); err != nil {
		t.Errorf("/openapi.json is not JSON: %v", err)
	}
}

func walkEnums(v any, at string, fn func(at string, enum []string)) {
	switch x := v.(type) {
	case map[string]any:
		if e, ok := x["enum"].([]any); ok {
			fn(at, anyStrs(e))
		}
		for k, c := range x {
			walkEnums(c, at+"/"+k, fn)
		}
	case []any:
		for i, c := range x {
			walkEnums(c, fmt.Sprintf("%s/%d", at, i), fn)
		}
	}
}

func strs[T ~string](vs []T) []string {
	out := make([]string, len(vs))
	for i, v := range vs {
		out[i] = string(v)
	}
	return out
}

func anyStrs(v any) []string {
	var out []string
	for _, e := range v.([]any) {
		out = append(out, fmt.Sprint(e))
	}
	return out
}
