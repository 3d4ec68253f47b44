package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"

	"github.com/labstack/echo/v4"

	"github.com/tenancyhq/tenancy/aggregate"
	"github.com/tenancyhq/tenancy/commands"
	"github.com/tenancyhq/tenancy/eventstore"
	"github.com/tenancyhq/tenancy/internal/pgerr"
	"github.com/tenancyhq/tenancy/queries"
)

// ProblemBase prefixes every problem type URI; the part after it names the
// kind of error and is documented in the OpenAPI document.
const ProblemBase = "https://tenancy.dev/problems/"

// Problem is an RFC 9457 problem details object, with the extension members
// this API uses.
type Problem struct {
	Type     string `json:"type"`
	Title    string `json:"title"`
	Status   int    `json:"status"`
	Detail   string `json:"detail,omitempty"`
	Instance string `json:"instance,omitempty"`
	// Field and Rule name what was wrong with the request (validation errors).
	Field string `json:"field,omitempty"`
	Rule  string `json:"rule,omitempty"`
	// Errors lists every field error found, when there are several.
	Errors []FieldError `json:"errors,omitempty"`
	// CurrentStatus, Command and AllowedCommands explain a refused transition.
	CurrentStatus aggregate.Status      `json:"current_status,omitempty"`
	Command       aggregate.CommandName `json:"command,omitempty"`
	// AllowedCommands is present (empty for a PURGED tenant) on a refused
	// transition and absent otherwise.
	AllowedCommands []aggregate.CommandName `json:"allowed_commands,omitzero"`
	Conflicts       []string                `json:"conflicts,omitempty"`
	Feature         aggregate.Feature       `json:"feature,omitempty"`
	RequiredEdition aggregate.Edition       `json:"required_edition,omitempty"`
	CorrelationID   string                  `json:"correlation_id,omitempty"`
	// retryAfter, in seconds, becomes a Retry-After header.
	retryAfter int
}

// FieldError is one field that broke one rule.
type FieldError struct {
	Field   string `json:"field"`
	Rule    string `json:"rule"`
	Message string `json:"message"`
}

func (p *Problem) Error() string { return p.Title + ": " + p.Detail }

// The problem types.
const (
	typeValidation   = "validation-error"
	typeMalformed    = "malformed-request"
	typeTransition   = "invalid-transition"
	typeInvariant    = "rule-violation"
	typeConflict     = "conflict"
	typeNotFound     = "not-found"
	typeFeature      = "feature-required"
	typePrecondition = "precondition-failed"
	typeConcurrency  = "concurrent-modification"
	typeTooLarge     = "payload-too-large"
	typeBodyTimeout  = "request-body-timeout"
	typeMediaType    = "unsupported-media-type"
	typeMethod       = "method-not-allowed"
	typeIdemMismatch = "idempotency-key-reused"
	typeNotCaughtUp  = "read-model-behind"
	typeUnavailable  = "service-unavailable"
	typeInternal     = "internal-error"
	typeUnauthorized = "unauthorized"
	typeForbidden    = "forbidden"
)

func newProblem(status int, typ, title, detail string) *Problem {
	return &Problem{Type: ProblemBase + typ, Title: title, Status: status, Detail: detail}
}

func invalidField(field, rule, detail string) *Problem {
	p := newProblem(http.StatusBadRequest, typeValidation, "Invalid request", detail)
	p.Field, p.Rule = field, rule
	p.Errors = []FieldError{{Field: field, Rule: rule, Message: detail}}
	return p
}

