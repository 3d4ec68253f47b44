package httpapi

import (
	"context"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/labstack/echo/v4"
)

// Check is one dependency the service needs. A failing critical check makes
// the service not ready; a failing non-critical one makes it degraded (for
// example NATS: commands still succeed and events wait to be published).
type Check struct {
	Name     string
	Critical bool
	Probe    func(ctx context.Context) error
}

// ProjectionHealth is a projection's lag, for /health/dependencies.
type ProjectionHealth struct {
	Name       string  `json:"name"`
	State      string  `json:"state"`
	Position   string  `json:"position"`
	Head       string  `json:"head"`
	LagEvents  int64   `json:"lag_events"`
	LagSeconds float64 `json:"lag_seconds"`
	Failures   int64   `json:"failures"`
	Holder     string  `json:"holder,omitempty"`
	// LastError is why the projection halted, or the last event it skipped.
	LastError string `json:"last_error,omitempty"`
}

// ReplicaHealth is the read replica's state (DATABASE_READ_URL), in every
// health report: how far it lags the primary. A replica that is down or
// paused makes the service degraded, not down: commands still succeed on
// the primary, and reads the replica cannot answer in time answer 503.
type ReplicaHealth struct {
	// Status is ok, paused (replay paused) or down (unreachable).
	Status string `json:"status"`
	// Standby is false when the read URL names a server not in recovery
	// (a promoted standby, or the primary itself): then it lags nothing.
	Standby      bool `json:"standby"`
	ReplayPaused bool `json:"replay_paused"`
	// LagBytes is the primary's WAL the replica has not replayed yet.
	LagBytes int64 `json:"lag_bytes"`
	// LagSeconds is, while LagBytes > 0, how long ago the replica replayed
	// its last transaction (0 when caught up).
	LagSeconds float64 `json:"lag_seconds"`
	Error      string  `json:"error,omitempty"`
}

// Health gathers the service's checks. The zero value is not usable; call NewHealth.
type Health struct {
	mu          sync.Mutex
	checks      []Check
	projections func(ctx context.Context) ([]ProjectionHealth, error)
	replica     func(ctx context.Context) (ReplicaHealth, error)
	started     atomic.Bool
}

// NewHealth returns a Health with the given checks.
func NewHealth(checks ...Check) *Health { return &Health{checks: checks} }

// Add adds a check.
func (h *Health) Add(c Check) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.checks = append(h.checks, c)
}

// SetProjections sets where projection lag comes from.
func (h *Health) SetProjections(fn func(ctx context.Context) ([]ProjectionHealth, error)) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.projections = fn
}

// SetReplica sets where the read replica's state comes from (none: the
// reports have no replica).
func (h *Health) SetReplica(fn func(ctx context.Context) (ReplicaHealth, error)) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.replica = fn
}

// MarkStarted says start-up (migrations, connections) is done.
func (h *Health) MarkStarted() { h.started.Store(true) }

type checkResult struct {
	Status    string  `json:"status"` // ok | down
	Critical  bool    `json:"critical"`
	LatencyMS float64 `json:"latency_ms"`
	Error     string  `json:"error,omitempty"`
}

type healthReport struct {
	Status      string                 `json:"status"` // ok | degraded | down
	Version     string                 `json:"version,omitempty"`
	Checks      map[string]checkResult `json:"checks,omitempty"`
	Projections []ProjectionHealth     `json:"projections,omitempty"`
	Replica     *ReplicaHealth         `json:"replica,omitempty"`
}

