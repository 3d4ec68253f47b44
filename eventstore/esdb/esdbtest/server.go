// Package esdbtest is a test double of EventStoreDB / KurrentDB: an
// in-process gRPC server, built on the service definitions that
// EventStore-Client-Go ships, that answers the official client the way a
// single real node does for what the tenancy service uses. It is not a
// database: it keeps everything in memory, has no access control and no
// persistent subscriptions or projections.
//
// What it does, modelled on the server's source (Streams.Append.cs,
// Streams.Read.cs, IndexWriter.CheckCommit, AllReader, the $all subscription
// enumerators):
//
//   - Append with expected revision any, no stream, stream exists or exact;
//     a retried append of the same event ids at the same place succeeds
//     without writing them again (with the original position), a partial
//     match is a wrong expected version. Like the server, it does not refuse
//     an event id that another stream already holds.
//   - Read of a stream forwards and backwards (events, or stream-not-found,
//     nothing else: the client panics on any other message), read of $all
//     forwards (inclusive of the start position) and backwards (exclusive),
//     with or without a filter.
//   - Catch-up subscriptions to $all from the start, the end or after a
//     position, with stream-name or event-type filters (prefixes or a
//     regular expression), checkpoints every checkpoint interval of
//     considered events and when going live, and a caught-up message.
//   - Delete (soft: $tb in the stream's metadata) and Tombstone; reads and
//     writes of a tombstoned stream fail with the trailers the client needs.
//   - Every recorded event carries the "type", "content-type" and "created"
//     metadata; positions start above 0; gossip answers with this node as
//     the leader, so esdb+discover:// works too. ServerFeatures is not
//     served: the client accepts "unimplemented" from older servers.
//
// For resilience tests it can be stopped and started again on the same port
// keeping its data (Stop, Start) and can drop the live subscriptions
// (DropSubscriptions).
//
// Known differences: regular expressions are Go's (RE2), not .NET's; the
// idempotency of "any" appends always finds the earlier ids (the server's
// cache is bounded); no system events are written after the start besides
// stream metadata, tombstones and those a test adds (AppendSystemEvent).
package esdbtest

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/EventStore/EventStore-Client-Go/v4/protos/gossip"
	"github.com/EventStore/EventStore-Client-Go/v4/protos/shared"
	"github.com/EventStore/EventStore-Client-Go/v4/protos/streams"
	"github.com/google/uuid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// Options configure a Server. The zero value is usable.
type Options struct {
	// Logger receives the server's logs; default: discard.
	Logger *slog.Logger
	// Now is the clock of the "created" metadata; default time.Now.
	Now func() time.Time
	// IdempotentWithoutPosition answers a recognised retry without a
	// position, as older servers do (newer ones return the position of the
	// events already written: IdempotentLogPosition in their IndexWriter).
	IdempotentWithoutPosition bool
	// NoSystemEvents leaves out the system events a fresh node has in $all
	// ($user-admin, $settings, stream metadata), which are there by default so
	// that clients must filter them.
	NoSystemEvents bool
	// TLS, when set, serves over TLS with it (URL then omits tls=false).
	TLS *tls.Config
	// MaxAppendSize is the largest append accepted, in bytes, counted as
	// the server counts (data, metadata and type of each event); default
	// 1 MiB, the server's default.
	MaxAppendSize int
}

func (o Options) maxAppendSize() int {
	if o.MaxAppendSize <= 0 {
		return 1 << 20
	}
	return o.MaxAppendSize
}

// Server is the test double. Make one with NewServer (or Start in a test);
// it is safe for concurrent use.
type Server struct {
	opts Options
	log  *slog.Logger

	mu      sync.Mutex
	db      *eventLog
	changed chan struct{} // closed and replaced on every write
	subs    map[*liveSubscription]struct{}
	starts  []uint64 // the start of every subscription asked for

	netMu   sync.Mutex
	addr    string // fixed by the first Start
	grpc    *grpc.Server
	serving sync.WaitGroup

	withCredentials atomic.Int64
}

// NewServer returns a stopped server holding only the system events of a
// fresh node (unless opts.NoSystemEvents). Call Start to serve.
func NewServer(opts Options) *Server {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	s := &Server{
		opts:    opts,
		log:     opts.Logger,
		db:      newEventLog(opts.Now),
		changed: make(chan struct{}),
		subs:    make(map[*liveSubscription]struct{}),
	}
	if !opts.NoSystemEvents {
		s.AppendSystemEvent("$$$scavenges", "$metadata", []byte(`{"$maxAge":2592000}`))
		s.AppendSystemEvent("$user-admin", "$UserCreated", []byte(`{"loginName":"admin","fullName":"Event Store Administrator"}`))
		s.AppendSystemEvent("$users", "$User", []byte(`"admin"`))
		s.AppendSystemEvent("$settings", "update", []byte(`{"$userStreamAcl":{"$r":"$all"}}`))
	}
	return s
}

// Start makes a server for a test, serves it (see Server.Start) and stops it
// when the test ends.
func Start(t testing.TB, opts Options) *Server {
	t.Helper()
	s := NewServer(opts)
	if err := s.Start(); err != nil {
		t.Fatalf("start EventStoreDB test server: %v", err)
	}
	t.Cleanup(s.Stop)
	return s
}

