package loadgen

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
)

// subject is what the service publishes every event under.
const subject = "tenancy.events.>"

// natsWatch matches the events arriving on NATS with the acknowledged
// commands: a command's event is its tenant's stream version that the
// command's answer gave.
type natsWatch struct {
	nc  *nats.Conn
	sub *nats.Subscription

	mu          sync.Mutex
	acks        map[string]time.Time // tenant/version → answer, not yet delivered
	arrived     map[string]time.Time // tenant/version → arrival, not yet acknowledged
	seen        map[string]bool      // event ids
	delivered   int
	redelivered int
	disconnects int
	lat         []time.Duration
}

// watchNATS subscribes to the events at url (servers separated by commas).
// It fails when no server answers; afterwards it reconnects for ever.
func watchNATS(url string) (*natsWatch, error) {
	w := &natsWatch{acks: map[string]time.Time{}, arrived: map[string]time.Time{}, seen: map[string]bool{}}
	nc, err := nats.Connect(url, nats.Name("tenancy bench"), nats.MaxReconnects(-1), nats.ReconnectWait(250*time.Millisecond),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil { // nil: closed by us
				w.mu.Lock()
				w.disconnects++
				w.mu.Unlock()
			}
		}))
	if err != nil {
		return nil, fmt.Errorf("loadgen: connect to NATS at %s: %w", url, err)
	}
	sub, err := nc.Subscribe(subject, w.onMessage)
	if err == nil {
		err = sub.SetPendingLimits(-1, -1) // count every event, however slow this client is
	}
	if err == nil {
		err = nc.Flush() // the subscription is in place before the first command
	}
	if err != nil {
		nc.Close()
		return nil, fmt.Errorf("loadgen: subscribe to %s on %s: %w", subject, url, err)
	}
	w.nc, w.sub = nc, sub
	return w, nil
}

// event is the part of the service's CloudEvent the watch reads.
type event struct {
	ID            string `json:"id"`
	Subject       string `json:"subject"` // the tenant id
	StreamVersion uint64 `json:"streamversion"`
}

func (w *natsWatch) onMessage(m *nats.Msg) {
	now := time.Now()
	var e event
	if json.Unmarshal(m.Data, &e) != nil || e.Subject == "" {
		return
	}
	k := e.Subject + "/" + strconv.FormatUint(e.StreamVersion, 10)
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.seen[e.ID] {
		w.redelivered++
		return
	}
	w.seen[e.ID] = true
	if at, ok := w.acks[k]; ok {
		delete(w.acks, k)
		w.deliver(now.Sub(at))
		return
	}
	w.arrived[k] = now
}

// deliver counts a command's event as delivered d after its answer (an
// event that came first counts 0).
func (w *natsWatch) deliver(d time.Duration) {
	w.delivered++
	w.lat = append(w.lat, max(0, d))
}

// acked records a command's answer; its event may have arrived already.
func (w *natsWatch) acked(tenant string, version uint64, at time.Time) {
	k := tenant + "/" + strconv.FormatUint(version, 10)
	w.mu.Lock()
	defer w.mu.Unlock()
	if arr, ok := w.arrived[k]; ok {
		delete(w.arrived, k)
		w.deliver(arr.Sub(at))
		return
	}
	w.acks[k] = at
}

// wait waits up to d for the events still missing, then reports.
func (w *natsWatch) wait(ctx context.Context, d time.Duration) NATSStats {
	deadline := time.NewTimer(d)
	defer deadline.Stop()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		w.mu.Lock()
		missing := len(w.acks)
		w.mu.Unlock()
		if missing == 0 {
			break
		}
		select {
		case <-ctx.Done():
		case <-deadline.C:
		case <-tick.C:
			continue
		}
		break
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	return NATSStats{Delivered: w.delivered, Missing: len(w.acks), Redelivered: w.redelivered,
		Latency: summarize(w.lat), Disconnects: w.disconnects}
}

func (w *natsWatch) close() {
	_ = w.sub.Unsubscribe()
	w.nc.Close()
}
