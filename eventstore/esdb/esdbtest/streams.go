package esdbtest

import (
	"context"
	"encoding/binary"
	"errors"
	"io"
	"math"
	"regexp"
	"strconv"
	"strings"

	"github.com/EventStore/EventStore-Client-Go/v4/protos/shared"
	"github.com/EventStore/EventStore-Client-Go/v4/protos/streams"
	"github.com/google/uuid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// defaultSearchWindow is the server's DefaultReadBatchSize: the search window
// of a filtered subscription whose request names none.
const defaultSearchWindow = 32

// subscriptionPage is how many records a subscription takes from the log at a
// time, under the lock.
const subscriptionPage = 256

// streamsService implements the Streams service of the gRPC API.
type streamsService struct {
	streams.UnimplementedStreamsServer
	s *Server
}

// Append implements Streams.Append: an options message, then the events.
func (h *streamsService) Append(srv streams.Streams_AppendServer) error {
	first, err := srv.Recv()
	if err != nil {
		return err
	}
	opts := first.GetOptions()
	if opts == nil {
		return status.Error(codes.InvalidArgument, "the first append message must carry the options")
	}
	name := string(opts.GetStreamIdentifier().GetStreamName())
	exp, expectedCase, err := appendExpectation(opts)
	if err != nil {
		return err
	}
	var events []proposal
	size := 0
	for {
		msg, err := srv.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return err
		}
		pm := msg.GetProposedMessage()
		if pm == nil {
			return status.Error(codes.InvalidArgument, "expected a proposed message")
		}
		p, err := toProposal(pm)
		if err != nil {
			return err
		}
		events = append(events, p)
		size += len(p.data) + len(p.meta) + len(p.eventType)
	}
	if limit := h.s.opts.maxAppendSize(); size > limit {
		// As the server: an RpcException the client passes on unclassified.
		_ = grpc.SetTrailer(srv.Context(), metadata.Pairs("exception", "maximum-append-size-exceeded", "maximum-append-size", strconv.Itoa(limit)))
		return status.Errorf(codes.InvalidArgument, "Maximum Append Size of %d Exceeded.", limit)
	}

	ids := make([]uuid.UUID, len(events))
	for i, e := range events {
		ids[i] = e.id
	}
	s := h.s
	s.mu.Lock()
	d, current, _, last := s.db.check(name, exp, ids)
	var resp *streams.AppendResp
	switch d {
	case decideDeleted:
		s.mu.Unlock()
		return streamDeletedError(srv.Context(), name)
	case decideWrongVersion:
		s.mu.Unlock()
		return srv.SendAndClose(wrongExpectedVersion(expectedCase, exp, current))
	case decideIdempotent:
		rec := s.db.streams[name].events[last]
		resp = success(int64(rec.revision), rec.pos, !s.opts.IdempotentWithoutPosition)
	case decideWrite:
		if len(events) == 0 {
			resp = success(current, 0, false)
			break
		}
		recs := s.db.write(name, events)
		s.notifyLocked()
		lastRec := recs[len(recs)-1]
		resp = success(int64(lastRec.revision), lastRec.pos, true)
	}
	s.mu.Unlock()
	return srv.SendAndClose(resp)
}

// appendExpectation reads the expected revision of an append and the case
// the client used, which the wrong-expected-version answer echoes.
func appendExpectation(opts *streams.AppendReq_Options) (expectation, string, error) {
	switch v := opts.GetExpectedStreamRevision().(type) {
	case *streams.AppendReq_Options_Any:
		return expectation{kind: expectAny}, "any", nil
	case *streams.AppendReq_Options_NoStream:
		return expectation{kind: expectNoStream}, "no_stream", nil
	case *streams.AppendReq_Options_StreamExists:
		return expectation{kind: expectStreamExists}, "stream_exists", nil
	case *streams.AppendReq_Options_Revision:
		return expectation{kind: expectRevision, revision: v.Revision}, "revision", nil
	}
	return expectation{}, "", status.Errorf(codes.InvalidArgument, "'%v' is not a valid expected stream revision", opts.GetExpectedStreamRevision())
}

