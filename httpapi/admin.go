package httpapi

import (
	"context"
	"net/http"
	"strconv"
	"time"

	"github.com/google/uuid"
	"github.com/labstack/echo/v4"

	"github.com/tenancyhq/tenancy/queries"
)

// Replayer answers from the event stream itself (audit replay).
type Replayer interface {
	Replay(ctx context.Context, id uuid.UUID, opts queries.ReplayOptions) (queries.Timeline, error)
}

// Job is a long-running operator task, such as a rebuild.
type Job struct {
	ID          string     `json:"id"`
	Kind        string     `json:"kind"`
	Projection  string     `json:"projection"`
	State       string     `json:"state"` // running | succeeded | failed
	Phase       string     `json:"phase,omitempty"`
	Processed   int64      `json:"processed"`
	Total       int64      `json:"total"`
	Percent     float64    `json:"percent"`
	EventsPerS  float64    `json:"events_per_second"`
	ETASeconds  float64    `json:"eta_seconds"`
	Error       string     `json:"error,omitempty"`
	StartedAt   time.Time  `json:"started_at"`
	FinishedAt  *time.Time `json:"finished_at,omitempty"`
	ResumedFrom bool       `json:"resumed,omitempty"`
}

// ProjectionFailure is an event a projection could not apply after its
// retries, as an operator decides on it: fix and retry, or skip.
type ProjectionFailure struct {
	EventID       uuid.UUID `json:"event_id"`
	Position      string    `json:"position"`
	Stream        string    `json:"stream"`
	EventType     string    `json:"event_type"`
	Error         string    `json:"error"`
	Attempts      int       `json:"attempts"`
	FirstFailedAt time.Time `json:"first_failed_at"`
	LastFailedAt  time.Time `json:"last_failed_at"`
	// Status is halted, skipped, retry or resolved.
	Status string `json:"status"`
}

// Admin runs projection operations for the admin routes. Jobs are visible
// from every replica, whichever runs them. An unknown projection name is a
// not-found domain error.
type Admin interface {
	Projections(ctx context.Context) ([]ProjectionHealth, error)
	// StartRebuild starts a rebuild job; an unknown projection is a
	// not-found domain error naming the rebuildable ones.
	StartRebuild(ctx context.Context, projection string) (Job, error)
	Job(ctx context.Context, id string) (Job, bool, error)
	// Failures lists the projection's recorded failures, in feed order.
	Failures(ctx context.Context, projection string) ([]ProjectionFailure, error)
	// SkipFailure moves the projection past the failed event (recorded as skipped).
	SkipFailure(ctx context.Context, projection string, eventID uuid.UUID) error
	// RetryFailures sends the halted failures back for another try and
	// answers how many.
	RetryFailures(ctx context.Context, projection string) (int64, error)
}

func (s *Server) adminRoutes() []route {
	return []route{
		{method: http.MethodGet, path: "/api/v1/admin/projections", operationID: "listProjections", tag: "admin",
			summary: "Every projection: position, head, lag in events and seconds, holder, failures", status: http.StatusOK, result: projectionsView{}, handler: s.listProjections},
		{method: http.MethodPost, path: "/api/v1/admin/projections/{name}/rebuild", operationID: "rebuildProjection", tag: "admin",
			summary: "Rebuild a projection from the start of the feed, beside the live one, with no outage; answers a job to follow",
			status:  http.StatusAccepted, result: Job{}, handler: s.rebuildProjection},
		{method: http.MethodGet, path: "/api/v1/admin/jobs/{job}", operationID: "getJob", tag: "admin",
			summary: "A job's progress, from any replica (jobs are kept in the database; finished ones for a day)", status: http.StatusOK, result: Job{}, handler: s.getJob},
		{method: http.MethodGet, path: "/api/v1/admin/projections/{name}/failures", operationID: "listProjectionFailures", tag: "admin",
			summary: "The events a projection could not apply: error, attempts, status (halted, skipped, retry, resolved)",
			status:  http.StatusOK, result: failuresView{}, handler: s.listFailures},
		{method: http.MethodPost, path: "/api/v1/admin/projections/{name}/failures/{event}/skip", operationID: "skipProjectionFailure", tag: "admin",
			summary: "Move a halted projection past an event it could not apply (recorded as skipped)",
			status:  http.StatusOK, result: failureAction{}, handler: s.skipFailure},
		{method: http.MethodPost, path: "/api/v1/admin/projections/{name}/retry", operationID: "retryProjectionFailures", tag: "admin",
			summary: "Clear a halt and try the halted events again (after a fix)",
			status:  http.StatusOK, result: failureAction{}, handler: s.retryFailures},
		streamRoute(s),
	}
}

