// Package projections turns the global event feed into durable effects: the
// Postgres read model, the NATS publisher, process managers.
//
// The Runner drives one Projection: it makes sure a single replica projects
// at a time (a Postgres advisory lock), catches up from the projection's
// checkpoint and then follows the feed live, applies each batch and moves the
// checkpoint in one transaction, and retries, isolates and records events the
// projection cannot apply (see projection_failures).
package projections

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"math/rand/v2"
	"os"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"go.opentelemetry.io/otel/trace"

	"github.com/tenancyhq/tenancy/aggregate"
	"github.com/tenancyhq/tenancy/eventstore"
)

// Projection turns events into some durable effect.
type Projection interface {
	// Name identifies the projection: its checkpoint row, its failures and its
	// leadership lock are keyed by it, so it must never change.
	Name() string
	// Filter selects the events the projection sees, e.g.
	// StreamPrefixes: []string{"tenant-"}.
	Filter() eventstore.Filter
	// Apply handles a batch inside tx. The runner then moves this projection's
	// checkpoint in the same tx and commits: so a crash never applies an event
	// twice nor skips one for projections whose effect is in tx; projections
	// with an outside effect (NATS publish) do it inside Apply and return only
	// after it is acknowledged, so a crash re-delivers (at-least-once).
	//
	// Apply may be called again with the same events after a failure, and with
	// a single event when the runner looks for the one that fails. It must not
	// commit or roll back tx.
	Apply(ctx context.Context, tx pgx.Tx, events []Event) error
}

// Event is one event of the feed as a projection receives it: the record as
// stored and, when the runner has a decoder (Options.Decode), the envelope
// it decodes to. The runner decodes each record once for its projection, so
// projections never decode themselves; an event that does not decode is a
// failing event like one that does not apply.
type Event struct {
	eventstore.RecordedEvent
	Envelope aggregate.Envelope
}

// Decode hands records to a projection as Events, decoded with decode (nil:
// records only). Rebuilds and verifications that apply a projection
// outside a runner use it as the runner does.
func Decode(records []eventstore.RecordedEvent, decode func(eventstore.RecordedEvent) (aggregate.Envelope, error)) ([]Event, error) {
	out := make([]Event, len(records))
	for i, r := range records {
		out[i].RecordedEvent = r
		if decode == nil {
			continue
		}
		env, err := decode(r)
		if err != nil {
			return nil, err
		}
		out[i].Envelope = env
	}
	return out, nil
}

// Feed is the part of the event store a runner reads: the global feed and a
// catch-up subscription to it.
type Feed interface {
	eventstore.FeedReader
	eventstore.Subscriber
}

// FailurePolicy says what the runner does with an event the projection still
// cannot apply after Options.MaxAttempts tries.
type FailurePolicy int

const (
	// Halt records the event in projection_failures and stops the projection
	// in front of it (state "halted") until an operator retries or skips it.
	// It is the default: a read model with a hole in it is worse than a late one.
	Halt FailurePolicy = iota
	// Skip records the event in projection_failures, logs it as an error and
	// moves the checkpoint past it.
	Skip
)

// String reads "halt" or "skip".
func (p FailurePolicy) String() string {
	switch p {
	case Halt:
		return "halt"
	case Skip:
		return "skip"
	default:
		return fmt.Sprintf("FailurePolicy(%d)", int(p))
	}
}

