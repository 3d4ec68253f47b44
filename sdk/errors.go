package sdk

import (
	"errors"
	"fmt"
	"net/http"
)

// The errors a caller tells apart with errors.Is.
var (
	// ErrTenantNotFound: no tenant has this id or external id.
	ErrTenantNotFound = errors.New("tenant not found")
	// ErrUnknownFeature: the catalog has no such feature.
	ErrUnknownFeature = errors.New("unknown feature")
	// ErrUnknownLimit: the catalog has no such limit.
	ErrUnknownLimit = errors.New("unknown limit")
	// ErrStale: what the cache knows of the tenant is older than
	// Options.MaxStaleness and could not be fetched again (or
	// Options.WhenStale is FailClosed).
	ErrStale = errors.New("entitlements stale")
	// ErrClosed: the cache was closed.
	ErrClosed = errors.New("entitlement cache closed")
)

// APIError is an error answer of the tenancy API: its HTTP status and the
// RFC 9457 problem document it sent. It matches ErrTenantNotFound
// (errors.Is) on a 404.
type APIError struct {
	Status int `json:"-"`
	// Type, Title and Detail are the problem's; Field and Rule name what was
	// wrong with a request that failed validation.
	Type   string `json:"type"`
	Title  string `json:"title"`
	Detail string `json:"detail"`
	Field  string `json:"field"`
	Rule   string `json:"rule"`
	// Method and Path are the request's.
	Method string `json:"-"`
	Path   string `json:"-"`
}

func (e *APIError) Error() string {
	msg := e.Title
	if msg == "" {
		msg = http.StatusText(e.Status)
	}
	if e.Detail != "" {
		msg += ": " + e.Detail
	}
	return fmt.Sprintf("%s %s: %d %s", e.Method, e.Path, e.Status, msg)
}

// Is makes a 404 match ErrTenantNotFound.
func (e *APIError) Is(target error) bool {
	return target == ErrTenantNotFound && e.Status == http.StatusNotFound
}
