// Package sdktest runs the whole tenancy service in-process for the SDK's
// tests: a fresh Postgres database, an embedded NATS server on a random
// port that a test may stop and start again, authentication on, served on
// a loopback port. Only tests import it.
package sdktest

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/tenancyhq/tenancy/aggregate"
	"github.com/tenancyhq/tenancy/internal/auth"
	"github.com/tenancyhq/tenancy/internal/natsserver"
	"github.com/tenancyhq/tenancy/internal/pgtest"
	"github.com/tenancyhq/tenancy/service"
)

// The tokens' secret, issuer and audience.
var (
	secret   = []byte("sdk-test-secret-0123456789abcdef-0123")
	issuer   = "https://id.tenancy.test"
	audience = "tenancy-api"
)

// Service is a running tenancy service.
type Service struct {
	t testing.TB
	// BaseURL is the API's address, http://127.0.0.1:port.
	BaseURL string
	// NATSURL is the embedded NATS server's address.
	NATSURL string
	// ReadToken has scope tenancy:read (what the SDK needs); WriteToken
	// tenancy:write, for the test's commands.
	ReadToken, WriteToken string
	App                   *service.App

	nats     *natsserver.Server
	natsDir  string
	natsAddr string
	client   *http.Client
}

// Start runs the service until the test ends.
func Start(t testing.TB) *Service {
	t.Helper()
	s := &Service{t: t, natsDir: t.TempDir(), client: &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 64}}}
	s.nats = natsserver.StartTestServer(t, natsserver.Options{StoreDir: s.natsDir})
	s.NATSURL = s.nats.ClientURL()
	s.natsAddr = strings.TrimPrefix(s.NATSURL, "nats://")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	v, err := auth.NewVerifier(ctx, auth.Config{Secret: secret, Issuer: issuer, Audience: audience})
	if err != nil {
		t.Fatal(err)
	}
	cfg := service.Config{
		DatabaseURL:          pgtest.NewDatabase(t),
		HTTPAddr:             "127.0.0.1:0",
		Migrate:              true,
		Projections:          true,
		ExternalProvisioning: true,
		DataDir:              t.TempDir(),
		NATSURL:              s.NATSURL,
		ConsistencyWait:      15 * time.Second,
		Auth:                 v,
		Logger:               slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelError})),
		Version:              "test",
	}
	a, err := service.Open(ctx, cfg)
	if err != nil {
		t.Fatalf("service.Open: %v", err)
	}
	runCtx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(runCtx) }()
	s.App, s.BaseURL = a, "http://"+a.Addr()
	s.ReadToken = s.Token("sdk", auth.ScopeRead)
	s.WriteToken = s.Token("operator", auth.ScopeWrite)
	t.Cleanup(func() {
		stop()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run returned %v", err)
			}
		case <-time.After(30 * time.Second):
			t.Errorf("Run did not return 30 s after its context ended")
		}
		s.client.CloseIdleConnections()
		a.Close()
	})
	return s
}

// Token mints a token with the given scopes.
func (s *Service) Token(subject string, scopes ...string) string {
	s.t.Helper()
	tok, err := auth.Mint(secret, subject, scopes, nil, time.Hour, issuer, audience)
	if err != nil {
		s.t.Fatal(err)
	}
	return tok
}

// StopNATS shuts the NATS server down (an outage).
func (s *Service) StopNATS() {
	s.t.Helper()
	s.nats.Shutdown()
}

// StartNATS starts the NATS server again on the same address and store.
func (s *Service) StartNATS() {
	s.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var err error
	for ctx.Err() == nil { // the port may take a moment to be free again
		var srv *natsserver.Server
		if srv, err = natsserver.Start(ctx, natsserver.Options{Listen: s.natsAddr, StoreDir: s.natsDir}); err == nil {
			s.nats = srv
			s.t.Cleanup(srv.Shutdown)
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	s.t.Fatalf("restart NATS on %s: %v", s.natsAddr, err)
}

// Response is a finished HTTP exchange.
type Response struct {
	Status int
	Header http.Header
	Body   []byte
}

// Version is the tenant version in the response's ETag.
func (r Response) Version() uint64 {
	v, _ := strconv.ParseUint(strings.Trim(strings.TrimPrefix(r.Header.Get("ETag"), "W/"), `"`), 10, 64)
	return v
}

// Do sends a request with the write token; body is nil or JSON-encoded.
func (s *Service) Do(method, path string, body any) Response {
	s.t.Helper()
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			s.t.Fatal(err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, s.BaseURL+path, rd)
	if err != nil {
		s.t.Fatal(err)
	}
	if rd != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Authorization", "Bearer "+s.WriteToken)
	res, err := s.client.Do(req)
	if err != nil {
		s.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		s.t.Fatal(err)
	}
	return Response{Status: res.StatusCode, Header: res.Header, Body: b}
}

// Must is Do, failing the test unless the status is 2xx.
func (s *Service) Must(method, path string, body any) Response {
	s.t.Helper()
	r := s.Do(method, path, body)
	if r.Status < 200 || r.Status > 299 {
		s.t.Fatalf("%s %s: %d %s", method, path, r.Status, r.Body)
	}
	return r
}

// Command runs a lifecycle command (POST /api/v1/tenants/{id}/<name>).
func (s *Service) Command(id uuid.UUID, name aggregate.CommandName, body any) Response {
	s.t.Helper()
	if body == nil {
		body = map[string]any{}
	}
	return s.Must(http.MethodPost, "/api/v1/tenants/"+id.String()+"/"+string(name), body)
}

// CreateActive creates a tenant in edition ed and completes its
// provisioning, so it is ACTIVE; it returns its id.
func (s *Service) CreateActive(name string, ed aggregate.Edition, region aggregate.Region) uuid.UUID {
	s.t.Helper()
	r := s.Must(http.MethodPost, "/api/v1/tenants", map[string]any{"name": name, "edition": ed, "region": region, "trial": false,
		"contacts": []map[string]string{{"role": "primary", "email": "owner@" + strings.ToLower(strings.ReplaceAll(name, " ", "")) + ".example"}}})
	var t struct {
		ID uuid.UUID `json:"id"`
	}
	if err := json.Unmarshal(r.Body, &t); err != nil {
		s.t.Fatal(err)
	}
	s.ReadYourWrite(s.Command(t.ID, aggregate.CmdCompleteProvisioning, nil))
	return t.ID
}

// ReadYourWrite waits until the read model shows the command that answered r.
func (s *Service) ReadYourWrite(r Response) {
	s.t.Helper()
	req, err := http.NewRequest(http.MethodGet, s.BaseURL+"/api/v1/tenants/00000000-0000-0000-0000-000000000000", nil)
	if err != nil {
		s.t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+s.WriteToken)
	req.Header.Set("X-Consistency-Token", r.Header.Get("X-Consistency-Token"))
	res, err := s.client.Do(req)
	if err != nil {
		s.t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusNotFound { // waited, then looked the nil tenant up
		s.t.Fatalf("read model did not reach %s: %d", r.Header.Get("X-Consistency-Token"), res.StatusCode)
	}
}
