package queries

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/tenancyhq/tenancy/aggregate"
	"github.com/tenancyhq/tenancy/eventstore"
	"github.com/tenancyhq/tenancy/tenantlog"
)

// Replayer answers the auditor's questions from the event stream itself,
// never from the read model: what did this tenant look like at a moment, and
// what changed, when, by whom and why.
type Replayer struct {
	store eventstore.StreamReader
}

// NewReplayer returns a replayer over the event store.
func NewReplayer(store eventstore.StreamReader) *Replayer { return &Replayer{store: store} }

// ReplayOptions bound a replay: the end point is the last event at or before
// AsOf (by occurred_at) and at or below ToVersion; nil means no bound.
type ReplayOptions struct {
	AsOf      *time.Time
	ToVersion *uint64
}

// Change is one field of the tenant's state that an event changed.
type Change struct {
	Field string `json:"field"`
	From  any    `json:"from"`
	To    any    `json:"to"`
}

// TimelineEntry is one event of a tenant's history.
type TimelineEntry struct {
	Version       uint64                `json:"version"`
	OccurredAt    time.Time             `json:"occurred_at"`
	Type          string                `json:"type"`
	EventID       uuid.UUID             `json:"event_id"`
	Actor         string                `json:"actor,omitempty"`
	CorrelationID string                `json:"correlation_id,omitempty"`
	Command       aggregate.CommandName `json:"command,omitempty"`
	Data          aggregate.Event       `json:"data"`
	Changes       []Change              `json:"changes"`
}

// Timeline is a tenant's history up to an end point, and its state there.
type Timeline struct {
	TenantID uuid.UUID       `json:"tenant_id"`
	Entries  []TimelineEntry `json:"entries"`
	// State is the tenant folded up to the end point.
	State *aggregate.Tenant `json:"state"`
	// Redacted is true when the tenant was purged: personal fields of every
	// event show as aggregate.Redacted.
	Redacted bool `json:"redacted"`
}

// ErrNotYetCreated: the end point is before the tenant's first event.
var ErrNotYetCreated error = &aggregate.Error{Code: aggregate.CodeNotFound, Message: "the tenant did not exist at that point"}

// Replay folds the tenant's stream up to the end point and returns each
// event with what it changed. An unknown tenant is ErrNotFound; an end point
// before its creation is ErrNotYetCreated; a ToVersion past the stream's last
// event is a not-found error naming the last version (field "version").
func (r *Replayer) Replay(ctx context.Context, id uuid.UUID, opts ReplayOptions) (Timeline, error) {
	recs, err := r.store.ReadStream(ctx, aggregate.StreamName(id), eventstore.Forward, 0, 0)
	if errors.Is(err, eventstore.ErrStreamNotFound) {
		return Timeline{}, ErrNotFound
	}
	if err != nil {
		return Timeline{}, fmt.Errorf("replay %s: %w", id, err)
	}
	envs, err := tenantlog.DecodeAll(recs)
	if err != nil {
		return Timeline{}, fmt.Errorf("replay %s: %w", id, err)
	}
	purged := slices.ContainsFunc(envs, func(e aggregate.Envelope) bool { return e.Type == "TenantPurged" })
	tl := Timeline{TenantID: id, Redacted: purged, Entries: []TimelineEntry{}}
	state := &aggregate.Tenant{}
	before := stateMap(state)
	for _, env := range envs {
		if opts.AsOf != nil && env.OccurredAt.After(*opts.AsOf) {
			break
		}
		if opts.ToVersion != nil && env.Version > *opts.ToVersion {
			break
		}
		if purged {
			env.Data = aggregate.RedactPersonal(env.Data)
		}
		state.Apply(env)
		after := stateMap(state)
		tl.Entries = append(tl.Entries, TimelineEntry{
			Version: env.Version, OccurredAt: env.OccurredAt, Type: env.Type, EventID: env.EventID,
			Actor: env.Metadata.Actor, CorrelationID: env.Metadata.CorrelationID, Command: env.Metadata.Command,
			Data: env.Data, Changes: diff("", before, after),
		})
		before = after
	}
	if len(tl.Entries) == 0 {
		return Timeline{}, ErrNotYetCreated
	}
	if last := envs[len(envs)-1].Version; opts.ToVersion != nil && *opts.ToVersion > last {
		return Timeline{}, &aggregate.Error{Code: aggregate.CodeNotFound, Field: "version", Rule: "at_most_head",
			Message: fmt.Sprintf("the tenant's stream ends at version %d: there is no version %d", last, *opts.ToVersion)}
	}
	if purged {
		state.Contacts = redactedContacts(state.Contacts)
	}
	tl.State = state
	return tl, nil
}

func redactedContacts(cs []aggregate.Contact) []aggregate.Contact {
	if len(cs) == 0 {
		return cs
	}
	return aggregate.RedactPersonal(aggregate.ContactsUpdated{Contacts: cs}).(aggregate.ContactsUpdated).Contacts
}

// stateMap is the tenant's JSON as a map, for diffing. Bookkeeping fields
// that change with every event are left out.
func stateMap(t *aggregate.Tenant) map[string]any {
	b, _ := json.Marshal(t) // a Tenant always marshals
	var m map[string]any
	_ = json.Unmarshal(b, &m)
	delete(m, "version")
	delete(m, "updated_at")
	return m
}

// diff lists the leaf fields that differ between two JSON values, sorted.
func diff(prefix string, a, b map[string]any) []Change {
	keys := map[string]bool{}
	for k := range a {
		keys[k] = true
	}
	for k := range b {
		keys[k] = true
	}
	var names []string
	for k := range keys {
		names = append(names, k)
	}
	slices.Sort(names)
	out := []Change{}
	for _, k := range names {
		x, y := a[k], b[k]
		if reflect.DeepEqual(x, y) {
			continue
		}
		field := k
		if prefix != "" {
			field = prefix + "." + k
		}
		xm, xok := x.(map[string]any)
		ym, yok := y.(map[string]any)
		if xok && yok {
			out = append(out, diff(field, xm, ym)...)
			continue
		}
		out = append(out, Change{Field: field, From: x, To: y})
	}
	return out
}

// Summary renders changes as "status: TRIAL → ACTIVE; billing_status: …".
func Summary(changes []Change) string {
	parts := make([]string, 0, len(changes))
	for _, c := range changes {
		parts = append(parts, c.Field+": "+render(c.From)+" → "+render(c.To))
	}
	return strings.Join(parts, "; ")
}

func render(v any) string {
	switch x := v.(type) {
	case nil:
		return "∅"
	case string:
		if x == "" || x == "0001-01-01T00:00:00Z" || x == "00000000-0000-0000-0000-000000000000" {
			return "∅"
		}
		return x
	}
	b, _ := json.Marshal(v)
	s := string(b)
	if len(s) > 80 {
		s = s[:77] + "…"
	}
	return s
}
