package sdk

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/tenancyhq/tenancy/aggregate"
)

// cloudEventTypePrefix starts the CloudEvents type of every tenancy event
// (dev.tenancy.TenantSuspended), as the service publishes it.
const cloudEventTypePrefix = "dev.tenancy."

// cloudEvent is the part of the service's CloudEvents JSON (see
// projections/natspub.CloudEvent) the cache reads.
type cloudEvent struct {
	ID            string          `json:"id"`
	Type          string          `json:"type"`
	Subject       string          `json:"subject"`
	Time          time.Time       `json:"time"`
	SchemaVersion int             `json:"schemaversion"`
	StreamVersion uint64          `json:"streamversion"`
	Position      string          `json:"position"`
	CorrelationID string          `json:"correlationid,omitempty"`
	CausationID   string          `json:"causationid,omitempty"`
	Actor         string          `json:"actor,omitempty"`
	TraceParent   string          `json:"traceparent,omitempty"`
	Data          json.RawMessage `json:"data"`
}

// event is one decoded tenant event from the stream.
type event struct {
	tenant   uuid.UUID
	version  uint64
	position string
	env      aggregate.Envelope
}

// decodeEvent reads a message of the stream into the envelope the server
// folds: the event's data goes through aggregate.DecodeEvent, the server's
// own decoder (upcasters included). Personal fields arrive sealed; they
// are decoded as the opaque strings they are and dropped by slim.
func decodeEvent(data []byte) (event, error) {
	var ce cloudEvent
	if err := json.Unmarshal(data, &ce); err != nil {
		return event{}, fmt.Errorf("decode CloudEvent: %w", err)
	}
	id, err := uuid.Parse(ce.Subject)
	if err != nil {
		return event{}, fmt.Errorf("CloudEvent %s: subject %q is not a tenant id", ce.ID, ce.Subject)
	}
	typ, ok := strings.CutPrefix(ce.Type, cloudEventTypePrefix)
	if !ok {
		return event{tenant: id}, fmt.Errorf("CloudEvent %s: type %q is not a tenancy event", ce.ID, ce.Type)
	}
	eventID, err := uuid.Parse(ce.ID)
	if err != nil {
		return event{tenant: id}, fmt.Errorf("CloudEvent %s: id is not a UUID", ce.ID)
	}
	e, err := aggregate.DecodeEvent(typ, ce.SchemaVersion, ce.Data)
	if err != nil {
		return event{tenant: id}, fmt.Errorf("CloudEvent %s of tenant %s: %w", ce.ID, id, err)
	}
	return event{tenant: id, version: ce.StreamVersion, position: ce.Position, env: aggregate.Envelope{
		EventID: eventID, Type: typ, SchemaVersion: ce.SchemaVersion, Stream: aggregate.StreamName(id),
		Version: ce.StreamVersion, OccurredAt: ce.Time,
		Metadata: aggregate.Metadata{OccurredAt: ce.Time, CorrelationID: ce.CorrelationID, CausationID: ce.CausationID,
			Actor: ce.Actor, TraceParent: ce.TraceParent},
		Data: e,
	}}, nil
}

// dropMode is what a test makes the cache do with a message.
type dropMode int

const (
	keepMessage dropMode = iota
	// dropEvent loses the event but not its place in the stream: a
	// per-tenant version gap.
	dropEvent
	// dropMessage loses the message as if the stream had: a gap in the
	// stream sequence.
	dropMessage
)

// errStreamReset: the stream is not the one being followed any more.
var errStreamReset = errors.New("the event stream was recreated or truncated")

// follower is the state of following the stream, owned by the follow
// goroutine and the message handler.
type follower struct {
	handleMu sync.Mutex
	gen      uint64 // the consumer generation whose messages count

	probeMu      sync.Mutex
	probePending bool
	probeAt      int64  // unix ns: when the stream's last sequence was asked
	probeSeq     uint64 // what it was

	healthMu sync.Mutex
	health   NoticeKind // NoticeFresh, NoticeStale, or 0 (not yet known)
	failing  bool
}

// follow runs until Close: it follows the stream, and starts again (with
// backoff) whenever following fails.
func (c *Cache) follow() {
	defer c.wg.Done()
	var created time.Time
	backoff := 100 * time.Millisecond
	for c.ctx.Err() == nil {
		began := time.Now()
		err := c.followStream(&created)
		if c.ctx.Err() != nil {
			return
		}
		if time.Since(began) > time.Minute {
			backoff = 100 * time.Millisecond
		}
		c.followFailed(err)
		select {
		case <-c.ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 5*time.Second)
	}
}

func (c *Cache) followFailed(err error) {
	c.recordError(err)
	c.fol.healthMu.Lock()
	first := !c.fol.failing
	c.fol.failing = true
	c.fol.healthMu.Unlock()
	if first {
		c.log.Warn("following the tenancy event stream failed; answering from the last known state", "err", err, "staleness", c.Staleness().Round(time.Millisecond))
		c.notify(Notice{Kind: NoticeError, Err: err, Staleness: c.Staleness()})
	}
}

