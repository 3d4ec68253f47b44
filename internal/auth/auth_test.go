package auth_test

import (
	"context"
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
