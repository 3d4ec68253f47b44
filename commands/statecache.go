package commands

import (
	"container/list"
	"sync"

	"github.com/google/uuid"

	"github.com/tenancyhq/tenancy/aggregate"
)

// DefaultStateCacheSize is how many tenants' states a Handler keeps when
// Options.StateCacheSize is 0.
const DefaultStateCacheSize = 10_000

// stateCache keeps the folded state of the tenants most recently commanded,
// so that the next command on one of them reads and decodes only the events
// appended since (by this process or any other: the stream is append-only).
// Every state it holds is the fold of a prefix of its tenant's stream, never
// a guess: a command still decides against the stream's head and appends
// with the version it read, so a stale entry costs a longer read, never a
// wrong decision.
//
// It holds at most max tenants, evicting the least recently used. It hands
// out and takes in copies only, so no caller ever shares a *aggregate.Tenant
// with it or with another caller. Purged tenants are never kept: their state
// is redacted anyway, and nothing is left to command. A nil *stateCache is
// a disabled one.
type stateCache struct {
	mu      sync.Mutex
	max     int
	entries map[uuid.UUID]*list.Element // of *aggregate.Tenant
	recency list.List                   // most recently used at the front
}

// newStateCache returns a cache of at most max tenants, or nil (disabled)
// when max is negative; 0 means DefaultStateCacheSize.
func newStateCache(max int) *stateCache {
	switch {
	case max < 0:
		return nil
	case max == 0:
		max = DefaultStateCacheSize
	}
	return &stateCache{max: max, entries: make(map[uuid.UUID]*list.Element)}
}

// get returns a copy of the tenant's cached state, which the caller owns.
func (c *stateCache) get(id uuid.UUID) (*aggregate.Tenant, bool) {
	if c == nil {
		return nil, false
	}
	c.mu.Lock()
	e, ok := c.entries[id]
	if !ok {
		c.mu.Unlock()
		return nil, false
	}
	c.recency.MoveToFront(e)
	t := e.Value.(*aggregate.Tenant)
	c.mu.Unlock()
	// Cached states are never modified once stored, so copying outside
	// the lock is safe.
	return t.Clone(), true
}

// put stores a copy of t, the fold of its stream up to t.Version, unless a
// state at the same or a later version is already cached. A purged tenant
// is dropped instead.
func (c *stateCache) put(t *aggregate.Tenant) {
	if c == nil || !t.Exists() {
		return
	}
	if t.Status == aggregate.StatusPurged {
		c.drop(t.ID)
		return
	}
	c.mu.Lock()
	if e, ok := c.entries[t.ID]; ok && e.Value.(*aggregate.Tenant).Version >= t.Version {
		c.recency.MoveToFront(e)
		c.mu.Unlock()
		return
	}
	c.mu.Unlock()
	cp := t.Clone() // outside the lock: t is the caller's, and copying takes a while
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.entries[cp.ID]; ok {
		// Another command may have stored a later state meanwhile.
		if e.Value.(*aggregate.Tenant).Version < cp.Version {
			e.Value = cp
		}
		c.recency.MoveToFront(e)
		return
	}
	c.entries[cp.ID] = c.recency.PushFront(cp)
	for c.recency.Len() > c.max {
		oldest := c.recency.Back()
		c.recency.Remove(oldest)
		delete(c.entries, oldest.Value.(*aggregate.Tenant).ID)
	}
}

// drop forgets the tenant.
func (c *stateCache) drop(id uuid.UUID) {
	if c == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.entries[id]; ok {
		c.recency.Remove(e)
		delete(c.entries, id)
	}
}

// len is the number of tenants cached.
func (c *stateCache) len() int {
	if c == nil {
		return 0
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.recency.Len()
}
