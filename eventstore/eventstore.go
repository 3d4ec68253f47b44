// Package eventstore is the port between the tenancy service and the store that
// holds its events: streams with optimistic concurrency, and one ordered global
// feed that projections read and subscribe to.
//
// The adapters live in sub-packages: memory (for fast tests), postgres (the
// default) and esdb (EventStoreDB / KurrentDB). Every adapter passes the shared
// conformance suite in eventstoretest.
package eventstore

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
)

// Sentinel errors every adapter returns (wrapped) so callers can use errors.Is.
var (
	// ErrWrongExpectedVersion: the stream is not at the version the append expected.
	ErrWrongExpectedVersion = errors.New("wrong expected version")
	// ErrStreamNotFound: the stream has no events.
	ErrStreamNotFound = errors.New("stream not found")
	// ErrDuplicateEventID: an event id is already stored in another stream or at
	// another position, so the append cannot be a retry of an earlier one.
	ErrDuplicateEventID = errors.New("duplicate event id")
	// ErrCannotCount: a store decorator's CountAfter, when the store it wraps
	// cannot count cheaply; callers count by reading instead.
	ErrCannotCount = errors.New("the event store cannot count")
)

// ExpectedVersion is what an append expects of the stream it writes to: Any,
// NoStream, or an exact version (the version of the stream's last event,
// counting from 0), made with Exact.
type ExpectedVersion int64

const (
	// Any appends whatever the stream's state.
	Any ExpectedVersion = -2
	// NoStream appends only if the stream has no events yet.
	NoStream ExpectedVersion = -1
)

// Exact expects the stream's last event to be at version v.
func Exact(v uint64) ExpectedVersion { return ExpectedVersion(v) }

// String reads "any", "no_stream" or the version.
func (e ExpectedVersion) String() string {
	switch e {
	case Any:
		return "any"
	case NoStream:
		return "no_stream"
	default:
		return strconv.FormatInt(int64(e), 10)
	}
}

// WrongExpectedVersionError says which version was expected and which was found.
// It matches ErrWrongExpectedVersion with errors.Is.
type WrongExpectedVersionError struct {
	Stream   string
	Expected ExpectedVersion
	// Actual is the stream's current version, or -1 when it has no events.
	Actual int64
}

func (e *WrongExpectedVersionError) Error() string {
	return fmt.Sprintf("append to %s: wrong expected version: expected %s, stream is at %d", e.Stream, e.Expected, e.Actual)
}

// Is makes errors.Is(err, ErrWrongExpectedVersion) true.
func (e *WrongExpectedVersionError) Is(target error) bool { return target == ErrWrongExpectedVersion }

// Position is a place in the global feed. Adapters fill both halves: EventStoreDB
// uses its (commit, prepare) log position; Postgres uses (transaction id, row
// sequence); the memory store uses its sequence for both. Positions compare
// commit first, then prepare. The zero Position is the start of the feed: no
// event is at or before it.
type Position struct {
	Commit  uint64
	Prepare uint64
}

// Start is the position before the first event.
var Start = Position{}

// Compare returns -1, 0 or +1 as p is before, at or after q.
func (p Position) Compare(q Position) int {
	switch {
	case p.Commit < q.Commit:
		return -1
	case p.Commit > q.Commit:
		return 1
	case p.Prepare < q.Prepare:
		return -1
	case p.Prepare > q.Prepare:
		return 1
	}
	return 0
}

// IsZero reports whether p is Start.
func (p Position) IsZero() bool { return p == Start }

// String encodes p as "commit/prepare", the form ParsePosition reads; it is
// what consistency tokens and checkpoints show.
func (p Position) String() string {
	return strconv.FormatUint(p.Commit, 10) + "/" + strconv.FormatUint(p.Prepare, 10)
}

// ParsePosition reads the form Position.String writes.
func ParsePosition(s string) (Position, error) {
	c, r, ok := strings.Cut(s, "/")
	if !ok {
		return Position{}, fmt.Errorf("position %q: want commit/prepare", s)
	}
	commit, err := strconv.ParseUint(c, 10, 64)
	if err != nil {
		return Position{}, fmt.Errorf("position %q: commit: %w", s, err)
	}
	prepare, err := strconv.ParseUint(r, 10, 64)
	if err != nil {
		return Position{}, fmt.Errorf("position %q: prepare: %w", s, err)
	}
	return Position{Commit: commit, Prepare: prepare}, nil
}

