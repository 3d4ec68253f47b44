package esdb

import (
	"errors"
	"math"
	"testing"

	"github.com/EventStore/EventStore-Client-Go/v4/esdb"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/tenancyhq/tenancy/eventstore"
)

func TestEnvelopeRoundTrips(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name     string
		version  int
		metadata string
		want     string // the stored envelope
	}{
		{"no metadata", 1, "", `{"schema_version":1}`},
		{"metadata kept as written", 3, `{ "actor" : "a<b>" }`, `{"schema_version":3,"metadata":{ "actor" : "a<b>" }}`},
		{"correlation copied", 2, `{"correlation_id":"c","causation_id":"e","x":1}`,
			`{"schema_version":2,"$correlationId":"c","$causationId":"e","metadata":{"correlation_id":"c","causation_id":"e","x":1}}`},
		{"non-string correlation not copied", 1, `{"correlation_id":7}`, `{"schema_version":1,"metadata":{"correlation_id":7}}`},
		{"array metadata", 1, `[1,2]`, `{"schema_version":1,"metadata":[1,2]}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var meta []byte
			if tc.metadata != "" {
				meta = []byte(tc.metadata)
			}
			raw, err := encodeEnvelope(tc.version, meta)
			if err != nil {
				t.Fatal(err)
			}
			if string(raw) != tc.want {
				t.Errorf("stored %s\nwant   %s", raw, tc.want)
			}
			v, back := decodeEnvelope(raw)
			if v != tc.version || string(back) != tc.metadata || (tc.metadata == "") != (back == nil) {
				t.Errorf("read back v%d %q, want v%d %q", v, back, tc.version, tc.metadata)
			}
		})
	}
	if _, err := encodeEnvelope(1, []byte(`{not json`)); err == nil {
		t.Error("metadata that is not JSON was accepted")
	}
}

func TestForeignMetadataReadsBackAsIs(t *testing.T) {
	t.Parallel()
	for _, raw := range []string{`{"source":"legacy"}`, `not json`, `{"schema_version":"x"}`} {
		v, meta := decodeEnvelope([]byte(raw))
		if v != 1 || string(meta) != raw {
			t.Errorf("%s: v%d %s", raw, v, meta)
		}
	}
	if v, meta := decodeEnvelope(nil); v != 1 || meta != nil {
		t.Errorf("no metadata: v%d %q", v, meta)
	}
}

func TestPositionsOfStreamReads(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in   esdb.Position
		want eventstore.Position
	}{
		{esdb.Position{Commit: 10, Prepare: 10}, eventstore.Position{Commit: 10, Prepare: 10}},
		{esdb.Position{Commit: 20, Prepare: 15}, eventstore.Position{Commit: 20, Prepare: 15}},
		{esdb.Position{Commit: math.MaxUint64, Prepare: 15}, eventstore.Position{Commit: 15, Prepare: 15}},
		{esdb.Position{Commit: math.MaxUint64, Prepare: math.MaxUint64}, eventstore.Position{}},
	} {
		if got := toPosition(tc.in); got != tc.want {
			t.Errorf("toPosition(%v) = %v, want %v", tc.in, got, tc.want)
		}
	}
}

func TestActualVersionFromTheClientError(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		msg    string
		want   int64
		wantOK bool
	}{
		{"wrong expected version: expecting '3' but got '7'", 7, true},
		{"wrong expected version: expecting 'no_stream' but got '0'", 0, true},
		{"wrong expected version: expecting '0' but got 'no_stream'", -1, true},
		{"something else", 0, false},
	} {
		got, ok := actualVersion(errors.New(tc.msg))
		if got != tc.want || ok != tc.wantOK {
			t.Errorf("%q: %d, %v", tc.msg, got, ok)
		}
	}
}

func TestPermanentSubscriptionErrors(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		err  error
		want bool
	}{
		{status.Error(codes.Unavailable, "gone"), false},
		{status.Error(codes.Aborted, "dropped"), false},
		{errors.New("EOF"), false},
		{status.Error(codes.PermissionDenied, "no"), true},
		{status.Error(codes.Unauthenticated, "who"), true},
		{status.Error(codes.InvalidArgument, "bad position"), true},
	} {
		if got := permanent(tc.err); got != tc.want {
			t.Errorf("permanent(%v) = %v", tc.err, got)
		}
	}
}

func TestRedactURL(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"esdb://admin:changeit@h:2113?tls=false": "esdb://admin:xxxxx@h:2113?tls=false",
		"esdb+discover://u:p@a:1,b:2":            "esdb+discover://u:xxxxx@a:1,b:2",
		"esdb://h:2113":                          "esdb://h:2113",
		"esdb://user@h:2113":                     "esdb://user@h:2113",
	} {
		if got := RedactURL(in); got != want {
			t.Errorf("RedactURL(%s) = %s, want %s", in, got, want)
		}
	}
}
