package httpapi_test

import (
	"bytes"
	"fmt"
	"io"
	"slices"
	"strings"
	"testing"

	"github.com/google/uuid"
)

// createTenant makes a tenant over HTTP and returns its id and consistency token.
func (s *testService) createTenant(name string) (string, string) {
	s.t.Helper()
	r := s.must(201, "POST", "/api/v1/tenants", map[string]any{"name": name, "edition": "professional", "region": "us-east-1"})
	return r.json(s.t)["id"].(string), r.header.Get("X-Consistency-Token")
}

// TestRefusedTransitionAnswers409WithTheAllowedCommands: a command the
// tenant's status does not accept is a 409 naming the status and what it accepts.
func TestRefusedTransitionAnswers409WithTheAllowedCommands(t *testing.T) {
	t.Parallel()
	s := startService(t)
	id, _ := s.createTenant("Refusal Co")
	p := checkProblem(t, s.do("POST", "/api/v1/tenants/"+id+"/activate", nil), 409, "", "")
	if p["current_status"] != "PROVISIONING" || p["command"] != "activate" {
		t.Errorf("current_status %v command %v", p["current_status"], p["command"])
	}
	var allowed []string
	for _, a := range p["allowed_commands"].([]any) {
		allowed = append(allowed, a.(string))
	}
	if !slices.Contains(allowed, "complete-provisioning") || slices.Contains(allowed, "activate") {
		t.Errorf("allowed_commands %v", allowed)
	}
	// A purged tenant refuses everything, and says so with an empty list.
	s.must(200, "POST", "/api/v1/tenants/"+id+"/fail-provisioning", map[string]any{"reason": "no capacity"})
	s.must(200, "POST", "/api/v1/tenants/"+id+"/purge", nil)
	p = checkProblem(t, s.do("POST", "/api/v1/tenants/"+id+"/restore", nil), 409, "", "")
	if p["current_status"] != "PURGED" || p["allowed_commands"] == nil || len(p["allowed_commands"].([]any)) != 0 {
		t.Errorf("purged: %v", p)
	}
}

// TestStaleIfMatchAnswers412 pins the version a command expects.
func TestStaleIfMatchAnswers412(t *testing.T) {
	t.Parallel()
	s := startService(t)
	id, _ := s.createTenant("Stale Co")
	path := "/api/v1/tenants/" + id
	r := s.must(200, "POST", path+"/complete-provisioning", nil, "If-Match", `W/"0"`)
	etag := r.header.Get("ETag")
	checkProblem(t, s.do("POST", path+"/activate", nil, "If-Match", `W/"0"`), 412, "", "")
	checkProblem(t, s.do("PATCH", path, map[string]any{"name": "Stale Corp"}, "If-Match", `"1"`), 412, "", "")
	checkProblem(t, s.do("POST", path+"/activate", nil, "If-Match", `W/"x"`), 400, "If-Match", "etag")
	// Nothing was written by the refused ones; the current ETag still works.
	s.must(200, "POST", path+"/activate", nil, "If-Match", etag)
}

// TestIdempotencyKeyReplaysTheFirstResponse: the same key and body answer
// the first response byte for byte; the same key with another body is 422.
func TestIdempotencyKeyReplaysTheFirstResponse(t *testing.T) {
	t.Parallel()
	s := startService(t)
	body := `{"name": "Idem Co", "edition": "free", "region": "us-east-1"}`
	first := s.must(201, "POST", "/api/v1/tenants", body, "Idempotency-Key", "create-1")
	if first.header.Get("Idempotent-Replayed") != "" {
		t.Errorf("first response says Idempotent-Replayed")
	}
	again := s.do("POST", "/api/v1/tenants", body, "Idempotency-Key", "create-1")
	sameResponse(t, first, again)
	checkProblem(t, s.do("POST", "/api/v1/tenants", `{"name": "Idem Co 2", "edition": "free", "region": "us-east-1"}`, "Idempotency-Key", "create-1"),
		422, "Idempotency-Key", "same_request")

	id := first.json(t)["id"].(string)
	path := "/api/v1/tenants/" + id
	s.must(200, "POST", path+"/complete-provisioning", nil)
	susp := `{"reason": "abuse_detected"}`
	first = s.must(200, "POST", path+"/suspend", susp, "Idempotency-Key", "suspend-1")
	sameResponse(t, first, s.do("POST", path+"/suspend", susp, "Idempotency-Key", "suspend-1"))
	checkProblem(t, s.do("POST", path+"/suspend", `{"reason": "legal_request"}`, "Idempotency-Key", "suspend-1"), 422, "Idempotency-Key", "same_request")
	// The same key on another route is another request too.
	checkProblem(t, s.do("POST", path+"/resume", nil, "Idempotency-Key", "suspend-1"), 422, "Idempotency-Key", "same_request")
	// A refusal wrote nothing, so nothing remembers it: the retry is decided
	// again, and refused again while the tenant is as it was.
	checkProblem(t, s.do("POST", path+"/activate", nil, "Idempotency-Key", "activate-1"), 409, "", "")
	checkProblem(t, s.do("POST", path+"/activate", nil, "Idempotency-Key", "activate-1"), 409, "", "")

	// The replay wrote nothing: the tenant is at the version of the first suspend.
	got := s.must(200, "GET", path, nil, "X-Consistency-Token", first.header.Get("X-Consistency-Token")).json(t)
	if got["version"] != first.json(t)["version"] {
		t.Errorf("version after replays %v, first suspend answered %v", got["version"], first.json(t)["version"])
	}
	checkProblem(t, s.do("POST", path+"/resume", nil, "Idempotency-Key", strings.Repeat("k", 256)), 400, "Idempotency-Key", "format")
}

