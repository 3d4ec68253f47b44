package queries_test

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/tenancyhq/tenancy/aggregate"
	"github.com/tenancyhq/tenancy/commands"
	"github.com/tenancyhq/tenancy/eventstore/memory"
	"github.com/tenancyhq/tenancy/queries"
)

func TestReplayAsOfBetweenTwoEventsShowsTheEarlierState(t *testing.T) {
	t.Parallel()
	store := memory.New()
	now := time.Date(2026, 5, 1, 10, 0, 0, 0, time.UTC)
	h := commands.NewHandler(store, commands.Options{Now: func() time.Time { return now }})
	ctx := context.Background()
	res, err := h.Create(ctx, aggregate.Create{Name: "Audit Co", Edition: "professional", Region: "us-east-1",
		Contacts: []aggregate.Contact{{Role: "primary", Name: "Ada Lovelace", Email: "ada@audit.example"}}}, aggregate.Metadata{Actor: "user:ops"})
	if err != nil {
		t.Fatal(err)
	}
	id := res.TenantID
	step := func(cmd aggregate.Command) {
		now = now.Add(time.Hour)
		if _, err := h.Execute(ctx, commands.Request{TenantID: id, Command: cmd, Metadata: aggregate.Metadata{Actor: "user:ops", CorrelationID: "c-" + string(cmd.CommandName())}}); err != nil {
			t.Fatal(err)
		}
	}
	step(aggregate.CompleteProvisioning{})                       // 11:00 → TRIAL
	step(aggregate.ConvertTrial{})                               // 12:00 → ACTIVE
	step(aggregate.Suspend{Reason: aggregate.ReasonAdminAction}) // 13:00 → SUSPENDED
	r := queries.NewReplayer(store)

	between := time.Date(2026, 5, 1, 12, 30, 0, 0, time.UTC)
	tl, err := r.Replay(ctx, id, queries.ReplayOptions{AsOf: &between})
	if err != nil {
		t.Fatal(err)
	}
	if tl.State.Status != aggregate.StatusActive || len(tl.Entries) != 4 {
		t.Fatalf("as of 12:30: status %s after %d events, want ACTIVE after 4", tl.State.Status, len(tl.Entries))
	}
	last := tl.Entries[3]
	if last.Type != "TrialConverted" || last.Actor != "user:ops" || last.CorrelationID != "c-convert-trial" ||
		!strings.Contains(queries.Summary(last.Changes), "status: TRIAL → ACTIVE") {
		t.Fatalf("last entry %+v (%s)", last, queries.Summary(last.Changes))
	}
	v := uint64(1)
	tl, err = r.Replay(ctx, id, queries.ReplayOptions{ToVersion: &v})
	if err != nil || tl.State.Status != aggregate.StatusProvisioning {
		t.Fatalf("to version 1: %v, %v", tl.State, err)
	}
	before := time.Date(2026, 4, 1, 0, 0, 0, 0, time.UTC)
	if _, err := r.Replay(ctx, id, queries.ReplayOptions{AsOf: &before}); !errors.Is(err, queries.ErrNotYetCreated) {
		t.Fatalf("before creation: %v, want ErrNotYetCreated", err)
	}
	if _, err := r.Replay(ctx, uuid.New(), queries.ReplayOptions{}); !errors.Is(err, queries.ErrNotFound) {
		t.Fatalf("unknown tenant: %v", err)
	}

	// After a purge the whole history is still there, with no personal data.
	step(aggregate.Terminate{})
	step(aggregate.Purge{})
	tl, err = r.Replay(ctx, id, queries.ReplayOptions{})
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(tl)
	if strings.Contains(string(b), "ada@audit.example") || strings.Contains(string(b), "Ada Lovelace") || !tl.Redacted || len(tl.Entries) != 7 {
		t.Fatalf("purged timeline (%d entries, redacted=%v) leaks personal data: %s", len(tl.Entries), tl.Redacted, b)
	}
}
