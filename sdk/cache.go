package sdk

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"

	"github.com/tenancyhq/tenancy/aggregate"
)

// Cache is a local copy of tenants' entitlements and policies that answers
// "may tenant T do X now?" in-process. Open makes one; it is safe for
// concurrent use; Close stops it.
//
// A tenant is fetched from the API the first time it is asked about (callers
// asking meanwhile wait for that one fetch), then kept up to date by the
// service's events on NATS. Each answer comes from an immutable state of the
// tenant; an event replaces the state, so a reader never sees half an event.
type Cache struct {
	opts    Options
	client  *Client
	catalog *aggregate.Catalog
	log     *slog.Logger
	now     func() time.Time

	nc    *nats.Conn
	ownNC bool

	tenants *tenantSet
	// editions holds each edition's entitlements without overrides,
	// shared by the tenants that have none.
	editions sync.Map
	// external maps external ids to tenant ids, for the tenants held.
	extMu    sync.RWMutex
	external map[string]uuid.UUID

	// epoch invalidates every state at once: a state made in an older
	// epoch is fetched again before it is used (the stream lost events or
	// was recreated).
	epoch atomic.Uint64
	// syncedAt (unix ns) is the latest time as of which the cache had
	// applied every event on the stream; 0 before the first time.
	syncedAt atomic.Int64
	// synced is closed when syncedAt is first set.
	synced     chan struct{}
	syncedOnce sync.Once
	// streamSeq is the stream sequence of the last message handled;
	// lastPos the position of the newest event seen (a consistency token).
	streamSeq atomic.Uint64
	lastPos   atomic.Pointer[string]

	fol follower
	// listing is set until Open has listed every tenant (AllTenants).
	listing atomic.Bool
	// blindFetches counts the fetches made before the stream was reached,
	// with no position to wait for.
	blindFetches atomic.Uint64
	opened       time.Time

	// clock (unix ns) is the coarse clock of the answers' hot path, set
	// every clockResolution while the cache runs with the default clock; 0
	// otherwise.
	clock atomic.Int64

	stats    counters
	lastErr  atomic.Pointer[errorAt]
	catalogV atomic.Pointer[string]

	subMu sync.RWMutex
	subs  map[int]func(Notice)
	subID int

	// testDrop, set only by tests, loses chosen messages on purpose.
	testDrop atomic.Pointer[func(tenant uuid.UUID, version uint64) dropMode]

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	closed atomic.Bool
}

// entry is one tenant's place in the cache.
type entry struct {
	id  uuid.UUID
	cur atomic.Pointer[state] // nil: not fetched yet, or being fetched again
	ref atomic.Bool           // CLOCK reference bit

	mu      sync.Mutex
	loading chan struct{} // non-nil while a fetch runs; closed when it ends
	loadErr error         // the last fetch's error
	errAt   int64         // when it failed (unix ns)
	pending []event       // events received while a fetch runs
}

// state is what the cache knows of a tenant at one stream version.
// Nothing but its memo changes once it is stored in an entry.
type state struct {
	exists  bool
	version uint64
	// tenant is the folded state, without the profile fields (name,
	// contacts, metadata, labels) that no entitlement reads.
	tenant  *aggregate.Tenant
	subject aggregate.PolicySubject
	// fetchedAt (unix ns) is when the fetch this state descends from started.
	fetchedAt int64
	epoch     uint64
	memo      memo
}

type counters struct {
	fetches, fetchErrors, events, gaps, invalidations, evictions atomic.Uint64
}

type errorAt struct {
	err error
	at  time.Time
}

