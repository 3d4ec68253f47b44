package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/spf13/cobra"

	"github.com/tenancyhq/tenancy/projections/natspub"
	"github.com/tenancyhq/tenancy/service"
)

// defaultNATSURL is where tenancy events tail looks for NATS without
// --nats-url, NATS_URL or a DATA_DIR/nats.url: the embedded server's default
// address.
const defaultNATSURL = "nats://127.0.0.1:4222"

// tailNATSURL is the NATS server tail reads from: --nats-url or NATS_URL;
// else the embedded server serve last started with this data folder (it
// writes its URL to DATA_DIR/nats.url; make run may have moved it off a
// taken 4222); else defaultNATSURL.
func tailNATSURL(flag, dataDir string) string {
	if flag != "" {
		return flag
	}
	if b, err := os.ReadFile(filepath.Join(dataDir, service.NATSURLFile)); err == nil {
		if u := strings.TrimSpace(string(b)); u != "" {
			return u
		}
	}
	return defaultNATSURL
}

// lineTime is the time format of tail's lines: fixed width, milliseconds.
const lineTime = "2006-01-02T15:04:05.000Z07:00"

// tailOptions are the flags of tenancy events tail.
type tailOptions struct {
	eventType string
	tenant    string
	durable   string
	json      bool
	natsURL   string
	fromStart bool
}

// newEventsCmd returns "tenancy events", the commands on the events the
// service publishes to NATS JetStream (stream TENANCY_EVENTS).
func newEventsCmd(o *options) *cobra.Command {
	events := &cobra.Command{
		Use:   "events",
		Short: "Follow the tenant events published on NATS JetStream",
		Long: `events works with the stream TENANCY_EVENTS, where the service publishes every
tenant event as a CloudEvent on tenancy.events.<EventType>.<tenant id>.`,
	}
	t := &tailOptions{}
	tail := &cobra.Command{
		Use:   "tail",
		Short: "Print tenant events as they are published",
		Long: `tail consumes TENANCY_EVENTS and prints each event as it arrives: a line with
its time, type, tenant, stream version, actor and correlation id, or the raw
CloudEvent JSON with --json. It acknowledges each event after printing it.

Without --durable the consumer is ephemeral and starts with new events (all
stored events with --from-start). With --durable NAME the server remembers
how far it got: run it again with the same name to resume there.

It stops on Ctrl-C or SIGTERM.`,
		Example: `  tenancy events tail
  tenancy events tail --type TenantSuspended --json
  tenancy events tail --tenant 5f0c…-… --from-start
  tenancy events tail --durable billing-audit`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			log, err := newLogger(cmd.ErrOrStderr(), o)
			if err != nil {
				return err
			}
			t.natsURL = tailNATSURL(t.natsURL, o.dataDir)
			return tailEvents(cmd.Context(), t, cmd.OutOrStdout(), log)
		},
	}
	f := tail.Flags()
	f.StringVar(&t.eventType, "type", "", "only events of this type, e.g. TenantSuspended")
	f.StringVar(&t.tenant, "tenant", "", "only events of this tenant (its id)")
	f.StringVar(&t.durable, "durable", "", "durable consumer name: the server remembers the position, a rerun resumes there")
	f.BoolVar(&t.json, "json", false, "print each event's CloudEvent JSON, one per line")
	f.StringVar(&t.natsURL, "nats-url", env("NATS_URL", ""), "NATS server [$NATS_URL] (default: the embedded server serve started, from DATA_DIR/nats.url, else "+defaultNATSURL+")")
	f.BoolVar(&t.fromStart, "from-start", false, "start with the first stored event instead of new ones (a durable that exists resumes where it was)")
	events.AddCommand(tail)
	return events
}

