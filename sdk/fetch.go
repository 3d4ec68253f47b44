package sdk

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/google/uuid"

	"github.com/tenancyhq/tenancy/aggregate"
)

// maxGapRefetches bounds how often one fetch is repeated because the
// events that arrived meanwhile still skip a version.
const maxGapRefetches = 3

// fetchLocked starts fetching the tenant of e from the API, unless a fetch
// is already running, and returns the channel closed when it ends; the
// caller holds e.mu. token, if not empty, is a position the answer must
// include (the event that showed a gap); otherwise the newest position seen
// on the stream is used, so the answer includes every event the cache let
// pass before the fetch started.
func (c *Cache) fetchLocked(e *entry, token string) <-chan struct{} {
	if e.loading != nil {
		return e.loading
	}
	ch := make(chan struct{})
	e.loading = ch
	c.wg.Add(1)
	go c.runFetch(e, token, ch)
	return ch
}

// runFetch is one fetch of a tenant, with the events that arrive meanwhile
// folded in after it.
func (c *Cache) runFetch(e *entry, token string, done chan struct{}) {
	defer c.wg.Done()
	defer close(done)
	for try := 0; ; try++ {
		startedAt := c.now().UnixNano()
		epoch := c.epoch.Load()
		if token == "" {
			if p := c.lastPos.Load(); p != nil {
				token = *p
			} else if c.syncedAt.Load() == 0 {
				c.blindFetches.Add(1) // nothing to wait for: the stream is not reached yet
			}
		}
		ctx, cancel := context.WithTimeout(c.ctx, c.opts.FetchTimeout)
		t, err := c.client.GetTenant(ctx, e.id.String(), ReadOptions{ConsistentWith: token})
		cancel()
		c.stats.fetches.Add(1)
		c.log.Debug("fetched a tenant", "tenant", e.id, "consistent_with", token, "err", err)
		var folded *aggregate.Tenant
		switch {
		case errors.Is(err, ErrTenantNotFound):
			folded, err = &aggregate.Tenant{}, nil // known not to exist, until its TenantCreated
		case err == nil && t.ID != e.id:
			err = fmt.Errorf("the API answered tenant %s for %s", t.ID, e.id)
		case err == nil:
			folded = slim(&t.Tenant)
		}

		e.mu.Lock()
		if err != nil {
			c.stats.fetchErrors.Add(1)
			c.recordError(err)
			e.loadErr, e.errAt, e.pending, e.loading = err, c.now().UnixNano(), nil, nil
			e.mu.Unlock()
			c.log.Warn("fetching a tenant failed", "tenant", e.id, "err", err)
			return
		}
		old := e.cur.Load()
		s := c.newState(folded, startedAt, epoch)
		gap := ""
		for _, ev := range e.pending {
			next, ok := c.advance(s, ev)
			if !ok {
				gap = ev.position
				break
			}
			s = next
		}
		if gap != "" && try < maxGapRefetches {
			// The events still skip a version: fetch again, up to the
			// event that showed it; keep the ones not folded in yet.
			e.pending = slices.DeleteFunc(e.pending, func(ev event) bool { return s.exists && ev.version <= s.version })
			token = gap
			e.mu.Unlock()
			c.stats.gaps.Add(1)
			continue
		}
		if gap != "" {
			c.log.Error("the API's state of a tenant still misses events the stream has; serving the API's state", "tenant", e.id, "version", s.version)
		}
		e.pending, e.loadErr, e.loading = nil, nil, nil
		e.cur.Store(s)
		e.mu.Unlock()
		if s.exists {
			c.remember(s.tenant.ExternalID, s.tenant.ID)
		}
		c.notifyChange(e.id, old, s)
		return
	}
}

// advance folds one event into s with aggregate.Tenant.Apply and returns
// the next state; ok is false when ev skips a version (a gap). An event at
// or below s's version is already in it, and s itself is returned.
func (c *Cache) advance(s *state, ev event) (next *state, ok bool) {
	want := uint64(0)
	if s.exists {
		want = s.version + 1
	}
	switch {
	case s.exists && ev.version < want:
		return s, true
	case ev.version != want:
		return nil, false
	}
	var t *aggregate.Tenant
	if s.exists {
		t = s.tenant.Clone()
	} else {
		t = &aggregate.Tenant{}
	}
	t.Apply(ev.env)
	c.stats.events.Add(1)
	return c.newState(slim(t), s.fetchedAt, s.epoch), true
}

