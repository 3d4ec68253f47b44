package queries

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"hash"

	"github.com/tenancyhq/tenancy/aggregate"
)

// A cursor says where the previous page ended: the last row's sort key and id,
// under which ordering, for which filter.
//
// The token a client sees is base64url (no padding) of a 12-byte checksum
// followed by the cursor's JSON. The checksum (SHA-256 of a domain tag and the
// JSON) refuses a token that was edited, cut or made by someone else; the
// ordering and the filter digest inside refuse a token replayed with another
// sort, order or filter, whose seek position would mean nothing there.
//
// There is no secret key, so cursors stay valid across replicas and restarts.
// A client that forges a well-formed token gains only another starting point
// within the same query, which the seek predicate treats like any other.
type cursor struct {
	Version int    `json:"v"`
	Kind    string `json:"k"` // cursorTenants or cursorEvents
	Sort    string `json:"s,omitempty"`
	Order   string `json:"o,omitempty"`
	Filter  string `json:"f"` // filterDigest of the query's filter
	Key     string `json:"key"`
	ID      string `json:"id,omitempty"`
}

const (
	cursorVersion  = 1
	cursorTenants  = "tenants"
	cursorEvents   = "events"
	checksumLength = 12
	// maxCursorLength bounds what is decoded at all; a real token is far shorter.
	maxCursorLength = 16 << 10
	checksumDomain  = "tenancy/queries/cursor\x00"
)

func checksum(payload []byte) []byte {
	h := sha256.New()
	h.Write([]byte(checksumDomain))
	h.Write(payload)
	return h.Sum(nil)[:checksumLength]
}

// encodeCursor seals c into a token.
func encodeCursor(c cursor) (string, error) {
	c.Version = cursorVersion
	payload, err := json.Marshal(c)
	if err != nil {
		return "", fmt.Errorf("encode cursor: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(append(checksum(payload), payload...)), nil
}

// decodeCursor opens a token and checks that it was made by this package for
// the same kind of page, ordering and filter.
func decodeCursor(token, kind, sort, order, filter string) (cursor, error) {
	if len(token) > maxCursorLength {
		return cursor{}, malformedCursor()
	}
	raw, err := base64.RawURLEncoding.DecodeString(token)
	if err != nil || len(raw) <= checksumLength {
		return cursor{}, malformedCursor()
	}
	sum, payload := raw[:checksumLength], raw[checksumLength:]
	if !bytes.Equal(sum, checksum(payload)) {
		return cursor{}, malformedCursor()
	}
	var c cursor
	if err := json.Unmarshal(payload, &c); err != nil || c.Version != cursorVersion {
		return cursor{}, malformedCursor()
	}
	if c.Kind != kind || c.Sort != sort || c.Order != order || c.Filter != filter {
		return cursor{}, aggregate.Invalid("cursor", "mismatch",
			"cursor was issued for another sort, order or filter; start again without a cursor")
	}
	return c, nil
}

// malformedCursor refuses a token this package did not make, or that was
// altered. (A new error each time: callers may annotate it.)
func malformedCursor() error {
	return aggregate.Invalid("cursor", "malformed", "cursor is not one this service issued, or was altered")
}

// filterDigest accumulates a filter's canonical form (its fields in a fixed
// order, lists sorted and de-duplicated by the caller, every value length
// prefixed) into a short digest, so equal filters give equal digests and
// different ones differ.
type filterDigest struct{ h hash.Hash }

func newFilterDigest(kind string) *filterDigest {
	d := &filterDigest{h: sha256.New()}
	d.add("kind", kind)
	return d
}

// add writes one field and its values.
func (d *filterDigest) add(field string, values ...string) {
	var n [8]byte
	write := func(s string) {
		binary.BigEndian.PutUint64(n[:], uint64(len(s)))
		d.h.Write(n[:])
		d.h.Write([]byte(s))
	}
	write(field)
	binary.BigEndian.PutUint64(n[:], uint64(len(values)))
	d.h.Write(n[:])
	for _, v := range values {
		write(v)
	}
}

// sum returns the digest as the cursor carries it.
func (d *filterDigest) sum() string {
	return base64.RawURLEncoding.EncodeToString(d.h.Sum(nil)[:12])
}