// followStream consumes the stream with an ordered consumer (in stream
// order, resumed by nats.go after a reconnect) and probes it every
// SyncInterval, until the stream is reset or the cache closes.
func (c *Cache) followStream(created *time.Time) error {
	js, err := jetstream.New(c.nc)
	if err != nil {
		return fmt.Errorf("JetStream: %w", err)
	}
	ctx, cancel := context.WithTimeout(c.ctx, c.opts.FetchTimeout)
	defer cancel()
	stream, err := js.Stream(ctx, c.opts.Stream)
	if err != nil {
		return fmt.Errorf("stream %s: %w", c.opts.Stream, err)
	}
	info := stream.CachedInfo()
	cfg := jetstream.OrderedConsumerConfig{FilterSubjects: []string{c.opts.SubjectPrefix + ".>"}, DeliverPolicy: jetstream.DeliverLastPolicy}
	c.fol.handleMu.Lock()
	c.fol.gen++
	gen := c.fol.gen
	switch seq := c.streamSeq.Load(); {
	case !created.IsZero() && !info.Created.Equal(*created), seq > info.State.LastSeq:
		c.invalidateAll("the stream was recreated or truncated")
		c.streamSeq.Store(0)
	case seq > 0:
		// Resume after the last message handled; if the stream no longer
		// has it, the sequence jump tells.
		cfg.DeliverPolicy, cfg.OptStartSeq = jetstream.DeliverByStartSequencePolicy, seq+1
	}
	c.fol.handleMu.Unlock()
	*created = info.Created
	cons, err := stream.OrderedConsumer(ctx, cfg)
	if err != nil {
		return fmt.Errorf("consumer on %s: %w", c.opts.Stream, err)
	}
	cc, err := cons.Consume(func(msg jetstream.Msg) { c.handle(gen, msg) },
		jetstream.ConsumeErrHandler(func(_ jetstream.ConsumeContext, err error) {
			c.recordError(err)
			c.log.Debug("event stream consumer", "err", err)
		}))
	if err != nil {
		return fmt.Errorf("consume %s: %w", c.opts.Stream, err)
	}
	defer cc.Stop()
	c.fol.healthMu.Lock()
	c.fol.failing = false
	c.fol.healthMu.Unlock()

	tick := time.NewTicker(c.opts.SyncInterval)
	defer tick.Stop()
	for {
		if err := c.probe(stream, *created); errors.Is(err, errStreamReset) || errors.Is(err, jetstream.ErrStreamNotFound) {
			return err
		} else if err != nil {
			c.followFailed(err)
		}
		select {
		case <-c.ctx.Done():
			return nil
		case <-tick.C:
		}
	}
}

// probe asks the stream for its last sequence. Once every message up to it
// has been handled, the cache is known to have been up to date as of the
// moment it asked.
func (c *Cache) probe(stream jetstream.Stream, created time.Time) error {
	at := c.now().UnixNano()
	handled := c.streamSeq.Load() // before asking: messages keep coming meanwhile
	ctx, cancel := context.WithTimeout(c.ctx, max(c.opts.SyncInterval, 500*time.Millisecond))
	defer cancel()
	info, err := stream.Info(ctx)
	if err != nil {
		return fmt.Errorf("stream %s: %w", c.opts.Stream, err)
	}
	if !info.Created.Equal(created) || info.State.LastSeq < handled {
		return errStreamReset
	}
	c.fol.probeMu.Lock()
	defer c.fol.probeMu.Unlock()
	seq := c.streamSeq.Load()
	c.fol.healthMu.Lock()
	c.fol.failing = false
	c.fol.healthMu.Unlock()
	switch {
	case seq >= info.State.LastSeq:
		c.fol.probePending = false
		c.markSynced(at)
	case !c.fol.probePending:
		c.fol.probePending, c.fol.probeAt, c.fol.probeSeq = true, at, info.State.LastSeq
	}
	return nil
}

// handle is the consumer's message handler; nats.go calls it for one
// message at a time, in stream order.
func (c *Cache) handle(gen uint64, msg jetstream.Msg) {
	c.fol.handleMu.Lock()
	defer c.fol.handleMu.Unlock()
	if gen != c.fol.gen {
		return // a message of a consumer already replaced
	}
	meta, err := msg.Metadata()
	if err != nil {
		c.log.Warn("event stream message without metadata", "err", err)
		return
	}
	seq := meta.Sequence.Stream
	ev, decodeErr := decodeEvent(msg.Data())
	mode := keepMessage
	if hook := c.testDrop.Load(); hook != nil && decodeErr == nil {
		mode = (*hook)(ev.tenant, ev.version)
	}
	if mode == dropMessage {
		return
	}
	last := c.streamSeq.Load()
	if last != 0 && seq <= last {
		return // handled already
	}
	if last != 0 && seq > last+1 {
		c.invalidateAll(fmt.Sprintf("stream sequence jumped from %d to %d: events were lost", last, seq))
	}
	switch {
	case decodeErr != nil:
		// An event the cache cannot read: its tenant cannot be trusted.
		c.log.Error("unreadable event on the stream; its tenant will be fetched again", "seq", seq, "err", decodeErr)
		c.recordError(decodeErr)
		if ev.tenant != uuid.Nil {
			c.invalidateTenant(ev.tenant)
		}
	case mode == dropEvent:
	default:
		if ev.position != "" {
			c.lastPos.Store(&ev.position)
		}
		c.apply(ev)
	}
	c.fol.probeMu.Lock()
	c.streamSeq.Store(seq)
	if c.fol.probePending && seq >= c.fol.probeSeq {
		c.fol.probePending = false
		c.markSynced(c.fol.probeAt)
	}
	c.fol.probeMu.Unlock()
}