func sameResponse(t *testing.T, first, again response) {
	t.Helper()
	if again.status != first.status || !bytes.Equal(again.body, first.body) {
		t.Errorf("replay differs:\nfirst %d %s\nagain %d %s", first.status, first.body, again.status, again.body)
	}
	if again.header.Get("Idempotent-Replayed") != "true" {
		t.Errorf("replay lacks Idempotent-Replayed: true (headers %v)", again.header)
	}
	for _, h := range []string{"Content-Type", "ETag", "X-Consistency-Token", "Location"} {
		if again.header.Get(h) != first.header.Get(h) {
			t.Errorf("replay header %s = %q, first %q", h, again.header.Get(h), first.header.Get(h))
		}
	}
}

// TestBadRequestsAnswerProblemDetails: each kind of bad request answers its
// status as application/problem+json, validation errors naming field and rule.
func TestBadRequestsAnswerProblemDetails(t *testing.T) {
	t.Parallel()
	s := startService(t)
	id, _ := s.createTenant("Problem Co")
	tenant := "/api/v1/tenants/" + id
	token := s.must(200, "POST", tenant+"/complete-provisioning", nil).header.Get("X-Consistency-Token")
	big := `{"name": "` + strings.Repeat("x", 1<<20) + `", "edition": "free", "region": "us-east-1"}`
	for _, tc := range []struct {
		name         string
		method, path string
		body         any
		headers      []string
		status       int
		field, rule  string
	}{
		{"unknown field", "POST", "/api/v1/tenants", `{"name": "A", "edition": "free", "region": "us-east-1", "colour": "red"}`, nil, 400, "colour", "unknown_field"},
		{"unknown nested field", "POST", tenant + "/policy/evaluate", `{"action": "data.read", "context": {"colour": "red"}}`, nil, 400, "context.colour", "unknown_field"},
		{"bad edition", "POST", "/api/v1/tenants", `{"name": "A", "edition": "gold", "region": "us-east-1"}`, nil, 400, "edition", "enum"},
		{"bad region", "POST", "/organizations", `{"name": "A", "edition": "free", "region": "mars-1"}`, nil, 400, "region", "enum"},
		{"bad reason", "POST", tenant + "/suspend", `{"reason": "boredom"}`, nil, 400, "reason", "enum"},
		{"missing required", "POST", "/api/v1/tenants", `{"edition": "free", "region": "us-east-1"}`, nil, 400, "name", "required"},
		{"wrong type", "POST", tenant + "/extend-trial", `{"days": "ten"}`, nil, 400, "days", "type"},
		{"out of range", "POST", tenant + "/terminate", `{"retention_days": 99999}`, nil, 400, "retention_days", "range"},
		{"bad date", "POST", tenant + "/cancel", `{"effective_at": "tomorrow"}`, nil, 400, "effective_at", "format"},
		{"malformed JSON", "POST", "/api/v1/tenants", `{"name": "A",`, nil, 400, "body", "json_syntax"},
		{"not an object", "POST", "/api/v1/tenants", `[1, 2]`, nil, 400, "body", "type"},
		{"empty PATCH", "PATCH", tenant, `{}`, nil, 400, "body", "at_least_one_field"},
		{"blank name", "PATCH", tenant, `{"name": "   "}`, nil, 400, "name", ""},
		{"unknown policy type", "PUT", tenant + "/policies/colour", `{"settings": {}}`, nil, 400, "type", ""},
		{"bad consistency token", "GET", tenant, nil, []string{"X-Consistency-Token", "soon"}, 400, "X-Consistency-Token", "consistency_token"},
		{"NUL in a note", "POST", tenant + "/suspend", `{"reason": "abuse_detected", "note": "a\u0000b"}`, nil, 400, "note", "no_nul_characters"},
		{"NUL in a contact", "PATCH", tenant, `{"contacts": [{"role": "primary", "email": "a@example.com"}, {"role": "billing", "email": "b@example.com", "name": "\u0000"}]}`, nil, 400, "contacts[1].name", "no_nul_characters"},
		{"NUL in a metadata key", "POST", "/api/v1/tenants", `{"name": "N", "edition": "free", "region": "us-east-1", "labels": {}, "metadata": {"a": "b", "k\u0000": "v"}}`, nil, 400, "metadata.k", "no_nul_characters"},
		{"body too large", "POST", "/api/v1/tenants", big, nil, 413, "", ""},
		{"body too large, chunked", "POST", "/api/v1/tenants", struct{ io.Reader }{strings.NewReader(big)}, nil, 413, "", ""},
		{"body too large, chunked, idempotent", "POST", "/api/v1/tenants", struct{ io.Reader }{strings.NewReader(big)}, []string{"Idempotency-Key", "big"}, 413, "", ""},
		{"body too large, idempotent", "POST", "/api/v1/tenants", big, []string{"Idempotency-Key", "big2"}, 413, "", ""},
		{"unknown tenant", "GET", "/api/v1/tenants/" + uuid.NewString(), nil, nil, 404, "", ""},
		{"unknown external id", "GET", "/api/v1/tenants/ORG-00000000", nil, nil, 404, "", ""},
		{"command on unknown tenant", "POST", "/api/v1/tenants/" + uuid.NewString() + "/suspend", `{"reason": "abuse_detected"}`, nil, 404, "", ""},
		{"events of unknown tenant", "GET", "/api/v1/tenants/" + uuid.NewString() + "/events", nil, nil, 404, "", ""},
		{"unknown route", "GET", "/api/v1/nothing-here", nil, nil, 404, "", ""},
		{"unknown verb", "POST", tenant + "/explode", `{}`, nil, 404, "", ""},
		{"wrong method", "DELETE", "/api/v1/tenants", nil, nil, 405, "", ""},
		{"wrong content type", "POST", "/api/v1/tenants", `name=A`, []string{"Content-Type", "application/x-www-form-urlencoded"}, 415, "", ""},
		{"text content type", "POST", tenant + "/suspend", `{"reason": "abuse_detected"}`, []string{"Content-Type", "text/plain"}, 415, "", ""},
		{"no content type", "POST", tenant + "/suspend", `{"reason": "abuse_detected"}`, []string{"Content-Type", ""}, 415, "", ""},
		{"a value that names a header", "POST", tenant + "/suspend", `{"reason": "Content-Type"}`, nil, 400, "reason", "enum"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// The subtests share the service; each sends its own request.
			r := s.do(tc.method, tc.path, tc.body, append([]string{"X-Consistency-Token", token}, tc.headers...)...)
			p := checkProblem(t, r, tc.status, "", "")
			if tc.field != "" && p["field"] != tc.field {
				t.Errorf("field %v, want %s: %s", p["field"], tc.field, r.body)
			}
			if tc.rule != "" && p["rule"] != tc.rule {
				t.Errorf("rule %v, want %s: %s", p["rule"], tc.rule, r.body)
			}
			if tc.status == 400 && (p["field"] == nil || p["rule"] == nil) {
				t.Errorf("a 400 without field and rule: %s", r.body)
			}
			if !strings.HasPrefix(fmt.Sprint(p["type"]), "https://") {
				t.Errorf("type %v is not a URI", p["type"])
			}
		})
	}
}

// TestJSONWithACharsetIsAccepted: application/json with parameters is JSON.
func TestJSONWithACharsetIsAccepted(t *testing.T) {
	t.Parallel()
	s := startService(t)
	s.must(201, "POST", "/api/v1/tenants", `{"name": "Charset Co", "edition": "free", "region": "us-east-1", "metadata": {"escaped": "\\u0000"}}`,
		"Content-Type", "application/json; charset=utf-8")
}
