package httpapi_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"mime"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/tenancyhq/tenancy/aggregate"
	"github.com/tenancyhq/tenancy/commands"
	"github.com/tenancyhq/tenancy/internal/contract"
	"github.com/tenancyhq/tenancy/internal/pgtest"
	"github.com/tenancyhq/tenancy/service"
)

// service is the whole tenancy service running in-process on a fresh
// database, listening on a loopback port.
type testService struct {
	t      testing.TB
	app    *service.App
	base   string
	client *http.Client
	// dbURL is the service's database.
	dbURL string
	// stop cancels Run; done is closed when Run has returned runErr.
	stop   context.CancelFunc
	done   chan struct{}
	runErr error
	// contract checks every response against the document the service
	// serves (strict: statuses, headers, bodies, no undeclared members).
	contract *contract.Checker
}

// wait waits (at most timeout) for Run to return and reports what it returned.
func (s *testService) wait(timeout time.Duration) (error, bool) {
	select {
	case <-s.done:
		return s.runErr, true
	case <-time.After(timeout):
		return nil, false
	}
}

// startService opens the service on a new database (migrations applied,
// projections running) and serves it until the test ends. Provisioning is
// external, so tenants stay in PROVISIONING until the test completes it.
func startService(t testing.TB) *testService {
	t.Helper()
	return startServiceWith(t, service.Config{ExternalProvisioning: true})
}

func startServiceWith(t testing.TB, cfg service.Config) *testService {
	t.Helper()
	return startServiceWithProjections(t, cfg, true)
}

// startServiceWithProjections is startServiceWith, with the projections
// running or not (a replica whose read model never catches up).
func startServiceWithProjections(t testing.TB, cfg service.Config, projections bool) *testService {
	t.Helper()
	if cfg.DatabaseURL == "" {
		cfg.DatabaseURL = pgtest.NewDatabase(t)
	}
	cfg.HTTPAddr = "127.0.0.1:0"
	cfg.Migrate, cfg.Projections = true, projections
	cfg.DataDir = t.TempDir() // the development master key, not in the source tree
	if _, bench := t.(*testing.B); !bench && cfg.MaxConns == 0 {
		// Tests run side by side on one server of 100 connections.
		cfg.MaxConns = 10
	}
	if cfg.ConsistencyWait == 0 {
		// A loaded CI machine can take longer than the 2 s default for the
		// read model to catch up; the tests check consistency, not speed.
		cfg.ConsistencyWait = 15 * time.Second
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	a, err := service.Open(ctx, cfg)
	if err != nil {
		t.Fatalf("service.Open: %v", err)
	}
	runCtx, stop := context.WithCancel(context.Background())
	s := &testService{t: t, app: a, base: "http://" + a.Addr(), dbURL: cfg.DatabaseURL, stop: stop, done: make(chan struct{}),
		client: &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 64}}}
	go func() {
		defer close(s.done)
		s.runErr = a.Run(runCtx)
	}()
	s.contract = contractOf(t, s.client, s.base)
	t.Cleanup(func() {
		stop()
		if err, ok := s.wait(30 * time.Second); !ok {
			t.Errorf("Run did not return 30 s after its context ended")
		} else if err != nil {
			t.Errorf("Run returned %v", err)
		}
		s.client.CloseIdleConnections()
		a.Close()
	})
	return s
}

// contractOf loads the document the service at base serves into a
// contract checker (cached per document).
func contractOf(t testing.TB, client *http.Client, base string) *contract.Checker {
	t.Helper()
	c, err := contract.Fetch(client, base)
	if err != nil {
		t.Fatalf("the served document: %v", err)
	}
	return c
}

// response is a finished HTTP exchange.
type response struct {
	status int
	header http.Header
	body   []byte
}

func (r response) json(t testing.TB) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(r.body, &m); err != nil {
		t.Fatalf("response body is not a JSON object: %v\n%s", err, r.body)
	}
	return m
}

func (r response) String() string {
	return http.StatusText(r.status) + " " + string(r.body)
}

// do sends a request; body may be nil, a string or []byte (sent as is), or
// anything else (sent as JSON). headers are name, value pairs.
func (s *testService) do(method, path string, body any, headers ...string) response {
	s.t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	case []byte:
		rd = bytes.NewReader(b)
	case io.Reader: // sent chunked, without a Content-Length
		rd = b
	default:
		j, err := json.Marshal(b)
		if err != nil {
			s.t.Fatalf("marshal request: %v", err)
		}
		rd = bytes.NewReader(j)
	}
	req, err := http.NewRequest(method, s.base+path, rd)
	if err != nil {
		s.t.Fatalf("request: %v", err)
	}
	if rd != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(headers); i += 2 {
		if headers[i+1] == "" {
			req.Header.Del(headers[i])
			continue
		}
		req.Header.Set(headers[i], headers[i+1])
	}
	res, err := s.client.Do(req)
	if err != nil {
		s.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		s.t.Fatalf("%s %s: read body: %v", method, path, err)
	}
	if s.contract != nil {
		for _, v := range s.contract.CheckResponse(req, res, b) {
			s.t.Errorf("%s %s answered %d, which the document does not allow: %s\n%.300s", method, path, res.StatusCode, v, b)
		}
	}
	return response{status: res.StatusCode, header: res.Header, body: b}
}

// must sends a request and fails the test unless it answers want.
func (s *testService) must(want int, method, path string, body any, headers ...string) response {
	s.t.Helper()
	r := s.do(method, path, body, headers...)
	if r.status != want {
		s.t.Fatalf("%s %s: status %d, want %d: %s", method, path, r.status, want, r.body)
	}
	return r
}

// checkProblem asserts that r is an RFC 9457 problem with the given status
// (and, when field is not empty, the field and rule) and returns it.
func checkProblem(t testing.TB, r response, status int, field, rule string) map[string]any {
	t.Helper()
	if r.status != status {
		t.Fatalf("status %d, want %d: %s", r.status, status, r.body)
	}
	p := problemOf(t, r)
	if field != "" && (p["field"] != field || p["rule"] != rule) {
		t.Errorf("problem field/rule = %v/%v, want %s/%s: %s", p["field"], p["rule"], field, rule, r.body)
	}
	return p
}

// problemOf asserts that r is application/problem+json with type, title and
// a status equal to the HTTP status.
func problemOf(t testing.TB, r response) map[string]any {
	t.Helper()
	if err := problemError(r); err != "" {
		t.Fatalf("%s", err)
	}
	return r.json(t)
}

// problemError says what is wrong with r as a problem document ("" if nothing).
func problemError(r response) string {
	mt, _, _ := mime.ParseMediaType(r.header.Get("Content-Type"))
	if mt != "application/problem+json" {
		return "status " + http.StatusText(r.status) + ": Content-Type " + r.header.Get("Content-Type") + ", want application/problem+json: " + string(r.body)
	}
	var p struct {
		Type   string `json:"type"`
		Title  string `json:"title"`
		Status int    `json:"status"`
	}
	if err := json.Unmarshal(r.body, &p); err != nil {
		return "problem body: " + err.Error() + ": " + string(r.body)
	}
	if p.Type == "" || p.Title == "" || p.Status != r.status {
		return "problem lacks type or title, or its status differs from the response's: " + string(r.body)
	}
	return ""
}

// commandsRequest is a command for a tenant, as the command handler takes it.
func commandsRequest(id uuid.UUID, cmd aggregate.Command) commands.Request {
	return commands.Request{TenantID: id, Command: cmd, Metadata: aggregate.Metadata{Actor: "test"}}
}
