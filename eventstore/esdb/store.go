// Package esdb is the EventStoreDB / KurrentDB adapter of the event store
// port, over the official gRPC client (github.com/EventStore/EventStore-Client-Go/v4).
//
// # Streams and events
//
// Streams keep the service's names (tenant-<id>), prefixed by
// Options.Namespace when one is set; unique values claimed by a Commit live
// in uniqueclaim-<kind>-<value> streams (see commit.go).
// Expected versions map to the client's esdb.Any{}, esdb.NoStream{} and
// esdb.Revision(n); a refusal becomes a *eventstore.WrongExpectedVersionError
// with the stream's actual version. Event ids are the service's own. The
// event type is the server's; the custom metadata carries an envelope,
//
//	{"schema_version":3,"$correlationId":"…","$causationId":"…","metadata":{…the service's metadata, byte for byte…}}
//
// ($correlationId and $causationId copy correlation_id and causation_id, for
// the server's by-correlation projection and UI). Events written by anyone
// else read back with schema version 1 and their metadata as it is.
//
// A retried append of the same event ids at the same place is recognised by
// the server, which answers success without writing them again (newer
// servers with the original position; older ones with none, and the adapter
// then reads it). The server only recognises ids within one stream, though:
// it would store an id that another stream already holds. To keep the
// port's promise (such an append fails with eventstore.ErrDuplicateEventID)
// the adapter first claims each event id by appending a small event to
// "eventid-<id>" with expected version "no stream"; a claim already held by
// another stream refuses the append. Claims cost one more append per event
// (done in parallel) and are never shown in the feed; an append refused
// after its claims leaves them behind, harmlessly. Options.NoEventIDClaims
// turns them off where ids are known to be unique.
//
// # The global feed
//
// The feed is $all. Positions are its (commit, prepare) log positions, which
// start above 0, so the port's zero Position still means "before
// everything". Subscriptions (SubscribeAll) use a server-side stream-name
// filter: the projection's prefixes (under the namespace), or for an empty
// filter the regular expression ^[^$], so that system events and $-streams
// never cross the wire. The client's reads of $all take no filter
// (ReadAllOptions has none in v4.2.0), so ReadAll and Head read $all pages
// and filter here; their cost grows with what else is in $all. Reads start
// at a position (inclusive) and subscriptions after it, and the client's
// default subscription start is the end (live only): the adapter always
// gives an explicit start and skips the event at a read's start position.
//
// CountAfter is not offered: the server cannot count, so counting means
// reading the feed, which projections.Status already does (capped) for
// feeds without it.
//
// # Resilience
//
// The client does not resubscribe: a Subscription resubscribes after a drop
// from the last event (or filter checkpoint) it received, with capped,
// jittered back-off, so the consumer sees no gap and no duplicate. A client
// whose first connection (or any later node discovery) fails stops for good
// and answers every later call with ErrorCodeConnectionClosed: the adapter
// makes a new client then, and lets a single probe, not a crowd of callers,
// wait on a client that is still discovering its node (callers queued inside
// the client behind a discovery that fails would wait for ever). Unary calls
// of the client have a 10 s default deadline and streaming ones none: every
// call here is bounded by Options.OperationTimeout, and subscriptions by
// their Close.
//
// # Connection strings and credentials
//
// New takes the client's connection string: esdb://host:2113 for a single
// node, esdb://host1:2113,host2:2113,host3:2113 for a cluster through its
// gossip seeds, and esdb+discover://cluster.example.com:2113 for a cluster
// found through one name (typically DNS resolving to its nodes): the client
// asks that address for the cluster's gossip and connects to the node that
// nodePreference picks (leader by default). Settings go in the query:
// tls=false, tlsVerifyCert=false, tlsCAFile=…, nodePreference=…,
// maxDiscoverAttempts=…, discoveryInterval=…, gossipTimeout=…,
// keepAliveInterval=…, keepAliveTimeout=…, defaultDeadline=….
//
// Credentials (esdb://user:password@host:2113) are sent only over TLS. With
// tls=false the client sends no credentials at all, silently (it drops them
// so that a password never travels in clear text): tls=false therefore works
// only against a server running insecure (--insecure), which neither
// encrypts nor checks credentials. New logs a warning when a connection
// string has credentials and tls=false.
package esdb

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/EventStore/EventStore-Client-Go/v4/esdb"

	"github.com/tenancyhq/tenancy/eventstore"
)

// Defaults of Options.
const (
	// DefaultBatchSize is the most events one Subscription.Next returns.
	DefaultBatchSize = 500
	// DefaultOperationTimeout bounds each call to the server.
	DefaultOperationTimeout = 10 * time.Second
	// DefaultReadPageSize is the most events one read of $all asks for.
	DefaultReadPageSize = 512
	// DefaultResubscribeMin and DefaultResubscribeMax bound the back-off
	// between attempts to resubscribe after a dropped subscription.
	DefaultResubscribeMin = 100 * time.Millisecond
	DefaultResubscribeMax = 5 * time.Second
	// DefaultMaxAppendSize is EventStoreDB's default MaxAppendSize.
	DefaultMaxAppendSize = 1 << 20
)

// Errors of this adapter, besides the port's.
var (
	// ErrClosed is returned by every call after Store.Close, and by
	// Subscription.Next after Subscription.Close.
	ErrClosed = errors.New("esdb: closed")
	// ErrStreamDeleted: the stream was deleted for ever (tombstoned) on the
	// server. Reads of it also match eventstore.ErrStreamNotFound.
	ErrStreamDeleted = errors.New("stream is deleted")
)

