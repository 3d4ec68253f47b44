package natspub

import (
	"encoding/json"
	"time"

	"github.com/tenancyhq/tenancy/aggregate"
)

// readMetadata decodes an event's metadata JSON, exactly as json.Unmarshal
// into aggregate.Metadata would. The service writes metadata as one flat
// object of plain strings, and for that shape it scans the bytes directly:
// json.Unmarshal was most of the publisher's CPU per event. Anything else
// (an escape, a non-string value, odd syntax) goes to json.Unmarshal, so
// the result and the errors stay those of encoding/json.
func readMetadata(raw []byte) (aggregate.Metadata, error) {
	if m, ok := scanMetadata(raw); ok {
		return m, nil
	}
	var m aggregate.Metadata
	err := json.Unmarshal(raw, &m)
	return m, err
}

// scanMetadata is readMetadata's fast path; ok is false when raw is not a
// flat object of escape-free strings with a well-formed occurred_at.
func scanMetadata(raw []byte) (m aggregate.Metadata, ok bool) {
	i := skipSpace(raw, 0)
	if i >= len(raw) || raw[i] != '{' {
		return m, false
	}
	i = skipSpace(raw, i+1)
	if i < len(raw) && raw[i] == '}' {
		return m, skipSpace(raw, i+1) == len(raw)
	}
	for {
		var key, value string
		if key, i, ok = scanString(raw, i); !ok {
			return m, false
		}
		if i = skipSpace(raw, i); i >= len(raw) || raw[i] != ':' {
			return m, false
		}
		if value, i, ok = scanString(raw, skipSpace(raw, i+1)); !ok {
			return m, false
		}
		switch key {
		case "occurred_at":
			t, err := time.Parse(time.RFC3339Nano, value)
			if err != nil {
				return m, false
			}
			m.OccurredAt = t
		case "correlation_id":
			m.CorrelationID = value
		case "causation_id":
			m.CausationID = value
		case "actor":
			m.Actor = value
		case "trace_parent":
			m.TraceParent = value
		case "command":
			m.Command = aggregate.CommandName(value)
		default:
			// encoding/json matches keys case-insensitively: leave
			// anything unexpected to it.
			return m, false
		}
		if i = skipSpace(raw, i); i >= len(raw) {
			return m, false
		}
		switch raw[i] {
		case ',':
			i = skipSpace(raw, i+1)
		case '}':
			return m, skipSpace(raw, i+1) == len(raw)
		default:
			return m, false
		}
	}
}

// scanString reads a JSON string at raw[i] that has no escapes, no control
// characters and only ASCII (the rest is encoding/json's to interpret).
func scanString(raw []byte, i int) (s string, next int, ok bool) {
	if i >= len(raw) || raw[i] != '"' {
		return "", i, false
	}
	for j := i + 1; j < len(raw); j++ {
		switch c := raw[j]; {
		case c == '"':
			return string(raw[i+1 : j]), j + 1, true
		case c == '\\' || c < 0x20 || c >= 0x80:
			return "", i, false
		}
	}
	return "", i, false
}

func skipSpace(raw []byte, i int) int {
	for i < len(raw) && (raw[i] == ' ' || raw[i] == '\t' || raw[i] == '\n' || raw[i] == '\r') {
		i++
	}
	return i
}
