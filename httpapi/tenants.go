package httpapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/labstack/echo/v4"

	"github.com/tenancyhq/tenancy/aggregate"
	"github.com/tenancyhq/tenancy/commands"
	"github.com/tenancyhq/tenancy/eventstore"
	"github.com/tenancyhq/tenancy/queries"
)

// tenantView is a tenant as the API shows it: its state and what it may
// do next. The read-model projection renders the same type once per change
// (aggregate.RenderView), which a GET sends as is.
type tenantView = aggregate.View

// entitlementsView is the entitlements answer, rendered by the projection.
type entitlementsView = aggregate.EntitlementsView

func view(t *aggregate.Tenant) tenantView { return aggregate.ViewOf(t) }

// ---- headers ----

// etag is the tenant's version as a weak entity tag.
func etag(version uint64) string { return `W/"` + strconv.FormatUint(version, 10) + `"` }

// ifMatch reads If-Match ("W/\"3\"", "\"3\"" or "3"); nil when absent or "*".
func ifMatch(c echo.Context) (*uint64, error) {
	h := strings.TrimSpace(c.Request().Header.Get("If-Match"))
	if h == "" || h == "*" {
		return nil, nil
	}
	v := strings.Trim(strings.TrimPrefix(h, "W/"), `"`)
	n, err := strconv.ParseUint(v, 10, 64)
	if err != nil {
		return nil, invalidField("If-Match", "etag", `If-Match must be an ETag this API returned, such as W/"3".`)
	}
	return &n, nil
}

// tenantRef resolves the {id} path parameter: a tenant uuid, or an external
// id, looked up in the event log's claims (so a command on a tenant just
// created does not wait for the read model).
func (s *Server) tenantRef(c echo.Context) (uuid.UUID, error) {
	raw := c.Param("id")
	if id, err := uuid.Parse(raw); err == nil {
		return id, nil
	}
	if aggregate.IsExternalID(raw) {
		return s.deps.Commands.Resolve(c.Request().Context(), raw)
	}
	return uuid.Nil, newProblem(http.StatusNotFound, typeNotFound, "Not found", "A tenant id is a UUID or an external id like ORG-1A2B3C4D.")
}

// waitConsistent makes a read wait until the read model has reached the
// consistency token the client sent (header X-Consistency-Token or query
// consistent_with), for at most Options.ConsistencyWait.
func (s *Server) waitConsistent(c echo.Context) error {
	token := c.Request().Header.Get("X-Consistency-Token")
	field := "X-Consistency-Token"
	if token == "" {
		token, field = c.QueryParam("consistent_with"), "consistent_with"
	}
	if token == "" {
		// No token: the caller's own last write (sessions.go).
		return s.waitSession(c)
	}
	pos, err := eventstore.ParsePosition(token)
	if err != nil {
		return invalidField(field, "consistency_token", "The consistency token must be one this API returned in X-Consistency-Token.")
	}
	ctx := c.Request().Context()
	if s.deps.Head == nil {
		return s.deps.Queries.WaitFor(ctx, pos, s.opts.ConsistencyWait)
	}
	if err := s.deps.Queries.WaitFor(ctx, pos, 0); !errors.Is(err, queries.ErrNotCaughtUp) {
		return err // there already (nil), or the check failed
	}
	// Not there yet: a token beyond the store's head was never handed out,
	// and waiting for it would only end in a 503.
	if s.beyondHead(ctx, pos) {
		return invalidField(field, "consistency_token_ahead",
			"The consistency token is beyond the last event the store holds; send one this API returned in X-Consistency-Token.")
	}
	return s.deps.Queries.WaitFor(ctx, pos, s.opts.ConsistencyWait)
}

