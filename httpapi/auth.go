package httpapi

import (
	"context"
	"errors"
	"net/http"
	"strings"

	"github.com/google/uuid"
	"github.com/labstack/echo/v4"

	"github.com/tenancyhq/tenancy/aggregate"
	"github.com/tenancyhq/tenancy/internal/auth"
)

// Verifier checks bearer tokens (internal/auth.Verifier).
type Verifier interface {
	Verify(token string) (auth.Principal, error)
}

const principalKey ctxKey = iota + 100

// anonymous acts when authentication is off (only with an explicit
// development flag, see cmd/tenancy): every scope, no tenant binding.
var anonymous = auth.Principal{Subject: "anonymous", Scopes: []string{auth.ScopeAdmin}}

func principal(c echo.Context) auth.Principal {
	if p, ok := c.Request().Context().Value(principalKey).(auth.Principal); ok {
		return p
	}
	return anonymous
}

// scopeFor is the scope a route needs: admin routes tenancy:admin, other
// changes tenancy:write, reads tenancy:read; health, metrics and the
// documents none.
func (r route) scopeFor() string {
	switch {
	case r.tag == "health":
		return ""
	case r.tag == "admin":
		return auth.ScopeAdmin
	case r.method == http.MethodGet || r.operationID == "evaluatePolicy" || r.operationID == "legacyEvaluatePolicy":
		return auth.ScopeRead
	default:
		return auth.ScopeWrite
	}
}

// authenticate checks the bearer token, the route's scope and the token's
// tenant binding. A tenant-bound token sees only its tenant: any other id
// answers 404 (as if it did not exist), and it cannot create tenants or use
// admin routes (403). Refusals are audit-logged.
func (s *Server) authenticate(r route) echo.MiddlewareFunc {
	scope := r.scopeFor()
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			if scope == "" || s.deps.Auth == nil {
				return next(c)
			}
			// The scheme is case-insensitive (RFC 9110 §11.1).
			h := c.Request().Header.Get("Authorization")
			var token string
			if len(h) > 7 && strings.EqualFold(h[:7], "bearer ") {
				token = h[7:]
			}
			// Until a token is accepted the request acts as nobody (the
			// access log must not say "anonymous", the auth-off principal).
			c.SetRequest(c.Request().WithContext(context.WithValue(c.Request().Context(), principalKey, auth.Principal{Subject: "unauthenticated"})))
			p, err := s.deps.Auth.Verify(strings.TrimSpace(token))
			if err != nil {
				s.auditDenied(c, r, "", http.StatusUnauthorized, err.Error())
				// RFC 6750 §3.1: a request without credentials gets the
				// challenge without an error code.
				challenge := `Bearer realm="tenancy"`
				detail := "A valid bearer token is required (Authorization: Bearer <JWT>)."
				if errors.Is(err, auth.ErrInvalidToken) {
					challenge += `, error="invalid_token"`
					detail = "The bearer token is invalid or expired."
				}
				c.Response().Header().Set("WWW-Authenticate", challenge)
				return newProblem(http.StatusUnauthorized, typeUnauthorized, "Unauthorized", detail)
			}
			if !p.Can(scope) {
				s.auditDenied(c, r, p.Subject, http.StatusForbidden, "missing scope "+scope)
				c.Response().Header().Set("WWW-Authenticate", `Bearer realm="tenancy", error="insufficient_scope", scope="`+scope+`"`)
				return newProblem(http.StatusForbidden, typeForbidden, "Forbidden", "This route needs the scope "+scope+".")
			}
			if p.TenantID != nil {
				if err := s.checkBinding(c, r, *p.TenantID); err != nil {
					s.auditDenied(c, r, p.Subject, problemFor(err).Status, "tenant-bound token")
					return err
				}
			}
			c.SetRequest(c.Request().WithContext(context.WithValue(c.Request().Context(), principalKey, p)))
			return next(c)
		}
	}
}

// checkBinding enforces a tenant-bound token's reach.
func (s *Server) checkBinding(c echo.Context, r route, bound uuid.UUID) error {
	if r.tag == "admin" || r.operationID == "createTenant" || r.operationID == "legacyCreateOrganization" {
		return newProblem(http.StatusForbidden, typeForbidden, "Forbidden", "A token bound to one tenant cannot create tenants or use admin routes.")
	}
	raw := c.Param("id")
	if raw == "" {
		return nil // list (filtered to the tenant by the handler) and the catalog
	}
	notFound := newProblem(http.StatusNotFound, typeNotFound, "Not found", "No tenant with this id or external id.")
	if id, err := uuid.Parse(raw); err == nil {
		if id != bound {
			return notFound
		}
		return nil
	}
	if aggregate.IsExternalID(raw) {
		id, err := s.deps.Commands.Resolve(c.Request().Context(), raw)
		if err != nil && !aggregate.HasCode(err, aggregate.CodeNotFound) {
			return err
		}
		if err != nil || id != bound {
			return notFound
		}
		return nil
	}
	return notFound
}

// audit logs a state-changing request's outcome.
func (s *Server) audit(c echo.Context, r route, status int) {
	p := principal(c)
	outcome := "succeeded"
	switch {
	case status == http.StatusUnauthorized || status == http.StatusForbidden:
		outcome = "denied"
	case status >= 400:
		outcome = "refused"
	}
	s.auditLog.InfoContext(c.Request().Context(), "audit",
		"actor", p.Subject, "tenant", auditTenant(c), "action", r.operationID, "method", r.method, "route", r.path,
		"outcome", outcome, "status", status, "correlation_id", correlationID(c), "source", c.RealIP())
}

// auditTenant is the tenant a request acted on: the {id} of its path or,
// for a create, the tenant it made (named by its Location).
func auditTenant(c echo.Context) string {
	if id := c.Param("id"); id != "" {
		return id
	}
	if id, ok := strings.CutPrefix(c.Response().Header().Get("Location"), "/api/v1/tenants/"); ok {
		return id
	}
	return ""
}

func (s *Server) auditDenied(c echo.Context, r route, actor string, status int, reason string) {
	s.auditLog.WarnContext(c.Request().Context(), "audit",
		"actor", actor, "tenant", c.Param("id"), "action", r.operationID, "method", r.method, "route", r.path,
		"outcome", "denied", "status", status, "reason", reason, "correlation_id", correlationID(c), "source", c.RealIP())
}

// auditing wraps a state-changing route so its outcome is audit-logged.
func (s *Server) auditing(r route) echo.MiddlewareFunc {
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			err := next(c)
			status := c.Response().Status
			if err != nil {
				status = problemFor(err).Status
			}
			if status != http.StatusUnauthorized && status != http.StatusForbidden {
				s.audit(c, r, status)
			}
			return err
		}
	}
}
