package sdk

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/tenancyhq/tenancy/aggregate"
)

// Client is a typed client of the tenancy service's read API. It is safe for
// concurrent use.
type Client struct {
	base  string // scheme://host[:port][/prefix], without a trailing slash
	http  *http.Client
	token func(ctx context.Context) (string, error)
	agent string
}

// NewClient returns a client of the API at baseURL, such as
// https://tenancy.internal:8000.
func NewClient(baseURL string, opts ClientOptions) (*Client, error) {
	u, err := url.Parse(baseURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("tenancy client: base URL %q: want http(s)://host[:port]", baseURL)
	}
	c := &Client{base: strings.TrimRight(baseURL, "/"), http: opts.HTTPClient, agent: opts.UserAgent, token: opts.TokenSource}
	if c.http == nil {
		c.http = &http.Client{Timeout: 10 * time.Second}
	}
	if c.agent == "" {
		c.agent = "tenancy-sdk-go"
	}
	if c.token == nil && opts.Token != "" {
		tok := opts.Token
		c.token = func(context.Context) (string, error) { return tok, nil }
	}
	return c, nil
}

// Tenant is a tenant as GET /api/v1/tenants/{id} shows it: the aggregate's
// state and the commands it accepts now.
type Tenant struct {
	aggregate.Tenant
	AllowedCommands []aggregate.CommandName `json:"allowed_commands"`
}

// TenantEntitlements is GET /api/v1/tenants/{id}/entitlements: the effective
// features and limits (edition with overrides) and the overrides alone.
type TenantEntitlements struct {
	aggregate.Entitlements
	Overrides aggregate.Overrides `json:"overrides"`
}

// TenantPage is one page of GET /api/v1/tenants.
type TenantPage struct {
	Items []Tenant `json:"items"`
	// NextCursor asks for the next page; empty on the last one.
	NextCursor string `json:"next_cursor,omitempty"`
}

// CatalogInfo is GET /api/v1/editions: the server's catalog.
type CatalogInfo struct {
	Version  string                  `json:"version"`
	Editions []aggregate.EditionSpec `json:"editions"`
}

// ReadOptions qualify a read.
type ReadOptions struct {
	// ConsistentWith is a consistency token (a command's
	// X-Consistency-Token, or an event's position): the server answers once
	// its read model has reached it.
	ConsistentWith string
}

// ListOptions select a page of tenants.
type ListOptions struct {
	// Limit is the page size (server default 50, at most 200).
	Limit int
	// Cursor is the previous page's NextCursor.
	Cursor string
	ReadOptions
}

// GetTenant returns the tenant whose id or external id (ORG-…) is ref.
func (c *Client) GetTenant(ctx context.Context, ref string, ro ReadOptions) (*Tenant, error) {
	var t Tenant
	if err := c.do(ctx, http.MethodGet, tenantPath(ref), nil, ro, &t); err != nil {
		return nil, err
	}
	return &t, nil
}

// GetEntitlements returns the tenant's effective features and limits.
func (c *Client) GetEntitlements(ctx context.Context, ref string, ro ReadOptions) (*TenantEntitlements, error) {
	var e TenantEntitlements
	if err := c.do(ctx, http.MethodGet, tenantPath(ref)+"/entitlements", nil, ro, &e); err != nil {
		return nil, err
	}
	return &e, nil
}

// EvaluatePolicy asks the server whether the tenant may make req now:
// POST /api/v1/tenants/{id}/policy/evaluate.
func (c *Client) EvaluatePolicy(ctx context.Context, ref string, req aggregate.PolicyRequest, ro ReadOptions) (aggregate.Decision, error) {
	var d aggregate.Decision
	err := c.do(ctx, http.MethodPost, tenantPath(ref)+"/policy/evaluate", req, ro, &d)
	return d, err
}

// ListTenants returns a page of tenants, oldest first.
func (c *Client) ListTenants(ctx context.Context, lo ListOptions) (TenantPage, error) {
	q := url.Values{}
	if lo.Limit > 0 {
		q.Set("limit", strconv.Itoa(lo.Limit))
	}
	if lo.Cursor != "" {
		q.Set("cursor", lo.Cursor)
	}
	path := "/api/v1/tenants"
	if len(q) > 0 {
		path += "?" + q.Encode()
	}
	var p TenantPage
	err := c.do(ctx, http.MethodGet, path, nil, lo.ReadOptions, &p)
	return p, err
}

// Catalog returns the server's edition catalog.
func (c *Client) Catalog(ctx context.Context) (CatalogInfo, error) {
	var ci CatalogInfo
	err := c.do(ctx, http.MethodGet, "/api/v1/editions", nil, ReadOptions{}, &ci)
	return ci, err
}

func tenantPath(ref string) string { return "/api/v1/tenants/" + url.PathEscape(ref) }

// do sends one request and decodes a 2xx JSON answer into out; any other
// answer is an *APIError.
func (c *Client) do(ctx context.Context, method, path string, body any, ro ReadOptions, out any) error {
	_, err := c.exchange(ctx, method, path, body, ro, nil, out)
	return err
}

// exchange is do with extra request headers (name, value pairs), answering
// the response's headers too.
func (c *Client) exchange(ctx context.Context, method, path string, body any, ro ReadOptions, headers []string, out any) (http.Header, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return nil, fmt.Errorf("%s %s: encode request: %w", method, path, err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, rd)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", method, path, err)
	}
	req.Header.Set("Accept", "application/json")
	for i := 0; i+1 < len(headers); i += 2 {
		if headers[i+1] != "" {
			req.Header.Set(headers[i], headers[i+1])
		}
	}
	req.Header.Set("User-Agent", c.agent)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if ro.ConsistentWith != "" {
		req.Header.Set("X-Consistency-Token", ro.ConsistentWith)
	}
	if c.token != nil {
		tok, err := c.token(ctx)
		if err != nil {
			return nil, fmt.Errorf("%s %s: token: %w", method, path, err)
		}
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	res, err := c.http.Do(req)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", method, path, err)
	}
	defer res.Body.Close()
	data, err := io.ReadAll(io.LimitReader(res.Body, 16<<20))
	if err != nil {
		return nil, fmt.Errorf("%s %s: read answer: %w", method, path, err)
	}
	if res.StatusCode < 200 || res.StatusCode > 299 {
		apiErr := &APIError{Status: res.StatusCode, Method: method, Path: path}
		if mt, _, _ := mime.ParseMediaType(res.Header.Get("Content-Type")); strings.HasSuffix(mt, "json") {
			_ = json.Unmarshal(data, apiErr) // a problem document; anything else leaves the status
		}
		return res.Header, apiErr
	}
	if err := json.Unmarshal(data, out); err != nil {
		return res.Header, fmt.Errorf("%s %s: decode answer: %w", method, path, err)
	}
	return res.Header, nil
}
