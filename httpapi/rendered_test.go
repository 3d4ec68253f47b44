package httpapi_test

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/google/uuid"

	"github.com/tenancyhq/tenancy/aggregate"
)

// TestReadsAnswerByteForByteWhatTheCommandAnswered walks a tenant through
// changes that fill every part of its view. After each command, a GET
// sends the read model's rendering, which must be, byte for byte, the
// command's own answer (encoded from the aggregate), and the entitlements
// must be those of the state folded from the stream.
func TestReadsAnswerByteForByteWhatTheCommandAnswered(t *testing.T) {
	t.Parallel()
	s := startService(t)
	created := s.must(http.StatusCreated, "POST", "/api/v1/tenants", map[string]any{
		"name": "Rendered <Views> & Co", "edition": "professional", "region": "eu-west-1",
		"labels": map[string]string{"team": "alpha"}, "metadata": map[string]string{"crm": "42"}, "compliance_standards": []string{"GDPR"},
		"contacts": []map[string]string{{"role": "primary", "name": "Ada Lovelace", "email": "ada@example.com"}},
	})
	id := created.json(t)["id"].(string)
	ext := created.json(t)["external_id"].(string)
	base := "/api/v1/tenants/" + id
	steps := []struct {
		method, path string
		body         any
	}{
		{"POST", base + "/complete-provisioning", map[string]any{}},
		{"PUT", base + "/overrides/sso", map[string]any{"enabled": true}},
		{"PUT", base + "/overrides/max_users", map[string]any{"value": 750}},
		{"PUT", base + "/policies/mfa_required", map[string]any{"enforced": true, "settings": map[string]any{}}},
		{"POST", base + "/suspend", map[string]any{"reason": "payment_failed", "note": "card \"declined\""}},
		{"POST", base + "/resume", map[string]any{}},
		{"POST", base + "/terminate", map[string]any{"reason": "contract ended"}},
		{"POST", base + "/purge", map[string]any{}},
	}
	check := func(step string, answered response) {
		t.Helper()
		token := answered.header.Get("X-Consistency-Token")
		for _, ref := range []string{id, ext} {
			got := s.must(http.StatusOK, "GET", "/api/v1/tenants/"+ref, nil, "X-Consistency-Token", token)
			if !bytes.Equal(got.body, answered.body) {
				t.Fatalf("%s: GET %s =\n%s\nwant what the command answered\n%s", step, ref, got.body, answered.body)
			}
			if got.header.Get("ETag") != answered.header.Get("ETag") || got.header.Get("Content-Type") != answered.header.Get("Content-Type") {
				t.Errorf("%s: GET %s: ETag %q Content-Type %q, want %q %q", step, ref, got.header.Get("ETag"), got.header.Get("Content-Type"),
					answered.header.Get("ETag"), answered.header.Get("Content-Type"))
			}
		}
		state, _, err := s.app.Commands.Load(context.Background(), uuid.MustParse(id))
		if err != nil {
			t.Fatal(err)
		}
		want := encodeLikeEcho(t, aggregate.DefaultCatalog().EntitlementsViewOf(state), "")
		if got := s.must(http.StatusOK, "GET", base+"/entitlements", nil, "X-Consistency-Token", token); !bytes.Equal(got.body, want) {
			t.Errorf("%s: entitlements =\n%s\nwant\n%s", step, got.body, want)
		}
		pretty := encodeLikeEcho(t, aggregate.ViewOf(state), "  ")
		if got := s.must(http.StatusOK, "GET", base+"?pretty", nil, "X-Consistency-Token", token); !bytes.Equal(got.body, pretty) {
			t.Errorf("%s: GET ?pretty =\n%s\nwant\n%s", step, got.body, pretty)
		}
	}
	check("create", created)
	var last response
	for _, st := range steps {
		last = s.must(http.StatusOK, st.method, st.path, st.body)
		check(st.method+" "+st.path, last)
	}
	if bytes.Contains(last.body, []byte("ada@example.com")) {
		t.Fatalf("purged tenant still shows its contact: %s", last.body)
	}
	// The ETag still answers 304 to a client that holds this version, and
	// 200 with the view to one that holds an older one.
	tag := last.header.Get("ETag")
	if got := s.do("GET", base, nil, "If-None-Match", tag); got.status != http.StatusNotModified || len(got.body) != 0 {
		t.Errorf("If-None-Match %s: %d %q, want 304 without a body", tag, got.status, got.body)
	}
	if got := s.must(http.StatusOK, "GET", base, nil, "If-None-Match", `W/"1"`); !bytes.Equal(got.body, last.body) {
		t.Errorf("If-None-Match of an older version: %s", got.body)
	}

	// A row the projection rendered in no format this server sends (written
	// before migration 010, or by another release): rendered from the state.
	pool := s.app.Pool()
	for _, q := range []string{
		`UPDATE tenants SET view_json = NULL, entitlements_json = NULL, rendered_as = NULL WHERE id = $1`,
		`UPDATE tenants SET view_json = '{"stale":true}', entitlements_json = '{"stale":true}', rendered_as = 'another/format' WHERE id = $1`,
	} {
		if _, err := pool.Exec(context.Background(), q, id); err != nil {
			t.Fatal(err)
		}
		if got := s.must(http.StatusOK, "GET", base, nil); !bytes.Equal(got.body, last.body) {
			t.Errorf("after %s: GET =\n%s\nwant\n%s", q, got.body, last.body)
		}
		if got := s.must(http.StatusOK, "GET", base+"/entitlements", nil); bytes.Contains(got.body, []byte("stale")) {
			t.Errorf("after %s: entitlements sent a rendering of another format: %s", q, got.body)
		}
	}
}

