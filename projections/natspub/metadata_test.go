package natspub

import (
	"encoding/json"
	"reflect"
	"testing"

	"github.com/tenancyhq/tenancy/aggregate"
)

func TestReadMetadataDecodesLikeEncodingJSON(t *testing.T) {
	t.Parallel()
	for _, raw := range []string{
		`{}`,
		` { } `,
		`{"occurred_at":"2026-11-26T21:57:24.440326803Z","correlation_id":"c","causation_id":"k","actor":"user:alice","trace_parent":"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01","command":"suspend"}`,
		// Postgres jsonb's rendering
		`{"actor": "user:alice", "command": "create", "occurred_at": "2026-01-02T03:04:05Z", "correlation_id": "c-1"}`,
		`{"occurred_at":"2026-01-02T03:04:05+02:00"}`,
		`{"actor":"na\u00efve \"quoted\""}`,
		`{"actor":"naïve"}`,
		`{"Actor":"case"}`,
		`{"extra":{"nested":[1,2]},"actor":"a"}`,
		`{"actor":null}`,
		`{"actor":"a",}`,
		`{"actor":"a"} x`,
		`{"occurred_at":"yesterday"}`,
		`{"actor":"a"`,
		`[]`,
		``,
	} {
		var want aggregate.Metadata
		wantErr := json.Unmarshal([]byte(raw), &want)
		got, err := readMetadata([]byte(raw))
		if (err != nil) != (wantErr != nil) {
			t.Errorf("%s: error %v, encoding/json says %v", raw, err, wantErr)
			continue
		}
		if err == nil && (!got.OccurredAt.Equal(want.OccurredAt) || !reflect.DeepEqual(inUTC(got), inUTC(want))) {
			t.Errorf("%s: %+v, encoding/json reads %+v", raw, got, want)
		}
	}
}

func inUTC(m aggregate.Metadata) aggregate.Metadata {
	m.OccurredAt = m.OccurredAt.UTC()
	return m
}

// BenchmarkReadMetadata is why the publisher scans metadata instead of
// decoding it with encoding/json (or handing it a fully decoded envelope):
// the metadata is all it needs of an event besides the bytes it forwards.
func BenchmarkReadMetadata(b *testing.B) {
	raw := []byte(`{"occurred_at":"2026-12-01T20:00:00.123456789Z","correlation_id":"6a0099bb-c5c6-463a-ab27-24e876ff3742","actor":"user:ops","trace_parent":"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01","command":"suspend"}`)
	b.Run("scan", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := readMetadata(raw); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("encoding-json", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			var m aggregate.Metadata
			if err := json.Unmarshal(raw, &m); err != nil {
				b.Fatal(err)
			}
		}
	})
}