// toProposal checks a proposed message as the server does: "type" and
// "content-type" metadata are required.
func toProposal(pm *streams.AppendReq_ProposedMessage) (proposal, error) {
	for _, key := range []string{"type", "content-type"} {
		if _, ok := pm.GetMetadata()[key]; !ok {
			return proposal{}, status.Errorf(codes.InvalidArgument, "Required Metadata Property '%s' is missing", key)
		}
	}
	id, err := uuidFromProto(pm.GetId())
	if err != nil {
		return proposal{}, status.Errorf(codes.InvalidArgument, "event id: %v", err)
	}
	return proposal{
		id:          id,
		eventType:   pm.GetMetadata()["type"],
		contentType: pm.GetMetadata()["content-type"],
		data:        clone(pm.GetData()),
		meta:        clone(pm.GetCustomMetadata()),
	}, nil
}

func clone(b []byte) []byte {
	if b == nil {
		return []byte{}
	}
	return append([]byte(nil), b...)
}

func success(revision int64, pos uint64, withPosition bool) *streams.AppendResp {
	ok := &streams.AppendResp_Success{}
	if revision < 0 {
		ok.CurrentRevisionOption = &streams.AppendResp_Success_NoStream{NoStream: &shared.Empty{}}
	} else {
		ok.CurrentRevisionOption = &streams.AppendResp_Success_CurrentRevision{CurrentRevision: uint64(revision)}
	}
	if withPosition {
		ok.PositionOption = &streams.AppendResp_Success_Position{Position: &streams.AppendResp_Position{CommitPosition: pos, PreparePosition: pos}}
	} else {
		ok.PositionOption = &streams.AppendResp_Success_NoPosition{NoPosition: &shared.Empty{}}
	}
	return &streams.AppendResp{Result: &streams.AppendResp_Success_{Success: ok}}
}

// wrongExpectedVersion fills both the current fields and the 20.6.0 ones, as
// the server does.
func wrongExpectedVersion(expectedCase string, exp expectation, current int64) *streams.AppendResp {
	w := &streams.AppendResp_WrongExpectedVersion{}
	switch expectedCase {
	case "any":
		w.ExpectedRevisionOption = &streams.AppendResp_WrongExpectedVersion_ExpectedAny{ExpectedAny: &shared.Empty{}}
		w.ExpectedRevisionOption_20_6_0 = &streams.AppendResp_WrongExpectedVersion_Any_20_6_0{Any_20_6_0: &shared.Empty{}}
	case "stream_exists":
		w.ExpectedRevisionOption = &streams.AppendResp_WrongExpectedVersion_ExpectedStreamExists{ExpectedStreamExists: &shared.Empty{}}
		w.ExpectedRevisionOption_20_6_0 = &streams.AppendResp_WrongExpectedVersion_StreamExists_20_6_0{StreamExists_20_6_0: &shared.Empty{}}
	case "no_stream":
		w.ExpectedRevisionOption = &streams.AppendResp_WrongExpectedVersion_ExpectedNoStream{ExpectedNoStream: &shared.Empty{}}
		w.ExpectedRevisionOption_20_6_0 = &streams.AppendResp_WrongExpectedVersion_ExpectedRevision_20_6_0{ExpectedRevision_20_6_0: math.MaxUint64}
	default:
		w.ExpectedRevisionOption = &streams.AppendResp_WrongExpectedVersion_ExpectedRevision{ExpectedRevision: exp.revision}
		w.ExpectedRevisionOption_20_6_0 = &streams.AppendResp_WrongExpectedVersion_ExpectedRevision_20_6_0{ExpectedRevision_20_6_0: exp.revision}
	}
	if current < 0 {
		w.CurrentRevisionOption = &streams.AppendResp_WrongExpectedVersion_CurrentNoStream{CurrentNoStream: &shared.Empty{}}
		w.CurrentRevisionOption_20_6_0 = &streams.AppendResp_WrongExpectedVersion_NoStream_20_6_0{NoStream_20_6_0: &shared.Empty{}}
	} else {
		w.CurrentRevisionOption = &streams.AppendResp_WrongExpectedVersion_CurrentRevision{CurrentRevision: uint64(current)}
		w.CurrentRevisionOption_20_6_0 = &streams.AppendResp_WrongExpectedVersion_CurrentRevision_20_6_0{CurrentRevision_20_6_0: uint64(current)}
	}
	return &streams.AppendResp{Result: &streams.AppendResp_WrongExpectedVersion_{WrongExpectedVersion: w}}
}