// Open starts a cache: it connects to NATS (or uses Options.NATS) and
// follows the event stream from its newest event on. It waits for that
// event (at most FetchTimeout), not for NATS: with NATS down it still
// opens, answers from the API's state and reports itself stale until the
// stream is reachable. With Options.AllTenants it fetches every tenant
// before returning.
func Open(ctx context.Context, opts Options) (*Cache, error) {
	opts = opts.withDefaults()
	if opts.Client == nil {
		return nil, errors.New("entitlement cache: Options.Client is required")
	}
	if opts.NATS == nil && opts.NATSURL == "" {
		return nil, errors.New("entitlement cache: Options.NATS or Options.NATSURL is required")
	}
	c := newCache(opts)
	if c.nc == nil {
		nopts := append([]nats.Option{nats.Name("tenancy-sdk"), nats.MaxReconnects(-1), nats.RetryOnFailedConnect(true)}, opts.NATSOptions...)
		nc, err := nats.Connect(opts.NATSURL, nopts...)
		if err != nil {
			return nil, fmt.Errorf("entitlement cache: connect to NATS at %s: %w", opts.NATSURL, err)
		}
		c.nc, c.ownNC = nc, true
	}
	c.checkCatalog(ctx)
	c.startClock()
	c.wg.Add(2)
	go c.follow()
	go c.watch()
	// Wait for the stream's newest event, so that first fetches can ask
	// the API for a state that includes it.
	wait, cancel := context.WithTimeout(ctx, opts.FetchTimeout)
	select {
	case <-c.synced:
	case <-wait.Done():
		c.log.Warn("the event stream is not reachable yet; answering from the API until it is", "nats", c.nc.ConnectedUrlRedacted(), "stream", opts.Stream)
	}
	cancel()
	if opts.AllTenants {
		if err := c.loadAll(ctx); err != nil {
			c.Close()
			return nil, err
		}
	}
	return c, nil
}

// newCache makes a cache that follows nothing yet; opts has its defaults.
func newCache(opts Options) *Cache {
	c := &Cache{opts: opts, client: opts.Client, catalog: opts.Catalog, log: opts.Logger.With("component", "tenancy-sdk"), now: opts.Now,
		nc: opts.NATS, synced: make(chan struct{}), external: make(map[string]uuid.UUID), subs: make(map[int]func(Notice))}
	capacity := opts.Capacity
	if opts.AllTenants {
		capacity = 0
	}
	c.tenants = newTenantSet(capacity)
	c.listing.Store(opts.AllTenants)
	c.ctx, c.cancel = context.WithCancel(context.Background())
	c.opened = c.now()
	return c
}

// Close stops following the stream and waits for the cache's goroutines.
// Answers after Close fail with ErrClosed.
func (c *Cache) Close() {
	if c.closed.Swap(true) {
		return
	}
	c.cancel()
	c.wg.Wait()
	c.clock.Store(0)
	if c.ownNC && c.nc != nil {
		c.nc.Close()
	}
}

// clockResolution is how often the coarse clock is read.
const clockResolution = 5 * time.Millisecond

// clockNow is the time (unix ns) the answers use: the coarse clock when it
// runs, else Options.Now. Reading the system clock costs more than the rest
// of a remembered answer on some machines (100-250 ns on virtual ones);
// the coarse clock costs an atomic load, and is at most clockResolution
// behind.
func (c *Cache) clockNow() int64 {
	if ns := c.clock.Load(); ns != 0 {
		return ns
	}
	return c.now().UnixNano()
}

// startClock starts the coarse clock, if the clock is the default one.
func (c *Cache) startClock() {
	if !c.opts.nowDefault {
		return
	}
	c.clock.Store(time.Now().UnixNano())
	c.wg.Add(1)
	go c.tick()
}

// tick keeps the coarse clock until Close.
func (c *Cache) tick() {
	defer c.wg.Done()
	t := time.NewTicker(clockResolution)
	defer t.Stop()
	for {
		select {
		case <-c.ctx.Done():
			return
		case now := <-t.C:
			c.clock.Store(now.UnixNano())
		}
	}
}

// checkCatalog compares the server's catalog version with the cache's.
func (c *Cache) checkCatalog(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, c.opts.FetchTimeout)
	defer cancel()
	ci, err := c.client.Catalog(ctx)
	if err != nil {
		c.log.Warn("could not compare the server's edition catalog with the SDK's", "err", err)
		return
	}
	c.catalogV.Store(&ci.Version)
	if ci.Version != c.catalog.Version() {
		c.log.Error("the server's edition catalog is not the SDK's: local answers may differ from the server's; upgrade the SDK or pass the server's catalog",
			"server", ci.Version, "sdk", c.catalog.Version())
	}
}

