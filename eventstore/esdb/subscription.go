package esdb

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/EventStore/EventStore-Client-Go/v4/esdb"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/tenancyhq/tenancy/eventstore"
)

// Filter settings of subscriptions: the server checkpoints every
// searchWindow*checkpointInterval events it considers, which bounds what a
// resubscription reads again after a drop.
const (
	searchWindow       = 32
	checkpointInterval = 1
)

// systemStreamsRegex is the server-side filter of a subscription without
// prefixes: every stream but the $-streams.
const systemStreamsRegex = `^[^$]`

// SubscribeAll implements eventstore.Subscriber: a catch-up subscription to
// $all after after, filtered on the server by stream name. The first server
// subscription is made before SubscribeAll returns (bounded by ctx and the
// operation timeout), so that an unreachable server or a refusal shows at
// once; afterwards the subscription lives until Close, resubscribing on its
// own when the server drops it.
func (s *Store) SubscribeAll(ctx context.Context, after eventstore.Position, filter eventstore.Filter) (eventstore.Subscription, error) {
	life, cancel := context.WithCancel(s.done)
	sub := &subscription{
		store:  s,
		filter: filter,
		server: s.serverFilter(filter),
		events: make(chan eventstore.RecordedEvent, s.opts.BatchSize),
		ended:  make(chan struct{}),
		life:   life,
		cancel: cancel,
	}
	first, err := s.subscribe(ctx, life, after, sub.server)
	if err != nil {
		cancel()
		return nil, s.closedErr(fmt.Errorf("subscribe to $all after %s: %w", after, err))
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		first.Close()
		cancel()
		return nil, ErrClosed
	}
	s.subs[sub] = struct{}{}
	s.mu.Unlock()
	sub.wg.Go(func() { sub.run(first, after) })
	return sub, nil
}

// serverFilter is the server-side filter for filter: its prefixes within the
// namespace, else the namespace, else every stream but the $-streams.
func (s *Store) serverFilter(filter eventstore.Filter) *esdb.SubscriptionFilter {
	if len(filter.StreamPrefixes) > 0 {
		prefixes := make([]string, len(filter.StreamPrefixes))
		for i, p := range filter.StreamPrefixes {
			prefixes[i] = s.ns + p
		}
		return &esdb.SubscriptionFilter{Type: esdb.StreamFilterType, Prefixes: prefixes}
	}
	if s.ns != "" {
		return &esdb.SubscriptionFilter{Type: esdb.StreamFilterType, Prefixes: []string{s.ns}}
	}
	return &esdb.SubscriptionFilter{Type: esdb.StreamFilterType, Regex: systemStreamsRegex}
}

// serverSubscription is a subscription of the client and the context its
// stream runs in.
type serverSubscription struct {
	*esdb.Subscription
	cancel context.CancelFunc
}

// Close ends the client's subscription and its stream's context.
func (ss *serverSubscription) Close() {
	_ = ss.Subscription.Close()
	ss.cancel()
}

// subscribe makes one server subscription after after, whose stream lives in
// life; ctx bounds only the setting up (with the operation timeout).
func (s *Store) subscribe(ctx, life context.Context, after eventstore.Position, filter *esdb.SubscriptionFilter) (*serverSubscription, error) {
	ctx, cancel := s.opContext(ctx)
	defer cancel()
	stream, cancelStream := context.WithCancel(life)
	var from esdb.AllPosition = esdb.Start{} // never the client's default, the end
	if !after.IsZero() {
		from = esdb.Position{Commit: after.Commit, Prepare: after.Prepare}
	}
	es, err := call(ctx, s.conn, func(_ context.Context, c *esdb.Client) (*esdb.Subscription, error) {
		return c.SubscribeToAll(stream, esdb.SubscribeToAllOptions{
			From:               from,
			Filter:             filter,
			MaxSearchWindow:    searchWindow,
			CheckpointInterval: checkpointInterval,
		})
	}, func(es *esdb.Subscription) { _ = es.Close() })
	if err != nil {
		cancelStream() // also ends a subscription still being set up
		return nil, err
	}
	return &serverSubscription{Subscription: es, cancel: cancelStream}, nil
}

// subscription is a catch-up subscription that outlives the server's: a
// goroutine (run) receives the events into a buffer that Next drains, and
// resubscribes after a drop from where it stopped.
type subscription struct {
	store  *Store
	filter eventstore.Filter
	server *esdb.SubscriptionFilter

	events chan eventstore.RecordedEvent
	ended  chan struct{} // closed when run returns
	err    error         // why run returned; set before ended is closed

	life   context.Context // ends on Close or Store.Close
	cancel context.CancelFunc
	wg     sync.WaitGroup
	once   sync.Once
}

