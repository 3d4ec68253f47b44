package esdbtest

import (
	"fmt"
	"math"
	"sort"
	"strconv"
	"time"

	"github.com/google/uuid"
)

// firstPosition is where the first record of the log starts. A real node's
// transaction log opens with records of its own (epochs, its first system
// events), so no event is ever at position 0, and clients (and the port,
// whose zero Position means "before everything") rely on that.
const firstPosition = 1024

// recordOverhead is the bytes a record takes besides its names and payloads,
// so that positions advance roughly as a real log's do.
const recordOverhead = 96

// deletedStream is EventNumber.DeletedStream of the server: the revision of a
// tombstone, and the truncate-before of a soft-deleted stream.
const deletedStream = math.MaxInt64

// tombstoneType is the event type of the record a hard delete writes.
const tombstoneType = "$streamDeleted"

// record is one event of the log. Records never change once written, so they
// are shared without copying.
type record struct {
	// pos is where the record starts (its commit and prepare position: the
	// server commits every gRPC write implicitly, so both are the record's
	// own log position); post is where the next record starts.
	pos, post   uint64
	stream      string
	revision    uint64
	id          uuid.UUID
	eventType   string
	contentType string
	data        []byte
	meta        []byte
	// created is .NET ticks (100 ns) since the Unix epoch: what the server
	// sends as the "created" metadata.
	created int64
}

// streamState is what the log knows of one stream.
type streamState struct {
	events    []*record // by revision
	tombstone *record
	// truncateBefore hides the events below it ($tb of the stream's
	// metadata); deletedStream marks a soft-deleted stream.
	truncateBefore uint64
}

func (st *streamState) last() int64       { return int64(len(st.events)) - 1 }
func (st *streamState) softDeleted() bool { return st.truncateBefore == deletedStream }

// visible reports whether reads find the stream: it has events that are not
// truncated and it is not soft-deleted.
func (st *streamState) visible() bool {
	return !st.softDeleted() && uint64(len(st.events)) > st.truncateBefore
}

// idInfo is where an event id was last written: the server's cache of
// committed event ids, which it consults for idempotency.
type idInfo struct {
	stream   string
	revision uint64
}

// eventLog is the whole database: one ordered log ($all) and the streams
// indexed over it. It is not safe for concurrent use; Server guards it.
type eventLog struct {
	records []*record
	streams map[string]*streamState
	ids     map[uuid.UUID]idInfo
	next    uint64
	now     func() time.Time
}

func newEventLog(now func() time.Time) *eventLog {
	return &eventLog{
		streams: make(map[string]*streamState),
		ids:     make(map[uuid.UUID]idInfo),
		next:    firstPosition,
		now:     now,
	}
}

// expectation is the expected revision of a write.
type expectation struct {
	kind     expectationKind
	revision uint64 // for expectRevision
}

type expectationKind int

const (
	expectAny expectationKind = iota
	expectNoStream
	expectStreamExists
	expectRevision
)

// version is the server's long form: -2 any, -1 no stream, -4 stream
// exists, else the revision.
func (e expectation) version() int64 {
	switch e.kind {
	case expectAny:
		return -2
	case expectNoStream:
		return -1
	case expectStreamExists:
		return -4
	}
	return int64(e.revision)
}

// decision is the outcome of the server's commit check.
type decision int

const (
	decideWrite decision = iota
	decideIdempotent
	decideWrongVersion
	decideDeleted
)

// check decides a write of ids to name the way the server's
// IndexWriter.CheckCommit does. For decideIdempotent, first and last are the
// revisions the ids already hold. current is the stream's last revision (-1
// when it has none).
func (l *eventLog) check(name string, exp expectation, ids []uuid.UUID) (d decision, current int64, first, last int64) {
	st := l.streams[name]
	if st == nil { // a completely new stream
		if exp.kind == expectAny || exp.kind == expectNoStream {
			return decideWrite, -1, -1, -1
		}
		return decideWrongVersion, -1, -1, -1
	}
	if st.tombstone != nil {
		return decideDeleted, deletedStream, -1, -1
	}
	cur := st.last()
	if exp.kind == expectStreamExists {
		if st.softDeleted() {
			return decideDeleted, cur, -1, -1
		}
		if cur < 0 {
			return decideWrongVersion, cur, -1, -1
		}
	}
	if exp.kind == expectAny || exp.kind == expectStreamExists {
		// Best effort on the server (a bounded cache of ids); always found here.
		start, end := int64(-1), int64(-1)
		for i, id := range ids {
			info, ok := l.ids[id]
			if !ok || info.stream != name {
				if i == 0 {
					return decideWrite, cur, -1, -1
				}
				return decideWrongVersion, cur, -1, -1 // corrupted idempotency
			}
			if i == 0 {
				start = int64(info.revision)
			}
			end = int64(info.revision)
		}
		if len(ids) == 0 {
			return decideWrite, cur, -1, -1
		}
		return decideIdempotent, cur, start, end
	}
	expected := exp.version() // -1 for no stream
	if expected < cur {
		n := expected
		for _, id := range ids {
			n++
			if n <= cur && st.events[n].id == id {
				continue
			}
			if n != expected+1 {
				return decideWrongVersion, cur, -1, -1 // corrupted idempotency
			}
			if exp.kind == expectNoStream && st.softDeleted() {
				return decideWrite, cur, -1, -1
			}
			return decideWrongVersion, cur, -1, -1
		}
		if n == expected {
			return decideWrongVersion, cur, -1, -1
		}
		return decideIdempotent, cur, expected + 1, n
	}
	if expected > cur {
		return decideWrongVersion, cur, -1, -1
	}
	return decideWrite, cur, -1, -1
}

