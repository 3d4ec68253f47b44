package natspub

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// The JetStream names subscribers rely on (DESIGN.md, "NATS").
const (
	// StreamName is the JetStream stream that keeps the tenant events.
	StreamName = "TENANCY_EVENTS"
	// SubjectPrefix starts every event's subject:
	// tenancy.events.<EventType>.<tenant id>.
	SubjectPrefix = "tenancy.events"
	// StreamSubjects is the stream's subject filter.
	StreamSubjects = SubjectPrefix + ".>"
	// DefaultDuplicateWindow is how long the stream remembers a message id;
	// a re-publish within it (after a crash or an outage) is dropped.
	DefaultDuplicateWindow = time.Hour
)

// Subject is the subject an event of type eventType of tenant tenantID is
// published on. Subscribers filter with wildcards, e.g.
// tenancy.events.TenantSuspended.* or tenancy.events.*.<tenant id>.
func Subject(eventType, tenantID string) string {
	return SubjectPrefix + "." + eventType + "." + tenantID
}

// StreamOptions are the stream's settings an operator chooses.
type StreamOptions struct {
	// DuplicateWindow is how long JetStream de-duplicates by Nats-Msg-Id
	// (default DefaultDuplicateWindow). A publisher down for longer than
	// this re-publishes its last unacknowledged batch as new messages, so
	// subscribers must de-duplicate by event id too.
	DuplicateWindow time.Duration
	// Replicas is the number of copies in a NATS cluster (default 1).
	Replicas int
	// MaxAge drops messages older than this (0: keep them for ever). It must
	// not be shorter than DuplicateWindow.
	MaxAge time.Duration
}

func (o StreamOptions) withDefaults() StreamOptions {
	if o.DuplicateWindow <= 0 {
		o.DuplicateWindow = DefaultDuplicateWindow
	}
	if o.Replicas <= 0 {
		o.Replicas = 1
	}
	return o
}

// EnsureStream creates the stream TENANCY_EVENTS on tenancy.events.> with
// file storage, or brings an existing one to opts (subjects, duplicate
// window, replicas, max age), leaving the rest of its configuration (limits
// an operator set) alone. It is safe to call on every start and from every
// replica.
func EnsureStream(ctx context.Context, js jetstream.JetStream, opts StreamOptions) error {
	opts = opts.withDefaults()
	if opts.MaxAge > 0 && opts.DuplicateWindow > opts.MaxAge {
		return fmt.Errorf("stream %s: duplicate window %s is longer than max age %s", StreamName, opts.DuplicateWindow, opts.MaxAge)
	}
	s, err := js.Stream(ctx, StreamName)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		_, err = js.CreateStream(ctx, jetstream.StreamConfig{
			Name:        StreamName,
			Description: "Tenant lifecycle events of the tenancy service, as CloudEvents; de-duplicated by event id (Nats-Msg-Id).",
			Subjects:    []string{StreamSubjects},
			Storage:     jetstream.FileStorage,
			Retention:   jetstream.LimitsPolicy,
			Discard:     jetstream.DiscardOld,
			Duplicates:  opts.DuplicateWindow,
			Replicas:    opts.Replicas,
			MaxAge:      opts.MaxAge,
		})
		if !errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
			if err != nil {
				return fmt.Errorf("create stream %s: %w", StreamName, err)
			}
			return nil
		}
		s, err = js.Stream(ctx, StreamName) // another replica made it meanwhile
	}
	if err != nil {
		return fmt.Errorf("look up stream %s: %w", StreamName, err)
	}
	cfg := s.CachedInfo().Config
	if cfg.Storage != jetstream.FileStorage {
		return fmt.Errorf("stream %s exists with %s storage; it must be file storage (events must survive a NATS restart): recreate it", StreamName, cfg.Storage)
	}
	want := cfg
	want.Subjects = []string{StreamSubjects}
	want.Duplicates = opts.DuplicateWindow
	want.Replicas = opts.Replicas
	want.MaxAge = opts.MaxAge
	if slices.Equal(cfg.Subjects, want.Subjects) && cfg.Duplicates == want.Duplicates &&
		cfg.Replicas == want.Replicas && cfg.MaxAge == want.MaxAge {
		return nil
	}
	if _, err := js.UpdateStream(ctx, want); err != nil {
		return fmt.Errorf("update stream %s: %w", StreamName, err)
	}
	return nil
}

// Dial connects to the NATS server at url the way a Publisher needs it and
// returns the connection (close it at shutdown) and its JetStream handle.
//
// The connection reconnects for ever, and starts even while the server is
// down (publishing fails until it is up: the projection backs off and
// resumes). It keeps no reconnect buffer: nats.go otherwise queues publishes
// made while reconnecting and sends them after whatever the dead socket lost,
// which would store a batch out of order. ackTimeout also expires each
// publish's pending ack inside nats.go, so a lost ack is not kept for ever.
func Dial(url string, ackTimeout time.Duration, log *slog.Logger) (*nats.Conn, jetstream.JetStream, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if ackTimeout <= 0 {
		ackTimeout = DefaultAckTimeout
	}
	nc, err := nats.Connect(url,
		nats.Name("tenancy nats-publisher"),
		nats.MaxReconnects(-1),
		nats.RetryOnFailedConnect(true),
		nats.ReconnectBufSize(-1),
		// A server that goes silent without closing the connection (a
		// partition) is given up after two unanswered pings: 10 to 15 s,
		// not nats.go's 2 × 2 minutes, and the client moves to another.
		nats.PingInterval(5*time.Second),
		nats.MaxPingsOutstanding(2),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil { // nil: closed by us
				log.Warn("NATS disconnected; events wait in the event store until it is back", "url", url, "err", err)
			}
		}),
		nats.ReconnectHandler(func(c *nats.Conn) {
			log.Info("NATS reconnected", "url", c.ConnectedUrlRedacted())
		}),
	)
	if err != nil {
		return nil, nil, fmt.Errorf("connect to NATS at %s: %w", url, err)
	}
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncTimeout(ackTimeout))
	if err != nil {
		nc.Close()
		return nil, nil, fmt.Errorf("JetStream on %s: %w", url, err)
	}
	return nc, js, nil
}
