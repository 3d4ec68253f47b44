package auth_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/google/uuid"

	"github.com/tenancyhq/tenancy/internal/auth"
)

var secret = []byte(strings.Repeat("s", 40))

func verifier(t *testing.T, cfg auth.Config) *auth.Verifier {
	t.Helper()
	if cfg.Secret == nil {
		cfg.Secret = secret
	}
	v, err := auth.NewVerifier(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func TestTokensAreCheckedStrictly(t *testing.T) {
	t.Parallel()
	tenant := uuid.New()
	good, _ := auth.Mint(secret, "alice", []string{auth.ScopeWrite}, &tenant, time.Hour, "tenancy", "api")
	expired, _ := auth.Mint(secret, "alice", []string{auth.ScopeRead}, nil, -time.Hour, "", "")
	wrongSig, _ := auth.Mint([]byte(strings.Repeat("x", 40)), "alice", []string{auth.ScopeRead}, nil, time.Hour, "", "")
	wrongAud, _ := auth.Mint(secret, "alice", []string{auth.ScopeRead}, nil, time.Hour, "tenancy", "other")
	none, _ := jwt.NewWithClaims(jwt.SigningMethodNone, jwt.MapClaims{"sub": "alice", "scope": "tenancy:admin", "exp": time.Now().Add(time.Hour).Unix()}).SignedString(jwt.UnsafeAllowNoneSignatureType)
	noExp, _ := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{"sub": "alice", "scope": "tenancy:admin"}).SignedString(secret)

	v := verifier(t, auth.Config{Issuer: "tenancy", Audience: "api"})
	p, err := v.Verify(good)
	if err != nil || p.Subject != "alice" || !p.Can(auth.ScopeRead) || !p.Can(auth.ScopeWrite) || p.Can(auth.ScopeAdmin) || *p.TenantID != tenant {
		t.Fatalf("good token: %+v, %v", p, err)
	}
	for name, tok := range map[string]string{"expired": expired, "wrong signature": wrongSig, "wrong audience": wrongAud,
		"alg none": none, "no exp": noExp, "garbage": "a.b.c", "empty": ""} {
		if _, err := v.Verify(tok); err == nil {
			t.Errorf("%s token accepted", name)
		}
	}
	if _, err := auth.NewVerifier(context.Background(), auth.Config{Secret: []byte("short")}); err == nil {
		t.Error("a short secret was accepted")
	}
}

// TestTimeClaimsMustBeNumbersAndIssuedNotInTheFuture: exp, nbf and iat are
// JSON numbers (RFC 7519's NumericDate), never numbers in strings, and a
// token issued in the future (beyond the leeway) is refused.
func TestTimeClaimsMustBeNumbersAndIssuedNotInTheFuture(t *testing.T) {
	t.Parallel()
	now := time.Now()
	in := func(d time.Duration) int64 { return now.Add(d).Unix() }
	sign := func(c jwt.MapClaims) string {
		c["sub"], c["scope"] = "alice", auth.ScopeRead
		tok, err := jwt.NewWithClaims(jwt.SigningMethodHS256, c).SignedString(secret)
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	v := verifier(t, auth.Config{})
	for _, tc := range []struct {
		name   string
		claims jwt.MapClaims
		ok     bool
	}{
		{"numbers", jwt.MapClaims{"exp": in(time.Hour), "nbf": in(-time.Minute), "iat": in(-time.Minute)}, true},
		{"iat within the leeway", jwt.MapClaims{"exp": in(time.Hour), "iat": in(10 * time.Second)}, true},
		{"exp as a numeric string", jwt.MapClaims{"exp": fmt.Sprint(in(time.Hour))}, false},
		{"nbf as a numeric string", jwt.MapClaims{"exp": in(time.Hour), "nbf": fmt.Sprint(in(-time.Minute))}, false},
		{"iat as a numeric string", jwt.MapClaims{"exp": in(time.Hour), "iat": fmt.Sprint(in(-time.Minute))}, false},
		{"iat in the future", jwt.MapClaims{"exp": in(time.Hour), "iat": in(10 * time.Minute)}, false},
		{"exp as a boolean", jwt.MapClaims{"exp": true}, false},
	} {
		_, err := v.Verify(sign(tc.claims))
		if (err == nil) != tc.ok {
			t.Errorf("%s: err = %v, want ok = %v", tc.name, err, tc.ok)
		}
	}
}
