// Package natspub is the projection that publishes every tenant event to
// NATS JetStream, for billing, e-mail, analytics and other subscribers.
//
// Each event goes to subject tenancy.events.<EventType>.<tenant id> of the
// stream TENANCY_EVENTS as a CloudEvents 1.0 structured JSON message, with
// header Nats-Msg-Id set to the event id. The runner moves the projection's
// checkpoint only after Apply returns, and Apply returns only once JetStream
// has acknowledged (stored) every event of the batch: delivery is
// at-least-once from the event store to the stream, and the stream's
// de-duplication by Nats-Msg-Id turns a re-publish after a crash or an
// outage into exactly one stored message (within the duplicate window).
package natspub

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/tenancyhq/tenancy/aggregate"
	"github.com/tenancyhq/tenancy/eventstore"
	"github.com/tenancyhq/tenancy/projections"
	"github.com/tenancyhq/tenancy/tenantlog"
)

// OutsideEffects tells the runner that Apply publishes to NATS and writes
// nothing in its transaction, so it takes no row lock before Apply.
func (p *Publisher) OutsideEffects() bool { return true }

// Name is the projection's name in projection_checkpoints.
const Name = "nats-publisher"

// Message conventions.
const (
	// ContentType is the Content-Type header of every message: structured
	// CloudEvents JSON.
	ContentType = "application/cloudevents+json"
	// TypePrefix starts a CloudEvent's type: dev.tenancy.TenantSuspended.
	TypePrefix = "dev.tenancy."
	// DefaultSource is the CloudEvents source when Options.Source is empty.
	DefaultSource = "tenancy"
	// DefaultAckTimeout bounds the wait for a batch's acknowledgements.
	DefaultAckTimeout = 10 * time.Second
	// stallTimeout bounds the wait for the next acknowledgement of a batch.
	stallTimeout = 3 * time.Second
)

// Options configure a Publisher. The zero value is usable.
type Options struct {
	// Source is the CloudEvents source attribute (default "tenancy"), e.g.
	// the deployment's URI.
	Source string
	// AckTimeout bounds how long Apply waits for JetStream to acknowledge a
	// batch once it is sent (default 10 s); past it the batch counts as not
	// published, the runner backs off and publishes it again.
	AckTimeout time.Duration
	// Stream, when set, makes the publisher create or update the stream
	// (EnsureStream) before its first publish and after the server answers
	// that no stream takes the subject, so the service needs no NATS at
	// start-up and heals a deleted stream. Nil: the caller ensures it.
	Stream *StreamOptions
	// Logger receives the publisher's logs; default: discard.
	Logger *slog.Logger
}

// Publisher is the NATS JetStream projection. Make it with New and give it
// to a projections.Runner; the runner calls Apply from one goroutine.
type Publisher struct {
	js      jetstream.JetStream
	source  string
	timeout time.Duration
	stream  *StreamOptions
	log     *slog.Logger
	pubOpts []jetstream.PublishOpt
	// streamReady: the stream was ensured (only used with Options.Stream).
	streamReady atomic.Bool
}

