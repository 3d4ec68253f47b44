// Package httpapi is the REST API of the tenancy service: an Echo server whose
// routes, OpenAPI 3.1 document and request validation all come from one route
// table, so the document cannot drift from the server. Every error leaves as
// RFC 9457 application/problem+json.
package httpapi

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/labstack/echo/v4"
	"github.com/labstack/echo/v4/middleware"
	"github.com/swaggest/swgui/v5emb"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/tenancyhq/tenancy/aggregate"
	"github.com/tenancyhq/tenancy/commands"
	"github.com/tenancyhq/tenancy/eventstore"
	"github.com/tenancyhq/tenancy/internal/tracing"
	"github.com/tenancyhq/tenancy/queries"
)

// Commands is what the API needs of the write side.
type Commands interface {
	Execute(ctx context.Context, req commands.Request) (commands.Result, error)
	Resolve(ctx context.Context, externalID string) (uuid.UUID, error)
	Head(ctx context.Context, id uuid.UUID) (version uint64, pos eventstore.Position, ok bool, err error)
	Load(ctx context.Context, id uuid.UUID) (*aggregate.Tenant, []aggregate.Envelope, error)
}

// Queries is what the API needs of the read side.
type Queries interface {
	Get(ctx context.Context, idOrExternalID string) (*aggregate.Tenant, eventstore.Position, error)
	GetRow(ctx context.Context, idOrExternalID string, w queries.Want) (*queries.Row, error)
	GetRowFresh(ctx context.Context, id uuid.UUID, w queries.Want) (*queries.Row, queries.StreamEnd, error)
	List(ctx context.Context, f queries.ListFilter) (queries.Page, error)
	Events(ctx context.Context, tenantID uuid.UUID, f queries.EventFilter) (queries.EventPage, error)
	WaitFor(ctx context.Context, pos eventstore.Position, timeout time.Duration) error
	CountByStatusAndEdition(ctx context.Context) (map[aggregate.Status]map[aggregate.Edition]int64, error)
}

// Deps are the server's collaborators.
type Deps struct {
	Commands Commands
	Queries  Queries
	Catalog  *aggregate.Catalog
	Health   *Health
	Logger   *slog.Logger
	// Now is the clock policy evaluation uses (default time.Now).
	Now func() time.Time
	// Auth checks bearer tokens; nil turns authentication off (only an
	// explicit development flag of cmd/tenancy does that).
	Auth Verifier
	// Observer records request metrics (optional).
	Observer Observer
	// TracerProvider traces requests (default: none).
	TracerProvider trace.TracerProvider
	// Replayer answers history and as-of reads from the event stream.
	Replayer Replayer
	// Admin runs projection operations (optional; without it the admin routes answer 503).
	Admin Admin
	// Head is the event store's head (optional; without it a consistency
	// token from the future waits its ConsistencyWait, then answers 503).
	Head FeedHead
	// Feed is the global feed the live event stream follows (optional;
	// without it the stream answers 503).
	Feed EventFeed
}

// Observer records request metrics. The method it is given is MethodLabel's:
// a bounded set of label values.
type Observer interface {
	ObserveRequest(route, method string, status int, took time.Duration)
	IdempotencyReplay()
}

// Options tune the server.
type Options struct {
	// ConsistencyWait bounds how long a read waits for the read model to reach
	// a consistency token (default 2 s).
	ConsistencyWait time.Duration
	// Version is reported by /health.
	Version string
	// DefaultRegion is a create's region when the request names none
	// (default us-east-1), as the original service's examples expect.
	DefaultRegion aggregate.Region
	// BodyTimeout bounds how long a client may take to send a request's
	// body once its headers are in (default 30 s): a body that dribbles in
	// slower is cut with 408, whoever sends it.
	BodyTimeout time.Duration
	// RequestTimeout bounds one request from its headers to its answer
	// (default 60 s): past it the request's work is cancelled (503), and
	// the connection is closed if even that answer cannot be written.
	RequestTimeout time.Duration
}

// FeedHead is the event store's head: a consistency token beyond it was
// never handed out, so it is refused at once instead of waited for.
type FeedHead interface {
	Head(ctx context.Context) (eventstore.Position, error)
}

