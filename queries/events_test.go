package queries_test

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/tenancyhq/tenancy/aggregate"
	"github.com/tenancyhq/tenancy/internal/pgtest"
	"github.com/tenancyhq/tenancy/queries"
)

// auditFixture gives a tenant a history of events an hour apart, and another
// tenant whose events must never show up in the first one's trail.
func auditFixture(t *testing.T) (*history, uuid.UUID) {
	w := newHistory(t)
	id := w.create("Audited")
	other := w.create("Other")
	w.do(id, aggregate.CompleteProvisioning{})
	w.do(other, aggregate.CompleteProvisioning{})
	for i := range 3 {
		w.do(id, aggregate.Suspend{Reason: aggregate.ReasonPaymentOverdue, Note: "late"})
		w.do(other, aggregate.Suspend{Reason: aggregate.ReasonAdminAction})
		w.do(id, aggregate.Resume{})
		w.do(other, aggregate.Resume{})
		w.do(id, aggregate.UpdateProfile{Metadata: &map[string]string{"round": string(rune('a' + i))}})
	}
	return w, id
}

func walkEvents(t *testing.T, r *queries.Reader, id uuid.UUID, f queries.EventFilter) []queries.EventRecord {
	t.Helper()
	var out []queries.EventRecord
	for pages := 0; pages < 1000; pages++ {
		p, err := r.Events(context.Background(), id, f)
		if err != nil {
			t.Fatalf("Events(%+v): %v", f, err)
		}
		if f.Limit > 0 && len(p.Events) > f.Limit {
			t.Fatalf("page of %d events, limit %d", len(p.Events), f.Limit)
		}
		out = append(out, p.Events...)
		if p.NextCursor == "" {
			return out
		}
		f.Cursor = p.NextCursor
	}
	t.Fatal("more than 1000 pages: the cursor does not advance")
	return nil
}

func TestEventsFilterAndPageATenantsTrail(t *testing.T) {
	t.Parallel()
	pool, _ := pgtest.NewMigrated(t)
	w, id := auditFixture(t)
	w.project(pool)
	r := queries.NewReader(pool)
	stream := w.stream(id)

	// The whole trail, one event per page: every event of the stream, in
	// order, as recorded.
	all := walkEvents(t, r, id, queries.EventFilter{Limit: 1})
	if len(all) != len(stream) {
		t.Fatalf("%d events, want %d", len(all), len(stream))
	}
	for i, e := range all {
		s := stream[i]
		var meta aggregate.Metadata
		if err := json.Unmarshal(e.Metadata, &meta); err != nil {
			t.Fatal(err)
		}
		if e.ID != s.ID || e.Type != s.Type || e.StreamVersion != s.Version || e.Position != s.Position.String() ||
			e.SchemaVersion != aggregate.SchemaVersion(s.Type) || !e.OccurredAt.Equal(meta.OccurredAt) || e.OccurredAt.Location() != time.UTC ||
			meta.Actor != "test" || !json.Valid(e.Data) {
			t.Fatalf("event %d = %+v, want the stored %+v", i, e, s)
		}
	}

	typeOf := func(es []queries.EventRecord) []string {
		var out []string
		for _, e := range es {
			out = append(out, e.Type+"@"+e.OccurredAt.Format(time.RFC3339))
		}
		return out
	}
	pick := func(keep func(queries.EventRecord) bool) []string {
		var out []queries.EventRecord
		for _, e := range all {
			if keep(e) {
				out = append(out, e)
			}
		}
		return typeOf(out)
	}
	from, to := all[2].OccurredAt, all[7].OccurredAt
	for _, c := range []struct {
		name string
		f    queries.EventFilter
		keep func(queries.EventRecord) bool
	}{
		{"one type", queries.EventFilter{Types: []string{"TenantSuspended"}},
			func(e queries.EventRecord) bool { return e.Type == "TenantSuspended" }},
		{"two types", queries.EventFilter{Types: []string{"TenantResumed", "TenantCreated", "TenantResumed"}},
			func(e queries.EventRecord) bool { return e.Type == "TenantResumed" || e.Type == "TenantCreated" }},
		{"after", queries.EventFilter{After: &from},
			func(e queries.EventRecord) bool { return e.OccurredAt.After(from) }},
		{"before", queries.EventFilter{Before: &to},
			func(e queries.EventRecord) bool { return e.OccurredAt.Before(to) }},
		{"between, one type", queries.EventFilter{After: &from, Before: &to, Types: []string{"TenantResumed"}},
			func(e queries.EventRecord) bool {
				return e.OccurredAt.After(from) && e.OccurredAt.Before(to) && e.Type == "TenantResumed"
			}},
		{"a type it never had", queries.EventFilter{Types: []string{"TenantPurged"}},
			func(queries.EventRecord) bool { return false }},
	} {
		for _, limit := range []int{0, 1, 2, 5} {
			f := c.f
			f.Limit = limit
			got, want := typeOf(walkEvents(t, r, id, f)), pick(c.keep)
			if len(want) == 0 && c.name != "a type it never had" {
				t.Fatalf("%s selects nothing: the case proves little", c.name)
			}
			if !slices.Equal(got, want) {
				t.Errorf("%s, limit %d: %v\nwant %v", c.name, limit, got, want)
			}
		}
	}
}