// readYourWrites reads one tenant's row, as want asks, so that it sees
// every change made to the tenant so far, without any header: when the
// read model's row is behind the tenant's stream (or missing while the
// stream exists), the read waits, bounded like a consistency token, until
// the read model holds the stream's last event. So a client reads its own
// writes (a GET straight after the 201 of a create answers 200, not 404),
// on any replica. On the Postgres store the row and the stream's end are
// read in one statement; elsewhere the stream's end is asked of the event
// store. Consistency: eventual, or a consistency token (waited for
// already), reads the row as it is.
func (s *Server) readYourWrites(c echo.Context, want queries.Want) (*queries.Row, error) {
	req := c.Request()
	ctx := req.Context()
	raw := c.Param("id")
	if eventual(c) || req.Header.Get("X-Consistency-Token") != "" || c.QueryParam("consistent_with") != "" {
		return s.deps.Queries.GetRow(ctx, raw, want)
	}
	var (
		row *queries.Row
		end queries.StreamEnd
		err error
	)
	id, perr := uuid.Parse(raw)
	if perr == nil {
		row, end, err = s.deps.Queries.GetRowFresh(ctx, id, want)
	}
	if perr != nil || errors.Is(err, queries.ErrNoStreamEnd) {
		// An external id, or an event store of its own: two looks.
		row, err = s.deps.Queries.GetRow(ctx, raw, want)
		if err != nil && !errors.Is(err, queries.ErrNotFound) {
			return nil, err
		}
		if row != nil {
			id = row.ID
		} else if id, err = s.tenantRef(c); err != nil {
			return nil, newProblem(http.StatusNotFound, typeNotFound, "Not found", "No tenant with this id or external id.")
		}
		if end.Version, end.Position, end.Exists, err = s.deps.Commands.Head(ctx, id); err != nil {
			return nil, err
		}
	}
	switch {
	case err != nil:
		return nil, err
	case !end.Exists && row == nil:
		return nil, fmt.Errorf("get tenant %s: %w", raw, queries.ErrNotFound)
	case row != nil && row.Version >= end.Version:
		return row, nil
	}
	if err := s.deps.Queries.WaitFor(ctx, end.Position, s.opts.ConsistencyWait); err != nil {
		return nil, err
	}
	return s.deps.Queries.GetRow(ctx, raw, want)
}

// sendRendered sends JSON the read-model projection rendered, byte for
// byte what c.JSON would send for the value it was rendered from:
// json.Encoder's newline after it, and ?pretty's indentation.
func sendRendered(c echo.Context, rendered []byte) error {
	if _, pretty := c.QueryParams()["pretty"]; pretty {
		var b bytes.Buffer
		if err := json.Indent(&b, rendered, "", "  "); err != nil {
			return fmt.Errorf("indent rendered JSON: %w", err)
		}
		rendered = b.Bytes()
	}
	// Two writes rather than an append, which would copy the whole body.
	res := c.Response()
	res.Header().Set(echo.HeaderContentType, echo.MIMEApplicationJSON)
	res.WriteHeader(http.StatusOK)
	if _, err := res.Write(rendered); err != nil {
		return err
	}
	_, err := res.Write(newline)
	return err
}

var newline = []byte{'\n'}

// respond sends a command's result: the new state, its ETag and the
// consistency token a later read can wait for.
func (s *Server) respond(c echo.Context, status int, res commands.Result) error {
	h := c.Response().Header()
	h.Set("ETag", etag(res.Version))
	h.Set("X-Consistency-Token", res.Position.String())
	s.rememberWrite(c, res.Position)
	if res.Duplicate {
		h.Set("Idempotent-Replayed", "true")
		if s.deps.Observer != nil {
			s.deps.Observer.IdempotencyReplay()
		}
	}
	return c.JSON(status, view(res.Tenant))
}

// execute runs cmd on the tenant named in the path.
func (s *Server) execute(c echo.Context, cmd aggregate.Command) error {
	id, err := s.tenantRef(c)
	if err != nil {
		return err
	}
	return s.executeOn(c, id, cmd)
}

func (s *Server) executeOn(c echo.Context, id uuid.UUID, cmd aggregate.Command) error {
	expected, err := ifMatch(c)
	if err != nil {
		return err
	}
	res, err := s.deps.Commands.Execute(c.Request().Context(), commands.Request{
		TenantID: id, Command: cmd, ExpectedVersion: expected,
		Identity: identity(c), Metadata: s.metadata(c),
	})
	if err != nil {
		return err
	}
	return s.respond(c, http.StatusOK, res)
}

// ---- tenants ----

func (s *Server) createTenant(c echo.Context) error {
	var req createRequest
	if err := decodeBody(c, &req); err != nil {
		return err
	}
	return s.create(c, req.command())
}

func (s *Server) create(c echo.Context, cmd aggregate.Create) error {
	if cmd.Region == "" {
		cmd.Region = s.opts.DefaultRegion
	}
	res, err := s.deps.Commands.Execute(c.Request().Context(), commands.Request{Command: cmd, Identity: identity(c), Metadata: s.metadata(c)})
	if err != nil {
		return err
	}
	c.Response().Header().Set("Location", "/api/v1/tenants/"+res.TenantID.String())
	return s.respond(c, http.StatusCreated, res)
}

