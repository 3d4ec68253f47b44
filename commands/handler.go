// Package commands turns a command into events: it loads the tenant's stream,
// folds it into the aggregate, lets the aggregate decide, and appends the new
// events with the version it read. A conflicting append is decided again
// against the fresh stream, a bounded number of times, unless the caller
// pinned the version it expects.
//
// The handler keeps the folded state of recently commanded tenants (see
// Options.StateCacheSize), so a command usually reads only the events
// appended since the last one it handled for the tenant, by this process or
// another. It still decides against the stream's head and appends with the
// version it read, so the cache changes what a command costs, never what it
// decides.
package commands

import (
	"context"
	"crypto/sha1"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strings"
	"time"

	"github.com/google/uuid"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/tenancyhq/tenancy/aggregate"
	"github.com/tenancyhq/tenancy/eventstore"
	"github.com/tenancyhq/tenancy/internal/eventcodec"
	"github.com/tenancyhq/tenancy/internal/tracing"
)

// Store is what the handler needs of the event store.
type Store interface {
	eventstore.Appender
	eventstore.StreamReader
}

// Errors the handler returns besides the aggregate's domain errors.
var (
	// ErrVersionMismatch: the caller pinned an expected version (If-Match) and
	// the tenant has moved on since. Nothing was written.
	ErrVersionMismatch = errors.New("tenant version does not match the expected version")
	// ErrTooManyConflicts: concurrent writers kept winning the race for the
	// stream; nothing was written. The caller may retry.
	ErrTooManyConflicts = errors.New("too many concurrent changes to the tenant")
)

// Options configure a Handler.
type Options struct {
	// Catalog is the edition catalog (default aggregate.DefaultCatalog()).
	Catalog *aggregate.Catalog
	// Now is the clock (default time.Now). Tests and the timers inject theirs.
	Now func() time.Time
	// MaxAttempts bounds decide-and-append attempts on conflicts (default 3).
	MaxAttempts int
	// ReservationGrace is how long a name reservation whose tenant does not
	// (yet) carry the name counts as in flight (default 1 minute). After it, the
	// reservation is orphaned (its create or rename crashed) and may be taken.
	ReservationGrace time.Duration
	Logger           *slog.Logger
	// Tracer traces command handling (default: no tracing). The trace
	// context of the command's span goes into each event's metadata, so
	// whatever handles the event later continues the trace.
	Tracer trace.Tracer
	// StateCacheSize bounds how many tenants' folded states the handler
	// keeps between commands, least recently used evicted first (default
	// DefaultStateCacheSize; negative: none). A command on a cached tenant
	// reads and decodes only the events appended since, not the whole stream.
	StateCacheSize int
}

// Handler executes commands against tenant streams. It is safe for concurrent use.
type Handler struct {
	store       Store
	catalog     *aggregate.Catalog
	now         func() time.Time
	maxAttempts int
	grace       time.Duration
	logger      *slog.Logger
	tracer      trace.Tracer
	states      *stateCache
}

// NewHandler returns a handler over store.
func NewHandler(store Store, opts Options) *Handler {
	h := &Handler{store: store, catalog: opts.Catalog, now: opts.Now, maxAttempts: opts.MaxAttempts, grace: opts.ReservationGrace, logger: opts.Logger, tracer: opts.Tracer,
		states: newStateCache(opts.StateCacheSize)}
	if h.tracer == nil {
		h.tracer = noop.NewTracerProvider().Tracer("")
	}
	if h.catalog == nil {
		h.catalog = aggregate.DefaultCatalog()
	}
	if h.now == nil {
		h.now = time.Now
	}
	if h.maxAttempts <= 0 {
		h.maxAttempts = 3
	}
	if h.grace <= 0 {
		h.grace = time.Minute
	}
	if h.logger == nil {
		h.logger = slog.New(slog.DiscardHandler)
	}
	return h
}

// Catalog returns the edition catalog the handler decides with.
func (h *Handler) Catalog() *aggregate.Catalog { return h.catalog }

// Request is one command for one tenant.
type Request struct {
	TenantID uuid.UUID
	Command  aggregate.Command
	// ExpectedVersion pins the tenant version the caller saw (If-Match): if
	// the stream moved, the command fails with ErrVersionMismatch instead of
	// being decided again.
	ExpectedVersion *uint64
	// IdempotencyKey, when set, makes the event ids deterministic, so the same
	// request sent again after an unknown outcome is recognised by the store
	// and answered with the first outcome instead of applied twice.
	IdempotencyKey string
	// Metadata is copied onto every event (OccurredAt and Command are set by the handler).
	Metadata aggregate.Metadata
}

