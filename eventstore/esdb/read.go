package esdb

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"

	"github.com/EventStore/EventStore-Client-Go/v4/esdb"

	"github.com/tenancyhq/tenancy/eventstore"
)

// allEvents is the count of a read that wants every event: the largest
// count that no server converts to a negative number.
const allEvents = math.MaxInt64

// ReadStream implements eventstore.StreamReader. A stream that was never
// written, soft-deleted, or tombstoned returns eventstore.ErrStreamNotFound
// (a tombstoned one also matches ErrStreamDeleted).
func (s *Store) ReadStream(ctx context.Context, stream string, direction eventstore.Direction, from int64, limit int) ([]eventstore.RecordedEvent, error) {
	ctx, cancel := s.opContext(ctx)
	defer cancel()
	dir, start := esdb.Forwards, esdb.StreamPosition(esdb.Revision(uint64(max(from, 0))))
	if direction == eventstore.Backward {
		dir = esdb.Backwards
		if from < 0 {
			start = esdb.End{}
		}
	}
	count := uint64(allEvents)
	if limit > 0 {
		count = uint64(limit)
	}
	evs, err := s.readStreamEvents(ctx, s.ns+stream, dir, start, count)
	switch {
	case hasCode(err, esdb.ErrorCodeResourceNotFound):
		return nil, fmt.Errorf("read %s: %w", stream, eventstore.ErrStreamNotFound)
	case hasCode(err, esdb.ErrorCodeStreamDeleted):
		return nil, fmt.Errorf("read %s: %w: %w", stream, ErrStreamDeleted, eventstore.ErrStreamNotFound)
	case err != nil:
		return nil, s.closedErr(fmt.Errorf("read %s: %w", stream, err))
	}
	out := make([]eventstore.RecordedEvent, len(evs))
	for i, ev := range evs {
		out[i] = decodeEvent(ev.OriginalEvent(), stream)
	}
	return out, nil
}

// readStreamEvents reads up to count events of the stream called name
// (namespace included).
func (s *Store) readStreamEvents(ctx context.Context, name string, dir esdb.Direction, from esdb.StreamPosition, count uint64) ([]*esdb.ResolvedEvent, error) {
	timeout := s.opts.OperationTimeout
	return call(ctx, s.conn, func(ctx context.Context, c *esdb.Client) ([]*esdb.ResolvedEvent, error) {
		rs, err := c.ReadStream(ctx, name, esdb.ReadStreamOptions{Direction: dir, From: from, Deadline: &timeout}, count)
		if err != nil {
			return nil, err
		}
		return drain(rs)
	}, nil)
}

// readAllEvents reads up to count events of $all, forwards from from
// (inclusive) or backwards from before it.
func (s *Store) readAllEvents(ctx context.Context, dir esdb.Direction, from esdb.AllPosition, count uint64) ([]*esdb.ResolvedEvent, error) {
	timeout := s.opts.OperationTimeout
	return call(ctx, s.conn, func(ctx context.Context, c *esdb.Client) ([]*esdb.ResolvedEvent, error) {
		rs, err := c.ReadAll(ctx, esdb.ReadAllOptions{Direction: dir, From: from, Deadline: &timeout}, count)
		if err != nil {
			return nil, err
		}
		return drain(rs)
	}, nil)
}

func drain(rs *esdb.ReadStream) ([]*esdb.ResolvedEvent, error) {
	defer rs.Close()
	var out []*esdb.ResolvedEvent
	for {
		ev, err := rs.Recv()
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return nil, err
		}
		out = append(out, ev)
	}
}

// ReadAll implements eventstore.FeedReader. It reads $all in pages (the
// client cannot filter a read) from after, skipping the event at after
// itself (the server's reads include it), system events, other namespaces
// and event id claims.
func (s *Store) ReadAll(ctx context.Context, after eventstore.Position, filter eventstore.Filter, limit int) ([]eventstore.RecordedEvent, error) {
	ctx, cancel := s.opContext(ctx)
	defer cancel()
	var out []eventstore.RecordedEvent
	cursor := after
	page := s.firstPage(limit)
	for {
		var from esdb.AllPosition = esdb.Start{}
		if !cursor.IsZero() {
			from = esdb.Position{Commit: cursor.Commit, Prepare: cursor.Prepare}
		}
		evs, err := s.readAllEvents(ctx, esdb.Forwards, from, uint64(page))
		if err != nil {
			return nil, s.closedErr(fmt.Errorf("read $all after %s: %w", after, err))
		}
		for _, ev := range evs {
			r := ev.OriginalEvent()
			p := toPosition(r.Position)
			if p.Compare(cursor) <= 0 {
				continue
			}
			cursor = p
			if e, ok := s.feedEvent(r, filter); ok {
				out = append(out, e)
				if limit > 0 && len(out) == limit {
					return out, nil
				}
			}
		}
		if len(evs) < page {
			return out, nil
		}
		page = min(2*page, s.opts.ReadPageSize)
	}
}

// firstPage is the size of the first page of a read for limit events; the
// next ones double up to the page size.
func (s *Store) firstPage(limit int) int {
	if limit <= 0 {
		return s.opts.ReadPageSize
	}
	return min(max(limit+1, 32), s.opts.ReadPageSize)
}

// Head implements eventstore.FeedReader: it reads $all backwards from the
// end until the first event of the feed (skipping system events, other
// namespaces and event id claims).
func (s *Store) Head(ctx context.Context) (eventstore.Position, error) {
	ctx, cancel := s.opContext(ctx)
	defer cancel()
	var from esdb.AllPosition = esdb.End{}
	page := 32
	for {
		evs, err := s.readAllEvents(ctx, esdb.Backwards, from, uint64(page))
		if err != nil {
			return eventstore.Position{}, s.closedErr(fmt.Errorf("read the head of $all: %w", err))
		}
		for _, ev := range evs {
			if e, ok := s.feedEvent(ev.OriginalEvent(), eventstore.Filter{}); ok {
				return e.Position, nil
			}
		}
		if len(evs) < page {
			return eventstore.Start, nil
		}
		last := evs[len(evs)-1].OriginalEvent().Position
		from = esdb.Position{Commit: last.Commit, Prepare: last.Prepare}
		page = min(2*page, s.opts.ReadPageSize)
	}
}