// Server is the HTTP API. It implements http.Handler.
type Server struct {
	echo     *echo.Echo
	deps     Deps
	opts     Options
	logger   *slog.Logger
	auditLog *slog.Logger
	tracer   trace.Tracer
	openapi  *openAPI
	// sessions remember each caller's last write, for its reads.
	sessions *sessions
	// renderFormat is the catalog's RenderFormat: a rendering the read
	// model holds in it is sent as is.
	renderFormat string
	// subjects are the policy subjects of tenants evaluated lately.
	subjects *subjects
	// streams bounds the live event streams; closing ends them at shutdown.
	streams      chan struct{}
	closing      context.Context
	closeStreams context.CancelFunc
}

// New builds the server and its routes.
func New(deps Deps, opts Options) (*Server, error) {
	if deps.Logger == nil {
		deps.Logger = slog.New(slog.DiscardHandler)
	}
	if deps.Catalog == nil {
		deps.Catalog = aggregate.DefaultCatalog()
	}
	if deps.Now == nil {
		deps.Now = time.Now
	}
	if deps.Health == nil {
		deps.Health = NewHealth()
	}
	if opts.DefaultRegion == "" {
		opts.DefaultRegion = "us-east-1"
	}
	if opts.ConsistencyWait <= 0 {
		opts.ConsistencyWait = 2 * time.Second
	}
	if opts.BodyTimeout <= 0 {
		opts.BodyTimeout = 30 * time.Second
	}
	if opts.RequestTimeout <= 0 {
		opts.RequestTimeout = 60 * time.Second
	}
	if deps.TracerProvider == nil {
		deps.TracerProvider = noop.NewTracerProvider()
	}
	s := &Server{echo: echo.New(), deps: deps, opts: opts, logger: deps.Logger,
		auditLog: deps.Logger.With("logger", "audit"), tracer: deps.TracerProvider.Tracer("github.com/tenancyhq/tenancy/httpapi"),
		streams: make(chan struct{}, maxStreams), sessions: newSessions(), renderFormat: deps.Catalog.RenderFormat(), subjects: newSubjects()}
	s.closing, s.closeStreams = context.WithCancel(context.Background())
	e := s.echo
	e.HideBanner, e.HidePort = true, true
	e.HTTPErrorHandler = errorHandler(s.logger)
	// The server decodes bodies itself, strictly; Echo's binder is not used.
	e.JSONSerializer = compactJSON{}

	routes := s.routes()
	oa, err := newOpenAPI(buildDocument(routes, deps.Catalog, opts.Version))
	if err != nil {
		return nil, fmt.Errorf("openapi document: %w", err)
	}
	s.openapi = oa

	e.Use(s.correlation)
	e.Use(s.traceRequest)
	e.Use(s.accessLog)
	e.Use(middleware.RecoverWithConfig(middleware.RecoverConfig{LogErrorFunc: func(c echo.Context, err error, stack []byte) error {
		s.logger.ErrorContext(c.Request().Context(), "panic", "err", err, "stack", string(stack))
		return err
	}}))
	e.Use(middleware.BodyLimit("1M"))

	for _, r := range routes {
		h := r.handler
		mws := []echo.MiddlewareFunc{s.authenticate(r)}
		if r.command || r.tag == "admin" && r.method != http.MethodGet {
			mws = append(mws, s.auditing(r))
		}
		if r.method != http.MethodGet {
			mws = append(mws, s.strictBody)
		}
		if r.idempotent() {
			mws = append(mws, s.idempotency)
		}
		mws = append(mws, s.openapi.validate)
		e.Add(r.method, echoPath(r.path), h, mws...)
	}
	e.GET("/openapi.json", func(c echo.Context) error { return c.JSONBlob(http.StatusOK, s.openapi.json) })
	docs := v5emb.New("Tenancy service API", "/openapi.json", "/docs/")
	e.GET("/docs", func(c echo.Context) error { return c.Redirect(http.StatusMovedPermanently, "/docs/") })
	e.GET("/docs/*", echo.WrapHandler(docs))
	return s, nil
}