// tailFilter is the subject filter of --type and --tenant:
// tenancy.events.<type or *>.<tenant or *>.
func tailFilter(eventType, tenant string) (string, error) {
	typeToken, tenantToken := "*", "*"
	if eventType != "" {
		if strings.ContainsAny(eventType, ".*> \t\r\n") {
			return "", fmt.Errorf("--type %q: want an event type such as TenantSuspended", eventType)
		}
		typeToken = eventType
	}
	if tenant != "" {
		id, err := uuid.Parse(tenant)
		if err != nil {
			return "", fmt.Errorf("--tenant %q: want a tenant id (UUID): %w", tenant, err)
		}
		tenantToken = id.String()
	}
	return natspub.Subject(typeToken, tenantToken), nil
}

// tailEvents is tenancy events tail. It is also the reference for a
// downstream consumer (billing, e-mail, analytics) that must act on each
// event once:
//
//   - Delivery is at-least-once. The publisher re-publishes after a crash or
//     an outage; JetStream drops a copy only within the stream's duplicate
//     window (1 h by default), and a consumer whose ack is lost gets the
//     same message again. So a consumer de-duplicates by the CloudEvent id
//     (the event id, stable for ever) itself.
//   - It keeps the ids it has processed, and records an id in the same
//     transaction as the effect of the event (a real consumer: a
//     processed_events table with the id as primary key; here, printing
//     is the effect and a bounded in-memory set is the record).
//   - It acknowledges only after the effect and the record, so a crash in
//     between means a redelivery, which the record turns into a no-op.
//   - Within a tenant, events arrive in stream order; streamversion lets a
//     consumer that needs it detect a gap or an older event.
func tailEvents(ctx context.Context, t *tailOptions, out io.Writer, log *slog.Logger) error {
	filter, err := tailFilter(t.eventType, t.tenant)
	if err != nil {
		return err
	}
	nc, err := nats.Connect(t.natsURL,
		nats.Name("tenancy events tail"),
		nats.MaxReconnects(-1),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil { // nil: closed by us
				log.Warn("NATS disconnected; reconnecting", "url", t.natsURL, "err", err)
			}
		}),
		nats.ReconnectHandler(func(*nats.Conn) { log.Info("NATS reconnected", "url", t.natsURL) }),
	)
	if err != nil {
		return fmt.Errorf("connect to NATS at %s (set --nats-url or NATS_URL): %w", t.natsURL, err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return fmt.Errorf("JetStream on %s: %w", t.natsURL, err)
	}
	stream, err := js.Stream(ctx, natspub.StreamName)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return fmt.Errorf("NATS at %s has no stream %s: is the tenancy service publishing there?", t.natsURL, natspub.StreamName)
	}
	if err != nil {
		return fmt.Errorf("stream %s on %s: %w", natspub.StreamName, t.natsURL, err)
	}

	cfg := jetstream.ConsumerConfig{
		Description:   "tenancy events tail",
		FilterSubject: filter,
		DeliverPolicy: jetstream.DeliverNewPolicy,
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       30 * time.Second,
		MaxAckPending: 1000,
	}
	if t.fromStart {
		cfg.DeliverPolicy = jetstream.DeliverAllPolicy
	}
	if t.durable != "" {
		cfg.Durable = t.durable
		// A durable that exists resumes where it stopped: its deliver
		// policy cannot change, only its filter.
		if c, err := stream.Consumer(ctx, t.durable); err == nil {
			cfg.DeliverPolicy = c.CachedInfo().Config.DeliverPolicy
			cfg.OptStartSeq = c.CachedInfo().Config.OptStartSeq
			cfg.OptStartTime = c.CachedInfo().Config.OptStartTime
		} else if !errors.Is(err, jetstream.ErrConsumerNotFound) {
			return fmt.Errorf("consumer %s: %w", t.durable, err)
		}
	} else {
		// An ephemeral consumer is deleted when tail exits, or by the
		// server once tail has been gone this long.
		cfg.InactiveThreshold = time.Minute
	}
	cons, err := stream.CreateOrUpdateConsumer(ctx, cfg)
	if err != nil {
		return fmt.Errorf("create consumer on %s (filter %s): %w", natspub.StreamName, filter, err)
	}
	name := cons.CachedInfo().Name
	if t.durable == "" {
		defer func() {
			dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			defer cancel()
			if err := stream.DeleteConsumer(dctx, name); err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) {
				log.Debug("delete ephemeral consumer", "consumer", name, "err", err)
			}
		}()
	}
	log.Info("tailing tenant events", "url", t.natsURL, "stream", natspub.StreamName, "filter", filter, "consumer", name)

	h := &eventPrinter{out: out, json: t.json, log: log, seen: newSeenIDs(100_000), failed: make(chan struct{})}
	cc, err := cons.Consume(h.handle, jetstream.ConsumeErrHandler(func(_ jetstream.ConsumeContext, err error) {
		log.Warn("consume", "err", err)
	}))
	if err != nil {
		return fmt.Errorf("consume %s: %w", natspub.StreamName, err)
	}
	select {
	case <-ctx.Done():
	case <-h.failed:
	}
	cc.Stop()
	<-cc.Closed() // the handler has returned for the last time
	// Send the last acks before closing, so a durable resumes after them.
	if err := nc.FlushTimeout(2 * time.Second); err != nil {
		log.Debug("flush acks", "err", err)
	}
	return h.err
}