// ---- answers ----

// Evaluate decides whether the tenant may do action now, in context pctx,
// with the server's own evaluation (aggregate.Catalog.Evaluate) on the
// cache's state of the tenant: the decision POST
// /api/v1/tenants/{id}/policy/evaluate gives for the same state and time.
//
// "Now" is the cache's clock (read every few milliseconds) truncated to
// the second, or pctx.Time when given, which lets a repeated question within a second be answered from
// a memo without evaluating again, allocation-free. The decision's slices
// may be shared with other callers: read them, do not modify them.
//
// On an error the decision is a denial whose reason says why
// (tenant_not_found, invalid_request, entitlements_stale,
// entitlements_unavailable): a caller that only reads the decision fails
// closed. A request the server would refuse with 400 is an
// *aggregate.Error here.
func (c *Cache) Evaluate(ctx context.Context, tenant uuid.UUID, action string, pctx aggregate.PolicyContext) (aggregate.Decision, error) {
	now := c.clockNow()
	s, err := c.state(ctx, tenant, now)
	if err != nil {
		return denial(err), err
	}
	if !s.exists {
		err := notFound(tenant)
		return denial(err), err
	}
	sec := now / int64(time.Second)
	h := hashRequest(action, &pctx)
	if e, ok := s.memo.get(h, sec, action, &pctx); ok {
		return e.d, nil
	}
	req := aggregate.PolicyRequest{Action: action, Context: pctx}
	if err := c.catalog.ValidatePolicyRequest(req); err != nil {
		return denial(err), err
	}
	d := c.catalog.Evaluate(s.subject, req, time.Unix(sec, 0))
	s.memo.put(h, sec, action, &pctx, d)
	return d, nil
}

// Enabled reports whether the tenant has feature f (its edition's, or an
// override). On an error it is false.
func (c *Cache) Enabled(ctx context.Context, tenant uuid.UUID, f aggregate.Feature) (bool, error) {
	s, err := c.state(ctx, tenant, c.clockNow())
	if err != nil {
		return false, err
	}
	if !s.exists {
		return false, notFound(tenant)
	}
	on, ok := s.subject.Entitlements.Features[f]
	if !ok {
		return false, fmt.Errorf("feature %q: %w", f, ErrUnknownFeature)
	}
	return on, nil
}

// Limit returns the tenant's value of limit l (its edition's, or an
// override); 0 means unlimited, so check the error: on one the value is 0
// too and means nothing.
func (c *Cache) Limit(ctx context.Context, tenant uuid.UUID, l aggregate.Limit) (int64, error) {
	s, err := c.state(ctx, tenant, c.clockNow())
	if err != nil {
		return 0, err
	}
	if !s.exists {
		return 0, notFound(tenant)
	}
	v, ok := s.subject.Entitlements.Limits[l]
	if !ok {
		return 0, fmt.Errorf("limit %q: %w", l, ErrUnknownLimit)
	}
	return v, nil
}

// TenantInfo is what the cache knows of one tenant, and how old it is.
// Its maps are shared with the cache: read them, do not modify them.
type TenantInfo struct {
	ID         uuid.UUID
	ExternalID string
	// Version is the stream version of the last event folded in.
	Version uint64
	Status  aggregate.Status
	Edition aggregate.Edition
	// Entitlements are the effective features and limits; Overrides the
	// tenant's exceptions to its edition, which Entitlements include.
	Entitlements aggregate.Entitlements
	Overrides    aggregate.Overrides
	// FetchedAt is when the cache last fetched the tenant from the API.
	FetchedAt time.Time
	// Age is how old this knowledge is: the time since the cache last knew
	// it had every event of the stream, or since FetchedAt if that is later.
	Age time.Duration
}

