package esdb_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/google/uuid"

	"github.com/tenancyhq/tenancy/eventstore"
	"github.com/tenancyhq/tenancy/eventstore/esdb"
	"github.com/tenancyhq/tenancy/eventstore/esdb/esdbtest"
)

// bigEvent is an event whose data is an object with a member "notes" of n
// bytes beside a small one.
func bigEvent(n int) eventstore.EventData {
	return eventstore.EventData{ID: uuid.New(), Type: "TenantProfileUpdated", SchemaVersion: 1,
		Data: []byte(`{"name":"Acme","notes":"` + strings.Repeat("x", n) + `"}`)}
}

// TestAppendOverTheLimitIsRefusedBeforeSending: an append the adapter
// counts over Options.MaxAppendSize fails with a *TooLargeError naming the
// largest member, and nothing reaches the server (which, at its default
// 1 MiB, would have taken it): no event, no event-id claim, no unique claim.
func TestAppendOverTheLimitIsRefusedBeforeSending(t *testing.T) {
	t.Parallel()
	srv := esdbtest.Start(t, esdbtest.Options{NoSystemEvents: true})
	s := open(t, srv.URL(), esdb.Options{MaxAppendSize: 4 << 10})
	ctx := t.Context()
	for _, write := range []func() error{
		func() error {
			_, err := s.Append(ctx, "tenant-a", eventstore.NoStream, []eventstore.EventData{bigEvent(8 << 10)})
			return err
		},
		func() error {
			_, err := s.Commit(ctx, eventstore.Write{Stream: "tenant-b", Expected: eventstore.NoStream, Events: []eventstore.EventData{bigEvent(100), bigEvent(8 << 10)},
				Claims: []eventstore.Claim{{Kind: "name", Value: "acme"}}})
			return err
		},
	} {
		err := write()
		var tl *eventstore.TooLargeError
		if !errors.As(err, &tl) || !errors.Is(err, eventstore.ErrTooLarge) {
			t.Fatalf("err = %v; want a *TooLargeError", err)
		}
		if tl.Limit != 4<<10 || tl.Size <= tl.Limit || tl.Field != "notes" || tl.EventType != "TenantProfileUpdated" {
			t.Errorf("TooLargeError = %+v; want limit 4096, size over it, field notes of TenantProfileUpdated", tl)
		}
	}
	if head, err := s.Head(ctx); err != nil || head != eventstore.Start {
		t.Errorf("head = %v, %v; want nothing written", head, err)
	}
	if _, err := s.ClaimHolder(ctx, "name", "acme"); !errors.Is(err, eventstore.ErrNotFound) {
		t.Errorf("claim of the refused commit: %v; want none taken", err)
	}
	// Under the limit it goes through.
	if _, err := s.Append(ctx, "tenant-c", eventstore.NoStream, []eventstore.EventData{bigEvent(1 << 10)}); err != nil {
		t.Fatalf("append under the limit: %v", err)
	}
}

// TestServerLimitBelowTheAdapters: a server configured with a smaller
// maximum than the adapter's refuses the append as EventStoreDB does, and
// the adapter reports it as a *TooLargeError with the server's limit.
func TestServerLimitBelowTheAdapters(t *testing.T) {
	t.Parallel()
	srv := esdbtest.Start(t, esdbtest.Options{NoSystemEvents: true, MaxAppendSize: 2 << 10})
	s := open(t, srv.URL(), esdb.Options{})
	_, err := s.Append(t.Context(), "tenant-a", eventstore.NoStream, []eventstore.EventData{bigEvent(3 << 10)})
	var tl *eventstore.TooLargeError
	if !errors.As(err, &tl) || tl.Limit != 2<<10 || tl.Field != "notes" {
		t.Fatalf("err = %v (%+v); want a *TooLargeError with the server's limit 2048 naming notes", err, tl)
	}
	if _, err := s.ReadStream(t.Context(), "tenant-a", eventstore.Forward, 0, 0); !errors.Is(err, eventstore.ErrStreamNotFound) {
		t.Errorf("read after the refusal: %v; want no stream", err)
	}
}

// TestServerRefusesOverItsDefaultLimit: the test server holds EventStoreDB's
// default maximum append size (1 MiB), counted over data, metadata and type.
func TestServerRefusesOverItsDefaultLimit(t *testing.T) {
	t.Parallel()
	srv := esdbtest.Start(t, esdbtest.Options{NoSystemEvents: true})
	// An adapter that does not check (its limit above the server's).
	s := open(t, srv.URL(), esdb.Options{MaxAppendSize: 8 << 20, NoEventIDClaims: true})
	_, err := s.Append(t.Context(), "tenant-a", eventstore.NoStream, []eventstore.EventData{bigEvent(1 << 20)})
	var tl *eventstore.TooLargeError
	if !errors.As(err, &tl) || tl.Limit != esdb.DefaultMaxAppendSize {
		t.Fatalf("err = %v; want the server's refusal at 1 MiB", err)
	}
	if _, err := s.Append(t.Context(), "tenant-b", eventstore.NoStream, []eventstore.EventData{bigEvent(1<<20 - 1024)}); err != nil {
		t.Fatalf("just under 1 MiB: %v", err)
	}
}