func (s *Server) adminOrUnavailable() error {
	if s.deps.Admin == nil {
		return newProblem(http.StatusServiceUnavailable, typeUnavailable, "Admin operations unavailable", "This replica does not run projection operations.")
	}
	return nil
}

func (s *Server) listProjections(c echo.Context) error {
	if err := s.adminOrUnavailable(); err != nil {
		return err
	}
	ps, err := s.deps.Admin.Projections(c.Request().Context())
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, projectionsView{Projections: ps})
}

func (s *Server) rebuildProjection(c echo.Context) error {
	if err := s.adminOrUnavailable(); err != nil {
		return err
	}
	job, err := s.deps.Admin.StartRebuild(c.Request().Context(), c.Param("name"))
	if err != nil {
		return err
	}
	c.Response().Header().Set("Location", "/api/v1/admin/jobs/"+job.ID)
	return c.JSON(http.StatusAccepted, job)
}

func (s *Server) getJob(c echo.Context) error {
	if err := s.adminOrUnavailable(); err != nil {
		return err
	}
	job, ok, err := s.deps.Admin.Job(c.Request().Context(), c.Param("job"))
	if err != nil {
		return err
	}
	if !ok {
		return newProblem(http.StatusNotFound, typeNotFound, "Not found", "No such job (finished jobs are kept for a day).")
	}
	return c.JSON(http.StatusOK, job)
}

// projectionsView is what GET /api/v1/admin/projections answers.
type projectionsView struct {
	Projections []ProjectionHealth `json:"projections"`
}

// failuresView is a projection's failures (members in the order a map
// had them, so the bytes did not change).
type failuresView struct {
	Failures   []ProjectionFailure `json:"failures"`
	Projection string              `json:"projection"`
}

// failureAction is what skip and retry answer.
type failureAction struct {
	Projection string     `json:"projection"`
	Skipped    *uuid.UUID `json:"skipped,omitempty"`
	Retried    *int64     `json:"retried,omitempty"`
}

func (s *Server) listFailures(c echo.Context) error {
	if err := s.adminOrUnavailable(); err != nil {
		return err
	}
	fs, err := s.deps.Admin.Failures(c.Request().Context(), c.Param("name"))
	if err != nil {
		return err
	}
	if fs == nil {
		fs = []ProjectionFailure{}
	}
	return c.JSON(http.StatusOK, failuresView{Projection: c.Param("name"), Failures: fs})
}

func (s *Server) skipFailure(c echo.Context) error {
	if err := s.adminOrUnavailable(); err != nil {
		return err
	}
	id, err := uuid.Parse(c.Param("event"))
	if err != nil {
		return invalidField("event", "uuid", "event must be the event id of a recorded failure.")
	}
	if err := s.deps.Admin.SkipFailure(c.Request().Context(), c.Param("name"), id); err != nil {
		return err
	}
	return c.JSON(http.StatusOK, failureAction{Projection: c.Param("name"), Skipped: &id})
}

func (s *Server) retryFailures(c echo.Context) error {
	if err := s.adminOrUnavailable(); err != nil {
		return err
	}
	n, err := s.deps.Admin.RetryFailures(c.Request().Context(), c.Param("name"))
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, failureAction{Projection: c.Param("name"), Retried: &n})
}