// problemFor maps any error a handler returns to a problem: domain codes,
// command handler errors, query errors, Echo's own errors. Whatever is left
// is an internal error, logged in full and answered without details.
func problemFor(err error) *Problem {
	var p *Problem
	if errors.As(err, &p) {
		return p
	}
	if de, ok := aggregate.AsError(err); ok {
		return domainProblem(de)
	}
	var he *echo.HTTPError
	if errors.As(err, &he) {
		return echoProblem(he)
	}
	switch {
	case errors.Is(err, commands.ErrVersionMismatch):
		return newProblem(http.StatusPreconditionFailed, typePrecondition, "Tenant changed", "The tenant's version no longer matches If-Match; fetch it again and retry.")
	case errors.Is(err, commands.ErrIdempotencyKeyReused):
		p := newProblem(http.StatusUnprocessableEntity, typeIdemMismatch, "Idempotency-Key reused",
			"This Idempotency-Key was used with a different request; use a new key for a new request.")
		p.Field, p.Rule = "Idempotency-Key", "same_request"
		p.Errors = []FieldError{{Field: p.Field, Rule: p.Rule, Message: p.Detail}}
		return p
	case errors.Is(err, eventstore.ErrUnavailable), pgerr.IsUnavailable(err):
		p := newProblem(http.StatusServiceUnavailable, typeUnavailable, "Service unavailable",
			"The service's database cannot be reached right now. Retry shortly; a change sent again with the same Idempotency-Key is applied at most once.")
		p.retryAfter = 2
		return p
	case errors.As(err, new(*eventstore.TooLargeError)):
		var tl *eventstore.TooLargeError
		errors.As(err, &tl)
		field := tl.Field
		if field == "" {
			field = "body"
		}
		p := newProblem(http.StatusRequestEntityTooLarge, typeTooLarge, "Change too large for the event store",
			fmt.Sprintf("The events this request would write take %d bytes; the event store takes at most %d in one write. Shorten %s.", tl.Size, tl.Limit, field))
		p.Field, p.Rule = field, "max_append_size"
		p.Errors = []FieldError{{Field: p.Field, Rule: p.Rule, Message: p.Detail}}
		return p
	case pgerr.IsRecoveryConflict(err):
		p := newProblem(http.StatusServiceUnavailable, typeUnavailable, "Service unavailable",
			"The read replica cancelled the query to replay the primary's changes. Retry shortly.")
		p.retryAfter = 1
		return p
	case errors.Is(err, commands.ErrTooManyConflicts):
		p := newProblem(http.StatusConflict, typeConcurrency, "Concurrent modification", "Other changes to this tenant kept winning the race; nothing was written. Retry the request.")
		p.retryAfter = 1
		return p
	case errors.Is(err, queries.ErrNotFound):
		return newProblem(http.StatusNotFound, typeNotFound, "Not found", "No tenant with this id or external id.")
	case errors.Is(err, queries.ErrNotCaughtUp):
		p := newProblem(http.StatusServiceUnavailable, typeNotCaughtUp, "Read model not caught up", "The read model has not yet reached the consistency token, or the caller's own last write; retry shortly (or read with Consistency: eventual).")
		p.retryAfter = 1
		return p
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		p := newProblem(http.StatusServiceUnavailable, typeUnavailable, "Request timed out", "The request did not finish in time; retry it (with the same Idempotency-Key).")
		p.retryAfter = 1
		return p
	}
	return newProblem(http.StatusInternalServerError, typeInternal, "Internal error", "Something went wrong on our side; it has been logged.")
}

func domainProblem(de *aggregate.Error) *Problem {
	var p *Problem
	switch de.Code {
	case aggregate.CodeValidation:
		p = invalidField(de.Field, de.Rule, de.Message)
		return p
	case aggregate.CodeTransition:
		p = newProblem(http.StatusConflict, typeTransition, "Command not allowed in this status", de.Message)
		p.CurrentStatus, p.Command, p.AllowedCommands = de.Status, de.Command, de.Allowed
		if p.AllowedCommands == nil {
			p.AllowedCommands = []aggregate.CommandName{}
		}
	case aggregate.CodeInvariant:
		p = newProblem(http.StatusConflict, typeInvariant, "Command breaks a rule of the tenant's state", de.Message)
		p.Field, p.Rule = de.Field, de.Rule
	case aggregate.CodeConflict:
		p = newProblem(http.StatusConflict, typeConflict, "Conflict", de.Message)
		p.Field, p.Rule, p.Conflicts = de.Field, de.Rule, de.Conflicts
	case aggregate.CodeNotFound:
		p = newProblem(http.StatusNotFound, typeNotFound, "Not found", de.Message)
		p.Field, p.Rule = de.Field, de.Rule
	case aggregate.CodeFeatureRequired:
		p = newProblem(http.StatusConflict, typeFeature, "Feature not in the tenant's edition", de.Message)
		p.Field, p.Rule, p.Feature, p.RequiredEdition = de.Field, de.Rule, de.Feature, de.RequiredEdition
	default:
		p = newProblem(http.StatusConflict, typeConflict, "Refused", de.Message)
	}
	return p
}