// Result is what an accepted command did.
type Result struct {
	TenantID uuid.UUID
	// Version is the tenant stream's version after the command (unchanged when
	// the command emitted no events).
	Version uint64
	// Position is the global position of the last event appended (Start when none).
	Position eventstore.Position
	Events   []aggregate.Envelope
	// Tenant is the state after the command, folded from the stream.
	Tenant *aggregate.Tenant
	// Attempts is how many times the command was decided (1 without conflicts).
	Attempts int
	// Duplicate is true when the request had already been applied (same
	// idempotency key): Events are the ones it appended then.
	Duplicate bool
}

// Load reads a tenant's whole stream and folds it. A tenant that does not
// exist yields an aggregate.Error with CodeNotFound.
func (h *Handler) Load(ctx context.Context, id uuid.UUID) (*aggregate.Tenant, []aggregate.Envelope, error) {
	recs, err := h.store.ReadStream(ctx, aggregate.StreamName(id), eventstore.Forward, 0, 0)
	if errors.Is(err, eventstore.ErrStreamNotFound) {
		return &aggregate.Tenant{}, nil, &aggregate.Error{Code: aggregate.CodeNotFound, Message: "tenant " + id.String() + " not found"}
	}
	if err != nil {
		return nil, nil, fmt.Errorf("load tenant %s: %w", id, err)
	}
	envs, err := eventcodec.DecodeAll(recs)
	if err != nil {
		return nil, nil, fmt.Errorf("load tenant %s: %w", id, err)
	}
	return aggregate.Fold(envs), envs, nil
}

// current returns the tenant's state at the head of its stream, which the
// caller owns: its cached state with the events appended since folded on, or
// without one, the fold of the whole stream.
func (h *Handler) current(ctx context.Context, id uuid.UUID) (*aggregate.Tenant, error) {
	if t, ok := h.states.get(id); ok {
		recs, err := h.store.ReadStream(ctx, aggregate.StreamName(id), eventstore.Forward, int64(t.Version)+1, 0)
		if err != nil && !errors.Is(err, eventstore.ErrStreamNotFound) {
			return nil, fmt.Errorf("load tenant %s: %w", id, err)
		}
		n := uint64(len(recs))
		if err == nil && (n == 0 || recs[0].Version == t.Version+1 && recs[n-1].Version == t.Version+n) {
			envs, err := eventcodec.DecodeAll(recs)
			if err != nil {
				return nil, fmt.Errorf("load tenant %s: %w", id, err)
			}
			for _, env := range envs {
				t.Apply(env)
			}
			return t, nil
		}
		// The stream is gone or does not continue the cached state, which
		// an append-only stream never does: trust only the stream.
		h.logger.WarnContext(ctx, "cached tenant state does not match its stream, reading it whole", "tenant", id, "cached_version", t.Version, "err", err)
		h.states.drop(id)
	}
	t, _, err := h.Load(ctx, id)
	return t, err
}

// Execute runs one command against an existing tenant: load, decide, append,
// and on a version conflict decide again (up to MaxAttempts) unless the
// request pinned its expected version.
func (h *Handler) Execute(ctx context.Context, req Request) (res Result, err error) {
	if _, ok := req.Command.(aggregate.Create); ok {
		return Result{}, fmt.Errorf("execute: use Handler.Create for %s", aggregate.CmdCreate)
	}
	var end func(Result, error)
	ctx, req.Metadata, end = h.trace(ctx, req.Command.CommandName(), req.TenantID, req.Metadata)
	defer func() { end(res, err) }()
	for attempt := 1; ; attempt++ {
		res, err := h.attempt(ctx, req)
		res.Attempts = attempt
		if !errors.Is(err, eventstore.ErrWrongExpectedVersion) {
			return res, err
		}
		if req.ExpectedVersion != nil {
			return res, fmt.Errorf("%s on tenant %s: %w", req.Command.CommandName(), req.TenantID, ErrVersionMismatch)
		}
		if attempt >= h.maxAttempts {
			return res, fmt.Errorf("%s on tenant %s after %d attempts: %w", req.Command.CommandName(), req.TenantID, attempt, ErrTooManyConflicts)
		}
		h.logger.DebugContext(ctx, "command conflict, deciding again", "command", req.Command.CommandName(), "tenant", req.TenantID, "attempt", attempt)
		// A short jittered pause spreads writers racing for one stream, so
		// they take turns instead of all re-reading at once.
		pause := time.Duration(rand.Int64N(int64(attempt) * int64(2*time.Millisecond)))
		select {
		case <-ctx.Done():
			return res, ctx.Err()
		case <-time.After(pause):
		}
	}
}