// Tenant returns what the cache knows of the tenant, fetching it on first
// use like the other answers.
func (c *Cache) Tenant(ctx context.Context, tenant uuid.UUID) (TenantInfo, error) {
	s, err := c.state(ctx, tenant, c.clockNow())
	if err != nil {
		return TenantInfo{}, err
	}
	if !s.exists {
		return TenantInfo{}, notFound(tenant)
	}
	return c.info(s), nil
}

func (c *Cache) info(s *state) TenantInfo {
	t := s.tenant
	return TenantInfo{ID: t.ID, ExternalID: t.ExternalID, Version: s.version, Status: t.Status, Edition: t.Edition,
		Entitlements: s.subject.Entitlements, Overrides: t.Overrides,
		FetchedAt: time.Unix(0, s.fetchedAt), Age: c.age(s, c.clockNow())}
}

// Resolve returns the tenant id that ref names: a tenant id, or an external
// id such as ORG-E4900E20 (looked up once through the API, then remembered
// while the tenant is held).
func (c *Cache) Resolve(ctx context.Context, ref string) (uuid.UUID, error) {
	if id, err := uuid.Parse(ref); err == nil {
		return id, nil
	}
	if !aggregate.IsExternalID(ref) {
		return uuid.Nil, fmt.Errorf("tenant %q: not a tenant id or an external id: %w", ref, ErrTenantNotFound)
	}
	c.extMu.RLock()
	id, ok := c.external[ref]
	c.extMu.RUnlock()
	if ok {
		return id, nil
	}
	ctx, cancel := context.WithTimeout(ctx, c.opts.FetchTimeout)
	defer cancel()
	t, err := c.client.GetTenant(ctx, ref, ReadOptions{})
	if err != nil {
		return uuid.Nil, fmt.Errorf("resolve tenant %s: %w", ref, err)
	}
	c.remember(t.ExternalID, t.ID)
	return t.ID, nil
}

func (c *Cache) remember(externalID string, id uuid.UUID) {
	if externalID == "" {
		return
	}
	c.extMu.Lock()
	c.external[externalID] = id
	c.extMu.Unlock()
}

func (c *Cache) forget(e *entry) {
	if s := e.cur.Load(); s != nil && s.exists && s.tenant.ExternalID != "" {
		c.extMu.Lock()
		delete(c.external, s.tenant.ExternalID)
		c.extMu.Unlock()
	}
}

// ---- finding a tenant's state ----

// state returns a usable state of the tenant: held, of the current epoch,
// and no older than MaxStaleness (or what WhenStale makes of it).
func (c *Cache) state(ctx context.Context, id uuid.UUID, now int64) (*state, error) {
	if c.closed.Load() {
		return nil, ErrClosed
	}
	if e := c.tenants.get(id); e != nil {
		if !e.ref.Load() {
			e.ref.Store(true)
		}
		if s := e.cur.Load(); s != nil && s.epoch == c.epoch.Load() &&
			(c.opts.WhenStale == ServeStale || c.age(s, now) <= c.opts.MaxStaleness) {
			return s, nil
		}
	}
	return c.slowState(ctx, id)
}

// age is how old state s is at now (unix ns).
func (c *Cache) age(s *state, now int64) time.Duration {
	return time.Duration(now - max(s.fetchedAt, c.syncedAt.Load()))
}

