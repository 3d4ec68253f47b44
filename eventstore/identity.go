package eventstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
)

// Identity names one event store for good: the read model and the
// checkpoints record the identity of the store they were built from, so an
// operator command pointed at another store by mistake (a forgotten
// EVENTSTORE_URL, another database) is refused instead of mixing two
// histories.
type Identity struct {
	// Kind is the adapter: "postgres", "eventstoredb" or "memory".
	Kind string `json:"kind"`
	// ID is the store's own identity: an id the store keeps (minted once
	// when the store is set up), not its address, so moving or renaming the
	// server does not change it and another server with the same address
	// does.
	ID string `json:"id"`
}

// String is "kind id", as operators see it.
func (i Identity) String() string { return i.Kind + " " + i.ID }

// Identifier is implemented by stores that know their identity.
type Identifier interface {
	// Identity returns the store's identity, minting it on first use (a
	// store set up before identities existed gets one then).
	Identity(ctx context.Context) (Identity, error)
}

// ErrTooLarge: a write is larger than the store takes in one append.
var ErrTooLarge = errors.New("write too large for the event store")

// TooLargeError says how large a refused write was, what the store takes,
// and which part of it weighs most, so that the caller can name the field
// to shorten. It matches ErrTooLarge with errors.Is.
type TooLargeError struct {
	Stream string
	// Size and Limit are in bytes, as the store counts them.
	Size, Limit int
	// EventType is the largest event of the write; Field the largest
	// top-level member of its data ("" when the data is not an object).
	EventType string
	Field     string
}

func (e *TooLargeError) Error() string {
	msg := fmt.Sprintf("append to %s: %d bytes, the event store takes at most %d in one append", e.Stream, e.Size, e.Limit)
	if e.Field != "" {
		msg += fmt.Sprintf(" (largest: %s of %s)", e.Field, e.EventType)
	}
	return msg
}

// Is makes errors.Is(err, ErrTooLarge) true.
func (e *TooLargeError) Is(target error) bool { return target == ErrTooLarge }

// LargestField returns the top-level member of a JSON object with the
// largest encoded value, or "" when data is not an object.
func LargestField(data []byte) string {
	var members map[string]json.RawMessage
	if json.Unmarshal(data, &members) != nil {
		return ""
	}
	best, size := "", -1
	for k, v := range members {
		if len(v) > size || (len(v) == size && k < best) {
			best, size = k, len(v)
		}
	}
	return best
}