func (h *Handler) attempt(ctx context.Context, req Request) (Result, error) {
	var (
		t    *aggregate.Tenant
		envs []aggregate.Envelope // the whole history, for idempotent requests only
		err  error
	)
	if req.IdempotencyKey != "" {
		// The request may have been applied anywhere in the history, so
		// look for its events in all of it.
		t, envs, err = h.Load(ctx, req.TenantID)
	} else {
		t, err = h.current(ctx, req.TenantID)
	}
	if err != nil {
		return Result{}, err
	}
	h.states.put(t)
	if req.ExpectedVersion != nil && t.Version != *req.ExpectedVersion {
		return Result{}, fmt.Errorf("tenant %s is at version %d, not %d: %w", req.TenantID, t.Version, *req.ExpectedVersion, ErrVersionMismatch)
	}
	if req.IdempotencyKey != "" {
		if dup, ok := h.alreadyApplied(req, t, envs); ok {
			return dup, nil
		}
	}
	now := h.now().UTC()
	events, err := t.Decide(req.Command, now, h.catalog)
	if err != nil {
		return Result{}, err
	}
	res := Result{TenantID: req.TenantID, Version: t.Version, Tenant: t}
	if len(events) == 0 {
		return res, nil
	}

	// Unique names: a rename reserves the new name before the tenant takes it,
	// and releases the old one after.
	rename, isRename := req.Command.(aggregate.Rename)
	var newName string
	if isRename {
		newName = aggregate.NormalizeName(rename.Name)
		if newName != t.NormalizedName {
			if err := h.reserveName(ctx, newName, req.TenantID, now); err != nil {
				return Result{}, err
			}
		}
	}

	res, err = h.append(ctx, t, eventstore.Exact(t.Version), req, events, now)
	if err != nil {
		if isRename && newName != t.NormalizedName {
			h.releaseName(context.WithoutCancel(ctx), newName, req.TenantID, now)
		}
		return res, err
	}
	h.rememberAppended(req, res)
	switch req.Command.(type) {
	case aggregate.Rename:
		if newName != t.NormalizedName {
			h.releaseName(ctx, t.NormalizedName, req.TenantID, now)
		}
	case aggregate.Purge:
		h.releaseName(ctx, t.NormalizedName, req.TenantID, now)
	}
	return res, nil
}

// append writes the decided events after the tenant's state t and returns the result.
func (h *Handler) append(ctx context.Context, t *aggregate.Tenant, expected eventstore.ExpectedVersion, req Request, events []aggregate.Event, now time.Time) (Result, error) {
	next := uint64(0)
	if t.Exists() {
		next = t.Version + 1
	}
	envs := make([]aggregate.Envelope, len(events))
	data := make([]eventstore.EventData, len(events))
	meta := req.Metadata
	meta.OccurredAt = now
	meta.Command = req.Command.CommandName()
	for i, e := range events {
		envs[i] = aggregate.Envelope{
			EventID:       h.eventID(req, i),
			Type:          e.EventType(),
			SchemaVersion: aggregate.SchemaVersion(e.EventType()),
			Stream:        aggregate.StreamName(req.TenantID),
			Version:       next + uint64(i),
			OccurredAt:    now,
			Metadata:      meta,
			Data:          e,
		}
		d, err := eventcodec.Encode(envs[i])
		if err != nil {
			return Result{}, err
		}
		data[i] = d
	}
	ar, err := h.store.Append(ctx, aggregate.StreamName(req.TenantID), expected, data)
	if err != nil {
		return Result{}, fmt.Errorf("append %s to tenant %s: %w", req.Command.CommandName(), req.TenantID, err)
	}
	after := t.Clone()
	for _, env := range envs {
		after.Apply(env)
	}
	return Result{TenantID: req.TenantID, Version: ar.NextExpectedVersion, Position: ar.Position, Events: envs, Tenant: after}, nil
}

// rememberAppended caches the state an append left, unless the request is
// idempotent: its append also succeeds when a concurrent copy of it stored
// the same event ids first, with that copy's times and metadata, so the
// state folded from this copy's events need not be the stream's. The next
// command reads the stored events instead.
func (h *Handler) rememberAppended(req Request, res Result) {
	if req.IdempotencyKey == "" && res.Tenant != nil && res.Tenant.Version == res.Version {
		h.states.put(res.Tenant)
	}
}

// idempotencyNamespace seeds the deterministic event ids of idempotent requests.
var idempotencyNamespace = uuid.MustParse("6f1d3c1e-9a8b-4c7d-8e2f-1a2b3c4d5e6f")

// eventID is random, or derived from the tenant, the idempotency key and the
// event's index when the request has a key.
func (h *Handler) eventID(req Request, i int) uuid.UUID {
	if req.IdempotencyKey == "" {
		return uuid.New()
	}
	return uuid.NewSHA1(idempotencyNamespace, fmt.Appendf(nil, "%s\x00%s\x00%d", req.TenantID, req.IdempotencyKey, i))
}

