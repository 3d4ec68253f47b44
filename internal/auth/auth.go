// Package auth checks the bearer tokens (JWT) the API requires and mints
// tokens for development and scripts.
//
// Tokens are HS256 with a shared secret (JWT_SECRET, at least 32 bytes) or
// RS256/ES256 from a JWKS endpoint (JWT_JWKS_URL); the issuer and audience
// are checked when configured. Claims: sub (the actor), scope
// (space-separated tenancy:read, tenancy:write, tenancy:admin) and an
// optional tenant_id binding the token to one tenant.
package auth

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/MicahParks/keyfunc/v3"
	"github.com/golang-jwt/jwt/v5"
	"github.com/google/uuid"
)

// The scopes. Each includes the ones before it: admin may write, write may read.
const (
	ScopeRead  = "tenancy:read"
	ScopeWrite = "tenancy:write"
	ScopeAdmin = "tenancy:admin"
)

var scopeRank = map[string]int{ScopeRead: 1, ScopeWrite: 2, ScopeAdmin: 3}

// MinSecretLength is the shortest HS256 secret accepted.
const MinSecretLength = 32

// Errors of Authenticate; each answers 401.
var (
	ErrNoToken      = errors.New("no bearer token")
	ErrInvalidToken = errors.New("invalid token")
)

// Principal is who a request acts as.
type Principal struct {
	// Subject is the token's sub: the actor recorded in events and audit logs.
	Subject string
	Scopes  []string
	// TenantID, when set, binds the token to one tenant.
	TenantID *uuid.UUID
}

// Can reports whether the principal holds scope (or a broader one).
func (p Principal) Can(scope string) bool {
	for _, s := range p.Scopes {
		if scopeRank[s] >= scopeRank[scope] {
			return true
		}
	}
	return false
}

// Config says how tokens are checked.
type Config struct {
	// Secret is the HS256 key (at least MinSecretLength bytes).
	Secret []byte
	// JWKSURL serves the RS256/ES256 public keys; used when Secret is empty.
	JWKSURL  string
	Issuer   string
	Audience string
}

// Verifier checks tokens. It remembers the tokens it accepted for a short
// while, so a client sending the same token with every request pays for
// the signature and claims checks about once a minute rather than on each
// request (BenchmarkGETAuth in httpapi). Only accepted tokens are kept,
// under their exact text, and never past their expiry.
type Verifier struct {
	keyfunc jwt.Keyfunc
	methods []string
	opts    []jwt.ParserOption
	now     func() time.Time

	mu       sync.RWMutex
	accepted map[string]acceptedToken
}

// acceptedToken is a token verified earlier, good until until.
type acceptedToken struct {
	p     Principal
	until time.Time
}

const (
	// leeway is the clock skew allowed on exp, nbf and iat.
	leeway = 30 * time.Second
	// acceptedFor bounds how long an accepted token is taken on trust
	// without checking it again: a key withdrawn from the JWKS stops being
	// accepted within it.
	acceptedFor = time.Minute
	// acceptedMax bounds how many accepted tokens are remembered.
	acceptedMax = 10_000
)

type claims struct {
	jwt.RegisteredClaims
	Scope    string `json:"scope"`
	TenantID string `json:"tenant_id,omitempty"`
}

// NewVerifier returns a verifier. With a JWKS URL it fetches the keys (and
// refreshes them in the background until ctx ends).
func NewVerifier(ctx context.Context, cfg Config) (*Verifier, error) {
	v := &Verifier{now: time.Now, accepted: map[string]acceptedToken{}}
	switch {
	case len(cfg.Secret) > 0:
		if len(cfg.Secret) < MinSecretLength {
			return nil, fmt.Errorf("JWT_SECRET is %d bytes; it must be at least %d", len(cfg.Secret), MinSecretLength)
		}
		secret := cfg.Secret
		v.keyfunc = func(*jwt.Token) (any, error) { return secret, nil }
		v.methods = []string{"HS256"}
	case cfg.JWKSURL != "":
		kf, err := keyfunc.NewDefaultCtx(ctx, []string{cfg.JWKSURL})
		if err != nil {
			return nil, fmt.Errorf("JWT_JWKS_URL %s: %w", cfg.JWKSURL, err)
		}
		v.keyfunc = kf.Keyfunc
		v.methods = []string{"RS256", "ES256"}
	default:
		return nil, errors.New("auth: configure JWT_SECRET or JWT_JWKS_URL")
	}
	// Only the configured algorithms: "none" and an HS256 token signed with a
	// public key are refused.
	// iat, when present, must not be in the future (beyond the leeway).
	v.opts = []jwt.ParserOption{jwt.WithValidMethods(v.methods), jwt.WithExpirationRequired(), jwt.WithIssuedAt(), jwt.WithLeeway(leeway),
		jwt.WithTimeFunc(func() time.Time { return v.now() })}
	if cfg.Issuer != "" {
		v.opts = append(v.opts, jwt.WithIssuer(cfg.Issuer))
	}
	if cfg.Audience != "" {
		v.opts = append(v.opts, jwt.WithAudience(cfg.Audience))
	}
	return v, nil
}

