package service_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/trace"

	"github.com/tenancyhq/tenancy/eventstore"
	"github.com/tenancyhq/tenancy/internal/auth"
	"github.com/tenancyhq/tenancy/internal/contract"
	"github.com/tenancyhq/tenancy/internal/logging"
	"github.com/tenancyhq/tenancy/internal/natsserver"
	"github.com/tenancyhq/tenancy/internal/pgtest"
	"github.com/tenancyhq/tenancy/projections"
	"github.com/tenancyhq/tenancy/service"
)

// The tokens' secret, issuer and audience when a test turns authentication on.
var (
	testSecret = []byte("security-test-secret-0123456789abcdef")
	testIssuer = "https://id.tenancy.test"
	testAud    = "tenancy-api"
)

// serviceOptions select what a test's service runs with.
type serviceOptions struct {
	// auth turns authentication on with the test secret, issuer and audience.
	auth bool
	// tracer traces the service (default: none).
	tracer trace.TracerProvider
	// now is the clock of commands and timers (default time.Now).
	now func() time.Time
	// noProjections runs the API alone: no projection, timer or NATS.
	noProjections bool
	// databaseURL is the service's database (default: a fresh one on the
	// test server), so that two instances can share one; holder names the
	// instance.
	databaseURL, holder string
	// readDatabaseURL is a read replica for the queries (DatabaseReadURL).
	readDatabaseURL string
	// consistencyWait bounds a read's wait for its writes (default 2 s).
	consistencyWait time.Duration
	// logLevel is the lowest level logged (default debug); benchmarks log
	// as production does, at info.
	logLevel slog.Level
}

// service is the whole tenancy service, started with service.Open and Run on a
// fresh database, publishing to an embedded NATS server, served over TCP
// loopback, its JSON logs captured.
type testService struct {
	t      testing.TB
	app    *service.App
	dbURL  string
	base   string
	client *http.Client
	logs   *logBuffer
	nats   string
	// contract checks every response against the served document.
	contract *contract.Checker
}

// startService runs the service until the test ends. Provisioning is
// external, so tenants stay in PROVISIONING until the test completes it.
func startService(t testing.TB, o serviceOptions) *testService {
	t.Helper()
	logs := &logBuffer{}
	level := slog.LevelDebug
	if o.logLevel != 0 {
		level = o.logLevel
	}
	logger, err := logging.New(logs, "json", level)
	if err != nil {
		t.Fatal(err)
	}
	if o.databaseURL == "" {
		o.databaseURL = pgtest.NewDatabase(t)
	}
	cfg := service.Config{
		DatabaseURL:          o.databaseURL,
		DatabaseReadURL:      o.readDatabaseURL,
		ConsistencyWait:      o.consistencyWait,
		Holder:               o.holder,
		HTTPAddr:             "127.0.0.1:0",
		Migrate:              true,
		Projections:          !o.noProjections,
		ExternalProvisioning: true,
		DataDir:              t.TempDir(),
		NATSURL:              natsserver.StartTest(t),
		TracerProvider:       o.tracer,
		Now:                  o.now,
		Logger:               logger,
		Version:              "test",
	}
	if _, bench := t.(*testing.B); !bench {
		// Tests run side by side on one server of 100 connections.
		cfg.MaxConns = 10
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if o.auth {
		v, err := auth.NewVerifier(ctx, auth.Config{Secret: testSecret, Issuer: testIssuer, Audience: testAud})
		if err != nil {
			t.Fatal(err)
		}
		cfg.Auth = v
	}
	a, err := service.Open(ctx, cfg)
	if err != nil {
		t.Fatalf("service.Open: %v", err)
	}
	runCtx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(runCtx) }()
	s := &testService{t: t, app: a, base: "http://" + a.Addr(), logs: logs, nats: cfg.NATSURL, dbURL: cfg.DatabaseURL,
		client: &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 16}}}
	if s.contract, err = contract.Fetch(s.client, s.base); err != nil {
		t.Fatalf("the served document: %v", err)
	}
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

// token mints a token with the test secret, issuer and audience.
func token(t testing.TB, subject string, tenant *uuid.UUID, scopes ...string) string {
	t.Helper()
	tok, err := auth.Mint(testSecret, subject, scopes, tenant, time.Hour, testIssuer, testAud)
	if err != nil {
		t.Fatal(err)
	}
	return tok
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

// do sends a request with the bearer token tok (none if empty). body is
// nil, a string (sent as is) or anything else (sent as JSON); headers are
// name, value pairs.
func (s *testService) do(tok, method, path string, body any, headers ...string) response {
	s.t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
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
	if tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	for i := 0; i+1 < len(headers); i += 2 {
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
	for _, v := range s.contract.CheckResponse(req, res, b) {
		s.t.Errorf("%s %s answered %d, which the document does not allow: %s\n%.300s", method, path, res.StatusCode, v, b)
	}
	return response{status: res.StatusCode, header: res.Header, body: b}
}

// must sends a request and fails the test unless it answers want.
func (s *testService) must(want int, tok, method, path string, body any, headers ...string) response {
	s.t.Helper()
	r := s.do(tok, method, path, body, headers...)
	if r.status != want {
		s.t.Fatalf("%s %s: status %d, want %d: %s", method, path, r.status, want, r.body)
	}
	return r
}

// read waits until the read model holds what the command that answered r
// did (its X-Consistency-Token).
func (s *testService) read(r response) {
	s.t.Helper()
	pos, err := eventstore.ParsePosition(r.header.Get("X-Consistency-Token"))
	if err != nil {
		s.t.Fatalf("X-Consistency-Token %q: %v", r.header.Get("X-Consistency-Token"), err)
	}
	if err := s.app.Reader.WaitFor(context.Background(), pos, 20*time.Second); err != nil {
		s.t.Fatalf("read model: %v", err)
	}
}

// caughtUp waits until every projection (read model, scheduler, NATS
// publisher) has applied every event in the store.
func (s *testService) caughtUp() {
	s.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for _, name := range service.ProjectionNames() {
		for {
			st, err := projections.Status(ctx, s.app.Pool(), s.app.RawStore(), name)
			if err != nil {
				s.t.Fatalf("projection %s: %v", name, err)
			}
			if st.Position != (eventstore.Position{}) && st.LagEvents == 0 {
				break
			}
			select {
			case <-ctx.Done():
				s.t.Fatalf("projection %s did not catch up: %+v", name, st)
			case <-time.After(20 * time.Millisecond):
			}
		}
	}
}

// jetStream connects to the service's NATS server for the test.
func jetStream(t testing.TB, s *testService) jetstream.JetStream {
	t.Helper()
	nc, err := nats.Connect(s.nats)
	if err != nil {
		t.Fatalf("NATS: %v", err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatalf("JetStream: %v", err)
	}
	return js
}

// logBuffer collects the service's log output; safe for concurrent writers.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// String is everything logged so far.
func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// records are the log lines so far, each decoded from JSON.
func (b *logBuffer) records(t testing.TB) []map[string]any {
	t.Helper()
	var out []map[string]any
	sc := bufio.NewScanner(strings.NewReader(b.String()))
	sc.Buffer(make([]byte, 0, 64<<10), 4<<20)
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("log line is not JSON: %v: %s", err, sc.Text())
		}
		out = append(out, m)
	}
	return out
}
