package sdk

import (
	"hash/maphash"
	"maps"
	"slices"
	"sync/atomic"

	"github.com/tenancyhq/tenancy/aggregate"
)

// memoSlots is how many recent decisions each tenant state remembers.
const memoSlots = 8

// memo remembers the decisions aggregate.Catalog.Evaluate made for one
// tenant state, so that asking the same question again within the same
// second costs a hash and a comparison instead of an evaluation. It is not
// an approximation: an entry is used only for a request equal in every
// field to the one it was computed for, at the same evaluation time (the
// same second, or the same Context.Time), on the same tenant state (a memo
// belongs to one immutable state, so a new event starts a new one). The
// table is direct-mapped and lock-free: readers load a pointer, writers
// replace one.
type memo struct {
	slots [memoSlots]atomic.Pointer[memoEntry]
}

type memoEntry struct {
	hash uint64
	// sec is the second evaluated at when the request had no Context.Time.
	sec    int64
	action string
	// pctx is the request's context, Usage and Time being the entry's own
	// copies; usage is Usage as a list, compared without iterating a map.
	pctx  aggregate.PolicyContext
	usage []usageOf
	d     aggregate.Decision
}

type usageOf struct {
	limit aggregate.Limit
	used  int64
}

// memoSeed keys the request hash; one per process is enough, since the
// hash only spreads entries and every hit is compared in full.
var memoSeed = maphash.MakeSeed()

// hashRequest hashes a request without allocating. Usage counts only by
// its size: its values are compared in full on a hit, and iterating a map
// costs more than the comparison.
func hashRequest(action string, pctx *aggregate.PolicyContext) uint64 {
	h := maphash.String(memoSeed, action)
	h = mix(h ^ maphash.String(memoSeed, string(pctx.Region)))
	h = mix(h ^ maphash.String(memoSeed, pctx.SourceIP))
	h = mix(h ^ uint64(len(pctx.Usage)))
	if pctx.Time != nil {
		h = mix(h ^ uint64(pctx.Time.UnixNano()) ^ 1)
	}
	return h
}

// mix is the finalizer of SplitMix64.
func mix(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	return x ^ (x >> 31)
}

// get returns the remembered decision for the request, if there is one.
func (m *memo) get(h uint64, sec int64, action string, pctx *aggregate.PolicyContext) (*memoEntry, bool) {
	e := m.slots[h%memoSlots].Load()
	if e == nil || e.hash != h || e.action != action || !e.sameContext(pctx) {
		return nil, false
	}
	if pctx.Time == nil && e.sec != sec {
		return nil, false
	}
	return e, true
}

// put remembers d for the request, copying what the caller may change.
// The decision's slices are clipped, so that a caller appending to them
// gets its own copy rather than writing into the shared one.
func (m *memo) put(h uint64, sec int64, action string, pctx *aggregate.PolicyContext, d aggregate.Decision) {
	e := &memoEntry{hash: h, sec: sec, action: action, pctx: *pctx, d: d}
	e.pctx.Usage = maps.Clone(pctx.Usage)
	for l, v := range pctx.Usage {
		e.usage = append(e.usage, usageOf{l, v})
	}
	if pctx.Time != nil {
		t := *pctx.Time
		e.pctx.Time = &t
	}
	e.d.Violations = slices.Clip(d.Violations)
	e.d.Rules = slices.Clip(d.Rules)
	m.slots[h%memoSlots].Store(e)
}

// sameContext reports whether pctx equals the entry's context.
func (e *memoEntry) sameContext(pctx *aggregate.PolicyContext) bool {
	a := &e.pctx
	if a.Region != pctx.Region || a.SourceIP != pctx.SourceIP || len(e.usage) != len(pctx.Usage) {
		return false
	}
	for _, u := range e.usage { // as many keys, each present and equal: the same map
		if v, ok := pctx.Usage[u.limit]; !ok || v != u.used {
			return false
		}
	}
	switch {
	case a.Time == nil && pctx.Time == nil:
		return true
	case a.Time == nil || pctx.Time == nil:
		return false
	}
	return a.Time.Equal(*pctx.Time) // evaluation reads the instant, in UTC
}