// Options tune a Runner. The zero value is usable: every field has a default.
type Options struct {
	// Logger receives the runner's logs; default: discard.
	Logger *slog.Logger
	// Holder identifies this replica in the checkpoint row and in logs;
	// default "hostname:pid".
	Holder string
	// MaxAttempts is how often a failing batch, and then each of its events
	// alone, is tried before the failing event is recorded; default 5.
	MaxAttempts int
	// BackoffBase and BackoffMax bound the exponential, jittered wait between
	// tries, and between attempts to restart after an infrastructure error;
	// defaults 100ms and 10s.
	BackoffBase time.Duration
	BackoffMax  time.Duration
	// OnFailure is what happens to an event that still fails after
	// MaxAttempts; default Halt.
	OnFailure FailurePolicy
	// LockPollInterval is how often a waiting runner tries to take the lead
	// and how often the leader checks its lock connection: the bound on how
	// long a takeover or a lost lock takes to notice; default 1s.
	LockPollInterval time.Duration
	// AsynchronousCommit commits batches without waiting for the WAL flush
	// (synchronous_commit = off). It is safe for projections whose effect is
	// in the transaction: a database crash loses the effect and the
	// checkpoint together, and the events are applied again. It spares a
	// disk flush per batch.
	AsynchronousCommit bool
	// Linger, when set, is how long a live runner lets events gather after
	// a batch of fewer than lingerBelow events before it reads again: under
	// a steady stream of commands it then commits a few large batches
	// instead of many small ones (each batch is one transaction with its
	// checkpoint), at the price of at most Linger more lag. After an idle
	// spell the first event is read at once.
	Linger time.Duration
	// Decode, when set, decodes each record for the projection (the tenant
	// log's codec for projections of tenant events); see Event.
	Decode func(eventstore.RecordedEvent) (aggregate.Envelope, error)
	// OnBatch, when set, is told of every committed batch (for metrics).
	OnBatch func(projection string, events int, took time.Duration)
	// Tracer, when set, records a span per event applied, continuing the
	// trace whose context the event's metadata carries (trace_parent).
	Tracer trace.Tracer
}

func (o Options) withDefaults() Options {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Holder == "" {
		host, err := os.Hostname()
		if err != nil || host == "" {
			host = "unknown"
		}
		o.Holder = fmt.Sprintf("%s:%d", host, os.Getpid())
	}
	if o.MaxAttempts <= 0 {
		o.MaxAttempts = 5
	}
	if o.BackoffBase <= 0 {
		o.BackoffBase = 100 * time.Millisecond
	}
	if o.BackoffMax <= 0 {
		o.BackoffMax = 10 * time.Second
	}
	if o.BackoffMax < o.BackoffBase {
		o.BackoffMax = o.BackoffBase
	}
	if o.LockPollInterval <= 0 {
		o.LockPollInterval = time.Second
	}
	return o
}

// OutsideEffects is implemented by a projection whose Apply acts outside
// the database (and writes nothing in its transaction) and returns true:
// its batch transaction then takes no lock before Apply (see commitBatch).
type OutsideEffects interface {
	OutsideEffects() bool
}

// ErrUnavailable is wrapped by a projection's Apply when something outside
// the database that it needs is down (the NATS server, say). The runner then
// rolls back, blames no event, and retries after a capped back-off for as long
// as the outage lasts, resuming from its checkpoint.
var ErrUnavailable = errors.New("projection target unavailable")

// ErrHalted is matched (errors.Is) by the error Run returns when the
// projection is halted on an event it cannot apply.
var ErrHalted = errors.New("projection halted")

// HaltedError says which projection halted and on which event. It matches
// ErrHalted.
type HaltedError struct {
	Projection string
	// EventID and Position are zero when the runner found the projection
	// already halted (by another replica or an earlier run).
	EventID  uuid.UUID
	Position eventstore.Position
	// Err is the projection's error (or the recorded one, as text).
	Err error
}

// Error names the projection, the event and the projection's error.
func (e *HaltedError) Error() string {
	if e.EventID == uuid.Nil {
		return fmt.Sprintf("projection %s halted: %v", e.Projection, e.Err)
	}
	return fmt.Sprintf("projection %s halted at event %s (position %s): %v", e.Projection, e.EventID, e.Position, e.Err)
}

// Is makes errors.Is(err, ErrHalted) true.
func (e *HaltedError) Is(target error) bool { return target == ErrHalted }

// Unwrap returns the projection's error.
func (e *HaltedError) Unwrap() error { return e.Err }

// errFenced: the checkpoint is no longer where this leadership left it, or
// another leadership (or an operator's reset or skip) raised the epoch. The
// runner must stop writing and take the lead afresh.
var errFenced = errors.New("checkpoint moved by another leader or an operator")

// errLockLost: the connection holding the advisory lock broke.
var errLockLost = errors.New("leadership lock connection lost")

// Runner drives one projection: one active instance across all replicas,
// catch-up from its checkpoint then live, exactly-once for effects inside the
// batch's transaction. Make one with NewRunner, call Run once.
type Runner struct {
	pool *pgxpool.Pool
	feed Feed
	p    Projection
	opts Options
	log  *slog.Logger
	name string
	key  int64
}

