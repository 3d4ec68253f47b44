package httpapi

import (
	"sync"

	"github.com/google/uuid"
	"github.com/labstack/echo/v4"

	"github.com/tenancyhq/tenancy/aggregate"
	"github.com/tenancyhq/tenancy/queries"
)

// maxSubjects bounds the policy subjects a server keeps: some megabytes
// (a subject is a few kilobytes), whatever the number of tenants.
const maxSubjects = 10_000

// subjects keeps the policy subjects of the tenants evaluated lately, so
// that policy evaluation decodes a tenant's state once per change rather
// than once per request. An entry is keyed by the path's tenant reference
// (a uuid or an external id) and remembers the row's id and version it was
// made from; each request sends both with its read of the row, which then
// comes without its state while they still hold (queries.Want). So an
// entry is never served stale, and one statement per request remains.
//
// When full, an arbitrary entry makes room (a map's iteration order): a
// miss costs one decode, which is not worth a recency list.
type subjects struct {
	mu sync.Mutex
	m  map[string]heldSubject
}

type heldSubject struct {
	id      uuid.UUID
	version uint64
	subject aggregate.PolicySubject
}

func newSubjects() *subjects { return &subjects{m: map[string]heldSubject{}} }

func (c *subjects) get(ref string) (heldSubject, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	h, ok := c.m[ref]
	return h, ok
}

func (c *subjects) put(ref string, h heldSubject) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.m[ref]; !ok && len(c.m) >= maxSubjects {
		for k := range c.m {
			delete(c.m, k)
			break
		}
	}
	c.m[ref] = h
}

// policySubject is what policy evaluation reads of the tenant named in
// the path: from the read model (after any consistency token), the state
// decoded only when it changed since this server last evaluated it.
// Evaluation only reads a subject, so one may serve concurrent requests.
func (s *Server) policySubject(c echo.Context) (aggregate.PolicySubject, error) {
	ref := c.Param("id")
	held, ok := s.subjects.get(ref)
	want := queries.Want{}
	if ok {
		want.HeldID, want.HeldVersion = held.id, held.version
	}
	row, err := s.readRow(c, want)
	if err != nil {
		return aggregate.PolicySubject{}, err
	}
	if row.Tenant == nil { // still the version held
		return held.subject, nil
	}
	h := heldSubject{id: row.ID, version: row.Version, subject: row.Tenant.PolicySubject(s.deps.Catalog)}
	s.subjects.put(ref, h)
	return h.subject, nil
}
