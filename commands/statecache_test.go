package commands

import (
	"fmt"
	"reflect"
	"sync"
	"testing"

	"github.com/google/uuid"

	"github.com/tenancyhq/tenancy/aggregate"
)

func cachedTenant(id uuid.UUID, version uint64) *aggregate.Tenant {
	return &aggregate.Tenant{ID: id, Status: aggregate.StatusActive, Version: version,
		Contacts: []aggregate.Contact{{Role: "primary", Email: "ops@example.test"}},
		Labels:   map[string]string{"tier": "gold"}}
}

func TestStateCacheEvictsTheLeastRecentlyUsed(t *testing.T) {
	t.Parallel()
	c := newStateCache(3)
	ids := make([]uuid.UUID, 4)
	for i := range ids {
		ids[i] = uuid.New()
	}
	for _, id := range ids[:3] {
		c.put(cachedTenant(id, 0))
	}
	c.get(ids[0]) // 1 is now the least recently used
	c.put(cachedTenant(ids[3], 0))
	for i, want := range []bool{true, false, true, true} {
		if _, ok := c.get(ids[i]); ok != want {
			t.Errorf("tenant %d cached = %v, want %v", i, ok, want)
		}
	}
	for i := range 1000 {
		c.put(cachedTenant(uuid.New(), uint64(i)))
		if n := c.len(); n > 3 {
			t.Fatalf("%d tenants cached, bound is 3", n)
		}
	}
}

func TestStateCacheSizeDefaultsAndDisables(t *testing.T) {
	t.Parallel()
	if c := newStateCache(0); c.max != DefaultStateCacheSize {
		t.Fatalf("default size %d, want %d", c.max, DefaultStateCacheSize)
	}
	off := newStateCache(-1)
	id := uuid.New()
	off.put(cachedTenant(id, 0))
	if _, ok := off.get(id); ok || off.len() != 0 {
		t.Fatal("a disabled cache kept a tenant")
	}
}

func TestStateCacheHandsOutAndTakesInCopies(t *testing.T) {
	t.Parallel()
	c := newStateCache(10)
	id := uuid.New()
	orig := cachedTenant(id, 4)
	c.put(orig)
	orig.Labels["tier"] = "changed by the caller after put"
	orig.Contacts[0].Email = "changed@example.test"
	got, _ := c.get(id)
	got.Labels["tier"] = "changed by the caller after get"
	got.Contacts = append(got.Contacts[:0], aggregate.Contact{Role: "x"})
	again, _ := c.get(id)
	if want := cachedTenant(id, 4); !reflect.DeepEqual(again, want) {
		t.Fatalf("cached state changed through a caller's pointer: %+v", again)
	}
}

func TestStateCacheKeepsTheLaterState(t *testing.T) {
	t.Parallel()
	c := newStateCache(10)
	id := uuid.New()
	c.put(cachedTenant(id, 7))
	c.put(cachedTenant(id, 5)) // a slower command that read an older head
	if got, _ := c.get(id); got.Version != 7 {
		t.Fatalf("version %d cached, want the later 7", got.Version)
	}
	c.put(cachedTenant(id, 9))
	if got, _ := c.get(id); got.Version != 9 {
		t.Fatalf("version %d cached, want 9", got.Version)
	}
}

func TestStateCacheNeverKeepsAPurgedTenant(t *testing.T) {
	t.Parallel()
	c := newStateCache(10)
	id := uuid.New()
	c.put(cachedTenant(id, 3))
	purged := cachedTenant(id, 4)
	purged.Status = aggregate.StatusPurged
	c.put(purged)
	if _, ok := c.get(id); ok || c.len() != 0 {
		t.Fatal("a purged tenant is cached")
	}
}

// TestStateCacheIsSafeForConcurrentUse is for -race: readers and writers of
// the same and different tenants at once, the bound holding throughout.
func TestStateCacheIsSafeForConcurrentUse(t *testing.T) {
	t.Parallel()
	c := newStateCache(8)
	ids := make([]uuid.UUID, 16)
	for i := range ids {
		ids[i] = uuid.New()
	}
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 500 {
				id := ids[(g+i)%len(ids)]
				if got, ok := c.get(id); ok {
					got.Labels[fmt.Sprint(g)] = "mine" // the copy is the caller's
					got.Version++
					c.put(got)
				} else {
					c.put(cachedTenant(id, uint64(i)))
				}
				if i%50 == 0 {
					c.drop(id)
				}
				if n := c.len(); n > 8 {
					t.Errorf("%d tenants cached, bound is 8", n)
					return
				}
			}
		}()
	}
	wg.Wait()
}
