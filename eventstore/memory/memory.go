// Package memory is an in-process event store for fast tests and local
// experiments. It keeps everything in memory and loses it when the process ends.
package memory

import (
	"bytes"
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/google/uuid"

	"github.com/tenancyhq/tenancy/eventstore"
)

// batchSize is the most events one Subscription.Next returns.
const batchSize = 512

// Store is an in-memory eventstore.Store. The zero value is not usable; call New.
type Store struct {
	mu      sync.Mutex
	all     []eventstore.RecordedEvent
	streams map[string][]int // stream -> indexes into all
	ids     map[uuid.UUID]int
	claims  map[[2]string]string // (kind, value) -> holder
	// changed is closed and replaced on every append, waking subscribers.
	changed chan struct{}
	now     func() time.Time
	// id is the store's identity: a new store is a new history.
	id uuid.UUID
}

var _ eventstore.Store = (*Store)(nil)

// New returns an empty store.
func New() *Store {
	return &Store{
		streams: make(map[string][]int),
		ids:     make(map[uuid.UUID]int),
		claims:  make(map[[2]string]string),
		changed: make(chan struct{}),
		now:     time.Now,
		id:      uuid.New(),
	}
}

// Identity implements eventstore.Identifier: each Store is its own history.
func (s *Store) Identity(context.Context) (eventstore.Identity, error) {
	return eventstore.Identity{Kind: "memory", ID: s.id.String()}, nil
}

// Append implements eventstore.Appender.
func (s *Store) Append(ctx context.Context, stream string, expected eventstore.ExpectedVersion, events []eventstore.EventData) (eventstore.AppendResult, error) {
	if err := ctx.Err(); err != nil {
		return eventstore.AppendResult{}, err
	}
	if len(events) == 0 {
		return eventstore.AppendResult{}, fmt.Errorf("append to %s: no events", stream)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if res, ok, err := s.retried(stream, events); ok || err != nil {
		return res, err
	}
	return s.appendLocked(stream, expected, events)
}

// appendLocked appends after the checks for retries; s.mu is held.
func (s *Store) appendLocked(stream string, expected eventstore.ExpectedVersion, events []eventstore.EventData) (eventstore.AppendResult, error) {
	idx := s.streams[stream]
	actual := int64(len(idx)) - 1
	switch {
	case expected == eventstore.Any:
	case expected == eventstore.NoStream && actual == -1:
	case expected >= 0 && int64(expected) == actual:
	default:
		return eventstore.AppendResult{}, &eventstore.WrongExpectedVersionError{Stream: stream, Expected: expected, Actual: actual}
	}

	recordedAt := s.now().UTC()
	for i, e := range events {
		seq := uint64(len(s.all)) + 1
		rec := eventstore.RecordedEvent{
			ID:            e.ID,
			Type:          e.Type,
			SchemaVersion: e.SchemaVersion,
			Stream:        stream,
			Version:       uint64(actual + 1 + int64(i)),
			Position:      eventstore.Position{Commit: seq, Prepare: seq},
			Data:          bytes.Clone(e.Data),
			Metadata:      bytes.Clone(e.Metadata),
			RecordedAt:    recordedAt,
		}
		s.ids[e.ID] = len(s.all)
		s.streams[stream] = append(s.streams[stream], len(s.all))
		s.all = append(s.all, rec)
	}
	close(s.changed)
	s.changed = make(chan struct{})
	last := s.all[len(s.all)-1]
	return eventstore.AppendResult{NextExpectedVersion: last.Version, Position: last.Position}, nil
}

// retried recognises an append whose event ids are already stored, in order,
// in this stream: the caller is retrying after an unknown outcome. An id stored
// elsewhere is an error.
func (s *Store) retried(stream string, events []eventstore.EventData) (eventstore.AppendResult, bool, error) {
	first, ok := s.ids[events[0].ID]
	if !ok {
		for _, e := range events[1:] {
			if _, dup := s.ids[e.ID]; dup {
				return eventstore.AppendResult{}, false, fmt.Errorf("append to %s: event %s: %w", stream, e.ID, eventstore.ErrDuplicateEventID)
			}
		}
		return eventstore.AppendResult{}, false, nil
	}
	rec := s.all[first]
	if rec.Stream != stream {
		return eventstore.AppendResult{}, false, fmt.Errorf("append to %s: event %s is in %s: %w", stream, rec.ID, rec.Stream, eventstore.ErrDuplicateEventID)
	}
	idx := s.streams[stream]
	for i, e := range events {
		v := int(rec.Version) + i
		if v >= len(idx) || s.all[idx[v]].ID != e.ID {
			return eventstore.AppendResult{}, false, fmt.Errorf("append to %s: event %s: %w", stream, e.ID, eventstore.ErrDuplicateEventID)
		}
	}
	last := s.all[idx[int(rec.Version)+len(events)-1]]
	return eventstore.AppendResult{NextExpectedVersion: last.Version, Position: last.Position}, true, nil
}

// ReadStream implements eventstore.StreamReader.
func (s *Store) ReadStream(ctx context.Context, stream string, direction eventstore.Direction, from int64, limit int) ([]eventstore.RecordedEvent, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	idx := s.streams[stream]
	if len(idx) == 0 {
		return nil, fmt.Errorf("read %s: %w", stream, eventstore.ErrStreamNotFound)
	}
	var out []eventstore.RecordedEvent
	if direction == eventstore.Forward {
		for v := max(from, 0); v < int64(len(idx)) && (limit <= 0 || len(out) < limit); v++ {
			out = append(out, s.all[idx[v]])
		}
		return out, nil
	}
	start := from
	if start < 0 || start >= int64(len(idx)) {
		start = int64(len(idx)) - 1
	}
	for v := start; v >= 0 && (limit <= 0 || len(out) < limit); v-- {
		out = append(out, s.all[idx[v]])
	}
	return out, nil
}

// ReadAll implements eventstore.FeedReader.
func (s *Store) ReadAll(ctx context.Context, after eventstore.Position, filter eventstore.Filter, limit int) ([]eventstore.RecordedEvent, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.readAllLocked(after, filter, limit), nil
}

func (s *Store) readAllLocked(after eventstore.Position, filter eventstore.Filter, limit int) []eventstore.RecordedEvent {
	// Positions are 1-based sequence numbers equal to index+1.
	var out []eventstore.RecordedEvent
	for i := int(min(after.Commit, uint64(len(s.all)))); i < len(s.all) && (limit <= 0 || len(out) < limit); i++ {
		if filter.Match(s.all[i].Stream) {
			out = append(out, s.all[i])
		}
	}
	return out
}

// Head implements eventstore.FeedReader.
func (s *Store) Head(ctx context.Context) (eventstore.Position, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.all) == 0 {
		return eventstore.Start, nil
	}
	return s.all[len(s.all)-1].Position, nil
}