// apply folds an event into its tenant's state, if the tenant is held.
func (c *Cache) apply(ev event) {
	e := c.tenants.get(ev.tenant)
	if e == nil {
		if !c.opts.AllTenants {
			return // not asked about: fetched (with this event) on first use
		}
		e, _ = c.tenants.getOrAdd(ev.tenant)
	}
	e.mu.Lock()
	if e.loading != nil {
		e.pending = append(e.pending, ev)
		e.mu.Unlock()
		return
	}
	s := e.cur.Load()
	if s == nil || s.epoch != c.epoch.Load() {
		switch {
		case c.opts.AllTenants && ev.version == 0 && s == nil:
			s = c.newState(&aggregate.Tenant{}, c.now().UnixNano(), c.epoch.Load()) // a new tenant: folded from its first event
		case c.opts.AllTenants && c.listing.Load():
			e.pending = append(e.pending, ev) // folded onto the listing's state
			e.mu.Unlock()
			return
		case c.opts.AllTenants:
			e.pending = append(e.pending[:0], ev)
			c.fetchLocked(e, ev.position)
			e.mu.Unlock()
			return
		default:
			e.mu.Unlock()
			return // fetched on next use
		}
	}
	next, ok := c.advance(s, ev)
	if !ok {
		c.stats.gaps.Add(1)
		c.log.Warn("an event skipped a version of its tenant; fetching the tenant again", "tenant", ev.tenant, "event_version", ev.version, "known_version", s.version)
		e.cur.Store(nil) // readers wait for the fetch rather than read a state known to be behind
		e.pending = append(e.pending[:0], ev)
		c.fetchLocked(e, ev.position)
		e.mu.Unlock()
		return
	}
	old := e.cur.Load()
	if next != old {
		e.cur.Store(next)
	}
	e.mu.Unlock()
	if next != old {
		c.notifyChange(ev.tenant, old, next)
	}
}

// invalidateAll makes every tenant's state be fetched again before use.
func (c *Cache) invalidateAll(why string) {
	c.epoch.Add(1)
	c.stats.invalidations.Add(1)
	c.log.Warn("every tenant will be fetched again before it is used", "why", why)
}

// invalidateTenant makes one tenant's state be fetched again before use.
func (c *Cache) invalidateTenant(id uuid.UUID) {
	if e := c.tenants.get(id); e != nil {
		e.cur.Store(nil)
	}
}

// markSynced records that the cache was up to date as of at (unix ns).
// The caller holds probeMu.
func (c *Cache) markSynced(at int64) {
	if at > c.syncedAt.Load() {
		c.syncedAt.Store(at)
	}
	c.syncedOnce.Do(func() {
		if c.blindFetches.Load() > 0 {
			// Fetched before the stream was reached: without a position
			// to wait for, such a fetch may predate events the stream
			// delivered before the cache was following it.
			c.invalidateAll("tenants were fetched before the event stream was reached")
		}
		close(c.synced)
	})
	c.checkHealth()
}

// watch reports staleness: a notice when the cache becomes stale (past
// MaxStaleness) and when it is fresh again.
func (c *Cache) watch() {
	defer c.wg.Done()
	tick := time.NewTicker(c.opts.SyncInterval)
	defer tick.Stop()
	for {
		select {
		case <-c.ctx.Done():
			return
		case <-tick.C:
			c.checkHealth()
		}
	}
}

func (c *Cache) checkHealth() {
	staleness := c.Staleness()
	bound := c.opts.MaxStaleness
	if bound <= 0 {
		bound = DefaultMaxStaleness // no bound on answers; still say when stale
	}
	kind := NoticeKind(0)
	switch {
	case c.syncedAt.Load() != 0 && staleness <= bound:
		kind = NoticeFresh
	case c.now().Sub(c.opened) > bound:
		kind = NoticeStale
	}
	c.fol.healthMu.Lock()
	changed := kind != 0 && kind != c.fol.health
	if changed {
		c.fol.health = kind
	}
	c.fol.healthMu.Unlock()
	if !changed {
		return
	}
	if kind == NoticeStale {
		c.log.Warn("the entitlement cache is stale", "staleness", staleness.Round(time.Millisecond), "bound", bound, "when_stale", c.opts.WhenStale)
	}
	c.notify(Notice{Kind: kind, Staleness: staleness})
}
