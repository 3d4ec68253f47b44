package sdk

import (
	"context"
	"net/http"
	"strconv"

	"github.com/google/uuid"

	"github.com/tenancyhq/tenancy/aggregate"
)

// The write side of the API: creating a tenant and running its commands,
// over the same wire types the server encodes (aggregate.Tenant and the
// commands it accepts). Every command answers the tenant's new state with
// its version (the ETag) and a consistency token a later read can wait for.

// CreateTenant is the body of POST /api/v1/tenants.
type CreateTenant struct {
	// ID is the tenant id to use (default: generated).
	ID        *uuid.UUID          `json:"id,omitempty"`
	Name      string              `json:"name"`
	Edition   aggregate.Edition   `json:"edition"`
	Region    aggregate.Region    `json:"region,omitempty"`
	Trial     *bool               `json:"trial,omitempty"`
	TrialDays int                 `json:"trial_days,omitempty"`
	Contacts  []aggregate.Contact `json:"contacts,omitempty"`
	Labels    map[string]string   `json:"labels,omitempty"`
	Metadata  map[string]string   `json:"metadata,omitempty"`
}

// CommandOptions qualify a command.
type CommandOptions struct {
	// IdempotencyKey makes the command safe to retry: the same request with
	// the same key answers the first outcome again (Replayed).
	IdempotencyKey string
	// IfMatch, when not nil, refuses the command (412) unless the tenant is
	// at this version.
	IfMatch *uint64
}

// CommandResult is a command's answer.
type CommandResult struct {
	Tenant Tenant
	// ConsistencyToken is the position of the command's last event: pass it
	// as ReadOptions.ConsistentWith to read this write from the read model.
	ConsistencyToken string
	// Replayed says the answer is the first outcome of IdempotencyKey, sent again.
	Replayed bool
}

// CreateTenant creates a tenant (PROVISIONING).
func (c *Client) CreateTenant(ctx context.Context, req CreateTenant, co CommandOptions) (*CommandResult, error) {
	return c.command(ctx, http.MethodPost, "/api/v1/tenants", req, co)
}

// Execute runs the command name on the tenant ref (id or external id):
// POST /api/v1/tenants/{id}/{name}, with body its request (nil: none; see
// the OpenAPI document for each command's members, for example
// map[string]any{"reason": "payment_failed"} for suspend).
func (c *Client) Execute(ctx context.Context, ref string, name aggregate.CommandName, body any, co CommandOptions) (*CommandResult, error) {
	if body == nil {
		body = struct{}{}
	}
	return c.command(ctx, http.MethodPost, tenantPath(ref)+"/"+string(name), body, co)
}

func (c *Client) command(ctx context.Context, method, path string, body any, co CommandOptions) (*CommandResult, error) {
	var ifMatch string
	if co.IfMatch != nil {
		ifMatch = `W/"` + strconv.FormatUint(*co.IfMatch, 10) + `"`
	}
	var out CommandResult
	h, err := c.exchange(ctx, method, path, body, ReadOptions{}, []string{"Idempotency-Key", co.IdempotencyKey, "If-Match", ifMatch}, &out.Tenant)
	if err != nil {
		return nil, err
	}
	out.ConsistencyToken = h.Get("X-Consistency-Token")
	out.Replayed = h.Get("Idempotent-Replayed") == "true"
	return &out, nil
}
