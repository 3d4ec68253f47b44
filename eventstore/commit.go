package eventstore

import (
	"context"
	"errors"
	"fmt"

	"github.com/google/uuid"
)

// Errors of Commit and of the claim and event look-ups.
var (
	// ErrClaimTaken: a Claim's value is held by another stream.
	ErrClaimTaken = errors.New("value already claimed by another stream")
	// ErrNotFound: no claim holds the value, or no event has the id.
	ErrNotFound = errors.New("not found")
	// ErrSecretExists: a Secret to keep has an owner that already has one.
	ErrSecretExists = errors.New("secret already kept for this owner")
	// ErrUnavailable: the store cannot be reached now (connection refused or
	// lost, server shutting down). Nothing is known to have been written; the
	// caller may retry later, with the same event ids.
	ErrUnavailable = errors.New("event store unavailable")
)

// Write is everything one command writes: events appended to one stream at
// an expected version, the unique values the stream takes or gives back,
// and key material kept beside the log or destroyed.
//
// A Committer applies a Write as one unit. What "one unit" means is the
// adapter's to state (see each adapter's package documentation and the
// conformance suite): on Postgres it is one transaction; on EventStoreDB,
// which has no transaction across streams, claims are claim streams written
// before the append, so a crash between them leaves a claim whose event
// never landed, which the next claimant recognises and takes over.
type Write struct {
	Stream   string
	Expected ExpectedVersion
	Events   []EventData
	// Claims take (or, with Release, give back) values that only one stream
	// may hold at a time within their kind, such as a tenant's name. A
	// value the stream already holds is taken again without error; a value
	// it does not hold is released without error.
	Claims []Claim
	// Secrets keeps or destroys key material owned by the stream's entity
	// (crypto-shredding keys). Adapters that cannot keep secrets in the
	// same unit refuse a Write that has any; see Committer.KeepsSecrets.
	Secrets []Secret
}

// Claim is a value unique within its Kind across streams.
type Claim struct {
	Kind    string
	Value   string
	Release bool
}

// Secret is key material kept outside the event log, so that it can be
// destroyed while the events stay.
type Secret struct {
	Owner uuid.UUID
	// Key is the (wrapped) key to keep; ignored with Destroy.
	Key     []byte
	Destroy bool
}

// Committer writes a Write as one unit.
type Committer interface {
	// Commit appends w.Events to w.Stream if the stream is at w.Expected,
	// with w.Claims and w.Secrets, or writes nothing. A version mismatch
	// returns a *WrongExpectedVersionError; a claim held by another stream
	// a *ClaimTakenError; an event id stored anywhere an error wrapping
	// ErrDuplicateEventID (unlike Append, Commit never treats stored ids
	// as a retry: the caller recognises its own retries with Locate).
	Commit(ctx context.Context, w Write) (AppendResult, error)
	// KeepsSecrets reports whether Commit keeps Write.Secrets in the same
	// unit; if not, the caller keeps its keys elsewhere.
	KeepsSecrets() bool
}

// ClaimReader finds who holds a claimed value.
type ClaimReader interface {
	// ClaimHolder returns the stream that holds value within kind, or an
	// error wrapping ErrNotFound.
	ClaimHolder(ctx context.Context, kind, value string) (string, error)
}

// Locator finds an event by its id.
type Locator interface {
	// Locate returns the stream and version of the event with id, or an
	// error wrapping ErrNotFound.
	Locate(ctx context.Context, id uuid.UUID) (stream string, version uint64, err error)
}

// ClaimTakenError says which stream holds a claimed value.
type ClaimTakenError struct {
	Kind, Value string
	// Holder is the stream that holds it ("" when unknown).
	Holder string
}

func (e *ClaimTakenError) Error() string {
	return fmt.Sprintf("%s %q is claimed by %s", e.Kind, e.Value, e.Holder)
}

// Is makes errors.Is(err, ErrClaimTaken) true.
func (e *ClaimTakenError) Is(target error) bool { return target == ErrClaimTaken }