// EventData is an event to append. ID must be set by the caller and stays the
// event's identity for ever: re-appending the same ids after an unknown outcome
// is recognised as a retry, and replays or re-publishing never mint new ones.
type EventData struct {
	ID            uuid.UUID
	Type          string
	SchemaVersion int
	Data          []byte // JSON
	Metadata      []byte // JSON; nil for none
}

// RecordedEvent is an event as stored.
type RecordedEvent struct {
	ID            uuid.UUID
	Type          string
	SchemaVersion int
	Stream        string
	// Version is the event's place in its stream, from 0.
	Version uint64
	// Position is the event's place in the global feed.
	Position   Position
	Data       []byte
	Metadata   []byte
	RecordedAt time.Time
}

// AppendResult tells where an append landed.
type AppendResult struct {
	// NextExpectedVersion is the version of the stream's last event after the append.
	NextExpectedVersion uint64
	// Position is the global position of the last appended event.
	Position Position
}

// Direction of a stream read.
type Direction int

const (
	Forward Direction = iota
	Backward
)

// Filter selects events of the global feed by stream name prefix. An empty
// filter selects every event the service wrote (adapters never return their own
// system events).
type Filter struct {
	StreamPrefixes []string
}

// Match reports whether an event of the named stream passes the filter.
func (f Filter) Match(stream string) bool {
	if len(f.StreamPrefixes) == 0 {
		return true
	}
	for _, p := range f.StreamPrefixes {
		if strings.HasPrefix(stream, p) {
			return true
		}
	}
	return false
}

// Store is the whole port. Consumers declare the smaller interfaces they need
// (the tenant log: Committer, StreamReader, ClaimReader and Locator;
// projections: FeedReader and Subscriber).
type Store interface {
	Appender
	Committer
	StreamReader
	FeedReader
	Subscriber
	ClaimReader
	Locator
}

// Appender appends events to one stream atomically.
type Appender interface {
	// Append writes events to stream if the stream is at expected, all or
	// nothing. A mismatch returns a *WrongExpectedVersionError. Appending the
	// very same event ids again at the same place (a retry after an unknown
	// outcome) succeeds without writing them twice.
	Append(ctx context.Context, stream string, expected ExpectedVersion, events []EventData) (AppendResult, error)
}

// StreamReader reads one stream.
type StreamReader interface {
	// ReadStream returns up to limit events of stream starting at version from
	// (inclusive), forwards or backwards; limit <= 0 means all. For Backward,
	// from may be -1 to start at the end. A stream with no events returns
	// ErrStreamNotFound.
	ReadStream(ctx context.Context, stream string, direction Direction, from int64, limit int) ([]RecordedEvent, error)
}

// FeedReader reads the global feed.
type FeedReader interface {
	// ReadAll returns up to limit events strictly after position after, in
	// global order, that match filter. It never returns an event that could
	// later be preceded by one not yet visible: what it returns is final.
	ReadAll(ctx context.Context, after Position, filter Filter, limit int) ([]RecordedEvent, error)
	// Head returns the position of the last event in the feed (Start if none).
	Head(ctx context.Context) (Position, error)
}

// Subscriber follows the global feed.
type Subscriber interface {
	// SubscribeAll follows the feed from strictly after position after: first
	// the events already stored (catch-up), then new ones as they are appended
	// (live), in global order, with no gap and no duplicate.
	SubscribeAll(ctx context.Context, after Position, filter Filter) (Subscription, error)
}

// Subscription is a catch-up subscription to the global feed.
type Subscription interface {
	// Next blocks until at least one event is available and returns the
	// available ones, up to the adapter's batch size, in order. It returns
	// ctx.Err() when ctx ends, or the error that ended the subscription.
	Next(ctx context.Context) ([]RecordedEvent, error)
	// Close releases the subscription's resources.
	Close() error
}

// Counter is implemented by stores that count feed events cheaply (Postgres).
type Counter interface {
	CountAfter(ctx context.Context, after Position, filter Filter) (int64, error)
}

// CountAfter asks s to count the events after a position, or answers
// ErrCannotCount when it cannot: what a store decorator's CountAfter does.
func CountAfter(ctx context.Context, s any, after Position, filter Filter) (int64, error) {
	c, ok := s.(Counter)
	if !ok {
		return 0, ErrCannotCount
	}
	return c.CountAfter(ctx, after, filter)
}