// ServeHTTP implements http.Handler. Every request gets its deadlines
// here, before any of it is read: the body must be in within BodyTimeout
// (strictBody reads it, then moves the deadline to the request's), the
// whole request within RequestTimeout. A request without a body gets the
// request's deadline at once: once a body is read, the server's background
// read of the connection would cancel the request at the read deadline.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method == http.MethodGet && r.URL.Path == streamPath {
		// The live event stream lasts while its client listens (streams
		// are few, admin-only, and ended at shutdown): no request deadline,
		// and none from the server's WriteTimeout either.
		rc := http.NewResponseController(w)
		_ = rc.SetReadDeadline(time.Time{})
		_ = rc.SetWriteDeadline(time.Time{})
		s.echo.ServeHTTP(w, r)
		return
	}
	now := time.Now()
	end := now.Add(s.opts.RequestTimeout)
	rc := http.NewResponseController(w)
	readBy := end
	if r.ContentLength != 0 { // -1: chunked, length unknown
		readBy = now.Add(min(s.opts.BodyTimeout, s.opts.RequestTimeout))
	}
	// Not every ResponseWriter has deadlines (httptest's recorder has none).
	_ = rc.SetReadDeadline(readBy)
	// The handler's context ends at end; the connection's write deadline a
	// little later, so the 503 that says so can still be written.
	_ = rc.SetWriteDeadline(end.Add(5 * time.Second))
	ctx, cancel := context.WithDeadline(r.Context(), end)
	defer cancel()
	s.echo.ServeHTTP(w, r.WithContext(context.WithValue(ctx, deadlinesKey, requestDeadlines{rc: rc, end: end})))
}

// requestDeadlines are a request's connection and its deadline, for
// strictBody to move the read deadline once the body is in.
type requestDeadlines struct {
	rc  *http.ResponseController
	end time.Time
}

// strictBody reads a request's body (within its deadline and the 1 MiB
// limit), refuses invalid UTF-8, duplicate member names and NUL characters
// with the field named (checkJSON), and hands the body on for validation
// and decoding. Reading it here, before any other reader, is what makes a
// slow body a 408 rather than a schema error.
func (s *Server) strictBody(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		req := c.Request()
		if req.Body == nil || req.Body == http.NoBody {
			return next(c)
		}
		body, err := io.ReadAll(io.LimitReader(req.Body, maxBody+1))
		if err != nil {
			return bodyReadProblem(err)
		}
		if len(body) > maxBody {
			return echo.NewHTTPError(http.StatusRequestEntityTooLarge)
		}
		// The body is in: from now on only the request's deadline counts.
		if d, ok := req.Context().Value(deadlinesKey).(requestDeadlines); ok {
			_ = d.rc.SetReadDeadline(d.end)
		}
		if p := checkJSON(body); p != nil {
			return p
		}
		req.Body = io.NopCloser(bytes.NewReader(body))
		return next(c)
	}
}

// Routes lists every method and path the server answers, in OpenAPI form
// ("/api/v1/tenants/{id}"), for documentation and tests.
func (s *Server) Routes() []string {
	var out []string
	for _, r := range s.echo.Routes() {
		out = append(out, r.Method+" "+openAPIPath(r.Path))
	}
	slices.Sort(out)
	return out
}

// openAPIPath turns Echo's "/tenants/:id" into "/tenants/{id}".
func openAPIPath(p string) string {
	segs := strings.Split(p, "/")
	for i, seg := range segs {
		if strings.HasPrefix(seg, ":") {
			segs[i] = "{" + seg[1:] + "}"
		}
	}
	return strings.Join(segs, "/")
}

// echoPath turns "/tenants/{id}" into Echo's "/tenants/:id".
func echoPath(p string) string {
	var b strings.Builder
	for _, seg := range strings.Split(p, "/") {
		if seg == "" {
			continue
		}
		b.WriteByte('/')
		if strings.HasPrefix(seg, "{") && strings.HasSuffix(seg, "}") {
			b.WriteString(":" + seg[1:len(seg)-1])
			continue
		}
		b.WriteString(seg)
	}
	return b.String()
}

