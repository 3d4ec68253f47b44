package auth_test

import (
	"testing"
	"time"

	"github.com/tenancyhq/tenancy/internal/auth"
)

// TestAcceptedTokensAreRememberedButNeverPastExpiry: the verifier takes a
// token it accepted on trust for a while, but never past its exp (with the
// 30 s leeway), and never a token that differs from it.
func TestAcceptedTokensAreRememberedButNeverPastExpiry(t *testing.T) {
	t.Parallel()
	v := verifier(t, auth.Config{Issuer: "tenancy", Audience: "api"})
	start := time.Now()
	now := start
	auth.SetClock(v, func() time.Time { return now })
	tok, err := auth.Mint(secret, "alice", []string{auth.ScopeRead}, nil, 10*time.Minute, "tenancy", "api")
	if err != nil {
		t.Fatal(err)
	}
	for _, step := range []struct {
		at time.Duration
		ok bool
	}{
		{0, true}, {10 * time.Second, true}, {9 * time.Minute, true},
		{10*time.Minute + 29*time.Second, true},  // within the leeway
		{10*time.Minute + 31*time.Second, false}, // remembered a second ago, expired now
		{11 * time.Minute, false},
	} {
		now = start.Add(step.at)
		p, err := v.Verify(tok)
		if (err == nil) != step.ok || (step.ok && p.Subject != "alice") {
			t.Errorf("at +%s: %+v, %v; want accepted %v", step.at, p, err, step.ok)
		}
	}

	now = start
	fresh, _ := auth.Mint(secret, "bob", []string{auth.ScopeRead}, nil, time.Hour, "tenancy", "api")
	if _, err := v.Verify(fresh); err != nil {
		t.Fatal(err)
	}
	other := "A"
	if fresh[len(fresh)-2] == 'A' {
		other = "B"
	}
	tampered := fresh[:len(fresh)-2] + other + fresh[len(fresh)-1:]
	if _, err := v.Verify(tampered); err == nil {
		t.Error("a token one character away from a remembered one was accepted")
	}
}