// TestTheProjectionRendersEveryRow: the read model holds each tenant's
// views in the server's format, so a read sends them as they are.
func TestTheProjectionRendersEveryRow(t *testing.T) {
	t.Parallel()
	s := startService(t)
	res := s.must(http.StatusCreated, "POST", "/api/v1/tenants", map[string]any{"name": "Rendered Row", "edition": "free"})
	id := res.json(t)["id"].(string)
	s.must(http.StatusOK, "GET", "/api/v1/tenants/"+id, nil, "X-Consistency-Token", res.header.Get("X-Consistency-Token"))
	var view, format string
	err := s.app.Pool().QueryRow(context.Background(), `SELECT view_json, rendered_as FROM tenants WHERE id = $1`, id).Scan(&view, &format)
	if err != nil {
		t.Fatal(err)
	}
	if format != aggregate.DefaultCatalog().RenderFormat() || view+"\n" != string(res.body) {
		t.Fatalf("row rendered as %q:\n%s\nwant %q and the create's answer\n%s", format, view, aggregate.DefaultCatalog().RenderFormat(), res.body)
	}
}

// TestPolicyEvaluationFollowsEveryChange: the server keeps the subjects it
// evaluated, and must still answer from the tenant's latest state, by id
// and by external id alike.
func TestPolicyEvaluationFollowsEveryChange(t *testing.T) {
	t.Parallel()
	s := startService(t)
	off := false
	created := s.must(http.StatusCreated, "POST", "/api/v1/tenants", map[string]any{"name": "Evaluated Co", "edition": "essentials", "trial": &off}).json(t)
	id, ext := created["id"].(string), created["external_id"].(string)
	base := "/api/v1/tenants/" + id
	evaluate := func(token string) (string, string) {
		t.Helper()
		var out []string
		for _, ref := range []string{id, ext} {
			d := s.must(http.StatusOK, "POST", "/api/v1/tenants/"+ref+"/policy/evaluate",
				map[string]any{"action": "sso.login", "context": map[string]any{}}, "X-Consistency-Token", token).json(t)
			out = append(out, d["decision"].(string)+" "+d["reason"].(string))
		}
		if out[0] != out[1] {
			t.Fatalf("by id %q, by external id %q", out[0], out[1])
		}
		decision, reason, _ := strings.Cut(out[0], " ")
		return decision, reason
	}
	want := func(step, token, decision, reason string) {
		t.Helper()
		// Twice: the second answer comes from what the server kept.
		for range 2 {
			if d, r := evaluate(token); d != decision || r != reason {
				t.Fatalf("%s: %s %s, want %s %s", step, d, r, decision, reason)
			}
		}
	}
	token := func(r response) string { return r.header.Get("X-Consistency-Token") }
	want("provisioning", token(s.must(http.StatusOK, "GET", base, nil)), "deny", "tenant_provisioning")
	want("active", token(s.must(http.StatusOK, "POST", base+"/complete-provisioning", map[string]any{})), "deny", "feature_not_in_edition")
	want("sso override", token(s.must(http.StatusOK, "PUT", base+"/overrides/sso", map[string]any{"enabled": true})), "allow", "ok")
	want("suspended", token(s.must(http.StatusOK, "POST", base+"/suspend", map[string]any{"reason": "security_threat"})), "deny", "tenant_suspended")
	want("resumed", token(s.must(http.StatusOK, "POST", base+"/resume", map[string]any{})), "allow", "ok")
	want("override cleared", token(s.must(http.StatusOK, "DELETE", base+"/overrides/sso", nil)), "deny", "feature_not_in_edition")
}

// encodeLikeEcho encodes v as the server's JSON serializer does.
func encodeLikeEcho(t *testing.T, v any, indent string) []byte {
	t.Helper()
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetIndent("", indent)
	if err := enc.Encode(v); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}