// run probes every check at once, each bounded by a timeout.
func (h *Health) run(ctx context.Context) healthReport {
	h.mu.Lock()
	checks := append([]Check(nil), h.checks...)
	replica := h.replica
	h.mu.Unlock()
	rep := healthReport{Status: "ok", Checks: map[string]checkResult{}}
	var mu sync.Mutex
	var wg sync.WaitGroup
	if replica != nil {
		wg.Go(func() {
			cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			defer cancel()
			r, err := replica(cctx)
			switch {
			case err != nil:
				r.Status, r.Error = "down", err.Error()
			case r.ReplayPaused:
				r.Status = "paused"
			default:
				r.Status = "ok"
			}
			mu.Lock()
			defer mu.Unlock()
			rep.Replica = &r
			if r.Status != "ok" && rep.Status == "ok" {
				rep.Status = "degraded"
			}
		})
	}
	for _, c := range checks {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			defer cancel()
			start := time.Now()
			err := c.Probe(cctx)
			res := checkResult{Status: "ok", Critical: c.Critical, LatencyMS: float64(time.Since(start).Microseconds()) / 1000}
			if err != nil {
				res.Status, res.Error = "down", err.Error()
			}
			mu.Lock()
			defer mu.Unlock()
			rep.Checks[c.Name] = res
			if err != nil {
				if c.Critical {
					rep.Status = "down"
				} else if rep.Status == "ok" {
					rep.Status = "degraded"
				}
			}
		}()
	}
	wg.Wait()
	return rep
}

func (s *Server) healthRoutes() []route {
	h := s.deps.Health
	report := func(c echo.Context, withProjections bool) error {
		rep := h.run(c.Request().Context())
		rep.Version = s.opts.Version
		if withProjections {
			h.mu.Lock()
			fn := h.projections
			h.mu.Unlock()
			if fn != nil {
				ps, err := fn(c.Request().Context())
				if err != nil {
					rep.Checks["projections"] = checkResult{Status: "down", Error: err.Error()}
				}
				rep.Projections = ps
			}
		}
		status := http.StatusOK
		if rep.Status == "down" {
			status = http.StatusServiceUnavailable
		}
		return c.JSON(status, rep)
	}
	get := func(path, id, summary string, fn echo.HandlerFunc) route {
		return route{method: http.MethodGet, path: path, operationID: id, tag: "health", summary: summary,
			status: http.StatusOK, result: healthReport{}, handler: fn}
	}
	routes := []route{
		get("/health", "health", "Summary: ok, degraded (a non-critical dependency is down) or down",
			func(c echo.Context) error { return report(c, false) }),
		get("/health/live", "healthLive", "The process is alive",
			func(c echo.Context) error { return c.JSON(http.StatusOK, healthReport{Status: "ok"}) }),
		get("/health/ready", "healthReady", "Ready for traffic: every critical dependency answers (503 otherwise)",
			func(c echo.Context) error {
				if !h.started.Load() {
					return c.JSON(http.StatusServiceUnavailable, healthReport{Status: "down"})
				}
				return report(c, false)
			}),
		get("/health/startup", "healthStartup", "Start-up finished (migrations applied, connections made)",
			func(c echo.Context) error {
				if !h.started.Load() {
					return c.JSON(http.StatusServiceUnavailable, healthReport{Status: "down"})
				}
				return c.JSON(http.StatusOK, healthReport{Status: "ok"})
			}),
		get("/health/dependencies", "healthDependencies", "Each dependency with its status and latency, and projection lag",
			func(c echo.Context) error { return report(c, true) }),
	}
	// The original service served its probes under /api/v1: the same
	// routes there, so old probe settings keep working.
	for _, r := range routes[:3] {
		alias := r
		alias.path = "/api/v1" + r.path
		alias.operationID = "v1" + strings.ToUpper(r.operationID[:1]) + r.operationID[1:]
		alias.summary = r.summary + " (alias at the original service's path)"
		routes = append(routes, alias)
	}
	return append(routes, route{method: http.MethodGet, path: "/", operationID: "serviceInfo", tag: "health",
		summary: "The service's name, version and links (documentation, OpenAPI, health, console)",
		status:  http.StatusOK, result: serviceInfo{}, handler: s.serviceInfo})
}

// serviceInfo is what GET / answers: who this is and where to go next.
func (s *Server) serviceInfo(c echo.Context) error {
	return c.JSON(http.StatusOK, serviceInfo{
		Service: "tenancy",
		Version: s.opts.Version,
		Links: map[string]string{
			"docs": "/docs", "openapi": "/openapi.json", "health": "/health", "ready": "/health/ready",
			"metrics": "/metrics", "console": "/console/", "tenants": "/api/v1/tenants",
		},
	})
}

// serviceInfo is what GET / answers (members in the order a map had them).
type serviceInfo struct {
	Links   map[string]string `json:"links"`
	Service string            `json:"service"`
	Version string            `json:"version"`
}
