package service

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/google/uuid"

	"github.com/tenancyhq/tenancy/aggregate"
	"github.com/tenancyhq/tenancy/commands"
	"github.com/tenancyhq/tenancy/eventstore"
	"github.com/tenancyhq/tenancy/internal/metrics"
)

// The instrumenting decorators: they sit in the composition root because
// they know both the metrics and what they measure (the command handler,
// the event store), which the metrics package, a leaf, must not.

// commandHandler is the command handler's surface the API uses.
type commandHandler interface {
	Execute(ctx context.Context, req commands.Request) (commands.Result, error)
	Resolve(ctx context.Context, externalID string) (uuid.UUID, error)
	Head(ctx context.Context, id uuid.UUID) (uint64, eventstore.Position, bool, error)
	Load(ctx context.Context, id uuid.UUID) (*aggregate.Tenant, []aggregate.Envelope, error)
}

// instrumentedCommands counts command outcomes and latency around a handler.
type instrumentedCommands struct {
	inner commandHandler
	m     *metrics.Metrics
	log   *slog.Logger
}

// instrumentCommands wraps a handler. Each outcome is also logged (one line per command).
func instrumentCommands(inner commandHandler, m *metrics.Metrics, logger *slog.Logger) *instrumentedCommands {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &instrumentedCommands{inner: inner, m: m, log: logger}
}

// Execute implements commandHandler.
func (c *instrumentedCommands) Execute(ctx context.Context, req commands.Request) (commands.Result, error) {
	start := time.Now()
	res, err := c.inner.Execute(ctx, req)
	tenant := res.TenantID
	if tenant == uuid.Nil {
		tenant = req.TenantID // refused: the tenant the request named, if it named one
	}
	c.observe(ctx, req.Command.CommandName(), tenant, res, err, time.Since(start))
	return res, err
}

// Resolve implements commandHandler.
func (c *instrumentedCommands) Resolve(ctx context.Context, externalID string) (uuid.UUID, error) {
	return c.inner.Resolve(ctx, externalID)
}

// Head implements commandHandler.
func (c *instrumentedCommands) Head(ctx context.Context, id uuid.UUID) (uint64, eventstore.Position, bool, error) {
	return c.inner.Head(ctx, id)
}

// Load implements commandHandler.
func (c *instrumentedCommands) Load(ctx context.Context, id uuid.UUID) (*aggregate.Tenant, []aggregate.Envelope, error) {
	return c.inner.Load(ctx, id)
}

// observe counts, times and logs a command. tenant is the one the command
// was for: a refused command's Result is empty, and its log line must still
// say which tenant it concerned.
func (c *instrumentedCommands) observe(ctx context.Context, name aggregate.CommandName, tenant uuid.UUID, res commands.Result, err error, d time.Duration) {
	outcome := "accepted"
	switch {
	case err == nil && res.Duplicate:
		outcome = "replayed" // an idempotent retry, answered with its first outcome
	case err == nil && res.Attempts > 1:
		outcome = "retried"
	case err == nil:
	case errors.Is(err, commands.ErrVersionMismatch), errors.Is(err, commands.ErrTooManyConflicts):
		outcome = "conflict"
	default:
		if _, ok := aggregate.AsError(err); ok {
			outcome = "refused"
		} else {
			outcome = "error"
		}
	}
	c.m.Commands.WithLabelValues(string(name), outcome).Inc()
	c.m.CommandDuration.WithLabelValues(string(name)).Observe(d.Seconds())
	attrs := []any{"command", name, "outcome", outcome, "tenant", tenant, "version", res.Version, "events", len(res.Events), "duration", d}
	if err != nil {
		attrs = append(attrs, "err", err)
	}
	c.log.InfoContext(ctx, "command", attrs...)
}

// timedStore times appends around an event store.
type timedStore struct {
	eventstore.Store
	m *metrics.Metrics
}

// timeStore wraps an event store.
func timeStore(inner eventstore.Store, m *metrics.Metrics) *timedStore {
	return &timedStore{Store: inner, m: m}
}

// Append implements eventstore.Appender.
func (s *timedStore) Append(ctx context.Context, stream string, exp eventstore.ExpectedVersion, evs []eventstore.EventData) (eventstore.AppendResult, error) {
	start := time.Now()
	res, err := s.Store.Append(ctx, stream, exp, evs)
	s.m.AppendDuration.Observe(time.Since(start).Seconds())
	return res, err
}

// Commit implements eventstore.Committer, timed like Append.
func (s *timedStore) Commit(ctx context.Context, w eventstore.Write) (eventstore.AppendResult, error) {
	start := time.Now()
	res, err := s.Store.Commit(ctx, w)
	s.m.AppendDuration.Observe(time.Since(start).Seconds())
	return res, err
}

// CountAfter passes through to the inner store (eventstore.CountAfter).
func (s *timedStore) CountAfter(ctx context.Context, after eventstore.Position, f eventstore.Filter) (int64, error) {
	return eventstore.CountAfter(ctx, s.Store, after, f)
}