// NewRunner returns a runner for p that keeps its checkpoint in pool's
// database (tables of migration 003) and reads events from feed.
func NewRunner(pool *pgxpool.Pool, feed Feed, p Projection, opts Options) *Runner {
	opts = opts.withDefaults()
	name := p.Name()
	return &Runner{
		pool: pool,
		feed: feed,
		p:    p,
		opts: opts,
		log:  opts.Logger.With("projection", name, "holder", opts.Holder),
		name: name,
		key:  lockKey(name),
	}
}

// lockKey is the advisory-lock key of a projection: a stable 64-bit hash of
// its name, in a namespace of its own.
func lockKey(name string) int64 {
	h := fnv.New64a()
	h.Write([]byte("tenancy.projection\x00" + name))
	return int64(h.Sum64())
}

// Run projects until ctx ends, then returns nil. It waits for the lead (the
// projection's advisory lock), catches up from the checkpoint, then follows
// the feed live. When it loses the lead (lock connection broken, checkpoint
// moved under it) it stops projecting at once and waits for the lead again;
// infrastructure errors are logged and retried with back-off.
//
// When the projection halts on an event it cannot apply (OnFailure Halt), or
// is found halted, Run releases the lead and returns an error matching
// ErrHalted (a *HaltedError): the service should log it loudly and keep
// running; an operator clears it with RetryFailures or SkipFailure, and the
// next Run resumes. Every replica's Run returns the same way.
func (r *Runner) Run(ctx context.Context) error {
	if r.name == "" {
		return errors.New("projection runner: projection has no name")
	}
	failures := 0
	for {
		conn, err := r.awaitLead(ctx)
		if err != nil {
			return nil // only ctx ends the wait
		}
		progressed, err := r.lead(ctx, conn)
		var movedBy string
		if errors.Is(err, errFenced) {
			movedBy = r.movedBy() // before another replica's claim clears it
		}
		r.release(conn)
		if ctx.Err() != nil {
			return nil
		}
		var halted *HaltedError
		switch {
		case errors.As(err, &halted):
			r.log.Error("projection halted: fix it and retry its failures, or skip the event (RetryFailures, SkipFailure)", "err", err)
			return fmt.Errorf("run projection %s: %w", r.name, err)
		case errors.Is(err, errFenced):
			if movedBy != "" {
				r.log.Info("checkpoint moved by an operator; taking the lead again from there", "by", movedBy)
			} else {
				r.log.Warn("lost the lead: checkpoint moved by another leader or an operator; taking it again", "err", err)
			}
			failures = 0
			continue
		}
		if progressed {
			failures = 0
		}
		failures++
		delay := r.backoff(failures)
		if errors.Is(err, ErrUnavailable) {
			// An unreachable target (NATS electing a stream leader, a
			// database failing over) costs nothing to ask again: its
			// recovery is noticed within unavailableRetry, not after a
			// back-off grown to BackoffMax during the outage.
			delay = min(delay, unavailableRetry)
			r.log.Warn("projection target unavailable; retrying", "err", err, "retry_in", delay)
		} else {
			r.log.Error("projection stopped; restarting", "err", err, "retry_in", delay)
		}
		if !sleep(ctx, delay) {
			return nil
		}
	}
}

// movedBy says which operator's move of the checkpoint fenced this runner
// (a rebuild's switch-over, a reset, a skip), "" if none: then another
// leader took it.
func (r *Runner) movedBy() string {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var by *string
	if err := r.pool.QueryRow(ctx, `SELECT moved_by FROM projection_checkpoints WHERE name = $1`, r.name).Scan(&by); err != nil || by == nil {
		return ""
	}
	return *by
}

// awaitLead opens a dedicated connection and polls pg_try_advisory_lock on it
// until it gets the lock; the lock lives as long as that session (so the
// pool must reach Postgres directly or through a session-mode pooler). It
// returns only the locked connection or ctx's error.
func (r *Runner) awaitLead(ctx context.Context) (*pgx.Conn, error) {
	cfg := r.pool.Config().ConnConfig
	var conn *pgx.Conn
	waiting := false
	for {
		if conn == nil {
			c, err := pgx.ConnectConfig(ctx, cfg)
			if err != nil {
				if ctx.Err() != nil {
					return nil, ctx.Err()
				}
				r.log.Warn("connect for leadership lock", "err", err)
			} else {
				conn = c
			}
		}
		if conn != nil {
			var ok bool
			err := conn.QueryRow(ctx, "SELECT pg_try_advisory_lock($1)", r.key).Scan(&ok)
			switch {
			case err != nil:
				if ctx.Err() == nil {
					r.log.Warn("try leadership lock", "err", err)
				}
				closeConn(conn)
				conn = nil
			case ok:
				r.log.Info("took the lead")
				return conn, nil
			case !waiting:
				r.log.Info("another replica leads; waiting")
				waiting = true
			}
		}
		if !sleep(ctx, r.opts.LockPollInterval) {
			if conn != nil {
				closeConn(conn)
			}
			return nil, ctx.Err()
		}
	}
}

