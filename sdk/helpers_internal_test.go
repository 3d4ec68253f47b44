package sdk

import (
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/tenancyhq/tenancy/aggregate"
)

// offlineCache is a cache that follows no stream and fetches nothing: the
// tests put tenants into it with hold.
func offlineCache(tb testing.TB, opts Options) *Cache {
	tb.Helper()
	c := newCache(opts.withDefaults())
	c.startClock()
	c.syncedAt.Store(c.now().UnixNano())
	tb.Cleanup(c.Close)
	return c
}

// hold puts t into the cache as fetched now.
func (c *Cache) hold(t *aggregate.Tenant) {
	e, _ := c.tenants.getOrAdd(t.ID)
	e.cur.Store(c.newState(slim(t.Clone()), c.now().UnixNano(), c.epoch.Load()))
}

// activeTenant folds the events of a tenant created in edition ed and
// activated, plus extra events.
func activeTenant(id uuid.UUID, ed aggregate.Edition, extra ...aggregate.Event) *aggregate.Tenant {
	at := time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)
	evs := []aggregate.Event{
		aggregate.TenantCreated{TenantID: id, ExternalID: "ORG-" + id.String()[:8], Name: "Acme " + id.String()[:8],
			Edition: ed, Region: "eu-west-1", Contacts: []aggregate.Contact{{Role: "primary", Email: "a@example.com"}},
			Metadata: map[string]string{"k": "v"}, ComplianceStandards: []string{"GDPR"}},
		aggregate.ProvisioningCompleted{},
		aggregate.TenantActivated{From: aggregate.StatusProvisioning},
	}
	evs = append(evs, extra...)
	t := &aggregate.Tenant{}
	for i, e := range evs {
		t.Apply(aggregate.Envelope{Type: e.EventType(), Version: uint64(i), OccurredAt: at, Data: e})
	}
	return t
}