// alreadyApplied finds the events an idempotent request appended before, if any.
func (h *Handler) alreadyApplied(req Request, t *aggregate.Tenant, envs []aggregate.Envelope) (Result, bool) {
	first := h.eventID(req, 0)
	for i, env := range envs {
		if env.EventID != first {
			continue
		}
		j := i + 1
		for j < len(envs) && envs[j].EventID == h.eventID(req, j-i) {
			j++
		}
		state := aggregate.Fold(envs[:j])
		return Result{TenantID: req.TenantID, Version: envs[j-1].Version, Events: envs[i:j], Tenant: state, Duplicate: true}, true
	}
	return Result{}, false
}

// Create makes a new tenant: it reserves an external id and the unique name,
// then starts the tenant's stream. With an idempotency key the tenant id and
// event ids are derived from it, so a retried create returns the first
// outcome. A create that fails after reserving releases the name.
func (h *Handler) Create(ctx context.Context, cmd aggregate.Create, idempotencyKey string, meta aggregate.Metadata) (res Result, err error) {
	if cmd.TenantID == uuid.Nil {
		if idempotencyKey != "" {
			cmd.TenantID = uuid.NewSHA1(idempotencyNamespace, []byte("create\x00"+idempotencyKey))
		} else {
			cmd.TenantID = uuid.New()
		}
	}
	var end func(Result, error)
	ctx, meta, end = h.trace(ctx, aggregate.CmdCreate, cmd.TenantID, meta)
	defer func() { end(res, err) }()
	req := Request{TenantID: cmd.TenantID, Command: cmd, IdempotencyKey: idempotencyKey, Metadata: meta}
	if idempotencyKey != "" {
		if t, envs, err := h.Load(ctx, cmd.TenantID); err == nil {
			if dup, ok := h.alreadyApplied(req, t, envs); ok {
				return dup, nil
			}
		}
	}
	now := h.now().UTC()
	// Validate before reserving anything.
	cmd.ExternalID = externalIDFor(cmd.TenantID)
	if _, err := (&aggregate.Tenant{}).Decide(cmd, now, h.catalog); err != nil {
		return Result{}, err
	}
	ext, err := h.reserveExternalID(ctx, cmd.TenantID, now)
	if err != nil {
		return Result{}, err
	}
	cmd.ExternalID = ext
	req.Command = cmd
	name := aggregate.NormalizeName(cmd.Name)
	if err := h.reserveName(ctx, name, cmd.TenantID, now); err != nil {
		return Result{}, err
	}
	events, err := (&aggregate.Tenant{}).Decide(cmd, now, h.catalog)
	if err != nil {
		h.releaseName(context.WithoutCancel(ctx), name, cmd.TenantID, now)
		return Result{}, err
	}
	res, err = h.append(ctx, &aggregate.Tenant{}, eventstore.NoStream, req, events, now)
	if err != nil {
		if errors.Is(err, eventstore.ErrWrongExpectedVersion) {
			err = &aggregate.Error{Code: aggregate.CodeConflict, Message: "tenant " + cmd.TenantID.String() + " already exists", Command: aggregate.CmdCreate}
		}
		h.releaseName(context.WithoutCancel(ctx), name, cmd.TenantID, now)
		return Result{}, err
	}
	h.rememberAppended(req, res)
	res.Attempts = 1
	return res, nil
}

// trace starts the command's span and puts its trace context into the
// events' metadata (unless the caller already set one).
func (h *Handler) trace(ctx context.Context, name aggregate.CommandName, tenant uuid.UUID, meta aggregate.Metadata) (context.Context, aggregate.Metadata, func(Result, error)) {
	ctx, span := h.tracer.Start(ctx, "command "+string(name), trace.WithAttributes(
		attribute.String("tenancy.command", string(name)), attribute.String("tenancy.tenant_id", tenant.String())))
	if meta.TraceParent == "" {
		meta.TraceParent = tracing.TraceParent(ctx)
	}
	return ctx, meta, func(res Result, err error) {
		span.SetAttributes(attribute.Int("tenancy.events", len(res.Events)), attribute.Int64("tenancy.version", int64(res.Version)))
		if err != nil {
			span.RecordError(err)
			span.SetStatus(codes.Error, err.Error())
		}
		span.End()
	}
}

// externalIDFor derives the first external id to try from the tenant id, so
// a retried create asks for the same one.
func externalIDFor(id uuid.UUID) string {
	sum := sha1.Sum(id[:])
	return "ORG-" + strings.ToUpper(hex.EncodeToString(sum[:4]))
}