// New returns a publisher on js. Use one connection per publisher (Dial
// makes a suitable one): the order of a batch on the stream is the order of
// its messages on that connection.
func New(js jetstream.JetStream, opts Options) *Publisher {
	if opts.Source == "" {
		opts.Source = DefaultSource
	}
	if opts.AckTimeout <= 0 {
		opts.AckTimeout = DefaultAckTimeout
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	p := &Publisher{
		js:      js,
		source:  opts.Source,
		timeout: opts.AckTimeout,
		stream:  opts.Stream,
		log:     opts.Logger.With("projection", Name),
		pubOpts: []jetstream.PublishOpt{
			// No retry inside nats.go after "no responders": it would
			// re-send that one message later, behind the rest of the batch.
			// The whole batch is retried instead, in order.
			jetstream.WithRetryAttempts(0),
			// When the ack window is full, wait as long as for an ack.
			jetstream.WithStallWait(opts.AckTimeout),
		},
	}
	if nc := js.Conn(); nc != nil && nc.Opts.ReconnectBufSize >= 0 {
		p.log.Warn("the NATS connection buffers publishes while reconnecting, which can store a batch out of order after a disconnect; connect with natspub.Dial or nats.ReconnectBufSize(-1)")
	}
	return p
}

// Name implements projections.Projection.
func (p *Publisher) Name() string { return Name }

// Filter implements projections.Projection: tenant streams only.
func (p *Publisher) Filter() eventstore.Filter {
	return eventstore.Filter{StreamPrefixes: []string{aggregate.StreamPrefix}}
}

// Apply implements projections.Projection: it publishes events in feed order
// and returns once JetStream has stored every one of them. tx is not used:
// the effect is outside the database, and the runner commits the checkpoint
// after Apply returns.
//
// Why an asynchronous batch stays in order: the messages go out one after
// the other on a single connection; TCP keeps their order, the server reads
// a connection's messages in order and the stream stores them in the order
// it receives them. Publishing asynchronously only means not waiting for
// each ack before sending the next message, so a tenant's events (and the
// whole feed) reach the stream in feed order.
//
// A partial failure (the connection drops, the server stops, an ack does
// not come within AckTimeout) stores at most a prefix of the batch: the
// server handles the messages in order, nats.go neither retries one message
// on its own nor (with Dial's connection) replays publishes buffered while
// reconnecting, and Apply stops sending at the first refused publish. Apply
// then returns an error wrapping projections.ErrUnavailable; the runner
// rolls back (the checkpoint stays before the batch), backs off and calls
// Apply again with the same events, from the first. JetStream's
// de-duplication by Nats-Msg-Id drops the copies already stored (acked as
// duplicates) and stores the rest after them: each event once, in order.
// After the duplicate window a copy would be stored again, which is why
// subscribers de-duplicate by event id as well. (A message the stream
// refuses for itself, one larger than it accepts, is the event's fault:
// the runner halts in front of that event.)
func (p *Publisher) Apply(ctx context.Context, _ pgx.Tx, events []projections.Event) error {
	if len(events) == 0 {
		return nil
	}
	nc := p.js.Conn()
	if nc != nil && !nc.IsConnected() {
		return fmt.Errorf("nats publisher: not connected to NATS (%s): %w", strings.ToLower(nc.Status().String()), projections.ErrUnavailable)
	}
	var reconnects uint64
	if nc != nil {
		reconnects = nc.Stats().Reconnects
	}
	if err := p.ensureStream(ctx); err != nil {
		return err
	}
	futures := make([]jetstream.PubAckFuture, 0, len(events))
	for _, ev := range events {
		msg, err := Message(ev.RecordedEvent, p.source)
		if err != nil {
			// The event's fault: a plain error, so the runner isolates it.
			return fmt.Errorf("nats publisher: %w", err)
		}
		f, err := p.js.PublishMsgAsync(msg, p.pubOpts...)
		if err != nil {
			return p.publishError(fmt.Sprintf("publish event %s (%s)", ev.ID, ev.Position), err)
		}
		futures = append(futures, f)
	}

	timer := time.NewTimer(p.timeout)
	defer timer.Stop()
	// The acks of a connection that dropped never come (they were replies
	// to it): a lost server (killed, cut off) fails the batch at once,
	// rather than after the whole AckTimeout, so the runner re-sends it on
	// the new connection, or another replica takes over, within moments.
	watch := time.NewTicker(50 * time.Millisecond)
	defer watch.Stop()
	// Acks that stop coming on a live connection (the stream's leader was
	// lost and a new one elected: what was sent to the old one is never
	// acknowledged) fail the batch after stallTimeout without one, rather
	// than the whole AckTimeout; the re-sent copies are dropped by id.
	stallAfter := min(stallTimeout, p.timeout)
	stall := time.NewTimer(stallAfter)
	defer stall.Stop()
	duplicates := 0
	for i := 0; i < len(futures); {
		f := futures[i]
		select {
		case <-stall.C:
			return fmt.Errorf("nats publisher: no acknowledgement for %s with %d of %d events not acknowledged: %w",
				stallAfter, len(futures)-i, len(futures), projections.ErrUnavailable)
		case <-watch.C:
			if nc != nil && (!nc.IsConnected() || nc.Stats().Reconnects != reconnects) {
				return fmt.Errorf("nats publisher: the connection to NATS dropped with %d of %d events not acknowledged: %w",
					len(futures)-i, len(futures), projections.ErrUnavailable)
			}
			continue
		case ack := <-f.Ok():
			if ack.Duplicate {
				duplicates++
			}
			stall.Reset(stallAfter)
		case err := <-f.Err():
			ev := events[i]
			return p.publishError(fmt.Sprintf("publish event %s (%s)", ev.ID, ev.Position), err)
		case <-timer.C:
			return fmt.Errorf("nats publisher: %d of %d events not acknowledged within %s: %w",
				len(futures)-i, len(futures), p.timeout, projections.ErrUnavailable)
		case <-ctx.Done():
			return fmt.Errorf("nats publisher: waiting for acks: %w", context.Cause(ctx))
		}
		i++
	}
	if duplicates > 0 {
		p.log.Info("re-published events the stream already held; it dropped the copies",
			"events", len(events), "duplicates", duplicates, "from", events[0].Position, "to", events[len(events)-1].Position)
	}
	return nil
}

// ensureStream makes the stream exist before the first publish when the
// publisher owns it (Options.Stream).
func (p *Publisher) ensureStream(ctx context.Context) error {
	if p.stream == nil || p.streamReady.Load() {
		return nil
	}
	if err := EnsureStream(ctx, p.js, *p.stream); err != nil {
		return fmt.Errorf("nats publisher: %w: %w", err, projections.ErrUnavailable)
	}
	p.streamReady.Store(true)
	return nil
}

// publishError classifies a failed publish. A message too large for the
// server is the event's fault (a plain error: the runner retries, then
// isolates and records that event). Anything else, a lost connection, a
// missing stream, a timeout, a full store, is the target being unavailable:
// the runner backs off and resumes, blaming no event.
func (p *Publisher) publishError(what string, err error) error {
	var apiErr *jetstream.APIError
	if errors.Is(err, nats.ErrMaxPayload) ||
		(errors.As(err, &apiErr) && apiErr.ErrorCode == jetstream.JSErrCodeStreamMessageExceedsMaximum) {
		return fmt.Errorf("nats publisher: %s: %w", what, err)
	}
	if errors.Is(err, jetstream.ErrNoStreamResponse) || errors.Is(err, nats.ErrNoResponders) ||
		(errors.As(err, &apiErr) && apiErr.ErrorCode == jetstream.JSErrCodeStreamNotFound) {
		p.streamReady.Store(false)
		if p.stream == nil {
			return fmt.Errorf("nats publisher: %s: no stream takes subject %s.* (create stream %s, see EnsureStream): %w: %w",
				what, SubjectPrefix, StreamName, err, projections.ErrUnavailable)
		}
	}
	if errors.Is(err, nats.ErrReconnectBufExceeded) || errors.Is(err, nats.ErrDisconnected) || errors.Is(err, nats.ErrConnectionClosed) {
		return fmt.Errorf("nats publisher: %s: lost the connection to NATS (%w): %w", what, err, projections.ErrUnavailable)
	}
	return fmt.Errorf("nats publisher: %s: %w: %w", what, err, projections.ErrUnavailable)
}

// CloudEvent is the JSON of every message on TENANCY_EVENTS: a CloudEvents
// 1.0 event in structured mode, with the event's envelope as extension
// attributes. Subscribers decode messages into it.
type CloudEvent struct {
	SpecVersion string `json:"specversion"`
	// ID is the event id: stable across re-publishing, the key to
	// de-duplicate by.
	ID string `json:"id"`
	// Source is Options.Source.
	Source string `json:"source"`
	// Type is "dev.tenancy." + the event type, e.g. dev.tenancy.TenantCreated.
	Type string `json:"type"`
	// Subject is the tenant id.
	Subject string `json:"subject"`
	// Time is when the event occurred (the command's decision time).
	Time            time.Time `json:"time"`
	DataContentType string    `json:"datacontenttype"`
	// SchemaVersion is the schema version of Data: always the current one.
	SchemaVersion int `json:"schemaversion"`
	// StreamVersion is the event's place in its tenant's stream, from 0:
	// a subscriber can tell a gap or an old event from it.
	StreamVersion uint64 `json:"streamversion"`
	// Position is the event's global position (eventstore.Position.String).
	Position      string `json:"position"`
	CorrelationID string `json:"correlationid,omitempty"`
	CausationID   string `json:"causationid,omitempty"`
	Actor         string `json:"actor,omitempty"`
	// TraceParent is the W3C trace context of the command, when it had one.
	TraceParent string `json:"traceparent,omitempty"`
	// Data is the event's JSON in the current schema, as the event holds it.
	Data json.RawMessage `json:"data"`
}

// Message builds the NATS message of a recorded tenant event: its subject,
// the headers Nats-Msg-Id (the event id), Content-Type and, when the
// command was traced, traceparent, and the CloudEvent JSON. Data in the
// current schema goes out as the event store holds it; older schema
// versions are upcast first. Personal data is neither redacted nor
// decrypted here: the event's data goes out as it is.
func Message(ev eventstore.RecordedEvent, source string) (*nats.Msg, error) {
	tenant, err := tenantlog.TenantID(ev.Stream)
	if err != nil {
		return nil, err
	}
	// Current-schema data is only compacted (Postgres's jsonb hands it
	// back with spaces), which also proves it is JSON.
	var compact bytes.Buffer
	data, version := ev.Data, ev.SchemaVersion
	if current := aggregate.SchemaVersion(ev.Type); current != 0 && version == current && json.Compact(&compact, ev.Data) == nil {
		data = compact.Bytes()
	} else {
		e, err := aggregate.DecodeEvent(ev.Type, ev.SchemaVersion, ev.Data)
		if err != nil {
			return nil, fmt.Errorf("%s@%d: %w", ev.Stream, ev.Version, err)
		}
		if data, version, err = aggregate.EncodeEvent(e); err != nil {
			return nil, fmt.Errorf("%s@%d: %w", ev.Stream, ev.Version, err)
		}
	}
	// The envelope's fields, read the way tenantlog.Decode reads them,
	// without decoding the data into its Go type: on the publisher's hot
	// path that would double the CPU per event for the same bytes.
	var meta aggregate.Metadata
	if len(ev.Metadata) > 0 {
		if meta, err = readMetadata(ev.Metadata); err != nil {
			return nil, fmt.Errorf("%s@%d: metadata: %w", ev.Stream, ev.Version, err)
		}
	}
	occurred := meta.OccurredAt
	if occurred.IsZero() {
		occurred = ev.RecordedAt
	}
	id, tenantID := ev.ID.String(), tenant.String()
	body := appendCloudEvent(make([]byte, 0, 512+len(data)), CloudEvent{
		SpecVersion:     "1.0",
		ID:              id,
		Source:          source,
		Type:            TypePrefix + ev.Type,
		Subject:         tenantID,
		Time:            occurred.UTC(),
		DataContentType: "application/json",
		SchemaVersion:   version,
		StreamVersion:   ev.Version,
		Position:        ev.Position.String(),
		CorrelationID:   meta.CorrelationID,
		CausationID:     meta.CausationID,
		Actor:           meta.Actor,
		TraceParent:     meta.TraceParent,
		Data:            data,
	})
	header := nats.Header{
		jetstream.MsgIDHeader: []string{id},
		"Content-Type":        []string{ContentType},
	}
	if meta.TraceParent != "" {
		// W3C trace context as a header too, for instrumentation that reads
		// headers (OpenTelemetry's NATS propagation) rather than the body.
		header["traceparent"] = []string{meta.TraceParent}
	}
	return &nats.Msg{Subject: Subject(ev.Type, tenantID), Header: header, Data: body}, nil
}

// appendCloudEvent appends ce as JSON, as json.Marshal would write it
// (same attributes, same order, same time format) at a fraction of the
// cost. ce.Data must be compact, valid JSON.
func appendCloudEvent(b []byte, ce CloudEvent) []byte {
	b = append(b, `{"specversion":`...)
	b = appendJSONString(b, ce.SpecVersion)
	b = append(b, `,"id":`...)
	b = appendJSONString(b, ce.ID)
	b = append(b, `,"source":`...)
	b = appendJSONString(b, ce.Source)
	b = append(b, `,"type":`...)
	b = appendJSONString(b, ce.Type)
	b = append(b, `,"subject":`...)
	b = appendJSONString(b, ce.Subject)
	b = append(b, `,"time":"`...)
	b = ce.Time.AppendFormat(b, time.RFC3339Nano)
	b = append(b, `","datacontenttype":`...)
	b = appendJSONString(b, ce.DataContentType)
	b = append(b, `,"schemaversion":`...)
	b = strconv.AppendInt(b, int64(ce.SchemaVersion), 10)
	b = append(b, `,"streamversion":`...)
	b = strconv.AppendUint(b, ce.StreamVersion, 10)
	b = append(b, `,"position":`...)
	b = appendJSONString(b, ce.Position)
	for _, ext := range [...]struct{ name, value string }{
		{`,"correlationid":`, ce.CorrelationID},
		{`,"causationid":`, ce.CausationID},
		{`,"actor":`, ce.Actor},
		{`,"traceparent":`, ce.TraceParent},
	} {
		if ext.value != "" {
			b = append(b, ext.name...)
			b = appendJSONString(b, ext.value)
		}
	}
	b = append(b, `,"data":`...)
	b = append(b, ce.Data...)
	return append(b, '}')
}

// appendJSONString appends s as a JSON string. The common case (printable
// ASCII without quotes or backslashes: ids, type names) is copied as is;
// anything else is left to encoding/json.
func appendJSONString(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c >= 0x7f || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			q, _ := json.Marshal(s) // a string always marshals
			return append(b, q...)
		}
	}
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"')
}