// eventPrinter handles each message: de-duplicate by event id, print,
// record, acknowledge. Consume calls it from one goroutine at a time.
type eventPrinter struct {
	out  io.Writer
	json bool
	log  *slog.Logger
	seen *seenIDs
	// err is the first write error; failed is closed then, and tail stops.
	mu     sync.Mutex
	err    error
	failed chan struct{}
}

func (h *eventPrinter) handle(msg jetstream.Msg) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.err != nil {
		_ = msg.Nak()
		return
	}
	var ce natspub.CloudEvent
	if err := json.Unmarshal(msg.Data(), &ce); err != nil || ce.ID == "" {
		// Not one of ours: say so once per message and do not get it again.
		h.log.Warn("not a tenancy CloudEvent; skipped", "subject", msg.Subject(), "err", err)
		_ = msg.Term()
		return
	}
	if h.seen.has(ce.ID) {
		// Processed already (a re-publish after the duplicate window, or a
		// redelivery after a lost ack): acknowledge and do nothing else.
		h.log.Debug("duplicate event skipped", "event_id", ce.ID)
		_ = msg.Ack()
		return
	}
	var err error
	if h.json {
		_, err = fmt.Fprintf(h.out, "%s\n", msg.Data())
	} else {
		_, err = fmt.Fprintf(h.out, "%s  %-26s  tenant=%s  version=%d  actor=%s  correlation=%s\n",
			ce.Time.UTC().Format(lineTime), strings.TrimPrefix(ce.Type, natspub.TypePrefix), ce.Subject,
			ce.StreamVersion, orDash(ce.Actor), orDash(ce.CorrelationID))
	}
	if err != nil {
		h.err = fmt.Errorf("write event %s: %w", ce.ID, err)
		close(h.failed)
		_ = msg.Nak()
		return
	}
	h.seen.add(ce.ID)
	if err := msg.Ack(); err != nil {
		h.log.Warn("ack", "event_id", ce.ID, "err", err)
	}
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// seenIDs remembers the last max processed event ids, oldest forgotten
// first. A consumer with durable effects keeps them in its database
// instead, for at least as long as it could be sent an event again.
type seenIDs struct {
	max  int
	ids  map[string]struct{}
	ring []string
	next int
}

func newSeenIDs(max int) *seenIDs {
	return &seenIDs{max: max, ids: make(map[string]struct{})}
}

func (s *seenIDs) has(id string) bool {
	_, ok := s.ids[id]
	return ok
}

func (s *seenIDs) add(id string) {
	if len(s.ring) < s.max {
		s.ring = append(s.ring, id)
	} else {
		delete(s.ids, s.ring[s.next])
		s.ring[s.next] = id
		s.next = (s.next + 1) % s.max
	}
	s.ids[id] = struct{}{}
}
