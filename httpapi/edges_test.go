package httpapi_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/tenancyhq/tenancy/eventstore"
	"github.com/tenancyhq/tenancy/internal/auth"
	"github.com/tenancyhq/tenancy/service"
)

// TestJSONBodiesWithInvalidUTF8OrDuplicateMembersAreRefused: what
// encoding/json would take silently (invalid UTF-8 turned into U+FFFD, the
// last of two members of one name) answers 400 naming the field, and
// nothing is stored.
func TestJSONBodiesWithInvalidUTF8OrDuplicateMembersAreRefused(t *testing.T) {
	t.Parallel()
	s := startService(t)
	id, token := s.createTenant("Edges Co")
	tenant := "/api/v1/tenants/" + id
	create := func(fields string) string {
		return `{"name": "E", "edition": "free", "region": "us-east-1"` + fields + `}`
	}
	for _, tc := range []struct {
		name        string
		method      string
		path        string
		body        string
		field, rule string
	}{
		{"invalid UTF-8 in a value", "POST", "/api/v1/tenants", `{"name": "Caf` + "\xe9" + `", "edition": "free", "region": "us-east-1"}`, "name", "utf8"},
		{"invalid UTF-8 in a nested value", "POST", "/api/v1/tenants", create(`, "contacts": [{"role": "primary", "email": "a@example.com", "name": "` + "\xff\xfe" + `"}]`), "contacts[0].name", "utf8"},
		{"invalid UTF-8 in a member name", "POST", "/api/v1/tenants", create(`, "metadata": {"k` + "\xc3" + `": "v"}`), "metadata.k?", "utf8"},
		{"a lone surrogate escape", "POST", tenant + "/suspend", `{"reason": "abuse_detected", "note": "a\udc00b"}`, "note", "utf8"},
		{"a truncated sequence in a command", "PATCH", tenant, `{"name": "` + "\xe2\x82" + `"}`, "name", "utf8"},
		{"a duplicate member", "POST", "/api/v1/tenants", `{"name": "A", "name": "B", "edition": "free", "region": "us-east-1"}`, "name", "duplicate_key"},
		{"a duplicate nested member", "PATCH", tenant, `{"contacts": [{"role": "primary", "email": "a@example.com", "email": "b@example.com"}]}`, "contacts[0].email", "duplicate_key"},
		{"a duplicate map key", "POST", "/api/v1/tenants", create(`, "metadata": {"k": "1", "k": "2"}`), "metadata.k", "duplicate_key"},
		{"a duplicate in the original API", "POST", "/organizations", `{"name": "A", "edition": "free", "edition": "essentials", "region": "us-east-1"}`, "edition", "duplicate_key"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			checkProblem(t, s.do(tc.method, tc.path, tc.body), 400, tc.field, tc.rule)
		})
	}
	// Nothing of it was stored: the only tenant is the first.
	page := s.must(200, "GET", "/api/v1/tenants", nil, "X-Consistency-Token", token).json(t)
	if items := page["items"].([]any); len(items) != 1 {
		t.Errorf("%d tenants, want 1: %v", len(items), items)
	}
	// A U+FFFD the client means, and the same name in two objects, are fine.
	s.must(201, "POST", "/api/v1/tenants", `{"name": "Repl`+"\uFFFD"+`ce \ufffd", "edition": "free", "region": "us-east-1",
		"contacts": [{"role": "primary", "email": "a@example.com"}, {"role": "billing", "email": "b@example.com"}]}`)
}

// rawRequest opens a TCP connection to the service and sends a request's
// head with the given Content-Length; the caller dribbles the body.
func rawRequest(t *testing.T, base, method, path string, length int, headers ...string) (net.Conn, *bufio.Reader) {
	t.Helper()
	conn, err := net.Dial("tcp", strings.TrimPrefix(base, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	head := fmt.Sprintf("%s %s HTTP/1.1\r\nHost: tenancy\r\nContent-Type: application/json\r\nContent-Length: %d\r\n", method, path, length)
	for i := 0; i+1 < len(headers); i += 2 {
		head += headers[i] + ": " + headers[i+1] + "\r\n"
	}
	if _, err := io.WriteString(conn, head+"\r\n"); err != nil {
		t.Fatal(err)
	}
	return conn, bufio.NewReader(conn)
}

// dribble writes one byte of a JSON body every interval until the
// connection fails or ctx ends.
func dribble(ctx context.Context, conn net.Conn, every time.Duration) {
	_, _ = io.WriteString(conn, `{"name": "`)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if _, err := io.WriteString(conn, "x"); err != nil {
				return
			}
		}
	}
}