// slowState is state's path for a tenant not held, invalidated, or stale.
func (c *Cache) slowState(ctx context.Context, id uuid.UUID) (*state, error) {
	if c.closed.Load() {
		return nil, ErrClosed
	}
	for attempt := 0; ; attempt++ {
		e, evicted := c.tenants.getOrAdd(id)
		if evicted != nil {
			c.stats.evictions.Add(1)
			c.forget(evicted)
		}
		s := e.cur.Load()
		stale := false
		if s != nil && s.epoch == c.epoch.Load() {
			age := c.age(s, c.now().UnixNano())
			switch {
			case c.opts.WhenStale == ServeStale || age <= c.opts.MaxStaleness:
				return s, nil
			case c.opts.WhenStale == FailClosed:
				return nil, staleError(id, age, nil)
			}
			stale = true // FetchFromAPI
		}
		if err := c.recentFailure(e); err != nil { // do not hammer an API that just failed
			if stale {
				return nil, staleError(id, c.age(s, c.now().UnixNano()), err)
			}
			return nil, err
		}
		done := c.fetchUnlessUsable(e)
		select {
		case <-done:
		case <-ctx.Done():
			return nil, fmt.Errorf("tenant %s: %w", id, context.Cause(ctx))
		case <-c.ctx.Done():
			return nil, ErrClosed
		}
		e.mu.Lock()
		err := e.loadErr
		e.mu.Unlock()
		if err != nil {
			if stale {
				return nil, staleError(id, c.age(s, c.now().UnixNano()), err)
			}
			return nil, fmt.Errorf("fetch tenant %s: %w", id, err)
		}
		// Fetched just now (however long that took), or installed by an event.
		if s := e.cur.Load(); s != nil && s.epoch == c.epoch.Load() {
			return s, nil
		}
		if attempt == 2 { // invalidated again and again while fetching
			return nil, fmt.Errorf("tenant %s: the stream keeps being reset; no state to trust: %w", id, ErrStale)
		}
	}
}

// closedChan is a channel that is already closed.
var closedChan = func() chan struct{} { ch := make(chan struct{}); close(ch); return ch }()

// fetchUnlessUsable starts a fetch of e unless, now that e's lock is held,
// its state turns out usable after all (an event installed it meanwhile).
func (c *Cache) fetchUnlessUsable(e *entry) <-chan struct{} {
	e.mu.Lock()
	defer e.mu.Unlock()
	if s := e.cur.Load(); s != nil && e.loading == nil && s.epoch == c.epoch.Load() &&
		(c.opts.WhenStale == ServeStale || c.age(s, c.now().UnixNano()) <= c.opts.MaxStaleness) {
		e.loadErr = nil // whatever failed before, this state is good
		return closedChan
	}
	return c.fetchLocked(e, "")
}

// retryFetchAfter is how long a failed fetch answers for the tenant
// before the next caller tries the API again.
const retryFetchAfter = 500 * time.Millisecond

// recentFailure returns the error of a fetch of e that failed less than
// retryFetchAfter ago, if there is one.
func (c *Cache) recentFailure(e *entry) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.loadErr == nil || e.loading != nil || c.now().UnixNano()-e.errAt > int64(retryFetchAfter) {
		return nil
	}
	return fmt.Errorf("fetch tenant %s (failed %s ago): %w", e.id, time.Duration(c.now().UnixNano()-e.errAt).Round(time.Millisecond), e.loadErr)
}

func notFound(id uuid.UUID) error { return fmt.Errorf("tenant %s: %w", id, ErrTenantNotFound) }

func staleError(id uuid.UUID, age time.Duration, cause error) error {
	if cause != nil {
		return fmt.Errorf("tenant %s: known as of %s ago, and fetching it again failed (%w): %w", id, age.Round(time.Millisecond), cause, ErrStale)
	}
	return fmt.Errorf("tenant %s: known as of %s ago: %w", id, age.Round(time.Millisecond), ErrStale)
}

// denial is the fail-closed decision that goes with err.
func denial(err error) aggregate.Decision {
	code := "entitlements_unavailable"
	var ae *aggregate.Error
	switch {
	case errors.Is(err, ErrTenantNotFound):
		code = "tenant_not_found"
	case errors.Is(err, ErrStale):
		code = "entitlements_stale"
	case errors.As(err, &ae):
		code = "invalid_request"
	}
	return aggregate.Decision{Decision: aggregate.DecisionDeny, Reason: code,
		Violations: []aggregate.Violation{{Rule: "sdk", Code: code, Severity: aggregate.OutcomeDeny, Message: err.Error()}},
		Rules:      []aggregate.RuleResult{}}
}

// ---- status and notices ----

