// Package commands turns a command into events: it takes the tenant's
// state, lets the aggregate decide, and commits the new events with the
// version it decided on, together with the unique values they claim, in
// one write (eventstore.Committer: one transaction on Postgres). A
// conflicting write is decided again against the fresh stream, a bounded
// number of times, unless the caller pinned the version it expects.
//
// Create is a command like the others: one that expects no stream.
//
// The handler keeps the folded state of recently commanded tenants (see
// Options.StateCacheSize) and decides on it without reading: the write's
// expected version is the cached one, so if the stream moved on meanwhile
// (another replica wrote) the write is refused, the events appended since
// are read and the command is decided again. The cache changes what a
// command costs (usually one round trip), never what it decides.
//
// An idempotent command (Request.Identity) derives its event ids from its
// identity; a retry is recognised by the store holding its first event
// (eventstore.Locator) and answered with the first outcome. While the first
// attempt's write is still open, a concurrent copy waits on the event id's
// unique key (Postgres) and then finds it; if the first attempt dies, its
// transaction is rolled back and takes its claim on the id with it.
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
	"github.com/tenancyhq/tenancy/internal/tracing"
	"github.com/tenancyhq/tenancy/tenantlog"
)

// Store is what the handler needs of the event store.
type Store interface {
	eventstore.Committer
	eventstore.StreamReader
	eventstore.Locator
	eventstore.ClaimReader
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
	// MaxAttempts bounds decide-and-write attempts on conflicts (default 3).
	MaxAttempts int
	Logger      *slog.Logger
	// Tracer traces command handling (default: no tracing). The trace
	// context of the command's span goes into each event's metadata, so
	// whatever handles the event later continues the trace.
	Tracer trace.Tracer
	// StateCacheSize bounds how many tenants' folded states the handler
	// keeps between commands, least recently used evicted first (default
	// DefaultStateCacheSize; negative: none).
	StateCacheSize int
}

// Handler executes commands against tenant streams. It is safe for concurrent use.
type Handler struct {
	store       Store
	catalog     *aggregate.Catalog
	now         func() time.Time
	maxAttempts int
	logger      *slog.Logger
	tracer      trace.Tracer
	states      *stateCache
}