func TestEventsSeesEventsAppendedWhilePaging(t *testing.T) {
	t.Parallel()
	pool, _ := pgtest.NewMigrated(t)
	w, id := auditFixture(t)
	w.project(pool)
	r := queries.NewReader(pool)
	ctx := context.Background()
	p, err := r.Events(ctx, id, queries.EventFilter{Limit: 3})
	if err != nil {
		t.Fatal(err)
	}
	w.do(id, aggregate.Suspend{Reason: aggregate.ReasonAbuseDetected})
	w.project(pool)
	rest := walkEvents(t, r, id, queries.EventFilter{Limit: 3, Cursor: p.NextCursor})
	got := append(p.Events, rest...)
	stream := w.stream(id)
	if len(got) != len(stream) {
		t.Fatalf("%d events, want %d", len(got), len(stream))
	}
	for i := range got {
		if got[i].ID != stream[i].ID {
			t.Fatalf("event %d is %s, want %s", i, got[i].ID, stream[i].ID)
		}
	}
}

func TestEventsOfUnknownTenantIsNotFound(t *testing.T) {
	t.Parallel()
	pool, _ := pgtest.NewMigrated(t)
	w, id := auditFixture(t)
	w.project(pool)
	r := queries.NewReader(pool)
	_, err := r.Events(context.Background(), uuid.New(), queries.EventFilter{})
	if !errors.Is(err, queries.ErrNotFound) {
		t.Fatalf("unknown tenant: %v, want ErrNotFound", err)
	}
	// A known tenant whose filter selects nothing is an empty page.
	p, err := r.Events(context.Background(), id, queries.EventFilter{Types: []string{"TenantPurged"}})
	if err != nil || p.Events == nil || len(p.Events) != 0 || p.NextCursor != "" {
		t.Fatalf("empty selection: %+v, %v", p, err)
	}
	// The trail outlives the tenant row.
	pgtest.Exec(t, pool, `DELETE FROM tenants WHERE id = $1`, id)
	if p, err := r.Events(context.Background(), id, queries.EventFilter{}); err != nil || len(p.Events) == 0 {
		t.Fatalf("events of a tenant without a row: %d events, %v", len(p.Events), err)
	}
}

func TestEventsRefusesInvalidInputNamingFieldAndRule(t *testing.T) {
	t.Parallel()
	pool, _ := pgtest.NewMigrated(t)
	w, id := auditFixture(t)
	w.project(pool)
	r := queries.NewReader(pool)
	ctx := context.Background()
	first, err := r.Events(ctx, id, queries.EventFilter{Limit: 1})
	if err != nil {
		t.Fatal(err)
	}
	at := base.Add(time.Hour)
	for _, c := range []struct {
		name        string
		f           queries.EventFilter
		field, rule string
	}{
		{"unknown type", queries.EventFilter{Types: []string{"TenantExploded"}}, "type", "one_of"},
		{"empty range", queries.EventFilter{After: &at, Before: &at}, "after", "before_before"},
		{"after out of range", queries.EventFilter{After: ptr(time.Date(-3, 1, 1, 0, 0, 0, 0, time.UTC))}, "after", "range"},
		{"negative limit", queries.EventFilter{Limit: -5}, "limit", "range"},
		{"limit over the maximum", queries.EventFilter{Limit: queries.MaxLimit + 1}, "limit", "range"},
		{"garbage cursor", queries.EventFilter{Cursor: "%%%"}, "cursor", "malformed"},
		{"cursor of another filter", queries.EventFilter{Types: []string{"TenantCreated"}, Cursor: first.NextCursor}, "cursor", "mismatch"},
	} {
		_, err := r.Events(ctx, id, c.f)
		validation(t, err, c.field, c.rule)
	}
}
