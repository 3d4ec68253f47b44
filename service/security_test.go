package service_test

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"mime"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/tenancyhq/tenancy/internal/auth"
)

// createTenant creates a tenant through the API and completes its
// provisioning (ACTIVE); it returns the tenant's JSON.
func createTenant(s *testService, tok, name string, contacts ...map[string]string) map[string]any {
	s.t.Helper()
	if contacts == nil {
		contacts = []map[string]string{}
	}
	off := false
	created := s.must(http.StatusCreated, tok, "POST", "/api/v1/tenants", map[string]any{
		"name": name, "edition": "professional", "region": "eu-west-1", "trial": &off, "contacts": contacts}).json(s.t)
	r := s.must(http.StatusOK, tok, "POST", "/api/v1/tenants/"+created["id"].(string)+"/complete-provisioning", map[string]any{})
	s.read(r)
	return r.json(s.t)
}

// algNoneToken is an unsigned token ("alg": "none") with admin scope and
// otherwise valid claims.
func algNoneToken() string {
	enc := base64.RawURLEncoding.EncodeToString
	header, _ := json.Marshal(map[string]any{"alg": "none", "typ": "JWT"})
	claims, _ := json.Marshal(map[string]any{"sub": "mallory", "scope": auth.ScopeAdmin, "iss": testIssuer, "aud": testAud,
		"iat": time.Now().Unix(), "exp": time.Now().Add(time.Hour).Unix()})
	return enc(header) + "." + enc(claims) + "."
}

// auditTrail checks audit records by correlation id.
type auditTrail struct {
	s *testService
	// want is what each request's audit record must say, by correlation id.
	want map[string]auditWant
}

type auditWant struct {
	request                        string
	actor, tenant, action, outcome string
	status                         int
}

// send sends a request with a fresh correlation id, checks its status and,
// when audit is not nil, records the audit line it must produce.
func (a *auditTrail) send(want int, audit *auditWant, tok, method, path string, body any) response {
	a.s.t.Helper()
	corr := "corr-" + uuid.NewString()
	r := a.s.do(tok, method, path, body, "X-Correlation-ID", corr)
	if r.status != want {
		a.s.t.Fatalf("%s %s: status %d, want %d: %s", method, path, r.status, want, r.body)
	}
	if audit != nil {
		w := *audit
		w.request, w.status = method+" "+path, r.status
		if w.tenant == "" && w.action == "createTenant" && r.status == http.StatusCreated {
			w.tenant = r.json(a.s.t)["id"].(string)
		}
		a.want[corr] = w
	}
	return r
}

