package sdk

import (
	"sync"

	"github.com/google/uuid"
)

// tenantSet holds the cache's entries, bounded or not. It is sharded so that
// readers on many cores do not meet on one lock, and it evicts with CLOCK
// (second chance): a reader only sets its entry's reference bit, and an
// insertion into a full shard sweeps the shard's ring, clearing bits, until
// it finds an entry nobody asked about since the last sweep. That is the
// usual approximation of least-recently-used that costs the hit path no
// write lock.
type tenantSet struct {
	shards []shard
	mask   uint8
	// perShard is a shard's capacity; 0 is unbounded.
	perShard int
}

type shard struct {
	mu   sync.RWMutex
	m    map[uuid.UUID]*entry
	ring []*entry // the shard's entries in CLOCK order (bounded sets only)
	hand int
	_    [40]byte // keep shards on separate cache lines
}

// newTenantSet returns a set of at most capacity entries (0: unbounded).
func newTenantSet(capacity int) *tenantSet {
	n := 64
	if capacity > 0 && capacity < 4096 {
		n = 1 // small caches: an exact bound matters more than spreading
	}
	ts := &tenantSet{shards: make([]shard, n), mask: uint8(n - 1)}
	if capacity > 0 {
		ts.perShard = (capacity + n - 1) / n
	}
	for i := range ts.shards {
		ts.shards[i].m = make(map[uuid.UUID]*entry)
	}
	return ts
}

// shardOf picks by the id's last byte, random in v4 and v7 ids alike.
func (ts *tenantSet) shardOf(id uuid.UUID) *shard { return &ts.shards[id[15]&ts.mask] }

// get returns the entry of id, or nil.
func (ts *tenantSet) get(id uuid.UUID) *entry {
	sh := ts.shardOf(id)
	sh.mu.RLock()
	e := sh.m[id]
	sh.mu.RUnlock()
	return e
}

// getOrAdd returns the entry of id, adding an empty one if there is none;
// evicted is the entry that made room, if one had to.
func (ts *tenantSet) getOrAdd(id uuid.UUID) (e *entry, evicted *entry) {
	sh := ts.shardOf(id)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if e := sh.m[id]; e != nil {
		return e, nil
	}
	e = &entry{id: id}
	e.ref.Store(true)
	sh.m[id] = e
	if ts.perShard == 0 {
		return e, nil
	}
	if len(sh.ring) < ts.perShard {
		sh.ring = append(sh.ring, e)
		return e, nil
	}
	for {
		cand := sh.ring[sh.hand]
		if cand.ref.Swap(false) {
			sh.hand = (sh.hand + 1) % len(sh.ring)
			continue
		}
		delete(sh.m, cand.id)
		sh.ring[sh.hand] = e
		sh.hand = (sh.hand + 1) % len(sh.ring)
		return e, cand
	}
}

// len is the number of entries.
func (ts *tenantSet) len() int {
	n := 0
	for i := range ts.shards {
		sh := &ts.shards[i]
		sh.mu.RLock()
		n += len(sh.m)
		sh.mu.RUnlock()
	}
	return n
}

// each calls fn with every entry (not under the shard's lock).
func (ts *tenantSet) each(fn func(*entry)) {
	for i := range ts.shards {
		sh := &ts.shards[i]
		sh.mu.RLock()
		es := make([]*entry, 0, len(sh.m))
		for _, e := range sh.m {
			es = append(es, e)
		}
		sh.mu.RUnlock()
		for _, e := range es {
			fn(e)
		}
	}
}