// deleteExpectation reads the expected revision of a delete or tombstone.
func deleteExpectation(v any) (expectation, error) {
	switch v := v.(type) {
	case *streams.DeleteReq_Options_Any, *streams.TombstoneReq_Options_Any:
		return expectation{kind: expectAny}, nil
	case *streams.DeleteReq_Options_NoStream, *streams.TombstoneReq_Options_NoStream:
		return expectation{kind: expectNoStream}, nil
	case *streams.DeleteReq_Options_StreamExists, *streams.TombstoneReq_Options_StreamExists:
		return expectation{kind: expectStreamExists}, nil
	case *streams.DeleteReq_Options_Revision:
		return expectation{kind: expectRevision, revision: v.Revision}, nil
	case *streams.TombstoneReq_Options_Revision:
		return expectation{kind: expectRevision, revision: v.Revision}, nil
	}
	return expectation{}, status.Errorf(codes.InvalidArgument, "'%v' is not a valid expected stream revision", v)
}

// checkDelete runs the commit check of a delete (a write of no event) and
// turns a refusal into the server's error. s.mu is held.
func (h *streamsService) checkDelete(ctx context.Context, name string, exp expectation) error {
	d, current, _, _ := h.s.db.check(name, exp, nil)
	switch d {
	case decideDeleted:
		return streamDeletedError(ctx, name)
	case decideWrongVersion:
		actual := ""
		if current >= 0 {
			actual = strconv.FormatInt(current, 10)
		}
		_ = grpc.SetTrailer(ctx, metadata.Pairs(
			"exception", "wrong-expected-version",
			"stream-name", name,
			"expected-version", strconv.FormatInt(exp.version(), 10),
			"actual-version", actual))
		return status.Errorf(codes.FailedPrecondition,
			"Delete failed due to WrongExpectedVersion. Stream: %s, Expected version: %d, Actual version: %s", name, exp.version(), actual)
	}
	return nil
}

// Delete implements Streams.Delete: a soft delete, which hides the stream
// from reads until it is written again. The answer always carries a position
// (the client dereferences it).
func (h *streamsService) Delete(ctx context.Context, req *streams.DeleteReq) (*streams.DeleteResp, error) {
	name := string(req.GetOptions().GetStreamIdentifier().GetStreamName())
	exp, err := deleteExpectation(req.GetOptions().GetExpectedStreamRevision())
	if err != nil {
		return nil, err
	}
	s := h.s
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := h.checkDelete(ctx, name, exp); err != nil {
		return nil, err
	}
	rec := s.db.softDelete(name)
	s.notifyLocked()
	return &streams.DeleteResp{PositionOption: &streams.DeleteResp_Position_{Position: &streams.DeleteResp_Position{CommitPosition: rec.pos, PreparePosition: rec.pos}}}, nil
}

// Tombstone implements Streams.Tombstone: a hard delete, for ever.
func (h *streamsService) Tombstone(ctx context.Context, req *streams.TombstoneReq) (*streams.TombstoneResp, error) {
	name := string(req.GetOptions().GetStreamIdentifier().GetStreamName())
	exp, err := deleteExpectation(req.GetOptions().GetExpectedStreamRevision())
	if err != nil {
		return nil, err
	}
	s := h.s
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := h.checkDelete(ctx, name, exp); err != nil {
		return nil, err
	}
	rec := s.db.tombstone(name)
	s.notifyLocked()
	return &streams.TombstoneResp{PositionOption: &streams.TombstoneResp_Position_{Position: &streams.TombstoneResp_Position{CommitPosition: rec.pos, PreparePosition: rec.pos}}}, nil
}