func (s *Server) getTenant(c echo.Context) error {
	if c.QueryParam("as_of") != "" || c.QueryParam("version") != "" {
		return s.getTenantAsOf(c)
	}
	if err := s.waitConsistent(c); err != nil {
		return err
	}
	row, err := s.readYourWrites(c, queries.Want{Rendering: queries.TenantView, Format: s.renderFormat})
	if err != nil {
		return err
	}
	tag := etag(row.Version)
	c.Response().Header().Set("ETag", tag)
	if inm := c.Request().Header.Get("If-None-Match"); inm != "" && (inm == tag || strings.Trim(strings.TrimPrefix(inm, "W/"), `"`) == strconv.FormatUint(row.Version, 10)) {
		return c.NoContent(http.StatusNotModified)
	}
	if row.JSON != nil {
		return sendRendered(c, row.JSON)
	}
	return c.JSON(http.StatusOK, view(row.Tenant))
}

func (s *Server) patchTenant(c echo.Context) error {
	var req patchRequest
	if err := decodeBody(c, &req); err != nil {
		return err
	}
	if req.Name == nil && req.Contacts == nil && req.Metadata == nil && req.Labels == nil && req.ComplianceStandards == nil {
		return invalidField("body", "at_least_one_field", "Give at least one of name, contacts, metadata, labels, compliance_standards.")
	}
	var cmd aggregate.Command = aggregate.UpdateProfile{Name: req.Name, Contacts: req.Contacts, Metadata: req.Metadata,
		Labels: req.Labels, ComplianceStandards: req.ComplianceStandards}
	if req.Contacts == nil && req.Metadata == nil && req.Labels == nil && req.ComplianceStandards == nil {
		cmd = aggregate.Rename{Name: *req.Name} // a name alone: a rename, refused when it changes nothing
	}
	return s.execute(c, cmd)
}

func (s *Server) runVerb(v verb) echo.HandlerFunc {
	return func(c echo.Context) error {
		cmd, err := v.decode(c)
		if err != nil {
			return err
		}
		return s.execute(c, cmd)
	}
}

func (s *Server) setPolicy(c echo.Context) error {
	var req policyRequest
	if err := decodeBody(c, &req); err != nil {
		return err
	}
	p := aggregate.PolicySetting{Type: canonical(aggregate.PolicyType(c.Param("type")), aggregate.PolicyTypes()), Enforced: req.Enforced == nil || *req.Enforced, Settings: req.Settings}
	return s.execute(c, aggregate.SetPolicy{Policy: p})
}

func (s *Server) removePolicy(c echo.Context) error {
	return s.execute(c, aggregate.RemovePolicy{Type: canonical(aggregate.PolicyType(c.Param("type")), aggregate.PolicyTypes())})
}

func (s *Server) setOverride(c echo.Context) error {
	var req overrideRequest
	if err := decodeBody(c, &req); err != nil {
		return err
	}
	return s.execute(c, aggregate.SetOverride{Key: c.Param("key"), Enabled: req.Enabled, Value: req.Value})
}

func (s *Server) clearOverride(c echo.Context) error {
	return s.execute(c, aggregate.ClearOverride{Key: c.Param("key")})
}

// ---- reads ----

type tenantPage struct {
	Items      []tenantView `json:"items"`
	NextCursor string       `json:"next_cursor,omitempty"`
}