// Status is how the cache is doing.
type Status struct {
	// Connected says whether the NATS connection is up.
	Connected bool
	// SyncedAt is the latest time as of which the cache had applied every
	// event on the stream (zero: not yet); Staleness is the time since.
	SyncedAt  time.Time
	Staleness time.Duration
	// Stale says Staleness is past Options.MaxStaleness.
	Stale bool
	// Tenants is how many tenants are held.
	Tenants int
	// Fetches counts fetches from the API (FetchErrors the failed ones),
	// Events the events folded in, Gaps the events that skipped a version
	// (each made the cache fetch its tenant again), Invalidations the
	// times every tenant had to be fetched again (lost or reset stream),
	// Evictions the tenants dropped to stay within Capacity.
	Fetches, FetchErrors, Events, Gaps, Invalidations, Evictions uint64
	// LastError is the last error met following the stream or fetching,
	// at LastErrorAt.
	LastError   error
	LastErrorAt time.Time
	// ServerCatalog is the server's catalog version ("" if unknown);
	// CatalogMismatch says it is not the cache's.
	ServerCatalog   string
	CatalogMismatch bool
}

// Status reports the cache's state and staleness.
func (c *Cache) Status() Status {
	st := Status{Connected: c.nc != nil && c.nc.IsConnected(), Tenants: c.tenants.len(),
		Fetches: c.stats.fetches.Load(), FetchErrors: c.stats.fetchErrors.Load(), Events: c.stats.events.Load(),
		Gaps: c.stats.gaps.Load(), Invalidations: c.stats.invalidations.Load(), Evictions: c.stats.evictions.Load()}
	st.Staleness = c.Staleness()
	if ns := c.syncedAt.Load(); ns != 0 {
		st.SyncedAt = time.Unix(0, ns)
	}
	st.Stale = c.opts.MaxStaleness > 0 && st.Staleness > c.opts.MaxStaleness
	if e := c.lastErr.Load(); e != nil {
		st.LastError, st.LastErrorAt = e.err, e.at
	}
	if v := c.catalogV.Load(); v != nil {
		st.ServerCatalog, st.CatalogMismatch = *v, *v != c.catalog.Version()
	}
	return st
}

// Staleness is the time since the cache last knew it had applied every
// event on the stream; before the first time, the time since 1970 (that
// is: unbounded).
func (c *Cache) Staleness() time.Duration {
	return time.Duration(c.now().UnixNano() - c.syncedAt.Load())
}

// NoticeKind says what a Notice is about.
type NoticeKind int

const (
	// NoticeChanged: a tenant's state changed (an event, or a fetch).
	NoticeChanged NoticeKind = iota + 1
	// NoticeFresh: the cache caught up with the stream (the first time,
	// or after being stale).
	NoticeFresh
	// NoticeStale: the cache has not been caught up for longer than
	// Options.MaxStaleness.
	NoticeStale
	// NoticeError: following the stream failed (NATS down, stream missing).
	NoticeError
)

// Notice tells subscribers what happened.
type Notice struct {
	Kind NoticeKind
	// Tenant and Version name the state a NoticeChanged is about; Changed
	// lists the features and limits whose value changed (empty when only
	// other state did, such as the status).
	Tenant  uuid.UUID
	Version uint64
	Changed []string
	// Staleness is the cache's staleness when the notice was made.
	Staleness time.Duration
	Err       error
}

// Subscribe calls fn with every notice until the returned function is
// called. fn runs on the cache's own goroutines: it must return quickly,
// and not call Subscribe or the unsubscribe function itself.
func (c *Cache) Subscribe(fn func(Notice)) (unsubscribe func()) {
	c.subMu.Lock()
	c.subID++
	id := c.subID
	c.subs[id] = fn
	c.subMu.Unlock()
	return func() {
		c.subMu.Lock()
		delete(c.subs, id)
		c.subMu.Unlock()
	}
}

func (c *Cache) notify(n Notice) {
	c.subMu.RLock()
	defer c.subMu.RUnlock()
	for _, fn := range c.subs {
		fn(n)
	}
}

func (c *Cache) recordError(err error) {
	c.lastErr.Store(&errorAt{err: err, at: c.now()})
}