// compactJSON serializes responses without Echo's default indentation
// options, and refuses to bind (handlers decode strictly themselves).
type compactJSON struct{}

func (compactJSON) Serialize(c echo.Context, i any, indent string) error {
	enc := json.NewEncoder(c.Response())
	if indent != "" {
		enc.SetIndent("", indent)
	}
	return enc.Encode(i)
}

func (compactJSON) Deserialize(c echo.Context, i any) error { return decodeBody(c, i) }

// MethodLabel is a request method as metrics and traces name it: one of the
// methods HTTP defines, or "other", so that no client can add label values
// by making methods up.
func MethodLabel(m string) string {
	switch m {
	case http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch,
		http.MethodDelete, http.MethodOptions, http.MethodConnect, http.MethodTrace:
		return m
	}
	return "other"
}

// ---- correlation ids and access logs ----

type ctxKey int

const (
	correlationKey ctxKey = iota
	// deadlinesKey holds the request's requestDeadlines.
	deadlinesKey
)

// correlation takes the correlation id from X-Correlation-ID or X-Request-ID
// (or makes one), returns it on the response and carries it in the context.
func (s *Server) correlation(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		req := c.Request()
		id := req.Header.Get("X-Correlation-ID")
		if id == "" {
			id = req.Header.Get("X-Request-ID")
		}
		if id == "" || len(id) > 128 || strings.ContainsFunc(id, func(r rune) bool { return r < 0x21 || r > 0x7e }) {
			id = uuid.NewString()
		}
		c.Response().Header().Set("X-Correlation-ID", id)
		c.SetRequest(req.WithContext(context.WithValue(req.Context(), correlationKey, id)))
		return next(c)
	}
}

func correlationID(c echo.Context) string {
	id, _ := c.Request().Context().Value(correlationKey).(string)
	return id
}

// accessLog writes one line per request.
func (s *Server) accessLog(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		start := time.Now()
		err := next(c)
		if err != nil {
			c.Error(err)
		}
		route := c.Path()
		if route == "" {
			route = "(unmatched)"
		}
		took := time.Since(start)
		if s.deps.Observer != nil {
			s.deps.Observer.ObserveRequest(route, MethodLabel(c.Request().Method), c.Response().Status, took)
		}
		s.logger.LogAttrs(c.Request().Context(), slog.LevelInfo, "request",
			slog.String("method", c.Request().Method),
			slog.String("route", route),
			slog.Int("status", c.Response().Status),
			slog.Duration("duration", took),
			slog.String("actor", principal(c).Subject),
			slog.String("correlation_id", correlationID(c)),
			slog.String("tenant", c.Param("id")),
		)
		return nil
	}
}

// metadata is the event metadata of a command sent through the API. The
// trace context is left to the command handler, which records its own span's
// (a child of this request's).
func (s *Server) metadata(c echo.Context) aggregate.Metadata {
	return aggregate.Metadata{
		CorrelationID: correlationID(c),
		Actor:         principal(c).Subject,
	}
}

// traceRequest starts the request's server span, continuing the caller's
// trace when it sent a W3C traceparent (a malformed one is ignored).
func (s *Server) traceRequest(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		req := c.Request()
		ctx := tracing.WithTraceParent(req.Context(), req.Header.Get("traceparent"))
		ctx, span := s.tracer.Start(ctx, MethodLabel(req.Method)+" "+c.Path(), trace.WithSpanKind(trace.SpanKindServer),
			trace.WithAttributes(attribute.String("http.request.method", MethodLabel(req.Method)), attribute.String("http.route", c.Path()),
				attribute.String("tenancy.correlation_id", correlationID(c))))
		defer span.End()
		c.SetRequest(req.WithContext(ctx))
		err := next(c)
		status := c.Response().Status
		if err != nil {
			status = problemFor(err).Status
		}
		span.SetAttributes(attribute.Int("http.response.status_code", status))
		if status >= 500 {
			span.SetStatus(codes.Error, http.StatusText(status))
		}
		return err
	}
}