// newState derives what evaluation reads from a folded tenant.
func (c *Cache) newState(t *aggregate.Tenant, fetchedAt int64, epoch uint64) *state {
	s := &state{exists: t.Exists(), version: t.Version, tenant: t, fetchedAt: fetchedAt, epoch: epoch}
	if s.exists {
		s.subject = t.PolicySubject(c.catalog)
		if len(t.Overrides.Features) == 0 && len(t.Overrides.Limits) == 0 {
			// Most tenants have no overrides: share their edition's maps.
			s.subject.Entitlements = c.editionEntitlements(t.Edition)
		}
	}
	return s
}

// editionEntitlements returns edition e's entitlements, computed once per
// cache and shared (read-only) by every tenant without overrides.
func (c *Cache) editionEntitlements(e aggregate.Edition) aggregate.Entitlements {
	if v, ok := c.editions.Load(e); ok {
		return v.(aggregate.Entitlements)
	}
	ent := c.catalog.Entitlements(e, aggregate.Overrides{})
	v, _ := c.editions.LoadOrStore(e, ent)
	return v.(aggregate.Entitlements)
}

// foldPendingLocked folds e's pending events onto s and installs the
// result, or fetches the tenant if they skip a version; the caller holds e.mu.
func (c *Cache) foldPendingLocked(e *entry, s *state) {
	for i, ev := range e.pending {
		next, ok := c.advance(s, ev)
		if !ok {
			c.stats.gaps.Add(1)
			e.pending = e.pending[i:]
			c.fetchLocked(e, ev.position)
			return
		}
		s = next
	}
	e.pending = nil
	e.cur.Store(s)
}

// slim drops the profile fields no entitlement or policy reads (names,
// contacts, which NATS carries sealed, metadata, labels), so that a held
// tenant costs little memory. Apply sets them again from later events, and
// slim drops them again.
func slim(t *aggregate.Tenant) *aggregate.Tenant {
	t.Name, t.NormalizedName = "", ""
	t.Contacts, t.Metadata, t.Labels = nil, nil, nil
	return t
}

// notifyChange tells subscribers that a tenant's state went from old to s.
func (c *Cache) notifyChange(id uuid.UUID, old, s *state) {
	var changed []string
	var before, after aggregate.Entitlements
	if old != nil && old.exists {
		before = old.subject.Entitlements
	}
	if s.exists {
		after = s.subject.Entitlements
	}
	for _, f := range c.catalog.Features() {
		if before.Features[f] != after.Features[f] {
			changed = append(changed, string(f))
		}
	}
	for _, l := range c.catalog.Limits() {
		if before.Limits[l] != after.Limits[l] {
			changed = append(changed, string(l))
		}
	}
	c.notify(Notice{Kind: NoticeChanged, Tenant: id, Version: s.version, Changed: changed, Staleness: c.Staleness()})
}

// loadAll fetches every tenant (Options.AllTenants), page by page. Open
// calls it once the stream has been reached (or FetchTimeout has passed),
// so that no event falls between a page and the stream.
func (c *Cache) loadAll(ctx context.Context) error {
	defer c.listing.Store(false) // set by newCache
	if c.syncedAt.Load() == 0 {
		c.log.Warn("loading every tenant before the event stream was reached; they are as fresh as the listing until it is")
	}
	cursor := ""
	for {
		startedAt := c.now().UnixNano()
		epoch := c.epoch.Load()
		token := ""
		if p := c.lastPos.Load(); p != nil {
			token = *p
		}
		pctx, cancel := context.WithTimeout(ctx, c.opts.FetchTimeout)
		page, err := c.client.ListTenants(pctx, ListOptions{Limit: 200, Cursor: cursor, ReadOptions: ReadOptions{ConsistentWith: token}})
		cancel()
		c.stats.fetches.Add(1)
		if err != nil {
			c.stats.fetchErrors.Add(1)
			return fmt.Errorf("entitlement cache: list tenants: %w", err)
		}
		for i := range page.Items {
			t := slim(&page.Items[i].Tenant)
			e, _ := c.tenants.getOrAdd(t.ID)
			e.mu.Lock()
			// A tenant folded from its first event meanwhile is newer
			// than this page; events that arrived for it meanwhile are
			// folded onto it.
			if e.cur.Load() == nil && e.loading == nil {
				s := c.newState(t, startedAt, epoch)
				c.foldPendingLocked(e, s)
				c.remember(t.ExternalID, t.ID)
			}
			e.mu.Unlock()
		}
		if page.NextCursor == "" {
			// Tenants with events but in no page (made during the
			// listing, before a version the cache could start from).
			c.tenants.each(func(e *entry) {
				e.mu.Lock()
				if e.cur.Load() == nil && e.loading == nil && len(e.pending) > 0 {
					c.fetchLocked(e, e.pending[len(e.pending)-1].position)
				}
				e.mu.Unlock()
			})
			return nil
		}
		cursor = page.NextCursor
	}
}
