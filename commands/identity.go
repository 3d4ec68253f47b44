package commands

import (
	"encoding/binary"
	"errors"

	"github.com/google/uuid"
)

// ErrIdempotencyKeyReused: the caller sent its Idempotency-Key before with
// another request. Nothing was written.
var ErrIdempotencyKeyReused = errors.New("idempotency key reused with a different request")

// Identity makes a command idempotent: the same Identity sent again is
// recognised and answered with the first outcome instead of applied twice.
//
// Everything derived from it (the event ids, a create's tenant id) is
// derived from the Scope and the Key together, so one caller's key is
// never another caller's: build Scope with ClientScope for requests of
// API clients and SystemScope for the commands the service issues itself.
// The two namespaces cannot meet, so no client can forge a key that a
// timer will use.
type Identity struct {
	Scope string
	Key   string
	// Fingerprint identifies the request that carried the key (method,
	// route, path parameters, canonical body). The same Scope and Key with
	// another Fingerprint is refused with ErrIdempotencyKeyReused.
	Fingerprint string
}

// ClientScope is the scope of an API client's keys: its token's subject
// and, for a tenant-bound token, the tenant it is bound to.
func ClientScope(subject, boundTenant string) string {
	return string(lengthPrefixed(lengthPrefixed([]byte("client:"), subject), boundTenant))
}

// SystemScope is the scope of the keys of one of the service's own
// processes (timers, provisioning, dunning).
func SystemScope(process string) string {
	return string(lengthPrefixed([]byte("system:"), process))
}

// identityNamespace seeds the ids derived from identities.
var identityNamespace = uuid.MustParse("b1f5c0a2-37d4-4e5b-9a61-2f8e7c3d9b40")

// eventID is the id of the i-th event of the command with identity id.
func (id *Identity) eventID(i int) uuid.UUID {
	b := lengthPrefixed(lengthPrefixed([]byte("event"), id.Scope), id.Key)
	return uuid.NewSHA1(identityNamespace, binary.BigEndian.AppendUint32(b, uint32(i)))
}

// tenantID is the id of the tenant a create with identity id makes.
func (id *Identity) tenantID() uuid.UUID {
	return uuid.NewSHA1(identityNamespace, lengthPrefixed(lengthPrefixed([]byte("create"), id.Scope), id.Key))
}

// lengthPrefixed appends s with its length in front, so that no two
// different sequences of strings encode alike.
func lengthPrefixed(b []byte, s string) []byte {
	b = binary.BigEndian.AppendUint32(b, uint32(len(s)))
	return append(b, s...)
}
