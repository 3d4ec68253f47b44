package esdb

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"strings"

	"github.com/EventStore/EventStore-Client-Go/v4/esdb"

	"github.com/tenancyhq/tenancy/eventstore"
)

// envelope is the custom metadata of the events the adapter writes: what the
// server does not keep natively (the schema version, the service's
// metadata).
type envelope struct {
	SchemaVersion *int            `json:"schema_version"`
	Metadata      json.RawMessage `json:"metadata"`
}

// encodeEvent turns an event of the port into one for the client.
func encodeEvent(e eventstore.EventData) (esdb.EventData, error) {
	meta, err := encodeEnvelope(e.SchemaVersion, e.Metadata)
	if err != nil {
		return esdb.EventData{}, fmt.Errorf("event %s: %w", e.ID, err)
	}
	contentType := esdb.ContentTypeJson
	if !json.Valid(e.Data) {
		contentType = esdb.ContentTypeBinary
	}
	return esdb.EventData{
		EventID:     e.ID,
		EventType:   e.Type,
		ContentType: contentType,
		Data:        e.Data,
		Metadata:    meta,
	}, nil
}

// encodeEnvelope writes the envelope by hand so that the service's metadata
// is kept byte for byte (encoding/json would compact and escape it).
func encodeEnvelope(schemaVersion int, metadata []byte) ([]byte, error) {
	var b bytes.Buffer
	b.WriteString(`{"schema_version":`)
	b.WriteString(strconv.Itoa(schemaVersion))
	if len(metadata) > 0 {
		if !json.Valid(metadata) {
			return nil, fmt.Errorf("metadata is not JSON")
		}
		var fields map[string]json.RawMessage
		if json.Unmarshal(metadata, &fields) == nil {
			for _, f := range [...]struct{ ours, theirs string }{
				{"correlation_id", "$correlationId"},
				{"causation_id", "$causationId"},
			} {
				var v string
				if json.Unmarshal(fields[f.ours], &v) == nil && v != "" {
					b.WriteString(`,"` + f.theirs + `":`)
					q, _ := json.Marshal(v) // a string always marshals
					b.Write(q)
				}
			}
		}
		b.WriteString(`,"metadata":`)
		b.Write(metadata)
	}
	b.WriteByte('}')
	return b.Bytes(), nil
}

// decodeEnvelope reads the schema version and the service's metadata back.
// Metadata that is not an envelope (an event someone else wrote) is returned
// as it is, with schema version 1.
func decodeEnvelope(raw []byte) (schemaVersion int, metadata []byte) {
	var env envelope
	if len(raw) == 0 || json.Unmarshal(raw, &env) != nil || env.SchemaVersion == nil {
		if len(raw) == 0 {
			raw = nil
		}
		return 1, raw
	}
	if len(env.Metadata) == 0 || string(env.Metadata) == "null" {
		return *env.SchemaVersion, nil
	}
	return *env.SchemaVersion, env.Metadata
}

// decodeEvent turns a recorded event of the client into one of the port;
// stream is the name without the namespace.
func decodeEvent(r *esdb.RecordedEvent, stream string) eventstore.RecordedEvent {
	version, meta := decodeEnvelope(r.UserMetadata)
	data := r.Data
	if len(data) == 0 {
		data = nil
	}
	return eventstore.RecordedEvent{
		ID:            r.EventID,
		Type:          r.EventType,
		SchemaVersion: version,
		Stream:        stream,
		Version:       r.EventNumber,
		Position:      toPosition(r.Position),
		Data:          data,
		Metadata:      meta,
		RecordedAt:    r.CreatedDate,
	}
}

// toPosition converts a log position. Servers that do not know where an
// event read from its stream was committed send the largest uint64 as its
// commit position; every event written through gRPC commits itself, at its
// own log position, so the prepare position stands in. When both are
// unknown the position is left zero.
func toPosition(p esdb.Position) eventstore.Position {
	if p.Commit == math.MaxUint64 {
		if p.Prepare == math.MaxUint64 {
			return eventstore.Position{}
		}
		p.Commit = p.Prepare
	}
	return eventstore.Position{Commit: p.Commit, Prepare: p.Prepare}
}

// claimStreamPrefix starts the streams that claim event ids;
// uniqueClaimPrefix those that claim unique values (see commit.go).
const (
	claimStreamPrefix = "eventid-"
	uniqueClaimPrefix = "uniqueclaim-"
)

// feedEvent decides whether a recorded event of $all belongs in the feed
// under filter: it must be in the namespace, not a system event or stream,
// not an event id claim nor the store's identity, and pass the filter.
func (s *Store) feedEvent(r *esdb.RecordedEvent, filter eventstore.Filter) (eventstore.RecordedEvent, bool) {
	stream, ok := strings.CutPrefix(r.StreamID, s.ns)
	if !ok || strings.HasPrefix(stream, "$") || strings.HasPrefix(r.EventType, "$") ||
		strings.HasPrefix(stream, claimStreamPrefix) || strings.HasPrefix(stream, uniqueClaimPrefix) || stream == identityStream || !filter.Match(stream) {
		return eventstore.RecordedEvent{}, false
	}
	return decodeEvent(r, stream), true
}