// check waits for every expected audit line and checks it: one record per
// request, logger=audit, with actor, tenant, action, outcome, status,
// correlation id and source.
func (a *auditTrail) check() {
	t := a.s.t
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	var found map[string][]map[string]any
	for {
		found = map[string][]map[string]any{}
		for _, rec := range a.s.logs.records(t) {
			if rec["logger"] != "audit" {
				continue
			}
			corr, _ := rec["correlation_id"].(string)
			found[corr] = append(found[corr], rec)
		}
		complete := true
		for corr := range a.want {
			complete = complete && len(found[corr]) > 0
		}
		if complete || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	for corr, w := range a.want {
		recs := found[corr]
		if len(recs) != 1 {
			t.Errorf("%s: %d audit records, want 1: %v", w.request, len(recs), recs)
			continue
		}
		rec := recs[0]
		got := auditWant{request: w.request, actor: str(rec["actor"]), tenant: str(rec["tenant"]), action: str(rec["action"]),
			outcome: str(rec["outcome"]), status: int(num(rec["status"]))}
		if got != w {
			t.Errorf("%s: audit record\n got %+v\nwant %+v\n%v", w.request, got, w, rec)
		}
		if rec["source"] != "127.0.0.1" {
			t.Errorf("%s: audit source %v, want 127.0.0.1", w.request, rec["source"])
		}
		if rec["msg"] != "audit" {
			t.Errorf("%s: audit msg %v", w.request, rec["msg"])
		}
	}
}

func str(v any) string {
	s, _ := v.(string)
	return s
}

func num(v any) float64 {
	f, _ := v.(float64)
	return f
}

// isProblem reports whether r is application/problem+json with the given status.
func isProblem(r response, status int) bool {
	mt, _, _ := mime.ParseMediaType(r.header.Get("Content-Type"))
	var p struct {
		Type   string `json:"type"`
		Title  string `json:"title"`
		Status int    `json:"status"`
	}
	return mt == "application/problem+json" && json.Unmarshal(r.body, &p) == nil && p.Type != "" && p.Title != "" && p.Status == status
}

func TestBearerTokensScopesAndTenantBinding(t *testing.T) {
	t.Parallel()
	s := startService(t, serviceOptions{auth: true})
	trail := &auditTrail{s: s, want: map[string]auditWant{}}
	admin := token(t, "admin-ops", nil, auth.ScopeAdmin)
	writer := token(t, "writer-svc", nil, auth.ScopeWrite)
	reader := token(t, "reader-svc", nil, auth.ScopeRead)

	suffix := uuid.NewString()[:8]
	r := trail.send(http.StatusCreated, &auditWant{actor: "admin-ops", action: "createTenant", outcome: "succeeded"},
		admin, "POST", "/api/v1/tenants", map[string]any{"name": "Acme " + suffix, "edition": "professional", "region": "eu-west-1", "trial": false})
	s.read(r)
	created := r.json(t)
	a, extA := created["id"].(string), created["external_id"].(string)
	b := createTenant(s, admin, "Globex "+suffix)["id"].(string)
	extB := s.must(http.StatusOK, admin, "GET", "/api/v1/tenants/"+b, nil).json(t)["external_id"].(string)
	tenantA := uuid.MustParse(a)
	boundWriter := token(t, "acme-user", &tenantA, auth.ScopeWrite)
	boundAdmin := token(t, "acme-admin", &tenantA, auth.ScopeAdmin)

	t.Run("Unauthenticated", func(t *testing.T) {
		expired, _ := auth.Mint(testSecret, "eve", []string{auth.ScopeAdmin}, nil, -time.Hour, testIssuer, testAud)
		wrongSig, _ := auth.Mint([]byte(strings.Repeat("k", 40)), "eve", []string{auth.ScopeAdmin}, nil, time.Hour, testIssuer, testAud)
		wrongAud, _ := auth.Mint(testSecret, "eve", []string{auth.ScopeAdmin}, nil, time.Hour, testIssuer, "another-api")
		wrongIss, _ := auth.Mint(testSecret, "eve", []string{auth.ScopeAdmin}, nil, time.Hour, "https://evil.test", testAud)
		noAud, _ := auth.Mint(testSecret, "eve", []string{auth.ScopeAdmin}, nil, time.Hour, testIssuer, "")
		for _, tc := range []struct{ name, token string }{
			{"no token", ""}, {"expired", expired}, {"wrong signature", wrongSig}, {"alg none", algNoneToken()},
			{"wrong audience", wrongAud}, {"wrong issuer", wrongIss}, {"no audience", noAud}, {"not a JWT", "not.a.jwt"},
		} {
			for _, req := range []struct{ method, path string }{
				{"GET", "/api/v1/tenants/" + a}, {"GET", "/api/v1/tenants"}, {"POST", "/api/v1/tenants/" + a + "/suspend"},
				{"GET", "/api/v1/admin/projections"},
			} {
				var body any
				if req.method == "POST" {
					body = map[string]any{"reason": "admin_action"}
				}
				r := trail.send(http.StatusUnauthorized, &auditWant{tenant: tenantParam(req.path), action: actionOf(req.method, req.path), outcome: "denied"},
					tc.token, req.method, req.path, body)
				if !isProblem(r, http.StatusUnauthorized) {
					t.Errorf("%s: %s %s: not a 401 problem+json: %s %s", tc.name, req.method, req.path, r.header.Get("Content-Type"), r.body)
				}
				// RFC 6750 §3.1: an error code only when a token was sent.
				challenge := `Bearer realm="tenancy", error="invalid_token"`
				if tc.token == "" {
					challenge = `Bearer realm="tenancy"`
				}
				if h := r.header.Get("WWW-Authenticate"); h != challenge {
					t.Errorf("%s: %s %s: WWW-Authenticate %q, want %q", tc.name, req.method, req.path, h, challenge)
				}
			}
		}
	})

	t.Run("Scopes", func(t *testing.T) {
		suspend, resume := map[string]any{"reason": "admin_action"}, map[string]any{}
		for _, tc := range []struct {
			who, token, actor string
			method, path      string
			body              any
			want              int
		}{
			{"read", reader, "reader-svc", "GET", "/api/v1/tenants/" + a, nil, 200},
			{"read", reader, "reader-svc", "GET", "/api/v1/tenants", nil, 200},
			{"read", reader, "reader-svc", "GET", "/api/v1/tenants/" + a + "/events", nil, 200},
			{"read", reader, "reader-svc", "POST", "/api/v1/tenants/" + a + "/policy/evaluate", map[string]any{"action": "api_call"}, 0},
			{"read", reader, "reader-svc", "POST", "/api/v1/tenants/" + a + "/suspend", suspend, 403},
			{"read", reader, "reader-svc", "POST", "/api/v1/tenants", map[string]any{"name": "Nope " + suffix, "edition": "free", "region": "eu-west-1"}, 403},
			{"read", reader, "reader-svc", "PATCH", "/api/v1/tenants/" + a, map[string]any{"labels": map[string]string{"x": "y"}}, 403},
			{"read", reader, "reader-svc", "GET", "/api/v1/admin/projections", nil, 403},
			{"write", writer, "writer-svc", "GET", "/api/v1/tenants/" + a, nil, 200},
			{"write", writer, "writer-svc", "POST", "/api/v1/tenants/" + a + "/complete-provisioning", resume, 200},
			{"write", writer, "writer-svc", "POST", "/api/v1/tenants/" + a + "/suspend", suspend, 200},
			{"write", writer, "writer-svc", "POST", "/api/v1/tenants/" + a + "/suspend", suspend, 409},
			{"write", writer, "writer-svc", "POST", "/api/v1/tenants/" + a + "/resume", resume, 200},
			{"write", writer, "writer-svc", "PATCH", "/api/v1/tenants/" + a, map[string]any{"labels": map[string]string{"team": "w"}}, 200},
			{"write", writer, "writer-svc", "GET", "/api/v1/admin/projections", nil, 403},
			{"write", writer, "writer-svc", "POST", "/api/v1/admin/projections/read-model/rebuild", nil, 403},
			{"admin", admin, "admin-ops", "GET", "/api/v1/admin/projections", nil, 200},
			{"admin", admin, "admin-ops", "GET", "/api/v1/tenants/" + b, nil, 200},
			{"admin", admin, "admin-ops", "POST", "/api/v1/tenants/" + b + "/suspend", suspend, 200},
			{"admin", admin, "admin-ops", "POST", "/api/v1/tenants/" + b + "/resume", resume, 200},
			{"admin", admin, "admin-ops", "PUT", "/api/v1/tenants/" + b + "/overrides/sso", map[string]any{"enabled": true}, 0},
			{"admin", admin, "admin-ops", "POST", "/api/v1/admin/projections/read-model/rebuild", nil, 202},
		} {
			var audit *auditWant
			switch {
			case tc.want == http.StatusForbidden:
				audit = &auditWant{actor: tc.actor, tenant: tenantParam(tc.path), action: actionOf(tc.method, tc.path), outcome: "denied"}
			case tc.method != "GET" && !strings.HasSuffix(tc.path, "/policy/evaluate"):
				outcome := "succeeded"
				if tc.want >= 400 {
					outcome = "refused"
				}
				audit = &auditWant{actor: tc.actor, tenant: tenantParam(tc.path), action: actionOf(tc.method, tc.path), outcome: outcome}
			}
			if tc.want == 0 { // any success: the scope is what is checked
				r := s.do(tc.token, tc.method, tc.path, tc.body)
				if r.status == http.StatusUnauthorized || r.status == http.StatusForbidden {
					t.Errorf("%s token: %s %s: %d %s", tc.who, tc.method, tc.path, r.status, r.body)
				}
				continue
			}
			r := trail.send(tc.want, audit, tc.token, tc.method, tc.path, tc.body)
			if tc.want == http.StatusForbidden && !isProblem(r, http.StatusForbidden) {
				t.Errorf("%s token: %s %s: not a 403 problem+json: %s", tc.who, tc.method, tc.path, r.body)
			}
		}
	})

	t.Run("TenantBound", func(t *testing.T) {
		other := uuid.NewString()
		for _, tc := range []struct {
			token, actor, method, path string
			body                       any
			want                       int
		}{
			{boundWriter, "acme-user", "GET", "/api/v1/tenants/" + a, nil, 200},
			{boundWriter, "acme-user", "GET", "/api/v1/tenants/" + extA, nil, 200},
			{boundWriter, "acme-user", "GET", "/api/v1/tenants/" + a + "/events", nil, 200},
			{boundWriter, "acme-user", "GET", "/api/v1/tenants/" + extA + "/entitlements", nil, 200},
			{boundWriter, "acme-user", "GET", "/organizations/" + a, nil, 200},
			{boundWriter, "acme-user", "POST", "/api/v1/tenants/" + a + "/suspend", map[string]any{"reason": "admin_action"}, 200},
			{boundWriter, "acme-user", "POST", "/api/v1/tenants/" + extA + "/resume", map[string]any{}, 200},
			{boundWriter, "acme-user", "PATCH", "/api/v1/tenants/" + extA, map[string]any{"labels": map[string]string{"team": "acme"}}, 200},
			{boundWriter, "acme-user", "GET", "/api/v1/tenants/" + b, nil, 404},
			{boundWriter, "acme-user", "GET", "/api/v1/tenants/" + extB, nil, 404},
			{boundWriter, "acme-user", "GET", "/api/v1/tenants/" + other, nil, 404},
			{boundWriter, "acme-user", "GET", "/api/v1/tenants/" + b + "/events", nil, 404},
			{boundWriter, "acme-user", "GET", "/api/v1/tenants/" + b + "/history", nil, 404},
			{boundWriter, "acme-user", "GET", "/api/v1/tenants/" + b + "/export", nil, 404},
			{boundWriter, "acme-user", "GET", "/organizations/" + b, nil, 404},
			{boundWriter, "acme-user", "POST", "/api/v1/tenants/" + b + "/suspend", map[string]any{"reason": "admin_action"}, 404},
			{boundWriter, "acme-user", "POST", "/api/v1/tenants/" + extB + "/suspend", map[string]any{"reason": "admin_action"}, 404},
			{boundWriter, "acme-user", "PATCH", "/api/v1/tenants/" + b, map[string]any{"labels": map[string]string{"x": "y"}}, 404},
			{boundWriter, "acme-user", "POST", "/api/v1/tenants", map[string]any{"name": "Bound " + suffix, "edition": "free", "region": "eu-west-1"}, 403},
			{boundWriter, "acme-user", "POST", "/organizations", map[string]any{"name": "Bound " + suffix, "edition": "free", "region": "eu-west-1"}, 403},
			{boundAdmin, "acme-admin", "POST", "/api/v1/tenants", map[string]any{"name": "Bound " + suffix, "edition": "free", "region": "eu-west-1"}, 403},
			{boundAdmin, "acme-admin", "GET", "/api/v1/admin/projections", nil, 403},
			{boundAdmin, "acme-admin", "POST", "/api/v1/admin/projections/read-model/rebuild", nil, 403},
		} {
			var audit *auditWant
			switch {
			case tc.want >= 400:
				audit = &auditWant{actor: tc.actor, tenant: tenantParam(tc.path), action: actionOf(tc.method, tc.path), outcome: "denied"}
			case tc.method != "GET":
				audit = &auditWant{actor: tc.actor, tenant: tenantParam(tc.path), action: actionOf(tc.method, tc.path), outcome: "succeeded"}
			}
			r := trail.send(tc.want, audit, tc.token, tc.method, tc.path, tc.body)
			if tc.want >= 400 && !isProblem(r, tc.want) {
				t.Errorf("bound token: %s %s: not a %d problem+json: %s", tc.method, tc.path, tc.want, r.body)
			}
			if tc.want == 200 && tc.method == "GET" && strings.Count(tc.path, "/") == 4 {
				if id := r.json(t)["id"]; id != a {
					t.Errorf("bound token: %s %s answered tenant %v", tc.method, tc.path, id)
				}
			}
		}
		// The list holds the bound tenant only, whatever the filters.
		for _, q := range []string{"", "?limit=100", "?status=ACTIVE", "?name_prefix=globex"} {
			page := s.must(http.StatusOK, boundWriter, "GET", "/api/v1/tenants"+q, nil).json(t)
			items, _ := page["items"].([]any)
			var ids []string
			for _, it := range items {
				ids = append(ids, it.(map[string]any)["id"].(string))
			}
			if len(ids) > 1 || (len(ids) == 1 && ids[0] != a) || (q == "" && len(ids) != 1) {
				t.Errorf("bound token: GET /api/v1/tenants%s lists %v, want only %s", q, ids, a)
			}
		}
	})

	t.Run("PublicRoutes", func(t *testing.T) {
		for _, path := range []string{"/health", "/health/live", "/health/ready", "/metrics", "/openapi.json", "/docs", "/docs/"} {
			r := s.do("", "GET", path, nil)
			if r.status != http.StatusOK {
				t.Errorf("GET %s without a token: %d %s", path, r.status, r.body)
			}
		}
	})

	t.Run("EventActorIsTheTokenSubject", func(t *testing.T) {
		var actors []string
		// The events come from the read model: wait until it has them all.
		for deadline := time.Now().Add(15 * time.Second); ; {
			page := s.must(http.StatusOK, admin, "GET", "/api/v1/tenants/"+a+"/events?limit=100", nil).json(t)
			actors = actors[:0]
			for _, it := range page["items"].([]any) {
				ev := it.(map[string]any)
				meta := ev["metadata"].(map[string]any)
				actors = append(actors, fmt.Sprintf("%v:%v", ev["type"], meta["actor"]))
			}
			if len(actors) >= 9 || time.Now().After(deadline) {
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
		want := []string{"TenantCreated:admin-ops", // the create
			"ProvisioningCompleted:writer-svc", "TenantActivated:writer-svc", // complete-provisioning
			"TenantSuspended:writer-svc", "TenantResumed:writer-svc", "LabelsUpdated:writer-svc",
			"TenantSuspended:acme-user", "TenantResumed:acme-user", "LabelsUpdated:acme-user"}
		if strings.Join(actors, " ") != strings.Join(want, " ") {
			t.Errorf("events and actors\n got %v\nwant %v", actors, want)
		}
	})

	trail.check()
}

// tenantParam is the {id} of a tenant path ("" for others).
func tenantParam(path string) string {
	for _, prefix := range []string{"/api/v1/tenants/", "/organizations/"} {
		if rest, ok := strings.CutPrefix(path, prefix); ok {
			id, _, _ := strings.Cut(rest, "/")
			id, _, _ = strings.Cut(id, "?")
			return id
		}
	}
	return ""
}

// actionOf is the operation id of the requests the tests send.
func actionOf(method, path string) string {
	p, _, _ := strings.Cut(path, "?")
	segs := strings.Split(strings.TrimPrefix(p, "/"), "/")
	switch {
	case p == "/api/v1/tenants" && method == "POST":
		return "createTenant"
	case p == "/api/v1/tenants":
		return "listTenants"
	case p == "/organizations":
		return "legacyCreateOrganization"
	case segs[0] == "organizations" && method == "GET":
		return "legacyGetOrganization"
	case p == "/api/v1/admin/projections":
		return "listProjections"
	case strings.HasPrefix(p, "/api/v1/admin/projections/"):
		return "rebuildProjection"
	case len(segs) == 4 && method == "GET":
		return "getTenant"
	case len(segs) == 4 && method == "PATCH":
		return "updateTenant"
	case len(segs) == 5 && method == "POST":
		verb := segs[4]
		var b strings.Builder
		up := false
		for _, r := range verb {
			if r == '-' {
				up = true
				continue
			}
			if up {
				r -= 'a' - 'A'
			}
			up = false
			b.WriteRune(r)
		}
		return b.String()
	case len(segs) == 5 && method == "GET":
		return map[string]string{"events": "listTenantEvents", "history": "getTenantHistory", "export": "exportTenant",
			"entitlements": "getEntitlements", "transitions": "getTransitions"}[segs[4]]
	}
	return ""
}