// Verify checks a token and returns its principal. The principal may be
// shared with other calls for the same token: treat it as read-only.
func (v *Verifier) Verify(token string) (Principal, error) {
	if token == "" {
		return Principal{}, ErrNoToken
	}
	now := v.now()
	v.mu.RLock()
	a, ok := v.accepted[token]
	v.mu.RUnlock()
	if ok && now.Before(a.until) {
		return a.p, nil
	}
	p, exp, err := v.verify(token)
	if err != nil {
		return Principal{}, err
	}
	// Good until it expires (as the parser counts it: exp + leeway), and
	// taken on trust for acceptedFor at most.
	until := exp.Add(leeway)
	if limit := now.Add(acceptedFor); limit.Before(until) {
		until = limit
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	if len(v.accepted) >= acceptedMax {
		for t, a := range v.accepted {
			if !now.Before(a.until) || len(v.accepted) >= acceptedMax*9/10 {
				delete(v.accepted, t) // the expired, and some others (map order is random)
			}
		}
	}
	v.accepted[token] = acceptedToken{p: p, until: until}
	return p, nil
}

// verify checks a token's signature and claims, and returns its principal
// and expiry.
func (v *Verifier) verify(token string) (Principal, time.Time, error) {
	var c claims
	if _, err := jwt.ParseWithClaims(token, &c, v.keyfunc, v.opts...); err != nil {
		return Principal{}, time.Time{}, fmt.Errorf("%w: %w", ErrInvalidToken, err)
	}
	if err := numericDates(token); err != nil {
		return Principal{}, time.Time{}, fmt.Errorf("%w: %w", ErrInvalidToken, err)
	}
	if c.Subject == "" {
		return Principal{}, time.Time{}, fmt.Errorf("%w: no sub claim", ErrInvalidToken)
	}
	p := Principal{Subject: c.Subject}
	for _, s := range strings.Fields(c.Scope) {
		if _, ok := scopeRank[s]; ok {
			p.Scopes = append(p.Scopes, s)
		}
	}
	if c.TenantID != "" {
		id, err := uuid.Parse(c.TenantID)
		if err != nil {
			return Principal{}, time.Time{}, fmt.Errorf("%w: tenant_id is not a UUID", ErrInvalidToken)
		}
		p.TenantID = &id
	}
	return p, c.ExpiresAt.Time, nil // exp is required
}

// Mint makes an HS256 token (tenancy token, and tests).
func Mint(secret []byte, subject string, scopes []string, tenant *uuid.UUID, ttl time.Duration, issuer, audience string) (string, error) {
	for _, s := range scopes {
		if _, ok := scopeRank[s]; !ok {
			return "", fmt.Errorf("unknown scope %q (want %s, %s or %s)", s, ScopeRead, ScopeWrite, ScopeAdmin)
		}
	}
	now := time.Now()
	c := claims{RegisteredClaims: jwt.RegisteredClaims{Subject: subject, IssuedAt: jwt.NewNumericDate(now), ExpiresAt: jwt.NewNumericDate(now.Add(ttl)), ID: uuid.NewString()},
		Scope: strings.Join(slices.Compact(slices.Sorted(slices.Values(scopes))), " ")}
	if issuer != "" {
		c.Issuer = issuer
	}
	if audience != "" {
		c.Audience = jwt.ClaimStrings{audience}
	}
	if tenant != nil {
		c.TenantID = tenant.String()
	}
	return jwt.NewWithClaims(jwt.SigningMethodHS256, c).SignedString(secret)
}

// LoadOrCreateSecret reads the development secret file, or makes one (0600).
// It reports whether it created it.
func LoadOrCreateSecret(path string) ([]byte, bool, error) {
	b, err := os.ReadFile(path)
	if err == nil {
		s := strings.TrimSpace(string(b))
		return []byte(s), false, nil
	}
	if !errors.Is(err, os.ErrNotExist) {
		return nil, false, err
	}
	raw := make([]byte, 48)
	if _, err := rand.Read(raw); err != nil {
		return nil, false, err
	}
	secret := base64.RawURLEncoding.EncodeToString(raw)
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, false, err
	}
	if err := os.WriteFile(path, []byte(secret+"\n"), 0o600); err != nil {
		return nil, false, err
	}
	return []byte(secret), true, nil
}

// numericDates checks that the token's exp, nbf and iat, when present, are
// JSON numbers, as RFC 7519 (NumericDate) has them. The parser also takes a
// number in a string ("exp": "1893456000"), which no issuer we trust sends.
func numericDates(token string) error {
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return errors.New("not a JWS compact token")
	}
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return fmt.Errorf("payload: %w", err)
	}
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(payload, &raw); err != nil {
		return fmt.Errorf("payload: %w", err)
	}
	for _, name := range []string{"exp", "nbf", "iat"} {
		v, ok := raw[name]
		if !ok {
			continue
		}
		if len(v) == 0 || (v[0] != '-' && (v[0] < '0' || v[0] > '9')) {
			return fmt.Errorf("claim %s is not a JSON number", name)
		}
	}
	return nil
}