// release gives up the lead: it marks the checkpoint idle (if this
// leadership still owns it), unlocks and closes the lock connection.
func (r *Runner) release(conn *pgx.Conn) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if !conn.IsClosed() {
		if _, err := conn.Exec(ctx, "SELECT pg_advisory_unlock($1)", r.key); err != nil {
			r.log.Warn("release leadership lock", "err", err)
		}
	}
	closeConn(conn)
	r.log.Info("released the lead")
}

func closeConn(conn *pgx.Conn) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_ = conn.Close(ctx) // closing also ends the session and with it the lock
}

// lead projects while this runner holds the lock on conn. It returns when ctx
// ends, the lock connection breaks, the checkpoint is moved under it, the
// projection halts, or the feed or database fails. progressed reports whether
// any batch was committed.
func (r *Runner) lead(ctx context.Context, conn *pgx.Conn) (progressed bool, err error) {
	leadCtx, cancel := context.WithCancelCause(ctx)
	var wg sync.WaitGroup
	wg.Go(func() { r.watchLock(leadCtx, conn, cancel) })
	defer func() {
		cancel(nil)
		wg.Wait()
	}()

	l, err := r.claim(leadCtx)
	defer func() {
		if l != nil {
			progressed = l.progressed
			r.markIdle(l)
		}
	}()
	if err != nil {
		return false, r.leadErr(leadCtx, err)
	}
	r.log.Info("projecting", "from", l.pos, "epoch", l.epoch)

	sub, err := r.feed.SubscribeAll(leadCtx, l.pos, r.p.Filter())
	if err != nil {
		return false, r.leadErr(leadCtx, fmt.Errorf("subscribe after %s: %w", l.pos, err))
	}
	defer sub.Close()
	for {
		batch, err := sub.Next(leadCtx)
		if err != nil {
			return false, r.leadErr(leadCtx, fmt.Errorf("next events after %s: %w", l.pos, err))
		}
		if len(batch) == 0 {
			continue
		}
		if err := r.project(leadCtx, l, batch); err != nil {
			return false, r.leadErr(leadCtx, err)
		}
		if r.opts.Linger > 0 && len(batch) < lingerBelow {
			select {
			case <-leadCtx.Done():
			case <-time.After(r.opts.Linger):
			}
		}
	}
}

// lingerBelow is the batch size under which a runner with Options.Linger
// lets events gather before it reads again.
const lingerBelow = 100

// leadErr prefers the reason leadCtx ended (lock lost, ctx cancelled) over
// the error it caused, but never hides a halt.
func (r *Runner) leadErr(leadCtx context.Context, err error) error {
	if errors.Is(err, ErrHalted) || leadCtx.Err() == nil {
		return err
	}
	return context.Cause(leadCtx)
}

// watchLock pings the lock connection every LockPollInterval and cancels the
// leadership the moment it fails: a broken session has lost its lock, and
// another replica may already lead.
func (r *Runner) watchLock(ctx context.Context, conn *pgx.Conn, cancel context.CancelCauseFunc) {
	t := time.NewTicker(r.opts.LockPollInterval)
	defer t.Stop()
	timeout := max(5*time.Second, 2*r.opts.LockPollInterval)
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		// Not derived from ctx: cancelling a ping half-way would close the
		// connection, and with it the lock, before release can mark idle.
		pctx, pcancel := context.WithTimeout(context.WithoutCancel(ctx), timeout)
		err := conn.Ping(pctx)
		pcancel()
		if err != nil {
			r.log.Error("leadership lock connection lost; stopping", "err", err)
			cancel(fmt.Errorf("%w: %w", errLockLost, err))
			return
		}
	}
}

