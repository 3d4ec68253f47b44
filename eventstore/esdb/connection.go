package esdb

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/EventStore/EventStore-Client-Go/v4/esdb"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// connection owns the client and replaces it when it dies. It makes up for
// what EventStore-Client-Go v4.2.0 leaves to its user (esdb/impl.go):
//
//   - A client whose node discovery fails (at its first connection, or when
//     it reconnects after losing the node) stops for good: its connection
//     goroutine returns, and every later call fails with
//     ErrorCodeConnectionClosed. connection then makes a new client.
//   - Discovery runs inside that goroutine while callers wait on an
//     unbuffered channel, without a context; callers queued behind a
//     discovery that fails wait for ever. So a client is used freely only
//     once a single probe (GetServerVersion, which makes it connect) has
//     succeeded; until then callers wait for that probe, not the client. A
//     call that fails as if the node were gone puts the client back under
//     probation.
//   - Each call runs on a goroutine of its own and its caller waits on its
//     context, so even a call stuck inside the client cannot hold the caller
//     beyond its deadline.
type connection struct {
	cfg esdb.Configuration // template of every client
	log *slog.Logger

	mu     sync.Mutex
	cur    *generation
	seq    int
	closed bool
}

// generation is one client and what is known of it. Its fields other than
// client, seq and inflight are guarded by connection.mu.
type generation struct {
	client *esdb.Client
	seq    int
	// healthy: a probe succeeded and no call has failed since as if the
	// node were gone. dead: the client has stopped; it is replaced.
	healthy, dead bool
	probe         *probe
	// inflight counts the calls (and the probe) running on the client.
	inflight atomic.Int64
}

// probe is a running GetServerVersion on a new or suspect client.
type probe struct {
	done chan struct{}
	err  error // set before done is closed
}

func newConnection(cfg esdb.Configuration, log *slog.Logger) *connection {
	return &connection{cfg: cfg, log: log}
}

