// Package tenantlog is the tenants' event log over the event store port:
// how a tenant's events are laid out in the store (the codec), and the
// crypto-shredding of their personal fields (Store, Keys). Commands,
// projections and replays see the aggregate's envelopes, in clear (or
// redacted once a tenant is purged), and never the store's records.
package tenantlog

import (
	"encoding/json"
	"fmt"
	"strings"

	"github.com/google/uuid"

	"github.com/tenancyhq/tenancy/aggregate"
	"github.com/tenancyhq/tenancy/eventstore"
)

// Encode turns an envelope into an event to append.
func Encode(env aggregate.Envelope) (eventstore.EventData, error) {
	data, version, err := aggregate.EncodeEvent(env.Data)
	if err != nil {
		return eventstore.EventData{}, err
	}
	meta, err := json.Marshal(env.Metadata)
	if err != nil {
		return eventstore.EventData{}, fmt.Errorf("encode metadata of %s: %w", env.Type, err)
	}
	return eventstore.EventData{ID: env.EventID, Type: env.Type, SchemaVersion: version, Data: data, Metadata: meta}, nil
}

// Decode turns a recorded tenant event into an envelope, upcasting old schema
// versions. OccurredAt comes from the metadata (the decision time), falling
// back to the store's recorded time for events written without it.
func Decode(r eventstore.RecordedEvent) (aggregate.Envelope, error) {
	e, err := aggregate.DecodeEvent(r.Type, r.SchemaVersion, r.Data)
	if err != nil {
		return aggregate.Envelope{}, fmt.Errorf("%s@%d: %w", r.Stream, r.Version, err)
	}
	var meta aggregate.Metadata
	if len(r.Metadata) > 0 {
		if err := json.Unmarshal(r.Metadata, &meta); err != nil {
			return aggregate.Envelope{}, fmt.Errorf("%s@%d: metadata: %w", r.Stream, r.Version, err)
		}
	}
	if meta.OccurredAt.IsZero() {
		meta.OccurredAt = r.RecordedAt.UTC()
	}
	return aggregate.Envelope{
		EventID:       r.ID,
		Type:          r.Type,
		SchemaVersion: aggregate.SchemaVersion(r.Type),
		Stream:        r.Stream,
		Version:       r.Version,
		OccurredAt:    meta.OccurredAt,
		Metadata:      meta,
		Data:          e,
	}, nil
}

// DecodeAll decodes a slice of records.
func DecodeAll(rs []eventstore.RecordedEvent) ([]aggregate.Envelope, error) {
	out := make([]aggregate.Envelope, len(rs))
	for i, r := range rs {
		env, err := Decode(r)
		if err != nil {
			return nil, err
		}
		out[i] = env
	}
	return out, nil
}

// TenantID reads the tenant id out of a tenant stream name.
func TenantID(stream string) (uuid.UUID, error) {
	id, ok := strings.CutPrefix(stream, aggregate.StreamPrefix)
	if !ok {
		return uuid.Nil, fmt.Errorf("stream %q is not a tenant stream", stream)
	}
	return uuid.Parse(id)
}