// proposal is an event a client asks to write.
type proposal struct {
	id          uuid.UUID
	eventType   string
	contentType string
	data        []byte
	meta        []byte
}

// write appends events to name after a decideWrite and returns their
// records. A soft-deleted stream comes back to life: numbering continues and
// only the new events are visible, as on the server.
func (l *eventLog) write(name string, events []proposal) []*record {
	st := l.streams[name]
	if st == nil {
		st = &streamState{}
		l.streams[name] = st
	}
	undelete := st.softDeleted()
	first := uint64(len(st.events))
	out := make([]*record, 0, len(events))
	for i, e := range events {
		r := l.newRecord(name, first+uint64(i), e)
		st.events = append(st.events, r)
		l.ids[e.id] = idInfo{stream: name, revision: r.revision}
		out = append(out, r)
	}
	if undelete {
		l.writeMetadata(name, first)
	}
	return out
}

// softDelete hides name's events: it sets the truncate-before of its
// metadata to deletedStream, as the server's Delete does.
func (l *eventLog) softDelete(name string) *record {
	return l.writeMetadata(name, deletedStream)
}

// tombstone deletes name for ever: reads and writes fail from now on.
func (l *eventLog) tombstone(name string) *record {
	st := l.streams[name]
	if st == nil {
		st = &streamState{}
		l.streams[name] = st
	}
	r := l.newRecord(name, deletedStream, proposal{id: uuid.New(), eventType: tombstoneType, contentType: "application/octet-stream"})
	st.tombstone = r
	return r
}

// writeMetadata writes {"$tb": tb} to name's metadata stream ($$name) and
// applies it.
func (l *eventLog) writeMetadata(name string, tb uint64) *record {
	meta := "$$" + name
	data := []byte(`{"$tb":` + strconv.FormatUint(tb, 10) + `}`)
	recs := l.write(meta, []proposal{{id: uuid.New(), eventType: "$metadata", contentType: "application/json", data: data}})
	st := l.streams[name]
	if st == nil {
		st = &streamState{}
		l.streams[name] = st
	}
	st.truncateBefore = tb
	return recs[0]
}

func (l *eventLog) newRecord(name string, revision uint64, e proposal) *record {
	size := uint64(recordOverhead + len(name) + len(e.eventType) + len(e.data) + len(e.meta))
	r := &record{
		pos:         l.next,
		post:        l.next + size,
		stream:      name,
		revision:    revision,
		id:          e.id,
		eventType:   e.eventType,
		contentType: e.contentType,
		data:        e.data,
		meta:        e.meta,
		created:     l.now().UnixNano() / 100,
	}
	l.next = r.post
	l.records = append(l.records, r)
	return r
}

// streamEvents returns up to count events of name from revision from,
// forwards or backwards (from < 0: the end). errStreamDeleted: tombstoned;
// found false: reads do not see the stream.
func (l *eventLog) streamEvents(name string, backwards bool, from int64, count uint64) (out []*record, found bool, err error) {
	st := l.streams[name]
	if st == nil {
		return nil, false, nil
	}
	if st.tombstone != nil {
		return nil, true, errStreamDeleted
	}
	if !st.visible() {
		return nil, false, nil
	}
	low, high := int64(st.truncateBefore), st.last()
	if !backwards {
		for rev := max(from, low); rev <= high && uint64(len(out)) < count; rev++ {
			out = append(out, st.events[rev])
		}
		return out, true, nil
	}
	if from < 0 || from > high {
		from = high
	}
	for rev := from; rev >= low && uint64(len(out)) < count; rev-- {
		out = append(out, st.events[rev])
	}
	return out, true, nil
}

// errStreamDeleted is a read or write of a tombstoned stream.
var errStreamDeleted = fmt.Errorf("stream is deleted")

// indexFrom returns the index of the first record at or after pos.
func (l *eventLog) indexFrom(pos uint64) int {
	return sort.Search(len(l.records), func(i int) bool { return l.records[i].pos >= pos })
}

// indexAfter returns the index of the first record strictly after pos.
func (l *eventLog) indexAfter(pos uint64) int {
	return sort.Search(len(l.records), func(i int) bool { return l.records[i].pos > pos })
}

// allForwards returns up to count records from pos (inclusive, as the
// server's forward reads of $all are) that match.
func (l *eventLog) allForwards(pos uint64, count uint64, match func(*record) bool) []*record {
	var out []*record
	for i := l.indexFrom(pos); i < len(l.records) && uint64(len(out)) < count; i++ {
		if match(l.records[i]) {
			out = append(out, l.records[i])
		}
	}
	return out
}

// allBackwards returns up to count records that end at or before pos, newest
// first, that match. The server reads $all backwards by post-positions, so
// from an event's own position the read starts with the event before it.
func (l *eventLog) allBackwards(pos uint64, count uint64, match func(*record) bool) []*record {
	var out []*record
	i := sort.Search(len(l.records), func(i int) bool { return l.records[i].post > pos }) - 1
	for ; i >= 0 && uint64(len(out)) < count; i-- {
		if match(l.records[i]) {
			out = append(out, l.records[i])
		}
	}
	return out
}