// acquire returns a client that a probe found working, waiting for the
// probe if there is one and starting it if not. It fails with the probe's
// error (the next acquire then starts afresh with a new client), ctx's, or
// ErrClosed.
func (c *connection) acquire(ctx context.Context) (*generation, error) {
	for {
		c.mu.Lock()
		if c.closed {
			c.mu.Unlock()
			return nil, ErrClosed
		}
		g := c.cur
		if g == nil || g.dead {
			var err error
			if g, err = c.newGenerationLocked(); err != nil {
				c.mu.Unlock()
				return nil, err
			}
		}
		if g.healthy {
			c.mu.Unlock()
			return g, nil
		}
		p := g.probe
		if p == nil {
			p = c.startProbeLocked(g)
		}
		c.mu.Unlock()
		select {
		case <-p.done:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		if p.err != nil {
			return nil, fmt.Errorf("connect to EventStoreDB: %w", p.err)
		}
	}
}

func (c *connection) newGenerationLocked() (*generation, error) {
	cfg := c.cfg
	client, err := esdb.NewClient(&cfg)
	if err != nil {
		return nil, fmt.Errorf("new EventStoreDB client: %w", err)
	}
	c.seq++
	if c.cur != nil {
		// A dead client is not closed: Close closes a channel that callers
		// stuck inside it may still send on, which would panic them.
		c.log.Info("EventStoreDB client stopped; made a new one", "client", c.seq)
	}
	c.cur = &generation{client: client, seq: c.seq}
	return c.cur, nil
}

func (c *connection) startProbeLocked(g *generation) *probe {
	p := &probe{done: make(chan struct{})}
	g.probe = p
	g.inflight.Add(1)
	go func() {
		defer g.inflight.Add(-1)
		_, err := g.client.GetServerVersion()
		c.mu.Lock()
		g.probe = nil
		if err != nil {
			// Either the client had already stopped or its discovery just
			// failed, which stops it: it cannot serve again.
			g.dead, g.healthy = true, false
			c.log.Warn("cannot reach EventStoreDB", "client", g.seq, "err", err)
		} else {
			c.log.Debug("EventStoreDB client connected", "client", g.seq)
			g.healthy = true
		}
		c.mu.Unlock()
		p.err = err
		close(p.done)
	}()
	return p
}

// report looks at the outcome of a call on g: a stopped client is replaced,
// one that seems to have lost its node is probed again before further use.
func (c *connection) report(g *generation, err error) {
	if err == nil {
		return
	}
	switch {
	case hasCode(err, esdb.ErrorCodeConnectionClosed):
		c.mu.Lock()
		g.dead, g.healthy = true, false
		c.mu.Unlock()
	case hasCode(err, esdb.ErrorUnavailable), hasCode(err, esdb.ErrorCodeDeadlineExceeded), hasCode(err, esdb.ErrorCodeNotLeader),
		status.Code(err) == codes.Unavailable:
		c.suspect(g)
	}
}

// suspect puts g under probation: the next caller probes it first.
func (c *connection) suspect(g *generation) {
	c.mu.Lock()
	g.healthy = false
	c.mu.Unlock()
}

// close stops handing out clients, waits up to grace for the calls running
// on the current one, and closes it. A client with calls still stuck inside
// it is left open (closing it could panic them); the process is usually
// about to exit then.
func (c *connection) close(grace time.Duration) {
	c.mu.Lock()
	c.closed = true
	g := c.cur
	c.mu.Unlock()
	if g == nil {
		return
	}
	deadline := time.Now().Add(grace)
	for g.inflight.Load() > 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	c.mu.Lock()
	dead := g.dead
	c.mu.Unlock()
	switch {
	case dead:
	case g.inflight.Load() > 0:
		c.log.Warn("EventStoreDB client left open: calls are still stuck inside it", "calls", g.inflight.Load())
	default:
		if err := g.client.Close(); err != nil {
			c.log.Warn("close EventStoreDB client", "err", err)
		}
	}
}

// call runs fn on a working client, on a goroutine of its own, and waits
// for it or for ctx. fn must honour ctx in its own calls. When ctx ends
// first, call returns ctx's error; should fn still succeed later, discard
// (if not nil) receives its result to release it.
func call[T any](ctx context.Context, c *connection, fn func(ctx context.Context, client *esdb.Client) (T, error), discard func(T)) (T, error) {
	var zero T
	g, err := c.acquire(ctx)
	if err != nil {
		return zero, err
	}
	type result struct {
		v   T
		err error
	}
	var (
		mu        sync.Mutex
		abandoned bool
		done      = make(chan result, 1)
	)
	g.inflight.Add(1)
	go func() {
		defer g.inflight.Add(-1)
		v, err := fn(ctx, g.client)
		c.report(g, err)
		mu.Lock()
		defer mu.Unlock()
		if abandoned {
			if err == nil && discard != nil {
				discard(v)
			}
			return
		}
		done <- result{v, err}
	}()
	select {
	case r := <-done:
		return r.v, r.err
	case <-ctx.Done():
	}
	mu.Lock()
	defer mu.Unlock()
	select {
	case r := <-done: // finished meanwhile
		return r.v, r.err
	default:
	}
	abandoned = true
	// The client did not answer in time: make the next caller check it.
	c.suspect(g)
	return zero, ctx.Err()
}

// hasCode reports whether err is an *esdb.Error with code.
func hasCode(err error, code esdb.ErrorCode) bool {
	var e *esdb.Error
	return errors.As(err, &e) && e.Code() == code
}

// clientLogger sends the client's logs to log, at Debug: the client
// reports as warnings and errors what is routine here (each failed attempt
// of a discovery that is retried, a subscription this adapter closes, every
// error it also returns), and the adapter logs its own decisions at their
// level. Only its switch to another (leader) node is logged as Info.
func clientLogger(log *slog.Logger) esdb.LoggingFunc {
	return func(level esdb.LogLevel, format string, args ...any) {
		// The client sometimes passes its arguments as one slice.
		if len(args) == 1 {
			if inner, ok := args[0].([]any); ok {
				args = inner
			}
		}
		msg := fmt.Sprintf(format, args...)
		lvl := slog.LevelDebug
		if strings.Contains(msg, "leader") && level != esdb.LogDebug {
			lvl = slog.LevelInfo
		}
		log.Log(context.Background(), lvl, "EventStoreDB client: "+msg, "client_level", level)
	}
}