func (s *Server) listTenants(c echo.Context) error {
	if err := s.waitConsistent(c); err != nil {
		return err
	}
	q := c.QueryParams()
	f := queries.ListFilter{Sort: q.Get("sort"), Order: q.Get("order"), Cursor: q.Get("cursor"), NamePrefix: q.Get("name_prefix")}
	var err error
	if f.Statuses, err = enumList(q, "status", aggregate.Statuses()); err != nil {
		return err
	}
	if f.Editions, err = enumList(q, "edition", aggregate.Editions()); err != nil {
		return err
	}
	if f.Regions, err = enumList(q, "region", aggregate.Regions()); err != nil {
		return err
	}
	if f.BillingStatuses, err = enumList(q, "billing_status", aggregate.BillingStatuses()); err != nil {
		return err
	}
	for _, l := range splitList(q, "label") {
		k, v, _ := strings.Cut(l, "=")
		if f.Labels == nil {
			f.Labels = map[string]string{}
		}
		f.Labels[k] = v
	}
	if f.CreatedAfter, err = timeParam(q, "created_after"); err != nil {
		return err
	}
	if f.CreatedBefore, err = timeParam(q, "created_before"); err != nil {
		return err
	}
	if f.Limit, err = limitParam(q); err != nil {
		return err
	}
	if p := principal(c); p.TenantID != nil {
		// A tenant-bound token sees its own tenant only.
		t, _, err := s.deps.Queries.Get(c.Request().Context(), p.TenantID.String())
		if err != nil {
			return c.JSON(http.StatusOK, tenantPage{Items: []tenantView{}})
		}
		return c.JSON(http.StatusOK, tenantPage{Items: []tenantView{view(t)}})
	}
	page, err := s.deps.Queries.List(c.Request().Context(), f)
	if err != nil {
		return err
	}
	out := tenantPage{Items: make([]tenantView, len(page.Tenants)), NextCursor: page.NextCursor}
	for i, t := range page.Tenants {
		out.Items[i] = view(t)
	}
	return c.JSON(http.StatusOK, out)
}

type eventPage struct {
	Items      []queries.EventRecord `json:"items"`
	NextCursor string                `json:"next_cursor,omitempty"`
}

func (s *Server) listEvents(c echo.Context) error {
	if err := s.waitConsistent(c); err != nil {
		return err
	}
	id, err := s.tenantRef(c)
	if err != nil {
		return err
	}
	q := c.QueryParams()
	f := queries.EventFilter{Types: splitList(q, "type"), Cursor: q.Get("cursor")}
	for _, t := range f.Types {
		if _, ok := aggregate.NewEvent(t); !ok {
			return invalidField("type", "enum", fmt.Sprintf("%q is not an event type; one of %s.", t, strings.Join(aggregate.EventTypes(), ", ")))
		}
	}
	if f.After, err = timeParam(q, "after"); err != nil {
		return err
	}
	if f.Before, err = timeParam(q, "before"); err != nil {
		return err
	}
	if f.Limit, err = limitParam(q); err != nil {
		return err
	}
	page, err := s.deps.Queries.Events(c.Request().Context(), id, f)
	if err != nil {
		return err
	}
	items := page.Events
	if items == nil {
		items = []queries.EventRecord{}
	}
	return c.JSON(http.StatusOK, eventPage{Items: items, NextCursor: page.NextCursor})
}

// readTenant loads the tenant named in the path from the read model.
func (s *Server) readTenant(c echo.Context) (*aggregate.Tenant, error) {
	if err := s.waitConsistent(c); err != nil {
		return nil, err
	}
	t, _, err := s.deps.Queries.Get(c.Request().Context(), c.Param("id"))
	return t, err
}

// readRow reads the row of the tenant named in the path, as want asks.
func (s *Server) readRow(c echo.Context, want queries.Want) (*queries.Row, error) {
	if err := s.waitConsistent(c); err != nil {
		return nil, err
	}
	return s.deps.Queries.GetRow(c.Request().Context(), c.Param("id"), want)
}

func (s *Server) getEntitlements(c echo.Context) error {
	row, err := s.readRow(c, queries.Want{Rendering: queries.EntitlementsView, Format: s.renderFormat})
	if err != nil {
		return err
	}
	if row.JSON != nil {
		return sendRendered(c, row.JSON)
	}
	return c.JSON(http.StatusOK, s.deps.Catalog.EntitlementsViewOf(row.Tenant))
}

type transitionView struct {
	Command aggregate.CommandName `json:"command"`
	To      aggregate.Status      `json:"to"`
}

type transitionsView struct {
	Status          aggregate.Status        `json:"status"`
	AllowedCommands []aggregate.CommandName `json:"allowed_commands"`
	Transitions     []transitionView        `json:"transitions"`
}

func (s *Server) getTransitions(c echo.Context) error {
	t, err := s.readTenant(c)
	if err != nil {
		return err
	}
	out := transitionsView{Status: t.Status, AllowedCommands: view(t).AllowedCommands, Transitions: []transitionView{}}
	for _, tr := range t.TransitionsOf(s.deps.Now()) {
		out.Transitions = append(out.Transitions, transitionView{Command: tr.Command, To: tr.To})
	}
	return c.JSON(http.StatusOK, out)
}