// Read implements Streams.Read: reads of a stream or of $all, and
// subscriptions to $all.
func (h *streamsService) Read(req *streams.ReadReq, srv streams.Streams_ReadServer) error {
	opts := req.GetOptions()
	if opts == nil {
		return status.Error(codes.InvalidArgument, "'options' is a required argument")
	}
	if opts.GetUuidOption() == nil {
		return status.Error(codes.InvalidArgument, "'uuidOption' is a required argument")
	}
	asString := opts.GetUuidOption().GetString_() != nil
	backwards := opts.GetReadDirection() == streams.ReadReq_Options_Backwards
	match, filtered, err := compileFilter(opts.GetFilter())
	if err != nil {
		return err
	}
	_, subscribe := opts.GetCountOption().(*streams.ReadReq_Options_Subscription)
	switch {
	case opts.GetStream() != nil && !subscribe && !filtered:
		return h.readStream(srv, opts.GetStream(), backwards, opts.GetCount(), asString)
	case opts.GetAll() != nil && !subscribe:
		return h.readAll(srv, opts.GetAll(), backwards, opts.GetCount(), match, asString)
	case opts.GetAll() != nil && subscribe && !backwards:
		return h.subscribeAll(srv, opts, match, filtered, asString)
	case opts.GetStream() != nil && subscribe:
		return status.Error(codes.Unimplemented, "esdbtest: subscriptions to a single stream are not implemented by the test server")
	}
	return status.Errorf(codes.InvalidArgument, "The combination of (%T, %T, %v, %v) is invalid.", opts.GetStreamOption(), opts.GetCountOption(), opts.GetReadDirection(), filtered)
}

func (h *streamsService) readStream(srv streams.Streams_ReadServer, so *streams.ReadReq_Options_StreamOptions, backwards bool, count uint64, asString bool) error {
	name := string(so.GetStreamIdentifier().GetStreamName())
	from := int64(0)
	switch v := so.GetRevisionOption().(type) {
	case *streams.ReadReq_Options_StreamOptions_Revision:
		from = int64(min(v.Revision, math.MaxInt64))
	case *streams.ReadReq_Options_StreamOptions_End:
		from = -1
		if !backwards {
			from = math.MaxInt64
		}
	case *streams.ReadReq_Options_StreamOptions_Start:
		from = 0
	}
	h.s.mu.Lock()
	recs, found, err := h.s.db.streamEvents(name, backwards, from, count)
	h.s.mu.Unlock()
	if errors.Is(err, errStreamDeleted) {
		return streamDeletedError(srv.Context(), name)
	}
	if !found {
		return srv.Send(&streams.ReadResp{Content: &streams.ReadResp_StreamNotFound_{StreamNotFound: &streams.ReadResp_StreamNotFound{
			StreamIdentifier: &shared.StreamIdentifier{StreamName: []byte(name)}}}})
	}
	for _, r := range recs {
		if err := srv.Send(eventMessage(r, asString)); err != nil {
			return err
		}
	}
	return nil
}

func (h *streamsService) readAll(srv streams.Streams_ReadServer, ao *streams.ReadReq_Options_AllOptions, backwards bool, count uint64, match func(*record) bool, asString bool) error {
	h.s.mu.Lock()
	var recs []*record
	switch v := ao.GetAllOption().(type) {
	case *streams.ReadReq_Options_AllOptions_Start:
		if !backwards {
			recs = h.s.db.allForwards(0, count, match)
		}
	case *streams.ReadReq_Options_AllOptions_End:
		if backwards {
			recs = h.s.db.allBackwards(math.MaxUint64, count, match)
		}
	case *streams.ReadReq_Options_AllOptions_Position:
		if v.Position.GetCommitPosition() != v.Position.GetPreparePosition() {
			h.s.mu.Unlock()
			return status.Error(codes.InvalidArgument, "Trying to read from an invalid position.")
		}
		if backwards {
			recs = h.s.db.allBackwards(v.Position.GetCommitPosition(), count, match)
		} else {
			recs = h.s.db.allForwards(v.Position.GetCommitPosition(), count, match)
		}
	}
	h.s.mu.Unlock()
	for _, r := range recs {
		if err := srv.Send(eventMessage(r, asString)); err != nil {
			return err
		}
	}
	return nil
}