// TestASlowlyDribbledBodyIsCut: a body that does not arrive within the body
// deadline (or the request deadline, if that comes first) answers 408 and
// the connection is closed; an unauthenticated one is answered and cut too.
func TestASlowlyDribbledBodyIsCut(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	v, err := auth.NewVerifier(ctx, auth.Config{Secret: []byte(strings.Repeat("e", 40))})
	if err != nil {
		t.Fatal(err)
	}
	tok, err := auth.Mint([]byte(strings.Repeat("e", 40)), "admin", []string{auth.ScopeAdmin}, nil, time.Hour, "", "")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name               string
		body, request      time.Duration
		authorization      bool
		status             string
		cutWithin, atLeast time.Duration
	}{
		{"body deadline", 500 * time.Millisecond, time.Minute, true, "408", 3 * time.Second, 400 * time.Millisecond},
		{"request deadline first", time.Minute, 500 * time.Millisecond, true, "408", 3 * time.Second, 400 * time.Millisecond},
		{"unauthenticated", 500 * time.Millisecond, time.Minute, false, "401", 3 * time.Second, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := startServiceWith(t, service.Config{ExternalProvisioning: true, Auth: v, HTTPBodyTimeout: tc.body, HTTPRequestTimeout: tc.request})
			var headers []string
			if tc.authorization {
				headers = []string{"Authorization", "Bearer " + tok}
			}
			start := time.Now()
			conn, rd := rawRequest(t, s.base, "POST", "/api/v1/tenants", 4096, headers...)
			dctx, stop := context.WithCancel(ctx)
			defer stop()
			go dribble(dctx, conn, 50*time.Millisecond)
			_ = conn.SetReadDeadline(time.Now().Add(20 * time.Second))
			res, err := http.ReadResponse(rd, nil)
			if err != nil {
				t.Fatalf("no answer: %v", err)
			}
			_, _ = io.Copy(io.Discard, res.Body)
			res.Body.Close()
			if got := fmt.Sprint(res.StatusCode); got != tc.status {
				t.Fatalf("status %s, want %s", got, tc.status)
			}
			if tc.status == "408" && res.Header.Get("Content-Type") != "application/problem+json" {
				t.Errorf("Content-Type %q", res.Header.Get("Content-Type"))
			}
			// The connection is closed: nothing more is read from it.
			if _, err := rd.ReadByte(); err == nil {
				t.Error("the connection stays open after the answer")
			}
			took := time.Since(start)
			if took > tc.cutWithin || took < tc.atLeast {
				t.Errorf("cut after %s, want between %s and %s", took, tc.atLeast, tc.cutWithin)
			}
		})
	}
}

// TestUnknownMethodsAreOneMetricLabel: a made-up method is counted under
// method="other", so no client can grow tenancy_http_requests_total.
func TestUnknownMethodsAreOneMetricLabel(t *testing.T) {
	t.Parallel()
	s := startService(t)
	for _, m := range []string{"CONTRACTPROBE", "PROBE2", "get"} {
		if r := s.do(m, "/api/v1/tenants", nil); r.status < 400 {
			t.Errorf("%s answered %d", m, r.status)
		}
	}
	s.must(200, "GET", "/api/v1/tenants", nil)
	metrics := string(s.must(200, "GET", "/metrics", nil).body)
	for _, line := range strings.Split(metrics, "\n") {
		if strings.HasPrefix(line, "tenancy_http_requests_total{") && !strings.Contains(line, `method="GET"`) && !strings.Contains(line, `method="other"`) {
			t.Errorf("a method label value beyond the known methods: %s", line)
		}
	}
	if !strings.Contains(metrics, `method="other"`) || strings.Contains(metrics, "CONTRACTPROBE") {
		t.Errorf("made-up methods are not counted as other:\n%s", metrics)
	}
}

// TestConsistencyTokenBeyondTheHeadIsRefusedAtOnce: a token past the last
// event the store holds was never handed out; it answers 400 at once
// rather than waiting out ConsistencyWait for a 503.
func TestConsistencyTokenBeyondTheHeadIsRefusedAtOnce(t *testing.T) {
	t.Parallel()
	s := startService(t) // ConsistencyWait 15 s
	id, token := s.createTenant("Future Co")
	pos, err := eventstore.ParsePosition(token)
	if err != nil {
		t.Fatal(err)
	}
	s.must(200, "GET", "/api/v1/tenants/"+id, nil, "X-Consistency-Token", token)
	for _, future := range []eventstore.Position{{Commit: pos.Commit + 1_000_000, Prepare: 0}, {Commit: pos.Commit, Prepare: pos.Prepare + 1_000}} {
		start := time.Now()
		checkProblem(t, s.do("GET", "/api/v1/tenants/"+id, nil, "X-Consistency-Token", future.String()), 400, "X-Consistency-Token", "consistency_token_ahead")
		checkProblem(t, s.do("GET", "/api/v1/tenants?consistent_with="+future.String(), nil), 400, "consistent_with", "consistency_token_ahead")
		if took := time.Since(start); took > 3*time.Second {
			t.Errorf("refused after %s, want at once", took)
		}
	}
}

// TestTokenTimeClaimsAreStrictOverHTTP: exp as a numeric string, or iat in
// the future, answer 401 from the running service.
func TestTokenTimeClaimsAreStrictOverHTTP(t *testing.T) {
	t.Parallel()
	secret := []byte(strings.Repeat("j", 40))
	v, err := auth.NewVerifier(context.Background(), auth.Config{Secret: secret})
	if err != nil {
		t.Fatal(err)
	}
	s := startServiceWith(t, service.Config{ExternalProvisioning: true, Auth: v})
	now := time.Now()
	for _, tc := range []struct {
		name   string
		claims jwt.MapClaims
		status int
	}{
		{"numbers", jwt.MapClaims{"exp": now.Add(time.Hour).Unix(), "iat": now.Unix()}, 200},
		{"exp as a numeric string", jwt.MapClaims{"exp": fmt.Sprint(now.Add(time.Hour).Unix())}, 401},
		{"nbf as a numeric string", jwt.MapClaims{"exp": now.Add(time.Hour).Unix(), "nbf": fmt.Sprint(now.Unix())}, 401},
		{"iat in the future", jwt.MapClaims{"exp": now.Add(time.Hour).Unix(), "iat": now.Add(time.Hour).Unix()}, 401},
	} {
		tc.claims["sub"], tc.claims["scope"] = "alice", auth.ScopeRead
		tok, err := jwt.NewWithClaims(jwt.SigningMethodHS256, tc.claims).SignedString(secret)
		if err != nil {
			t.Fatal(err)
		}
		if r := s.do("GET", "/api/v1/tenants", nil, "Authorization", "Bearer "+tok); r.status != tc.status {
			t.Errorf("%s: status %d, want %d: %s", tc.name, r.status, tc.status, r.body)
		}
	}
}