// Next implements eventstore.Subscription: it waits for an event and returns
// it with the others already received, up to the batch size.
func (sub *subscription) Next(ctx context.Context) ([]eventstore.RecordedEvent, error) {
	var first eventstore.RecordedEvent
	select {
	case first = <-sub.events:
	default:
		select {
		case first = <-sub.events:
		case <-sub.ended:
			select {
			case first = <-sub.events: // received before it ended
			default:
				return nil, sub.err
			}
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	batch := make([]eventstore.RecordedEvent, 1, min(len(sub.events)+1, sub.store.opts.BatchSize))
	batch[0] = first
	for len(batch) < sub.store.opts.BatchSize {
		select {
		case e := <-sub.events:
			batch = append(batch, e)
		default:
			return batch, nil
		}
	}
	return batch, nil
}

// Close implements eventstore.Subscription: it ends the server subscription
// and the goroutine that follows it. Next then returns ErrClosed.
func (sub *subscription) Close() error {
	sub.once.Do(func() {
		sub.cancel()
		sub.wg.Wait()
		sub.store.mu.Lock()
		delete(sub.store.subs, sub)
		sub.store.mu.Unlock()
	})
	return nil
}

// run follows the server subscription first and, whenever the server drops
// it, makes another one after the last position received, with back-off,
// until Close or an error that a new attempt cannot cure.
func (sub *subscription) run(first *serverSubscription, after eventstore.Position) {
	log := sub.store.log
	defer func() {
		if sub.err == nil {
			sub.err = ErrClosed
		}
		close(sub.ended)
	}()
	cursor, failures := after, 0
	ss := first
	for {
		if ss == nil {
			delay := sub.backoff(failures)
			if !sleep(sub.life, delay) {
				return
			}
			var err error
			ss, err = sub.store.subscribe(sub.life, sub.life, cursor, sub.server)
			if err != nil {
				if sub.life.Err() != nil {
					return
				}
				if permanent(err) {
					sub.err = fmt.Errorf("resubscribe to $all after %s: %w", cursor, err)
					log.Error("subscription to $all ended: the server refuses it", "after", cursor, "err", err)
					return
				}
				failures++
				log.Warn("resubscribe to $all failed; retrying", "after", cursor, "attempt", failures, "err", err)
				continue
			}
			log.Info("resubscribed to $all", "after", cursor)
		}
		err := sub.follow(ss, &cursor, &failures)
		ss.Close()
		ss = nil
		if sub.life.Err() != nil {
			return
		}
		if permanent(err) {
			sub.err = fmt.Errorf("subscription to $all after %s: %w", cursor, err)
			log.Error("subscription to $all ended: the server refuses it", "after", cursor, "err", err)
			return
		}
		failures++
		log.Warn("subscription to $all dropped; resubscribing", "after", cursor, "err", err)
	}
}

// follow hands the events of ss to Next until ss is dropped or the
// subscription closed. cursor moves to each event received and to each
// checkpoint beyond it: everything up to it was delivered or filtered out.
// Events at or before cursor, which a new server subscription cannot send
// but a defensive check costs nothing, are skipped.
func (sub *subscription) follow(ss *serverSubscription, cursor *eventstore.Position, failures *int) error {
	for {
		ev := ss.Recv()
		switch {
		case ev.SubscriptionDropped != nil:
			return ev.SubscriptionDropped.Error
		case ev.EventAppeared != nil:
			*failures = 0
			r := ev.EventAppeared.OriginalEvent()
			p := toPosition(r.Position)
			if p.Compare(*cursor) <= 0 {
				continue
			}
			*cursor = p
			e, ok := sub.store.feedEvent(r, sub.filter)
			if !ok {
				continue
			}
			select {
			case sub.events <- e:
			case <-sub.life.Done():
				return sub.life.Err()
			}
		case ev.CheckPointReached != nil:
			*failures = 0
			if cp := (eventstore.Position{Commit: ev.CheckPointReached.Commit, Prepare: ev.CheckPointReached.Prepare}); cp.Compare(*cursor) > 0 {
				*cursor = cp
			}
		case ev.CaughtUp != nil:
			sub.store.log.Debug("subscription to $all caught up; live", "after", *cursor)
		}
	}
}

// backoff is the wait before resubscribing after failures failed attempts
// in a row: a short pause after a first drop, doubling, capped, jittered.
func (sub *subscription) backoff(failures int) time.Duration {
	o := sub.store.opts
	d := o.ResubscribeMin
	for i := 1; i < failures && d < o.ResubscribeMax; i++ {
		d *= 2
	}
	d = min(d, o.ResubscribeMax)
	return d/2 + rand.N(d/2+1)
}

// permanent reports whether err means that resubscribing cannot help: the
// server refuses the subscription itself.
func permanent(err error) bool {
	if hasCode(err, esdb.ErrorCodeAccessDenied) || hasCode(err, esdb.ErrorCodeUnauthenticated) {
		return true
	}
	switch status.Code(err) { // finds the gRPC status inside the client's errors too
	case codes.PermissionDenied, codes.Unauthenticated, codes.InvalidArgument:
		return true
	}
	return false
}

// sleep waits d or until ctx ends; it reports whether d passed.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
