package aggregate

import (
	"errors"
	"fmt"
	"strings"
)

// Code says what kind of domain error happened. httpapi maps each code to an
// HTTP status and a problem type; nothing else interprets them.
type Code string

const (
	// CodeValidation: a field of the command breaks a rule (HTTP 400/422).
	CodeValidation Code = "validation"
	// CodeTransition: the command is not allowed in the tenant's status (HTTP 409).
	CodeTransition Code = "invalid_transition"
	// CodeInvariant: the command is allowed in this status but breaks a rule of
	// the tenant's state, such as restoring after the retention date (HTTP 409).
	CodeInvariant Code = "invariant"
	// CodeConflict: the command conflicts with existing data, such as a taken
	// name or settings a downgrade would break (HTTP 409).
	CodeConflict Code = "conflict"
	// CodeNotFound: no such tenant (HTTP 404).
	CodeNotFound Code = "not_found"
	// CodeFeatureRequired: the edition lacks a feature the command needs (HTTP 403/409).
	CodeFeatureRequired Code = "feature_required"
)

// Error is a domain error: the command was understood and refused.
type Error struct {
	Code    Code
	Message string
	// Field and Rule name what was wrong, for validation errors.
	Field string
	Rule  string
	// Status and Command are the tenant's status and the refused command, for
	// transition errors; Allowed lists the commands that status accepts.
	Status  Status
	Command CommandName
	Allowed []CommandName
	// Feature is the feature a CodeFeatureRequired refusal needs, and
	// RequiredEdition the lowest edition that has it (empty if none does or
	// only an override switched it off).
	Feature         Feature
	RequiredEdition Edition
	// Conflicts lists what stands in the way (for example the enforced policies
	// a downgrade would break).
	Conflicts []string
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString(e.Message)
	if e.Field != "" {
		fmt.Fprintf(&b, " (field %s: %s)", e.Field, e.Rule)
	}
	if len(e.Conflicts) > 0 {
		fmt.Fprintf(&b, " (conflicts: %s)", strings.Join(e.Conflicts, ", "))
	}
	return b.String()
}

// Invalid makes a validation error for field breaking rule.
func Invalid(field, rule, format string, args ...any) *Error {
	return &Error{Code: CodeValidation, Field: field, Rule: rule, Message: fmt.Sprintf(format, args...)}
}

// AsError returns the domain error inside err, if any.
func AsError(err error) (*Error, bool) {
	var de *Error
	ok := errors.As(err, &de)
	return de, ok
}

// HasCode reports whether err is a domain error with code c.
func HasCode(err error, c Code) bool {
	de, ok := AsError(err)
	return ok && de.Code == c
}
