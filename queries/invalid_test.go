package queries_test

import (
	"context"
	"encoding/base64"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/tenancyhq/tenancy/aggregate"
	"github.com/tenancyhq/tenancy/internal/pgtest"
	"github.com/tenancyhq/tenancy/queries"
)

func TestListRefusesInvalidInputNamingFieldAndRule(t *testing.T) {
	t.Parallel()
	pool, _ := pgtest.NewMigrated(t)
	r := queries.NewReader(pool)
	later := base.Add(1)
	for _, c := range []struct {
		name        string
		f           queries.ListFilter
		field, rule string
	}{
		{"unknown sort", queries.ListFilter{Sort: "id"}, "sort", "one_of"},
		{"sort in SQL", queries.ListFilter{Sort: "created_at; DROP TABLE tenants"}, "sort", "one_of"},
		{"unknown order", queries.ListFilter{Order: "up"}, "order", "one_of"},
		{"upper-case order", queries.ListFilter{Order: "DESC"}, "order", "one_of"},
		{"negative limit", queries.ListFilter{Limit: -1}, "limit", "range"},
		{"limit over the maximum", queries.ListFilter{Limit: queries.MaxLimit + 1}, "limit", "range"},
		{"unknown status", queries.ListFilter{Statuses: []aggregate.Status{"active"}}, "status", "one_of"},
		{"unknown edition", queries.ListFilter{Editions: []aggregate.Edition{"gold"}}, "edition", "one_of"},
		{"unknown region", queries.ListFilter{Regions: []aggregate.Region{"mars-1"}}, "region", "one_of"},
		{"unknown billing status", queries.ListFilter{BillingStatuses: []aggregate.BillingStatus{"late"}}, "billing_status", "one_of"},
		{"empty label key", queries.ListFilter{Labels: map[string]string{"": "x"}}, "label", "required"},
		{"label with NUL", queries.ListFilter{Labels: map[string]string{"env": "a\x00b"}}, "label", "utf8"},
		{"label not UTF-8", queries.ListFilter{Labels: map[string]string{"\xff": ""}}, "label", "utf8"},
		{"name prefix not UTF-8", queries.ListFilter{NamePrefix: "ab\xff"}, "name_prefix", "utf8"},
		{"name prefix with NUL", queries.ListFilter{NamePrefix: "a\x00"}, "name_prefix", "utf8"},
		{"name prefix too long", queries.ListFilter{NamePrefix: strings.Repeat("a", aggregate.MaxNameLength+1)}, "name_prefix", "max_length"},
		{"created after out of range", queries.ListFilter{CreatedAfter: ptr(time.Date(12000, 1, 1, 0, 0, 0, 0, time.UTC))}, "created_after", "range"},
		{"created before out of range", queries.ListFilter{CreatedBefore: ptr(time.Date(0, 12, 31, 0, 0, 0, 0, time.UTC))}, "created_before", "range"},
		{"empty created range", queries.ListFilter{CreatedAfter: &later, CreatedBefore: &later}, "created_after", "before_created_before"},
		{"garbage cursor", queries.ListFilter{Cursor: "not a cursor"}, "cursor", "malformed"},
		{"base64 of nothing useful", queries.ListFilter{Cursor: base64.RawURLEncoding.EncodeToString([]byte(`{"v":1,"k":"tenants","s":"created_at","o":"asc"}`))}, "cursor", "malformed"},
		{"huge cursor", queries.ListFilter{Cursor: strings.Repeat("A", 1<<20)}, "cursor", "malformed"},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			_, err := r.List(context.Background(), c.f)
			validation(t, err, c.field, c.rule)
		})
	}
}

func TestListCursorIsRefusedWhenTamperedOrReusedElsewhere(t *testing.T) {
	t.Parallel()
	pool, _ := pgtest.NewMigrated(t)
	for i := range 10 {
		x := newTenant("Acme", base)
		x.Labels = map[string]string{"env": []string{"prod", "dev"}[i%2]}
		insertTenants(t, pool, x)
	}
	r := queries.NewReader(pool)
	ctx := context.Background()
	f := queries.ListFilter{Limit: 2, Labels: map[string]string{"env": "prod"}, NamePrefix: "acme", Sort: queries.SortName}
	p, err := r.List(ctx, f)
	if err != nil || p.NextCursor == "" {
		t.Fatalf("first page: %v, cursor %q", err, p.NextCursor)
	}
	next := f
	next.Cursor = p.NextCursor
	next.Limit = 3 // another page size is fine
	if _, err := r.List(ctx, next); err != nil {
		t.Fatalf("the cursor with its own filter: %v", err)
	}
	// An equal filter written differently is the same filter.
	same := next
	same.NamePrefix = "  ACME"
	if _, err := r.List(ctx, same); err != nil {
		t.Fatalf("the cursor with an equivalent filter: %v", err)
	}

	raw, err := base64.RawURLEncoding.DecodeString(p.NextCursor)
	if err != nil {
		t.Fatal(err)
	}
	for i := range raw {
		flipped := append([]byte(nil), raw...)
		flipped[i] ^= 0x01
		g := f
		g.Cursor = base64.RawURLEncoding.EncodeToString(flipped)
		_, err := r.List(ctx, g)
		validation(t, err, "cursor", "malformed")
	}
	g := f
	g.Cursor = p.NextCursor[:len(p.NextCursor)-3]
	_, err = r.List(ctx, g)
	validation(t, err, "cursor", "malformed")

	for name, other := range map[string]func(*queries.ListFilter){
		"another sort":         func(f *queries.ListFilter) { f.Sort = queries.SortCreatedAt },
		"another order":        func(f *queries.ListFilter) { f.Order = queries.OrderDesc },
		"another label":        func(f *queries.ListFilter) { f.Labels = map[string]string{"env": "dev"} },
		"no label":             func(f *queries.ListFilter) { f.Labels = nil },
		"another prefix":       func(f *queries.ListFilter) { f.NamePrefix = "acm" },
		"an added status":      func(f *queries.ListFilter) { f.Statuses = []aggregate.Status{aggregate.StatusActive} },
		"an added time bound":  func(f *queries.ListFilter) { f.CreatedBefore = ptr(base.Add(1e9)) },
		"an added key filter":  func(f *queries.ListFilter) { f.Labels = map[string]string{"env": "prod", "team": ""} },
		"the label as a value": func(f *queries.ListFilter) { f.Labels = map[string]string{"env": ""} },
	} {
		g := next
		other(&g)
		_, err := r.List(ctx, g)
		if de, ok := aggregate.AsError(err); !ok || de.Field != "cursor" || de.Rule != "mismatch" {
			t.Errorf("%s: %v, want a cursor mismatch", name, err)
		}
	}

	// An events cursor is not a list cursor, nor the other way round.
	w := newHistory(t)
	id := w.create("Events Inc")
	w.do(id, aggregate.CompleteProvisioning{})
	w.project(pool)
	ep, err := r.Events(ctx, id, queries.EventFilter{Limit: 1})
	if err != nil || ep.NextCursor == "" {
		t.Fatalf("events: %v, cursor %q", err, ep.NextCursor)
	}
	_, err = r.List(ctx, queries.ListFilter{Cursor: ep.NextCursor})
	validation(t, err, "cursor", "mismatch")
	_, err = r.Events(ctx, id, queries.EventFilter{Cursor: p.NextCursor})
	validation(t, err, "cursor", "mismatch")
	// Nor is one tenant's events cursor another's.
	_, err = r.Events(ctx, uuid.New(), queries.EventFilter{Limit: 1, Cursor: ep.NextCursor})
	validation(t, err, "cursor", "mismatch")
}