// ---- history, as-of reads and export (from the event stream) ----

type historyPage struct {
	TenantID   uuid.UUID               `json:"tenant_id"`
	Redacted   bool                    `json:"redacted"`
	Items      []queries.TimelineEntry `json:"items"`
	NextCursor string                  `json:"next_cursor,omitempty"`
}

// getHistory is the tenant's timeline from its event stream, paginated by
// stream version (cursor = the next version).
func (s *Server) getHistory(c echo.Context) error {
	id, err := s.tenantRef(c)
	if err != nil {
		return err
	}
	q := c.QueryParams()
	limit, err := intParam(q, "limit")
	if err != nil {
		return err
	}
	if limit == 0 {
		limit = 100
	}
	if limit < 1 || limit > 500 {
		return invalidField("limit", "range", "limit must be between 1 and 500.")
	}
	from := 0
	if cur := q.Get("cursor"); cur != "" {
		if from, err = strconv.Atoi(cur); err != nil || from < 0 {
			return invalidField("cursor", "malformed", "cursor must be a next_cursor this API returned.")
		}
	}
	tl, err := s.replay(c, id, queries.ReplayOptions{})
	if err != nil {
		return err
	}
	page := historyPage{TenantID: id, Redacted: tl.Redacted, Items: []queries.TimelineEntry{}}
	if from < len(tl.Entries) {
		end := min(from+limit, len(tl.Entries))
		page.Items = tl.Entries[from:end]
		if end < len(tl.Entries) {
			page.NextCursor = strconv.Itoa(end)
		}
	}
	return c.JSON(http.StatusOK, page)
}

func (s *Server) replay(c echo.Context, id uuid.UUID, opts queries.ReplayOptions) (queries.Timeline, error) {
	if s.deps.Replayer == nil {
		return queries.Timeline{}, newProblem(http.StatusServiceUnavailable, typeUnavailable, "Replay unavailable", "This replica cannot read the event stream.")
	}
	return s.deps.Replayer.Replay(c.Request().Context(), id, opts)
}

// getTenantAsOf answers GET /api/v1/tenants/{id}?as_of=…|version=…: the
// state then, folded from the stream (404 before creation).
func (s *Server) getTenantAsOf(c echo.Context) error {
	id, err := s.tenantRef(c)
	if err != nil {
		return err
	}
	q := c.QueryParams()
	var opts queries.ReplayOptions
	if opts.AsOf, err = timeParam(q, "as_of"); err != nil {
		return err
	}
	if v := q.Get("version"); v != "" {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			return invalidField("version", "integer", "version must be a stream version (0, 1, 2, …).")
		}
		opts.ToVersion = &n
	}
	tl, err := s.replay(c, id, opts)
	if err != nil {
		return err
	}
	c.Response().Header().Set("ETag", etag(tl.State.Version))
	return c.JSON(http.StatusOK, view(tl.State))
}

type exportView struct {
	GeneratedAt time.Time               `json:"generated_at"`
	Tenant      tenantView              `json:"tenant"`
	Events      []queries.TimelineEntry `json:"events"`
	Redacted    bool                    `json:"redacted"`
}

// exportTenant answers a GDPR access request: everything held about the
// tenant — its state and every event, personal data included (until purge).
func (s *Server) exportTenant(c echo.Context) error {
	id, err := s.tenantRef(c)
	if err != nil {
		return err
	}
	tl, err := s.replay(c, id, queries.ReplayOptions{})
	if err != nil {
		return err
	}
	c.Response().Header().Set("Content-Disposition", `attachment; filename="tenant-`+id.String()+`.json"`)
	return c.JSON(http.StatusOK, exportView{GeneratedAt: s.deps.Now().UTC(), Tenant: view(tl.State), Events: tl.Entries, Redacted: tl.Redacted})
}