func echoProblem(he *echo.HTTPError) *Problem {
	msg := fmt.Sprint(he.Message)
	switch he.Code {
	case http.StatusNotFound:
		return newProblem(he.Code, typeNotFound, "Not found", "No such route.")
	case http.StatusMethodNotAllowed:
		return newProblem(he.Code, typeMethod, "Method not allowed", "This route does not accept this method.")
	case http.StatusRequestEntityTooLarge:
		return newProblem(he.Code, typeTooLarge, "Request body too large", "The request body must be at most 1 MiB.")
	case http.StatusUnsupportedMediaType:
		return newProblem(he.Code, typeMediaType, "Unsupported media type", "Send the body as application/json.")
	}
	if he.Code >= 400 && he.Code < 500 {
		return newProblem(he.Code, typeMalformed, http.StatusText(he.Code), msg)
	}
	return newProblem(http.StatusInternalServerError, typeInternal, "Internal error", "Something went wrong on our side; it has been logged.")
}

// writeProblem sends p as application/problem+json.
func writeProblem(c echo.Context, p *Problem) error {
	if p.Instance == "" {
		p.Instance = c.Request().URL.Path
	}
	p.CorrelationID = correlationID(c)
	if p.Status == http.StatusBadRequest && len(p.Errors) == 0 {
		// Every 400 names its field and rule, and lists them in errors[].
		if p.Field == "" {
			p.Field, p.Rule = "body", "malformed"
		}
		p.Errors = []FieldError{{Field: p.Field, Rule: p.Rule, Message: p.Detail}}
	}
	if p.retryAfter > 0 {
		c.Response().Header().Set("Retry-After", fmt.Sprint(p.retryAfter))
	}
	body, err := json.Marshal(p)
	if err != nil {
		return err
	}
	if c.Request().Method == http.MethodHead {
		return c.NoContent(p.Status)
	}
	return c.Blob(p.Status, "application/problem+json", body)
}

// errorHandler is Echo's HTTPErrorHandler: every error leaves as problem+json.
func errorHandler(logger *slog.Logger) echo.HTTPErrorHandler {
	return func(err error, c echo.Context) {
		if c.Response().Committed {
			return
		}
		p := problemFor(err)
		if p.Status >= 500 && p.Type == ProblemBase+typeInternal {
			logger.ErrorContext(c.Request().Context(), "request failed",
				"method", c.Request().Method, "path", c.Request().URL.Path, "correlation_id", correlationID(c), "err", err)
		}
		if werr := writeProblem(c, p); werr != nil {
			logger.ErrorContext(c.Request().Context(), "write problem", "err", werr)
		}
	}
}

// fieldFromJSONError names the field and rule of a JSON decoding error.
func fieldFromJSONError(err error) *Problem {
	var se *json.SyntaxError
	var te *json.UnmarshalTypeError
	switch {
	case errors.As(err, &se):
		p := newProblem(http.StatusBadRequest, typeMalformed, "Malformed JSON", fmt.Sprintf("The body is not valid JSON (at byte %d).", se.Offset))
		p.Field, p.Rule = "body", "json_syntax"
		return p
	case errors.As(err, &te):
		field := te.Field
		if field == "" {
			field = "body"
		}
		return invalidField(field, "type", fmt.Sprintf("%s must be a JSON %s.", field, jsonKind(te.Type.Kind().String())))
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		field := strings.Trim(strings.TrimPrefix(err.Error(), "json: unknown field "), `"`)
		return invalidField(field, "unknown_field", fmt.Sprintf("%s is not a field of this request.", field))
	}
	p := newProblem(http.StatusBadRequest, typeMalformed, "Malformed JSON", err.Error())
	p.Field, p.Rule = "body", "json"
	return p
}

func jsonKind(goKind string) string {
	switch goKind {
	case "string":
		return "string"
	case "bool":
		return "boolean"
	case "slice", "array":
		return "array"
	case "map", "struct":
		return "object"
	default:
		return "number"
	}
}
