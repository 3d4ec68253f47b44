// Package contract checks HTTP exchanges against the service's OpenAPI 3.1
// document with a validator this project does not otherwise use
// (pb33f/libopenapi-validator), in strict mode: the status must be
// declared, every response header declared, the body valid against its
// schema, and no member present that the schema does not name. The tests
// that talk to the service over HTTP run every response through it, so a
// change that lets document and server drift apart fails the tests.
package contract

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"

	"github.com/pb33f/libopenapi"
	validator "github.com/pb33f/libopenapi-validator"
	"github.com/pb33f/libopenapi-validator/config"
	verrors "github.com/pb33f/libopenapi-validator/errors"
	"github.com/pb33f/libopenapi-validator/paths"
	v3 "github.com/pb33f/libopenapi/datamodel/high/v3"
)

// transportHeaders are the response headers no operation declares: they
// belong to HTTP itself, not to the API.
var transportHeaders = []string{
	"content-type", "content-length", "date", "transfer-encoding", "connection", "vary",
}

// Checker validates exchanges against one document. It is safe for
// concurrent use: the validator is guarded by a mutex, as its caches are
// not documented as safe for concurrent writers.
type Checker struct {
	mu sync.Mutex
	v  validator.Validator
	// requests are checked without strict mode: a request schema's maps
	// (labels, metadata) admit members by additionalProperties, which
	// strict mode reports; unknown members are refused by the schemas'
	// own additionalProperties: false.
	requests validator.Validator
	// model resolves a request to its operation ("not in the document"
	// is not a violation: /metrics, the console, an unknown route).
	model *v3.Document
}

var (
	cacheMu sync.Mutex
	cache   = map[string]*Checker{}
)

// For returns the Checker of the document doc (built once per distinct
// document in a test binary: building one takes a while).
func For(doc []byte) (*Checker, error) {
	cacheMu.Lock()
	defer cacheMu.Unlock()
	if c, ok := cache[string(doc)]; ok {
		return c, nil
	}
	c, err := New(doc)
	if err != nil {
		return nil, err
	}
	cache[string(doc)] = c
	return c, nil
}

// Fetch loads the document the service at base serves (GET
// /openapi.json) and returns its Checker.
func Fetch(client *http.Client, base string) (*Checker, error) {
	res, err := client.Get(base + "/openapi.json")
	if err != nil {
		return nil, fmt.Errorf("GET /openapi.json: %w", err)
	}
	defer res.Body.Close()
	doc, err := io.ReadAll(res.Body)
	if err != nil {
		return nil, fmt.Errorf("GET /openapi.json: %w", err)
	}
	if res.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET /openapi.json: status %d", res.StatusCode)
	}
	return For(doc)
}

// New loads doc (an OpenAPI 3.1 document as JSON) and checks that it is a
// valid one.
func New(doc []byte) (*Checker, error) {
	d, err := libopenapi.NewDocument(doc)
	if err != nil {
		return nil, fmt.Errorf("load document: %w", err)
	}
	v, errs := validator.NewValidator(d,
		config.WithStrictMode(),
		config.WithStrictIgnoredHeaders(transportHeaders...),
		config.WithFormatAssertions(),
		config.WithoutSecurityValidation(),
	)
	if len(errs) > 0 {
		return nil, fmt.Errorf("validator: %v", errs)
	}
	rv, errs := validator.NewValidator(d, config.WithFormatAssertions(), config.WithoutSecurityValidation())
	if len(errs) > 0 {
		return nil, fmt.Errorf("validator: %v", errs)
	}
	if ok, verrs := v.ValidateDocument(); !ok {
		return nil, fmt.Errorf("the document is not valid OpenAPI 3.1: %s", describe(verrs))
	}
	m, err := d.BuildV3Model()
	if err != nil {
		return nil, fmt.Errorf("build model: %w", err)
	}
	return &Checker{v: v, requests: rv, model: &m.Model}, nil
}

// Operation returns the operationId of the request's operation ("" when
// the document has none for its path and method).
func (c *Checker) Operation(req *http.Request) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	item, errs, _ := paths.FindPath(req, c.model, config.NewValidationOptions())
	if item == nil || len(errs) > 0 {
		return ""
	}
	if op := item.GetOperations().GetOrZero(strings.ToLower(req.Method)); op != nil {
		return op.OperationId
	}
	return ""
}

// Operations lists every operationId of the document.
func (c *Checker) Operations() []string {
	var out []string
	for _, item := range c.model.Paths.PathItems.FromOldest() {
		for _, op := range item.GetOperations().FromOldest() {
			out = append(out, op.OperationId)
		}
	}
	return out
}

// Transport is a RoundTripper that checks every response it carries with
// c (reporting each violation to report), for a client under test such as
// the Go SDK's.
func (c *Checker) Transport(next http.RoundTripper, report func(violation string)) http.RoundTripper {
	return checkingTransport{c: c, next: next, report: report}
}

type checkingTransport struct {
	c      *Checker
	next   http.RoundTripper
	report func(string)
}

func (t checkingTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	res, err := t.next.RoundTrip(req)
	if err != nil {
		return nil, err
	}
	body, err := io.ReadAll(res.Body)
	res.Body.Close()
	if err != nil {
		return nil, err
	}
	res.Body = io.NopCloser(bytes.NewReader(body))
	for _, v := range t.c.CheckResponse(req, res, body) {
		t.report(req.Method + " " + req.URL.Path + ": " + v)
	}
	return res, nil
}

// Documented reports whether the request's path and method are an
// operation of the document.
func (c *Checker) Documented(req *http.Request) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	item, errs, _ := paths.FindPath(req, c.model, config.NewValidationOptions())
	return item != nil && len(errs) == 0
}

// CheckResponse returns the violations of the response res (with its body
// already read into body) to the request req; none when the operation is
// not in the document.
func (c *Checker) CheckResponse(req *http.Request, res *http.Response, body []byte) []string {
	if !c.Documented(req) {
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	r := *res
	r.Body = io.NopCloser(bytes.NewReader(body))
	r.Request = req
	if ok, errs := c.v.ValidateHttpResponse(req, &r); !ok {
		return lines(errs)
	}
	return nil
}

// CheckRequest returns the violations of the request req (its body given
// separately, as the request's own may have been sent already).
func (c *Checker) CheckRequest(req *http.Request, body []byte) []string {
	if !c.Documented(req) {
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	r := req.Clone(req.Context())
	r.Body = io.NopCloser(bytes.NewReader(body))
	if ok, errs := c.requests.ValidateHttpRequestSync(r); !ok {
		return lines(errs)
	}
	return nil
}

func lines(errs []*verrors.ValidationError) []string {
	var out []string
	for _, e := range errs {
		out = append(out, describe([]*verrors.ValidationError{e}))
	}
	return out
}

// describe renders validation errors, each with its schema failures.
func describe(errs []*verrors.ValidationError) string {
	var b strings.Builder
	for i, e := range errs {
		if i > 0 {
			b.WriteString("; ")
		}
		fmt.Fprintf(&b, "%s: %s", e.Message, e.Reason)
		for _, f := range e.SchemaValidationErrors {
			fmt.Fprintf(&b, " [%s %s: %s]", f.FieldPath, f.KeywordLocation, f.Reason)
		}
	}
	return b.String()
}