func (s *Server) evaluatePolicy(c echo.Context) error {
	var req aggregate.PolicyRequest
	if err := decodeBody(c, &req); err != nil {
		return err
	}
	if err := s.deps.Catalog.ValidatePolicyRequest(req); err != nil {
		return err
	}
	subject, err := s.policySubject(c)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, s.deps.Catalog.Evaluate(subject, req, s.deps.Now()))
}

type catalogView struct {
	Version  string                  `json:"version"`
	Editions []aggregate.EditionSpec `json:"editions"`
}

func (s *Server) listEditions(c echo.Context) error {
	out := catalogView{Version: s.deps.Catalog.Version()}
	for _, e := range aggregate.Editions() {
		if spec, ok := s.deps.Catalog.Edition(e); ok {
			out.Editions = append(out.Editions, spec)
		}
	}
	return c.JSON(http.StatusOK, out)
}

// ---- the original service's routes ----

func (s *Server) legacyCreate(c echo.Context) error {
	var req legacyCreateRequest
	if err := decodeBody(c, &req); err != nil {
		return err
	}
	return s.create(c, aggregate.Create{Name: req.Name, Edition: req.Edition, Region: req.Region})
}

func (s *Server) legacySuspend(c echo.Context) error {
	var req suspendRequest
	if err := decodeBody(c, &req); err != nil {
		return err
	}
	if req.Reason == "" {
		req.Reason = aggregate.ReasonAdminAction
	}
	if r, ok := legacySuspendReasons[fold(string(req.Reason))]; ok {
		// The original's word is kept in the note when there is none.
		if req.Note == "" {
			req.Note = "reason given as " + strings.ToLower(string(req.Reason))
		}
		req.Reason = r
	}
	return s.execute(c, aggregate.Suspend{Reason: req.Reason, Severity: req.Severity, Note: req.Note, AutoResumeAt: req.AutoResumeAt})
}

// legacyActivate keeps the original "activate" meaning "make it ACTIVE",
// as one command (aggregate.MakeActive): completing provisioning,
// converting a trial or resuming, as the tenant's status needs; nothing on
// a tenant already ACTIVE (200 with it unchanged).
func (s *Server) legacyActivate(c echo.Context) error {
	return s.execute(c, aggregate.MakeActive{})
}

// ---- query parameters ----

// splitList reads a repeatable, comma-separated query parameter.
func splitList(q url.Values, name string) []string {
	var out []string
	for _, v := range q[name] {
		for _, part := range strings.Split(v, ",") {
			if part = strings.TrimSpace(part); part != "" {
				out = append(out, part)
			}
		}
	}
	return out
}

func enumList[T ~string](q url.Values, name string, allowed []T) ([]T, error) {
	var out []T
	for _, raw := range splitList(q, name) {
		v := canonical(T(raw), allowed)
		ok := false
		for _, a := range allowed {
			if a == v {
				ok = true
				break
			}
		}
		if !ok {
			names := make([]string, len(allowed))
			for i, a := range allowed {
				names[i] = string(a)
			}
			return nil, invalidField(name, "enum", fmt.Sprintf("%s must be one of %s.", name, strings.Join(names, ", ")))
		}
		out = append(out, v)
	}
	return out, nil
}

func timeParam(q url.Values, name string) (*time.Time, error) {
	v := q.Get(name)
	if v == "" {
		return nil, nil
	}
	t, err := time.Parse(time.RFC3339Nano, v)
	if err != nil {
		return nil, invalidField(name, "date_time", name+" must be an RFC 3339 time such as 2026-01-31T12:00:00Z.")
	}
	return &t, nil
}

func intParam(q url.Values, name string) (int, error) {
	v := q.Get(name)
	if v == "" {
		return 0, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil {
		return 0, invalidField(name, "integer", name+" must be a whole number.")
	}
	return n, nil
}

// limitParam reads a page size. The read side takes 0 for "the default", so
// an explicit limit below 1 is refused here rather than silently defaulted.
func limitParam(q url.Values) (int, error) {
	n, err := intParam(q, "limit")
	if err == nil && q.Get("limit") != "" && n < 1 {
		return 0, invalidField("limit", "range", fmt.Sprintf("limit must be between 1 and %d.", queries.MaxLimit))
	}
	return n, err
}
