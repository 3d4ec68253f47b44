package esdb

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"sync"

	"github.com/EventStore/EventStore-Client-Go/v4/esdb"
	"github.com/google/uuid"

	"github.com/tenancyhq/tenancy/eventstore"
)

// claimNamespace seeds the ids of claim events, derived from the stream and
// the claimed id: a retried claim is then recognised by the server, while a
// claim for another stream differs and is refused.
var claimNamespace = uuid.MustParse("3c9d8a57-52f4-4a8e-9f1e-6b0c2d7e4a11")

// maxParallelClaims bounds the claims one append makes at a time.
const maxParallelClaims = 8

// Append implements eventstore.Appender. See the package documentation for
// how retries and event ids stored elsewhere are recognised.
func (s *Store) Append(ctx context.Context, stream string, expected eventstore.ExpectedVersion, events []eventstore.EventData) (eventstore.AppendResult, error) {
	res, err := s.append(ctx, stream, expected, events)
	if err != nil {
		return eventstore.AppendResult{}, s.closedErr(err)
	}
	return res, nil
}

func (s *Store) append(ctx context.Context, stream string, expected eventstore.ExpectedVersion, events []eventstore.EventData) (eventstore.AppendResult, error) {
	if len(events) == 0 {
		return eventstore.AppendResult{}, fmt.Errorf("append to %s: no events", stream)
	}
	revision, err := expectedRevision(expected)
	if err != nil {
		return eventstore.AppendResult{}, fmt.Errorf("append to %s: %w", stream, err)
	}
	data := make([]esdb.EventData, len(events))
	seen := make(map[uuid.UUID]bool, len(events))
	for i, e := range events {
		if e.ID == uuid.Nil {
			// The client would make up an id, and a retry could not be recognised.
			return eventstore.AppendResult{}, fmt.Errorf("append to %s: event %d has no id", stream, i)
		}
		if seen[e.ID] {
			return eventstore.AppendResult{}, fmt.Errorf("append to %s: event %s twice in one append: %w", stream, e.ID, eventstore.ErrDuplicateEventID)
		}
		seen[e.ID] = true
		if data[i], err = encodeEvent(e); err != nil {
			return eventstore.AppendResult{}, fmt.Errorf("append to %s: %w", stream, err)
		}
	}
	// The server refuses an append over its maximum size, but only after
	// the claims are written and the events sent; refuse it here first.
	if size := AppendSize(data); size > s.opts.MaxAppendSize {
		return eventstore.AppendResult{}, tooLarge(stream, events, data, s.opts.MaxAppendSize)
	}
	ctx, cancel := s.opContext(ctx)
	defer cancel()
	if !s.opts.NoEventIDClaims {
		if err := s.claimAll(ctx, stream, events); err != nil {
			return eventstore.AppendResult{}, fmt.Errorf("append to %s: %w", stream, err)
		}
	}
	name := s.ns + stream
	wr, err := s.write(ctx, name, revision, data...)
	if limit, ok := maxAppendSizeExceeded(err); ok {
		// The server's limit is lower than Options.MaxAppendSize.
		return eventstore.AppendResult{}, tooLarge(stream, events, data, limit)
	}
	if err != nil {
		return eventstore.AppendResult{}, s.appendError(ctx, stream, expected, err)
	}
	pos := eventstore.Position{Commit: wr.CommitPosition, Prepare: wr.PreparePosition}
	if pos.IsZero() {
		// A recognised retry on a server that answers it without a position.
		if pos, err = s.positionOf(ctx, name, wr.NextExpectedVersion, events[len(events)-1].ID); err != nil {
			return eventstore.AppendResult{}, fmt.Errorf("append to %s: %w", stream, err)
		}
	}
	return eventstore.AppendResult{NextExpectedVersion: wr.NextExpectedVersion, Position: pos}, nil
}

// write appends events to the stream called name (namespace included).
func (s *Store) write(ctx context.Context, name string, revision esdb.ExpectedRevision, events ...esdb.EventData) (*esdb.WriteResult, error) {
	timeout := s.opts.OperationTimeout
	return call(ctx, s.conn, func(ctx context.Context, c *esdb.Client) (*esdb.WriteResult, error) {
		return c.AppendToStream(ctx, name, esdb.AppendToStreamOptions{ExpectedRevision: revision, Deadline: &timeout}, events...)
	}, nil)
}

func expectedRevision(e eventstore.ExpectedVersion) (esdb.ExpectedRevision, error) {
	switch {
	case e == eventstore.Any:
		return esdb.Any{}, nil
	case e == eventstore.NoStream:
		return esdb.NoStream{}, nil
	case e >= 0:
		return esdb.Revision(uint64(e)), nil
	}
	return nil, fmt.Errorf("expected version %d: want any, no stream or a version", int64(e))
}