// Start serves on 127.0.0.1: a random port the first time, the same one
// after a Stop. Data survive a Stop.
func (s *Server) Start() error {
	s.netMu.Lock()
	defer s.netMu.Unlock()
	if s.grpc != nil {
		return errors.New("esdbtest: already serving")
	}
	addr := s.addr
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("esdbtest: listen on %s: %w", addr, err)
	}
	s.addr = lis.Addr().String()
	opts := []grpc.ServerOption{
		grpc.ChainUnaryInterceptor(s.unaryInterceptor),
		grpc.ChainStreamInterceptor(s.streamInterceptor),
		grpc.WaitForHandlers(true), // Stop returns once every handler has
	}
	if s.opts.TLS != nil {
		opts = append(opts, grpc.Creds(credentials.NewTLS(s.opts.TLS)))
	}
	srv := grpc.NewServer(opts...)
	streams.RegisterStreamsServer(srv, &streamsService{s: s})
	gossip.RegisterGossipServer(srv, &gossipService{addr: s.addr})
	s.grpc = srv
	s.serving.Add(1)
	go func() {
		defer s.serving.Done()
		if err := srv.Serve(lis); err != nil && !errors.Is(err, grpc.ErrServerStopped) {
			s.log.Warn("esdbtest: serve", "err", err)
		}
	}()
	s.log.Debug("esdbtest: serving", "addr", s.addr)
	return nil
}

// Stop closes the listener and every connection at once (clients see the
// node go away) and waits for the handlers to end. The data stay; Start
// serves them again on the same port. Stopping a stopped server does
// nothing.
func (s *Server) Stop() {
	s.netMu.Lock()
	defer s.netMu.Unlock()
	if s.grpc == nil {
		return
	}
	s.grpc.Stop() // closes connections, cancels and waits for the handlers
	s.grpc = nil
	s.serving.Wait()
	s.log.Debug("esdbtest: stopped", "addr", s.addr)
}

// Addr is host:port, known after the first Start.
func (s *Server) Addr() string {
	s.netMu.Lock()
	defer s.netMu.Unlock()
	return s.addr
}

// URL is the connection string of the server for the client: single node,
// tls=false (or, with Options.TLS, tlsVerifyCert=false).
func (s *Server) URL() string {
	if s.opts.TLS != nil {
		return "esdb://" + s.Addr() + "?tlsVerifyCert=false"
	}
	return "esdb://" + s.Addr() + "?tls=false"
}

// DropSubscriptions ends every live subscription: with the status code (and
// a message saying so), or cleanly when code is codes.OK. It returns how
// many it ended.
func (s *Server) DropSubscriptions(code codes.Code) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for sub := range s.subs {
		select {
		case sub.drop <- code:
			n++
		default: // already being dropped
		}
	}
	return n
}

// Subscriptions is how many subscriptions are live.
func (s *Server) Subscriptions() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.subs)
}

// SubscriptionStarts lists where every subscription to $all asked to start,
// in order: after that commit position, 0 for the start, math.MaxUint64 for
// the end. Tests use it to see where a client resubscribed.
func (s *Server) SubscriptionStarts() []uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]uint64(nil), s.starts...)
}

// CallsWithCredentials counts the calls that carried an authorization
// header: the client sends none when TLS is off.
func (s *Server) CallsWithCredentials() int64 { return s.withCredentials.Load() }

// AppendSystemEvent writes an event the way the server's own subsystems do
// (to a $-stream, say), so that tests can check that clients skip them. It
// returns the event's position.
func (s *Server) AppendSystemEvent(stream, eventType string, data []byte) uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	recs := s.db.write(stream, []proposal{{id: uuid.New(), eventType: eventType, contentType: "application/json", data: data}})
	s.notifyLocked()
	return recs[0].pos
}

// notifyLocked wakes the subscriptions after a write; s.mu is held.
func (s *Server) notifyLocked() {
	close(s.changed)
	s.changed = make(chan struct{})
}

func (s *Server) countCredentials(ctx context.Context) {
	if md, ok := metadata.FromIncomingContext(ctx); ok && len(md.Get("authorization")) > 0 {
		s.withCredentials.Add(1)
	}
}

func (s *Server) unaryInterceptor(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	s.countCredentials(ctx)
	return handler(ctx, req)
}

func (s *Server) streamInterceptor(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	s.countCredentials(ss.Context())
	return handler(srv, ss)
}

// streamDeletedError is the server's answer to a read or write of a
// tombstoned stream. The client panics without the stream-name trailer.
func streamDeletedError(ctx context.Context, name string) error {
	_ = grpc.SetTrailer(ctx, metadata.Pairs("exception", "stream-deleted", "stream-name", name))
	return status.Errorf(codes.FailedPrecondition, "Event stream '%s' is deleted.", name)
}

// gossipService answers cluster discovery (esdb+discover://) with this node
// as the only member, alive and leader.
type gossipService struct {
	gossip.UnimplementedGossipServer
	addr string
}

// Read answers the client's discovery.
func (g *gossipService) Read(ctx context.Context, _ *shared.Empty) (*gossip.ClusterInfo, error) {
	host, p, err := net.SplitHostPort(g.addr)
	if err != nil {
		return nil, status.Error(codes.Internal, err.Error())
	}
	port, err := strconv.ParseUint(p, 10, 32)
	if err != nil {
		return nil, status.Error(codes.Internal, err.Error())
	}
	return &gossip.ClusterInfo{Members: []*gossip.MemberInfo{{
		InstanceId:   uuidToProto(uuid.NewSHA1(uuid.NameSpaceURL, []byte(g.addr)), false),
		TimeStamp:    time.Now().UnixNano() / 100,
		State:        gossip.MemberInfo_Leader,
		IsAlive:      true,
		HttpEndPoint: &gossip.EndPoint{Address: host, Port: uint32(port)},
	}}}, nil
}