// SubscribeAll implements eventstore.Subscriber.
func (s *Store) SubscribeAll(ctx context.Context, after eventstore.Position, filter eventstore.Filter) (eventstore.Subscription, error) {
	return &subscription{store: s, after: after, filter: filter}, nil
}

type subscription struct {
	store  *Store
	after  eventstore.Position
	filter eventstore.Filter
}

func (sub *subscription) Next(ctx context.Context) ([]eventstore.RecordedEvent, error) {
	for {
		sub.store.mu.Lock()
		evs := sub.store.readAllLocked(sub.after, sub.filter, batchSize)
		changed := sub.store.changed
		// Skip past filtered-out events so the next read starts further on.
		if n := len(sub.store.all); len(evs) == 0 && n > 0 {
			sub.after = sub.store.all[n-1].Position
		}
		sub.store.mu.Unlock()
		if len(evs) > 0 {
			sub.after = evs[len(evs)-1].Position
			return evs, nil
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-changed:
		}
	}
}

func (sub *subscription) Close() error { return nil }

// KeepsSecrets implements eventstore.Committer: the memory store keeps no
// key material.
func (s *Store) KeepsSecrets() bool { return false }

// Commit implements eventstore.Committer under the store's lock: all of the
// write or nothing.
func (s *Store) Commit(ctx context.Context, w eventstore.Write) (eventstore.AppendResult, error) {
	if err := ctx.Err(); err != nil {
		return eventstore.AppendResult{}, err
	}
	if len(w.Events) == 0 {
		return eventstore.AppendResult{}, fmt.Errorf("commit to %s: no events", w.Stream)
	}
	if len(w.Secrets) > 0 {
		return eventstore.AppendResult{}, fmt.Errorf("commit to %s: the memory store keeps no secrets", w.Stream)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	seen := make(map[uuid.UUID]bool, len(w.Events))
	for _, e := range w.Events {
		if _, dup := s.ids[e.ID]; dup || seen[e.ID] {
			return eventstore.AppendResult{}, fmt.Errorf("commit to %s: event %s: %w", w.Stream, e.ID, eventstore.ErrDuplicateEventID)
		}
		seen[e.ID] = true
	}
	for _, c := range w.Claims {
		if h, held := s.claims[[2]string{c.Kind, c.Value}]; held && h != w.Stream && !c.Release {
			return eventstore.AppendResult{}, &eventstore.ClaimTakenError{Kind: c.Kind, Value: c.Value, Holder: h}
		}
	}
	res, err := s.appendLocked(w.Stream, w.Expected, w.Events)
	if err != nil {
		return res, err
	}
	for _, c := range w.Claims {
		k := [2]string{c.Kind, c.Value}
		switch {
		case !c.Release:
			s.claims[k] = w.Stream
		case s.claims[k] == w.Stream:
			delete(s.claims, k)
		}
	}
	return res, nil
}

// ClaimHolder implements eventstore.ClaimReader.
func (s *Store) ClaimHolder(_ context.Context, kind, value string) (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	h, ok := s.claims[[2]string{kind, value}]
	if !ok {
		return "", fmt.Errorf("claim %s %q: %w", kind, value, eventstore.ErrNotFound)
	}
	return h, nil
}

// Locate implements eventstore.Locator.
func (s *Store) Locate(_ context.Context, id uuid.UUID) (string, uint64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	i, ok := s.ids[id]
	if !ok {
		return "", 0, fmt.Errorf("event %s: %w", id, eventstore.ErrNotFound)
	}
	return s.all[i].Stream, s.all[i].Version, nil
}