// Options configure a Store. The zero value is usable: every field has a
// default.
type Options struct {
	// Logger receives the adapter's logs and the client's; default: discard.
	Logger *slog.Logger
	// Namespace is put in front of every stream name the store writes and
	// reads, and limits the feed to those streams; it lets several
	// environments or test runs share one server. Default: none. It must
	// not start with "$".
	Namespace string
	// BatchSize is the most events one Subscription.Next returns.
	BatchSize int
	// OperationTimeout bounds each call to the server (the caller's context
	// may end it sooner), including setting up a subscription.
	OperationTimeout time.Duration
	// ReadPageSize is the most events one read of $all asks for.
	ReadPageSize int
	// ResubscribeMin and ResubscribeMax bound the back-off between attempts
	// to resubscribe after a subscription is dropped.
	ResubscribeMin, ResubscribeMax time.Duration
	// NoEventIDClaims skips the claim of each event id before an append
	// (see the package documentation). Without claims an event id already
	// stored in another stream is stored again instead of refused.
	NoEventIDClaims bool
	// MaxAppendSize is the server's maximum append size in bytes
	// (EventStoreDB's MaxAppendSize setting; default 1 MiB). An append
	// over it is refused with an *eventstore.TooLargeError before anything
	// is sent.
	MaxAppendSize int
}

func (o Options) withDefaults() Options {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.BatchSize <= 0 {
		o.BatchSize = DefaultBatchSize
	}
	if o.OperationTimeout <= 0 {
		o.OperationTimeout = DefaultOperationTimeout
	}
	if o.ReadPageSize < 2 {
		o.ReadPageSize = DefaultReadPageSize
	}
	if o.MaxAppendSize <= 0 {
		o.MaxAppendSize = DefaultMaxAppendSize
	}
	if o.ResubscribeMin <= 0 {
		o.ResubscribeMin = DefaultResubscribeMin
	}
	if o.ResubscribeMax < o.ResubscribeMin {
		o.ResubscribeMax = max(DefaultResubscribeMax, o.ResubscribeMin)
	}
	return o
}

// Store is the EventStoreDB eventstore.Store. It is safe for concurrent use.
// Make one with New and Close it when done.
type Store struct {
	opts Options
	log  *slog.Logger
	ns   string
	conn *connection
	// done ends when the store is closed; every call and subscription
	// derives from it.
	done context.Context
	stop context.CancelFunc

	mu     sync.Mutex
	subs   map[*subscription]struct{}
	closed bool
}

var _ eventstore.Store = (*Store)(nil)

// New returns a Store for the connection string url (esdb:// or
// esdb+discover://, see the package documentation). It does not contact the
// server: the first call connects, and a call that finds the server down
// fails while the next one tries again, so the service may start before
// EventStoreDB does. ctx only carries values for the start-up log.
func New(ctx context.Context, url string, opts Options) (*Store, error) {
	opts = opts.withDefaults()
	if strings.HasPrefix(opts.Namespace, "$") {
		return nil, fmt.Errorf("esdb: namespace %q: must not start with $ (system streams)", opts.Namespace)
	}
	cfg, err := esdb.ParseConnectionString(url)
	if err != nil {
		return nil, fmt.Errorf("esdb: connection string %s: %w", RedactURL(url), redactErr(err))
	}
	log := opts.Logger
	cfg.Logger = clientLogger(log)
	if cfg.DisableTLS && (cfg.Username != "" || cfg.Password != "") {
		log.WarnContext(ctx, "EVENTSTORE_URL has credentials but tls=false: the client does not send credentials without TLS, so the server must run insecure",
			"url", RedactURL(url))
	}
	done, stop := context.WithCancel(context.Background())
	s := &Store{
		opts: opts,
		log:  log,
		ns:   opts.Namespace,
		conn: newConnection(*cfg, log),
		done: done,
		stop: stop,
		subs: make(map[*subscription]struct{}),
	}
	log.InfoContext(ctx, "event store: EventStoreDB", "url", RedactURL(url), "namespace", opts.Namespace,
		"event_id_claims", !opts.NoEventIDClaims)
	return s, nil
}

// Close ends the store's subscriptions, cancels the calls in flight and
// closes the client. Calls after Close return ErrClosed. Closing twice does
// nothing.
func (s *Store) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	subs := make([]*subscription, 0, len(s.subs))
	for sub := range s.subs {
		subs = append(subs, sub)
	}
	s.mu.Unlock()
	for _, sub := range subs {
		sub.Close()
	}
	s.stop()
	s.conn.close(s.opts.OperationTimeout)
	return nil
}

// opContext bounds one operation: by the caller's ctx, the operation
// timeout, and the store's life.
func (s *Store) opContext(ctx context.Context) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithTimeout(ctx, s.opts.OperationTimeout)
	stop := context.AfterFunc(s.done, cancel)
	return ctx, func() {
		stop()
		cancel()
	}
}

// closedErr turns the cancellation caused by Close into ErrClosed.
func (s *Store) closedErr(err error) error {
	if s.done.Err() != nil && errors.Is(err, context.Canceled) {
		return ErrClosed
	}
	return err
}

var passwordInURL = regexp.MustCompile(`(://[^:@/]*):[^@/]*@`)

// RedactURL hides the password of a connection string, for logs and errors.
func RedactURL(s string) string { return passwordInURL.ReplaceAllString(s, "$1:xxxxx@") }

// redactErr hides the password that url.Parse errors quote.
func redactErr(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		ue.URL = RedactURL(ue.URL)
	}
	return err
}