// liveSubscription is a subscription being served; DropSubscriptions ends it
// through drop.
type liveSubscription struct {
	drop chan codes.Code
}

// subscribeAll serves a catch-up subscription to $all: the confirmation
// first (the client fails the subscription otherwise), then the events after
// the start, checkpoints (filtered subscriptions only) every checkpoint
// interval of considered events and when going live, a caught-up message,
// then live events as they are written.
func (h *streamsService) subscribeAll(srv streams.Streams_ReadServer, opts *streams.ReadReq_Options, match func(*record) bool, filtered bool, asString bool) error {
	interval := 0
	if filtered {
		f := opts.GetFilter()
		window := defaultSearchWindow
		if m, ok := f.GetWindow().(*streams.ReadReq_Options_FilterOptions_Max); ok && m.Max > 0 {
			window = int(m.Max)
		}
		if f.GetCheckpointIntervalMultiplier() == 0 {
			return status.Error(codes.InvalidArgument, "checkpointIntervalMultiplier must not be 0")
		}
		interval = window * int(f.GetCheckpointIntervalMultiplier())
	}
	s := h.s
	sub := &liveSubscription{drop: make(chan codes.Code, 1)}
	s.mu.Lock()
	var next int
	var checkpoint uint64 // the last position considered
	switch v := opts.GetAll().GetAllOption().(type) {
	case *streams.ReadReq_Options_AllOptions_Start:
		next = 0
		s.starts = append(s.starts, 0)
	case *streams.ReadReq_Options_AllOptions_End:
		next = len(s.db.records)
		if next > 0 {
			checkpoint = s.db.records[next-1].pos
		}
		s.starts = append(s.starts, math.MaxUint64)
	case *streams.ReadReq_Options_AllOptions_Position:
		next = s.db.indexAfter(v.Position.GetCommitPosition())
		checkpoint = v.Position.GetCommitPosition()
		s.starts = append(s.starts, checkpoint)
	}
	s.subs[sub] = struct{}{}
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.subs, sub)
		s.mu.Unlock()
	}()

	ctx := srv.Context()
	if err := srv.Send(&streams.ReadResp{Content: &streams.ReadResp_Confirmation{Confirmation: &streams.ReadResp_SubscriptionConfirmation{
		SubscriptionId: uuid.NewString()}}}); err != nil {
		return err
	}
	considered, caughtUp := 0, false
	for {
		s.mu.Lock()
		page := s.db.records[next:min(next+subscriptionPage, len(s.db.records))]
		changed := s.changed
		s.mu.Unlock()
		for _, r := range page {
			next++
			considered++
			checkpoint = r.pos
			if match(r) {
				if err := srv.Send(eventMessage(r, asString)); err != nil {
					return err
				}
			}
			if filtered && considered >= interval {
				considered = 0
				if err := sendCheckpoint(srv, checkpoint); err != nil {
					return err
				}
			}
		}
		if len(page) > 0 {
			select {
			case code := <-sub.drop:
				return dropped(code)
			default:
				continue
			}
		}
		if !caughtUp {
			caughtUp = true
			if filtered {
				if err := sendCheckpoint(srv, checkpoint); err != nil {
					return err
				}
			}
			if err := srv.Send(&streams.ReadResp{Content: &streams.ReadResp_CaughtUp_{CaughtUp: &streams.ReadResp_CaughtUp{}}}); err != nil {
				return err
			}
		}
		select {
		case <-changed:
		case code := <-sub.drop:
			return dropped(code)
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

func sendCheckpoint(srv streams.Streams_ReadServer, pos uint64) error {
	return srv.Send(&streams.ReadResp{Content: &streams.ReadResp_Checkpoint_{Checkpoint: &streams.ReadResp_Checkpoint{
		CommitPosition: pos, PreparePosition: pos}}})
}

// dropped is how a dropped subscription ends: cleanly for codes.OK, else
// with that status.
func dropped(code codes.Code) error {
	if code == codes.OK {
		return nil
	}
	return status.Error(code, "esdbtest: subscription dropped by the test server")
}

// compileFilter turns a read's filter into a predicate on records. filtered
// is false for no filter, when every record matches.
func compileFilter(f *streams.ReadReq_Options_FilterOptions) (match func(*record) bool, filtered bool, err error) {
	if f == nil {
		return func(*record) bool { return true }, false, nil
	}
	var expr *streams.ReadReq_Options_FilterOptions_Expression
	field := func(r *record) string { return r.stream }
	switch v := f.GetFilter().(type) {
	case *streams.ReadReq_Options_FilterOptions_StreamIdentifier:
		expr = v.StreamIdentifier
	case *streams.ReadReq_Options_FilterOptions_EventType:
		expr = v.EventType
		field = func(r *record) string { return r.eventType }
	default:
		return nil, false, status.Errorf(codes.InvalidArgument, "'%v' is not a valid filter", f)
	}
	if expr.GetRegex() != "" {
		re, err := regexp.Compile(expr.GetRegex())
		if err != nil {
			return nil, false, status.Errorf(codes.InvalidArgument, "filter regex: %v", err)
		}
		return func(r *record) bool { return re.MatchString(field(r)) }, true, nil
	}
	prefixes := expr.GetPrefix()
	return func(r *record) bool {
		for _, p := range prefixes {
			if strings.HasPrefix(field(r), p) {
				return true
			}
		}
		return false
	}, true, nil
}

// eventMessage is how the server sends a recorded event: with the "type",
// "content-type" and "created" metadata (the client calls log.Fatalf when
// "created" is missing) and the commit position.
func eventMessage(r *record, asString bool) *streams.ReadResp {
	return &streams.ReadResp{Content: &streams.ReadResp_Event{Event: &streams.ReadResp_ReadEvent{
		Event: &streams.ReadResp_ReadEvent_RecordedEvent{
			Id:               uuidToProto(r.id, asString),
			StreamIdentifier: &shared.StreamIdentifier{StreamName: []byte(r.stream)},
			StreamRevision:   r.revision,
			PreparePosition:  r.pos,
			CommitPosition:   r.pos,
			Metadata: map[string]string{
				"type":         r.eventType,
				"content-type": r.contentType,
				"created":      strconv.FormatInt(r.created, 10),
			},
			CustomMetadata: r.meta,
			Data:           r.data,
		},
		Position: &streams.ReadResp_ReadEvent_CommitPosition{CommitPosition: r.pos},
	}}}
}

// uuidToProto encodes id as the server does: two big-endian halves, or a
// string when the client asked for strings.
func uuidToProto(id uuid.UUID, asString bool) *shared.UUID {
	if asString {
		return &shared.UUID{Value: &shared.UUID_String_{String_: id.String()}}
	}
	return &shared.UUID{Value: &shared.UUID_Structured_{Structured: &shared.UUID_Structured{
		MostSignificantBits:  int64(binary.BigEndian.Uint64(id[:8])),
		LeastSignificantBits: int64(binary.BigEndian.Uint64(id[8:])),
	}}}
}

func uuidFromProto(u *shared.UUID) (uuid.UUID, error) {
	if s := u.GetStructured(); s != nil {
		var id uuid.UUID
		binary.BigEndian.PutUint64(id[:8], uint64(s.GetMostSignificantBits()))
		binary.BigEndian.PutUint64(id[8:], uint64(s.GetLeastSignificantBits()))
		return id, nil
	}
	return uuid.Parse(u.GetString_())
}