// project applies one batch from the subscription: whole, with retries; if
// it keeps failing, one event at a time to find the failing one, which is
// then recorded and halts the projection or is skipped.
func (r *Runner) project(ctx context.Context, l *leadership, batch []eventstore.RecordedEvent) error {
	attempts, err := r.applyWithRetries(ctx, l, batch)
	var fail *applyError
	if !errors.As(err, &fail) {
		return err
	}
	if len(batch) == 1 {
		return r.failed(ctx, l, batch[0], attempts, fail)
	}
	r.log.Warn("batch keeps failing; applying its events one at a time to find the failing one",
		"events", len(batch), "from", batch[0].Position, "to", batch[len(batch)-1].Position, "err", fail.err)
	for i := range batch {
		one := batch[i : i+1]
		attempts, err := r.applyWithRetries(ctx, l, one)
		if err == nil {
			continue
		}
		if !errors.As(err, &fail) {
			return err
		}
		if err := r.failed(ctx, l, batch[i], attempts, fail); err != nil {
			return err
		}
	}
	return nil
}

// applyWithRetries commits events, retrying an apply failure with back-off up
// to MaxAttempts times. It returns at once on any other error (lost lead,
// infrastructure, ctx), and after the first failure of a single event that an
// operator already marked skipped.
func (r *Runner) applyWithRetries(ctx context.Context, l *leadership, events []eventstore.RecordedEvent) (int, error) {
	for attempt := 1; ; attempt++ {
		err := r.commitBatch(ctx, l, events)
		if ctx.Err() != nil {
			// Whatever failed, it failed because the lead ended.
			return attempt, context.Cause(ctx)
		}
		var fail *applyError
		if err == nil || !errors.As(err, &fail) {
			return attempt, err
		}
		if len(events) == 1 && attempt == 1 {
			skipped, err := isSkipped(ctx, r.pool, r.name, events[0].ID)
			if err != nil {
				return attempt, err
			}
			if skipped {
				fail.operatorSkipped = true
				return attempt, fail
			}
		}
		if attempt >= r.opts.MaxAttempts {
			return attempt, fail
		}
		delay := r.backoff(attempt)
		r.log.Warn("apply failed; retrying", "events", len(events), "first", events[0].Position,
			"attempt", attempt, "of", r.opts.MaxAttempts, "retry_in", delay, "err", fail.err)
		if !sleep(ctx, delay) {
			return attempt, ctx.Err()
		}
	}
}

// failed deals with an event that still fails after its tries: record it,
// then halt in front of it or (Skip policy, or marked skipped by an operator)
// move past it. If the database itself is unreachable the event is not to
// blame, and the error is returned as an infrastructure error instead.
func (r *Runner) failed(ctx context.Context, l *leadership, ev eventstore.RecordedEvent, attempts int, fail *applyError) error {
	if err := r.pool.Ping(ctx); err != nil {
		return fmt.Errorf("apply event %s failed (%w) and the database is unreachable: %w", ev.ID, fail.err, err)
	}
	skip := r.opts.OnFailure == Skip || fail.operatorSkipped
	if err := r.recordFailure(ctx, l, ev, attempts, fail.err, skip); err != nil {
		return err
	}
	attrs := []any{"event_id", ev.ID, "position", ev.Position, "stream", ev.Stream, "type", ev.Type, "attempts", attempts, "err", fail.err}
	if skip {
		r.log.Error("event skipped after failing; recorded in projection_failures", attrs...)
		return nil
	}
	r.log.Error("event failed; projection halted; recorded in projection_failures", attrs...)
	return &HaltedError{Projection: r.name, EventID: ev.ID, Position: ev.Position, Err: fail.err}
}

// applyError is a failure attributable to the events of the batch: Apply
// failed, or the statements after it (the checkpoint move, the commit) failed
// on what Apply left in the transaction.
type applyError struct {
	err error
	// operatorSkipped: the event is marked skipped in projection_failures.
	operatorSkipped bool
}

func (e *applyError) Error() string { return "apply: " + e.err.Error() }
func (e *applyError) Unwrap() error { return e.err }

// unavailableRetry is the longest wait before retrying a target that was
// unavailable.
const unavailableRetry = 2 * time.Second

// backoff is the jittered exponential wait before try n+1 (n >= 1).
func (r *Runner) backoff(n int) time.Duration {
	d := r.opts.BackoffBase
	for i := 1; i < n && d < r.opts.BackoffMax; i++ {
		d *= 2
	}
	d = min(d, r.opts.BackoffMax)
	return d/2 + rand.N(d/2+1)
}

// sleep waits d or until ctx ends; it reports whether the full d passed.
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
