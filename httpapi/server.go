// Package httpapi is the REST API of the tenancy service: an Echo server whose
// routes, OpenAPI 3.1 document and request validation all come from one route
// table, so the document cannot drift from the server. Every error leaves as
// RFC 9457 application/problem+json.
package httpapi

import (
	"context"
	"encoding/json"
	"fmt"
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
	Load(ctx context.Context, id uuid.UUID) (*aggregate.Tenant, []aggregate.Envelope, error)
}

// Queries is what the API needs of the read side.
type Queries interface {
	Get(ctx context.Context, idOrExternalID string) (*aggregate.Tenant, eventstore.Position, error)
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
	// Feed is the global feed the live event stream follows (optional;
	// without it the stream answers 503).
	Feed EventFeed
}

// Observer records request metrics.
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
	if opts.ConsistencyWait <= 0 {
		opts.ConsistencyWait = 2 * time.Second
	}
	if deps.TracerProvider == nil {
		deps.TracerProvider = noop.NewTracerProvider()
	}
	s := &Server{echo: echo.New(), deps: deps, opts: opts, logger: deps.Logger,
		auditLog: deps.Logger.With("logger", "audit"), tracer: deps.TracerProvider.Tracer("github.com/tenancyhq/tenancy/httpapi"),
		streams: make(chan struct{}, maxStreams)}
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

// ServeHTTP implements http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.echo.ServeHTTP(w, r) }

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

// ---- correlation ids and access logs ----

type ctxKey int

const correlationKey ctxKey = iota

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
			s.deps.Observer.ObserveRequest(route, c.Request().Method, c.Response().Status, took)
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
		ctx, span := s.tracer.Start(ctx, req.Method+" "+c.Path(), trace.WithSpanKind(trace.SpanKindServer),
			trace.WithAttributes(attribute.String("http.request.method", req.Method), attribute.String("http.route", c.Path()),
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