// appendError maps a failed append to the port's errors.
func (s *Store) appendError(ctx context.Context, stream string, expected eventstore.ExpectedVersion, err error) error {
	switch {
	case hasCode(err, esdb.ErrorCodeWrongExpectedVersion):
		actual, ok := actualVersion(err)
		if !ok {
			actual = s.lastVersion(ctx, s.ns+stream)
		}
		return &eventstore.WrongExpectedVersionError{Stream: stream, Expected: expected, Actual: actual}
	case hasCode(err, esdb.ErrorCodeStreamDeleted):
		return fmt.Errorf("append to %s: %w", stream, ErrStreamDeleted)
	}
	return fmt.Errorf("append to %s: %w", stream, err)
}

// gotRevision finds the actual revision in the client's wrong-expected-version
// error, its only trace: "... expecting '%s' but got '%s'" (esdb/client.go),
// where the actual is "no_stream" or a number.
var gotRevision = regexp.MustCompile(`but got '([^']*)'`)

func actualVersion(err error) (int64, bool) {
	m := gotRevision.FindStringSubmatch(err.Error())
	if m == nil {
		return 0, false
	}
	if m[1] == "no_stream" {
		return -1, true
	}
	v, perr := strconv.ParseInt(m[1], 10, 64)
	return v, perr == nil
}

// lastVersion reads the version of the stream's last event, for a conflict
// whose error did not say; -1 when there is none or it cannot be read.
func (s *Store) lastVersion(ctx context.Context, name string) int64 {
	evs, err := s.readStreamEvents(ctx, name, esdb.Backwards, esdb.End{}, 1)
	if err != nil || len(evs) == 0 {
		return -1
	}
	return int64(evs[0].OriginalEvent().EventNumber)
}

// positionOf reads the position of the event at revision of the stream
// called name and checks that it is the event with id.
func (s *Store) positionOf(ctx context.Context, name string, revision uint64, id uuid.UUID) (eventstore.Position, error) {
	evs, err := s.readStreamEvents(ctx, name, esdb.Forwards, esdb.Revision(revision), 1)
	if err != nil {
		return eventstore.Position{}, fmt.Errorf("read the position of revision %d: %w", revision, err)
	}
	if len(evs) == 0 || evs[0].OriginalEvent().EventID != id {
		return eventstore.Position{}, fmt.Errorf("the server accepted the append without a position, and event %s is not at revision %d", id, revision)
	}
	return toPosition(evs[0].OriginalEvent().Position), nil
}

// claim is the data of a claim event.
type claim struct {
	Stream string `json:"stream"`
}

// claimAll claims every event id for stream, in parallel.
func (s *Store) claimAll(ctx context.Context, stream string, events []eventstore.EventData) error {
	errs := make([]error, len(events))
	sem := make(chan struct{}, maxParallelClaims)
	var wg sync.WaitGroup
	for i, e := range events {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			errs[i] = s.claim(ctx, stream, e.ID)
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

// claim makes stream the holder of event id id: it writes the first event
// of eventid-<id>, which succeeds (or is recognised as a retry) unless
// another stream claimed the id first.
func (s *Store) claim(ctx context.Context, stream string, id uuid.UUID) error {
	name := s.ns + claimStreamPrefix + id.String()
	body, err := json.Marshal(claim{Stream: stream})
	if err != nil {
		return fmt.Errorf("claim event id %s: %w", id, err)
	}
	meta, _ := encodeEnvelope(1, nil) // no metadata always encodes
	ev := esdb.EventData{
		EventID:     uuid.NewSHA1(claimNamespace, []byte(stream+"\x00"+id.String())),
		EventType:   "EventIDClaimed",
		ContentType: esdb.ContentTypeJson,
		Data:        body,
		Metadata:    meta,
	}
	_, err = s.write(ctx, name, esdb.NoStream{}, ev)
	if err == nil {
		return nil
	}
	if !hasCode(err, esdb.ErrorCodeWrongExpectedVersion) {
		return fmt.Errorf("claim event id %s: %w", id, err)
	}
	evs, err := s.readStreamEvents(ctx, name, esdb.Forwards, esdb.Start{}, 1)
	if err != nil {
		return fmt.Errorf("claim event id %s: read the claim: %w", id, err)
	}
	var held claim
	if len(evs) == 0 || json.Unmarshal(evs[0].OriginalEvent().Data, &held) != nil {
		return fmt.Errorf("claim event id %s: unreadable claim in %s", id, name)
	}
	if held.Stream == stream {
		return nil
	}
	return fmt.Errorf("event %s is in %s: %w", id, held.Stream, eventstore.ErrDuplicateEventID)
}