// NewHandler returns a handler over store.
func NewHandler(store Store, opts Options) *Handler {
	h := &Handler{store: store, catalog: opts.Catalog, now: opts.Now, maxAttempts: opts.MaxAttempts, logger: opts.Logger, tracer: opts.Tracer,
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
	if h.logger == nil {
		h.logger = slog.New(slog.DiscardHandler)
	}
	return h
}

// Catalog returns the edition catalog the handler decides with.
func (h *Handler) Catalog() *aggregate.Catalog { return h.catalog }

// Request is one command for one tenant.
type Request struct {
	// TenantID names the tenant; for a create it may be left zero, and is
	// then derived from the Identity (so a retried create makes the same
	// tenant) or random.
	TenantID uuid.UUID
	Command  aggregate.Command
	// ExpectedVersion pins the tenant version the caller saw (If-Match): if
	// the stream moved, the command fails with ErrVersionMismatch instead of
	// being decided again.
	ExpectedVersion *uint64
	// Identity, when set, makes the command idempotent (see Identity).
	Identity *Identity
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
	// Tenant is the state after the command.
	Tenant *aggregate.Tenant
	// Attempts is how many times the command was decided (1 without conflicts).
	Attempts int
	// Duplicate is true when the request had already been applied (same
	// identity): Events and Tenant are the ones it produced then.
	Duplicate bool
}

// Load reads a tenant's whole stream and folds it. A tenant that does not
// exist yields an aggregate.Error with CodeNotFound.
func (h *Handler) Load(ctx context.Context, id uuid.UUID) (*aggregate.Tenant, []aggregate.Envelope, error) {
	recs, err := h.store.ReadStream(ctx, aggregate.StreamName(id), eventstore.Forward, 0, 0)
	if errors.Is(err, eventstore.ErrStreamNotFound) {
		return &aggregate.Tenant{}, nil, notFound(id)
	}
	if err != nil {
		return nil, nil, fmt.Errorf("load tenant %s: %w", id, err)
	}
	envs, err := tenantlog.DecodeAll(recs)
	if err != nil {
		return nil, nil, fmt.Errorf("load tenant %s: %w", id, err)
	}
	return aggregate.Fold(envs), envs, nil
}

// Resolve finds the tenant that holds an external id, from the claims the
// event log keeps: it does not wait for the read model.
func (h *Handler) Resolve(ctx context.Context, externalID string) (uuid.UUID, error) {
	stream, err := h.store.ClaimHolder(ctx, aggregate.ClaimExternalID, externalID)
	if errors.Is(err, eventstore.ErrNotFound) {
		return uuid.Nil, &aggregate.Error{Code: aggregate.CodeNotFound, Message: "no tenant has external id " + externalID}
	}
	if err != nil {
		return uuid.Nil, fmt.Errorf("resolve %s: %w", externalID, err)
	}
	id, err := tenantlog.TenantID(stream)
	if err != nil {
		return uuid.Nil, fmt.Errorf("resolve %s: %w", externalID, err)
	}
	return id, nil
}

// Head is where a tenant's stream ends: the version and global position of
// its last event. ok is false when the tenant has no stream. Reads use it to
// wait until the read model holds every change made to the tenant so far.
func (h *Handler) Head(ctx context.Context, id uuid.UUID) (version uint64, pos eventstore.Position, ok bool, err error) {
	recs, err := h.store.ReadStream(ctx, aggregate.StreamName(id), eventstore.Backward, -1, 1)
	if errors.Is(err, eventstore.ErrStreamNotFound) {
		return 0, eventstore.Position{}, false, nil
	}
	if err != nil {
		return 0, eventstore.Position{}, false, fmt.Errorf("head of tenant %s: %w", id, err)
	}
	return recs[0].Version, recs[0].Position, true, nil
}

func notFound(id uuid.UUID) error {
	return &aggregate.Error{Code: aggregate.CodeNotFound, Message: "tenant " + id.String() + " not found"}
}

// Create makes a new tenant: Execute with cmd and no identity.
func (h *Handler) Create(ctx context.Context, cmd aggregate.Create, meta aggregate.Metadata) (Result, error) {
	return h.Execute(ctx, Request{TenantID: cmd.TenantID, Command: cmd, Metadata: meta})
}

// Execute runs one command: decide on the tenant's state, write, and on a
// version conflict decide again (up to MaxAttempts) unless the request
// pinned its expected version.
func (h *Handler) Execute(ctx context.Context, req Request) (res Result, err error) {
	if create, ok := req.Command.(aggregate.Create); ok && req.TenantID == uuid.Nil {
		req.TenantID = create.TenantID
		if req.TenantID == uuid.Nil && req.Identity != nil {
			req.TenantID = req.Identity.tenantID()
		} else if req.TenantID == uuid.Nil {
			req.TenantID = uuid.New()
		}
	}
	var end func(Result, error)
	ctx, req.Metadata, end = h.trace(ctx, req.Command.CommandName(), req.TenantID, req.Metadata)
	defer func() { end(res, err) }()
	if req.Identity != nil {
		req.Metadata.RequestFingerprint = req.Identity.Fingerprint
		// A retry is answered before deciding: decided again on the state
		// its first attempt left, it could be refused (suspend twice).
		if dup, ok, err := h.applied(ctx, req); ok || err != nil {
			return dup, err
		}
	}
	fresh := false // whether the state must be read rather than taken from the cache
	for attempt := 1; ; attempt++ {
		res, err := h.attempt(ctx, req, fresh)
		res.Attempts = attempt
		var conflict bool
		switch {
		case errors.Is(err, eventstore.ErrWrongExpectedVersion), errors.Is(err, eventstore.ErrDuplicateEventID):
			conflict = true
		case errors.Is(err, errStaleCache):
			fresh = true
			attempt-- // not a conflict with another writer: read and decide again
			continue
		}
		if _, refused := aggregate.AsError(err); refused && req.Identity != nil {
			// A copy of this request may have been written between the
			// look-up above and this decision, which it then refuses (a
			// second suspend): its outcome is the answer.
			if dup, ok, lerr := h.applied(ctx, req); ok || lerr != nil {
				return dup, lerr
			}
		}
		if !conflict {
			return res, err
		}
		if req.Identity != nil {
			// Perhaps a concurrent copy of this very request won.
			if dup, ok, lerr := h.applied(ctx, req); ok || lerr != nil {
				dup.Attempts = attempt
				return dup, lerr
			}
		}
		if _, create := req.Command.(aggregate.Create); create {
			return res, &aggregate.Error{Code: aggregate.CodeConflict, Message: "tenant " + req.TenantID.String() + " already exists", Command: aggregate.CmdCreate}
		}
		if req.ExpectedVersion != nil && !fresh {
			// The cache may have been behind: compare with the stream first.
			fresh = true
			attempt--
			continue
		}
		if req.ExpectedVersion != nil {
			return res, fmt.Errorf("%s on tenant %s: %w", req.Command.CommandName(), req.TenantID, ErrVersionMismatch)
		}
		if attempt >= h.maxAttempts {
			return res, fmt.Errorf("%s on tenant %s after %d attempts: %w", req.Command.CommandName(), req.TenantID, attempt, ErrTooManyConflicts)
		}
		fresh = true
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

// errStaleCache: the cached state could not answer on its own (an
// If-Match that differs from it, a refusal, a no-op); the attempt wants
// the stream's head.
var errStaleCache = errors.New("cached state may be stale")

// attempt decides the command once and writes its events. fresh asks for
// the stream's head; otherwise a cached state is trusted, and the write's
// expected version checks it.
func (h *Handler) attempt(ctx context.Context, req Request, fresh bool) (Result, error) {
	create, isCreate := req.Command.(aggregate.Create)
	var t *aggregate.Tenant
	switch {
	case isCreate:
		t = &aggregate.Tenant{}
	case !fresh:
		if cached, ok := h.states.get(req.TenantID); ok {
			t = cached
			break
		}
		fallthrough
	default:
		var err error
		if t, err = h.current(ctx, req.TenantID); err != nil {
			return Result{}, err
		}
		if !t.Exists() {
			return Result{}, notFound(req.TenantID)
		}
		h.states.put(t)
		fresh = true
	}
	if req.ExpectedVersion != nil && t.Exists() && t.Version != *req.ExpectedVersion {
		if !fresh {
			return Result{}, errStaleCache
		}
		return Result{}, fmt.Errorf("tenant %s is at version %d, not %d: %w", req.TenantID, t.Version, *req.ExpectedVersion, ErrVersionMismatch)
	}
	now := h.now().UTC()
	if !isCreate {
		events, err := t.Decide(req.Command, now, h.catalog)
		if (err != nil || len(events) == 0) && !fresh {
			// A refusal or a no-op is answered without a write, so
			// nothing would check the cached state it was decided on.
			return Result{}, errStaleCache
		}
		if err != nil || len(events) == 0 {
			return Result{TenantID: req.TenantID, Version: t.Version, Tenant: t}, err
		}
		return h.write(ctx, t, req, events, now)
	}
	// A create's external id: first the one derived from the tenant id (a
	// retried create asks for the same), then random ones.
	create.TenantID = req.TenantID
	create.ExternalID = externalIDFor(req.TenantID)
	for try := 0; ; try++ {
		events, err := t.Decide(create, now, h.catalog)
		if err != nil {
			return Result{}, err
		}
		req.Command = create
		res, err := h.write(ctx, t, req, events, now)
		var taken *eventstore.ClaimTakenError
		if !errors.As(err, &taken) || taken.Kind != aggregate.ClaimExternalID || try >= 8 {
			return res, err
		}
		create.ExternalID = externalIDFor(uuid.New())
	}
}

// current returns the tenant's state at the head of its stream, which the
// caller owns: its cached state with the events appended since folded on,
// or without one, the fold of the whole stream (an empty Tenant when the
// stream does not exist).
func (h *Handler) current(ctx context.Context, id uuid.UUID) (*aggregate.Tenant, error) {
	if t, ok := h.states.get(id); ok {
		recs, err := h.store.ReadStream(ctx, aggregate.StreamName(id), eventstore.Forward, int64(t.Version)+1, 0)
		if err != nil && !errors.Is(err, eventstore.ErrStreamNotFound) {
			return nil, fmt.Errorf("load tenant %s: %w", id, err)
		}
		n := uint64(len(recs))
		if err == nil && (n == 0 || recs[0].Version == t.Version+1 && recs[n-1].Version == t.Version+n) {
			envs, err := tenantlog.DecodeAll(recs)
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
	if aggregate.HasCode(err, aggregate.CodeNotFound) {
		return &aggregate.Tenant{}, nil
	}
	return t, err
}

// write commits the decided events after the tenant's state t, with the
// unique values they claim, and returns the result.
func (h *Handler) write(ctx context.Context, t *aggregate.Tenant, req Request, events []aggregate.Event, now time.Time) (Result, error) {
	next, expected := uint64(0), eventstore.NoStream
	if t.Exists() {
		next, expected = t.Version+1, eventstore.Exact(t.Version)
	}
	envs := make([]aggregate.Envelope, len(events))
	data := make([]eventstore.EventData, len(events))
	meta := req.Metadata
	meta.OccurredAt = now
	meta.Command = req.Command.CommandName()
	stream := aggregate.StreamName(req.TenantID)
	for i, e := range events {
		id := uuid.New()
		if req.Identity != nil {
			id = req.Identity.eventID(i)
		}
		envs[i] = aggregate.Envelope{
			EventID:       id,
			Type:          e.EventType(),
			SchemaVersion: aggregate.SchemaVersion(e.EventType()),
			Stream:        stream,
			Version:       next + uint64(i),
			OccurredAt:    now,
			Metadata:      meta,
			Data:          e,
		}
		d, err := tenantlog.Encode(envs[i])
		if err != nil {
			return Result{}, err
		}
		data[i] = d
	}
	var claims []eventstore.Claim
	for _, c := range aggregate.ClaimsOf(events) {
		claims = append(claims, eventstore.Claim{Kind: c.Kind, Value: c.Value, Release: c.Release})
	}
	ar, err := h.store.Commit(ctx, eventstore.Write{Stream: stream, Expected: expected, Events: data, Claims: claims})
	var taken *eventstore.ClaimTakenError
	switch {
	case errors.As(err, &taken) && taken.Kind == aggregate.ClaimName:
		return Result{}, &aggregate.Error{Code: aggregate.CodeConflict, Field: "name", Rule: "unique",
			Message: "another tenant already has this name", Conflicts: []string{"name"}, Command: req.Command.CommandName()}
	case taken != nil:
		return Result{}, err
	case err != nil:
		// A cached state the stream moved past stays cached: it is still a
		// prefix of the stream, and the next attempt reads only what follows.
		return Result{}, fmt.Errorf("%s on tenant %s: %w", req.Command.CommandName(), req.TenantID, err)
	}
	after := t.Clone()
	for _, env := range envs {
		after.Apply(env)
	}
	h.states.put(after)
	return Result{TenantID: req.TenantID, Version: ar.NextExpectedVersion, Position: ar.Position, Events: envs, Tenant: after}, nil
}

// applied finds the events an idempotent request wrote before, if any: the
// store holds its first event id. The result is the state right after
// them, so a retry is answered as the first attempt was.
func (h *Handler) applied(ctx context.Context, req Request) (Result, bool, error) {
	first := req.Identity.eventID(0)
	stream, version, err := h.store.Locate(ctx, first)
	if errors.Is(err, eventstore.ErrNotFound) {
		return Result{}, false, nil
	}
	if err != nil {
		return Result{}, false, fmt.Errorf("%s: look for an earlier attempt: %w", req.Command.CommandName(), err)
	}
	recs, err := h.store.ReadStream(ctx, stream, eventstore.Forward, 0, 0)
	if err != nil {
		return Result{}, false, fmt.Errorf("%s: read an earlier attempt: %w", req.Command.CommandName(), err)
	}
	envs, err := tenantlog.DecodeAll(recs)
	if err != nil {
		return Result{}, false, fmt.Errorf("%s: read an earlier attempt: %w", req.Command.CommandName(), err)
	}
	if version >= uint64(len(envs)) || envs[version].EventID != first {
		return Result{}, false, fmt.Errorf("%s: event %s is not at %s@%d", req.Command.CommandName(), first, stream, version)
	}
	if stream != aggregate.StreamName(req.TenantID) || envs[version].Metadata.RequestFingerprint != req.Identity.Fingerprint {
		return Result{}, true, fmt.Errorf("%s: %w", req.Command.CommandName(), ErrIdempotencyKeyReused)
	}
	last := version
	for last+1 < uint64(len(envs)) && envs[last+1].EventID == req.Identity.eventID(int(last+1-version)) {
		last++
	}
	id, _ := tenantlog.TenantID(stream)
	return Result{TenantID: id, Version: last, Position: recs[last].Position, Events: envs[version : last+1],
		Tenant: aggregate.Fold(envs[:last+1]), Attempts: 1, Duplicate: true}, true, nil
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
