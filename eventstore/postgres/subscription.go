package postgres

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tenancyhq/tenancy/eventstore"
)

// errClosed ends Next on a closed subscription.
var errClosed = errors.New("subscription closed")

// A subscription whose next events are committed but wait for an older
// transaction to end pauses minWait, then twice as long each time, up to
// maxWait (or the poll interval if shorter): the end of that transaction is
// announced by no notification when it rolls back or wrote no event.
const (
	minWait = 2 * time.Millisecond
	maxWait = 100 * time.Millisecond
)

// SubscribeAll implements eventstore.Subscriber. The subscription holds a
// connection of its own (not one of the pool's, so that subscriptions never
// starve appends), LISTENs on it, and reads the feed on it: in batches while
// catching up, then, with nothing left to read, it waits for a notification
// or the poll interval. Catch-up and live are one loop over one cursor, so
// the switch can neither skip nor repeat an event.
//
// ctx bounds only the setting up; the subscription lasts until Close. A
// connection lost on the way is made again by the next Next.
func (s *Store) SubscribeAll(ctx context.Context, after eventstore.Position, filter eventstore.Filter) (eventstore.Subscription, error) {
	done, cancel := context.WithCancel(context.Background())
	sub := &subscription{
		store:    s,
		after:    after,
		patterns: likePatterns(filter),
		done:     done,
		cancel:   cancel,
	}
	if err := sub.connect(ctx); err != nil {
		cancel()
		return nil, fmt.Errorf("subscribe after %s: %w", after, err)
	}
	return sub, nil
}

// subscription is a catch-up subscription on its own connection.
type subscription struct {
	store    *Store
	patterns []string
	// done ends when Close is called; cancel ends it.
	done   context.Context
	cancel context.CancelFunc

	mu sync.Mutex // serialises Next and Close; guards what follows
	// after is the cursor: every event up to it was returned or filtered
	// out. It need not be an event's position.
	after eventstore.Position
	conn  *pgx.Conn // nil until connected, or after the connection was lost
}

// connect makes the subscription's connection and LISTENs on it, if it has
// none that is open.
func (sub *subscription) connect(ctx context.Context) error {
	if sub.conn != nil && !sub.conn.IsClosed() {
		return nil
	}
	sub.drop()
	conn, err := pgx.ConnectConfig(ctx, sub.store.pool.Config().ConnConfig.Copy())
	if err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	if _, err := conn.Exec(ctx, "LISTEN "+notifyChannel); err != nil {
		conn.Close(context.Background())
		return fmt.Errorf("listen %s: %w", notifyChannel, err)
	}
	sub.conn = conn
	return nil
}

// drop closes the connection, if any.
func (sub *subscription) drop() {
	if sub.conn == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	sub.conn.Close(ctx)
	sub.conn = nil
}

// Next implements eventstore.Subscription.
func (sub *subscription) Next(parent context.Context) ([]eventstore.RecordedEvent, error) {
	ctx, cancel := context.WithCancel(parent)
	defer cancel()
	defer context.AfterFunc(sub.done, cancel)()
	sub.mu.Lock()
	defer sub.mu.Unlock()

	backoff := time.Duration(0)
	for {
		if err := ctx.Err(); err != nil {
			return nil, sub.ended(parent, err)
		}
		if err := sub.connect(ctx); err != nil {
			return nil, sub.ended(parent, fmt.Errorf("subscription after %s: %w", sub.after, err))
		}
		drainNotifications(sub.conn)
		p, err := readFeed(ctx, sub.conn, sub.after, sub.patterns, sub.store.batchSize)
		if err != nil {
			sub.drop()
			return nil, sub.ended(parent, fmt.Errorf("subscription after %s: %w", sub.after, err))
		}
		if len(p.events) > 0 {
			sub.after = p.events[len(p.events)-1].Position
			return p.events, nil
		}
		// No event up to the horizon matched: skip them all at once.
		if horizon := (eventstore.Position{Commit: p.xmin}); horizon.Compare(sub.after) > 0 {
			sub.after = horizon
		}
		// Committed events waiting for an older transaction become readable
		// when it ends, which no notification announces: look again soon.
		// Otherwise sleep until an append notifies, or the poll interval.
		wait := sub.store.pollInterval
		if p.waiting() {
			backoff = min(max(2*backoff, minWait), maxWait, sub.store.pollInterval)
			wait = backoff
		} else {
			backoff = 0
		}
		wctx, wcancel := context.WithTimeout(ctx, wait)
		_, err = sub.conn.WaitForNotification(wctx)
		wcancel()
		if err != nil && ctx.Err() == nil && wctx.Err() == nil {
			sub.drop() // the connection failed; the next round makes another
		}
	}
}

// ended is the error Next returns when err stopped it: errClosed once the
// subscription is closed, the caller's ctx.Err() once its context ended.
func (sub *subscription) ended(parent context.Context, err error) error {
	if sub.done.Err() != nil {
		return errClosed
	}
	if parent.Err() != nil {
		return parent.Err()
	}
	return err
}

// drainNotifications discards the notifications conn has already received:
// the read that follows sees what they announced.
func drainNotifications(conn *pgx.Conn) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel() // only what is buffered; never wait
	for {
		if n, _ := conn.WaitForNotification(ctx); n == nil {
			return
		}
	}
}

// Close implements eventstore.Subscription: it ends a Next in progress and
// closes the connection.
func (sub *subscription) Close() error {
	sub.cancel()
	sub.mu.Lock()
	defer sub.mu.Unlock()
	sub.drop()
	return nil
}
