package httpapi

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/labstack/echo/v4"

	"github.com/tenancyhq/tenancy/aggregate"
	"github.com/tenancyhq/tenancy/eventstore"
)

// EventFeed is the global feed the live event stream follows: the one the
// projections read.
type EventFeed interface {
	eventstore.Subscriber
	Head(ctx context.Context) (eventstore.Position, error)
}

// maxStreams bounds the live event streams open at once: each holds a
// subscription (on Postgres, a connection of its own).
const maxStreams = 16

// streamHeartbeat is how often an idle stream sends a comment, so proxies
// and the client see the connection alive.
const streamHeartbeat = 15 * time.Second

// streamedEvent is one event of the live stream: what happened to which
// tenant, by whom, and where in the feed. The event's data is left out, so
// the stream carries no personal field; the tenant's history has it.
type streamedEvent struct {
	EventID       uuid.UUID             `json:"event_id"`
	Type          string                `json:"type"`
	Stream        string                `json:"stream"`
	TenantID      string                `json:"tenant_id,omitempty"`
	Version       uint64                `json:"version"`
	Position      string                `json:"position"`
	OccurredAt    time.Time             `json:"occurred_at"`
	Actor         string                `json:"actor,omitempty"`
	CorrelationID string                `json:"correlation_id,omitempty"`
	Command       aggregate.CommandName `json:"command,omitempty"`
}

// streamPath is the live event stream's route: a request that lasts as
// long as its client listens, so ServeHTTP gives it no deadline.
const streamPath = "/api/v1/admin/events/stream"

func streamRoute(s *Server) route {
	return route{method: http.MethodGet, path: streamPath, operationID: "streamEvents", tag: "admin",
		summary: "The live feed of tenant events, as server-sent events (one JSON object per event: type, tenant, version, position, actor, correlation id; no event data)",
		description: "Follows the global feed the projections read, from the head (or from the position in Last-Event-ID or after: each event's SSE id is its position), " +
			"with a comment every 15 s while idle. At most 16 streams are open at once (503 beyond).",
		query:  []param{{name: "after", description: "Start strictly after this feed position (commit/prepare); default the head.", schema: withRule(schema{"type": "string", "pattern": positionPattern, "maxLength": 64}, "position")}},
		status: http.StatusOK, stream: true, handler: s.streamEvents}
}

// CloseStreams ends every live event stream, so a graceful shutdown does
// not wait for clients that never hang up. The service calls it when its
// HTTP server shuts down.
func (s *Server) CloseStreams() { s.closeStreams() }

// streamEvents serves GET /api/v1/admin/events/stream.
func (s *Server) streamEvents(c echo.Context) error {
	if s.deps.Feed == nil {
		return newProblem(http.StatusServiceUnavailable, typeUnavailable, "Event stream unavailable", "This replica does not serve the live event stream.")
	}
	select {
	case s.streams <- struct{}{}:
		defer func() { <-s.streams }()
	default:
		c.Response().Header().Set("Retry-After", "5")
		return newProblem(http.StatusServiceUnavailable, typeUnavailable, "Too many live streams", fmt.Sprintf("At most %d live event streams are open at once.", maxStreams))
	}
	ctx, cancel := context.WithCancel(c.Request().Context())
	defer cancel()
	defer context.AfterFunc(s.closing, cancel)()

	after, err := s.streamStart(ctx, c)
	if err != nil {
		return err
	}
	sub, err := s.deps.Feed.SubscribeAll(ctx, after, eventstore.Filter{StreamPrefixes: []string{aggregate.StreamPrefix}})
	if err != nil {
		return fmt.Errorf("live event stream: %w", err)
	}
	batches := make(chan []eventstore.RecordedEvent)
	go func() {
		defer close(batches)
		for {
			evs, err := sub.Next(ctx)
			if err != nil {
				if ctx.Err() == nil {
					s.logger.WarnContext(ctx, "live event stream ended", "err", err)
				}
				return
			}
			select {
			case batches <- evs:
			case <-ctx.Done():
				return
			}
		}
	}()
	defer func() {
		cancel()
		for range batches { // let the reader end before closing its subscription
		}
		_ = sub.Close()
	}()

	w := c.Response()
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	if _, err := fmt.Fprintf(w, "retry: 3000\n: following after %s\n\n", after); err != nil {
		return nil
	}
	w.Flush()
	beat := time.NewTicker(streamHeartbeat)
	defer beat.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-beat.C:
			if _, err := fmt.Fprint(w, ": idle\n\n"); err != nil {
				return nil
			}
		case evs, ok := <-batches:
			if !ok {
				return nil
			}
			for _, ev := range evs {
				if err := writeStreamed(w, ev); err != nil {
					return nil // the client went away
				}
			}
		}
		w.Flush()
	}
}

// streamStart is where a stream begins: after Last-Event-ID (a client
// reconnecting), after the position asked for, or at the head.
func (s *Server) streamStart(ctx context.Context, c echo.Context) (eventstore.Position, error) {
	raw, field := c.Request().Header.Get("Last-Event-ID"), "Last-Event-ID"
	if raw == "" {
		raw, field = c.QueryParam("after"), "after"
	}
	if raw == "" {
		head, err := s.deps.Feed.Head(ctx)
		if err != nil {
			return eventstore.Position{}, fmt.Errorf("live event stream: head: %w", err)
		}
		return head, nil
	}
	pos, err := eventstore.ParsePosition(raw)
	if err != nil {
		return eventstore.Position{}, invalidField(field, "position", field+" must be a feed position (commit/prepare) this stream sent as an event id.")
	}
	return pos, nil
}

// writeStreamed writes one event as a server-sent event.
func writeStreamed(w http.ResponseWriter, ev eventstore.RecordedEvent) error {
	var meta aggregate.Metadata
	if len(ev.Metadata) > 0 {
		_ = json.Unmarshal(ev.Metadata, &meta) // a malformed metadata shows as none
	}
	out := streamedEvent{EventID: ev.ID, Type: ev.Type, Stream: ev.Stream, Version: ev.Version, Position: ev.Position.String(),
		OccurredAt: ev.RecordedAt.UTC(), Actor: meta.Actor, CorrelationID: meta.CorrelationID, Command: meta.Command}
	if !meta.OccurredAt.IsZero() {
		out.OccurredAt = meta.OccurredAt.UTC()
	}
	out.TenantID, _ = strings.CutPrefix(ev.Stream, aggregate.StreamPrefix)
	b, err := json.Marshal(out)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(w, "id: %s\ndata: %s\n\n", out.Position, b)
	return err
}
