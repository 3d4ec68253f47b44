package queries_test

import (
	"context"
	"errors"
	"testing"

	"github.com/google/uuid"

	"github.com/tenancyhq/tenancy/aggregate"
	"github.com/tenancyhq/tenancy/internal/pgtest"
	"github.com/tenancyhq/tenancy/queries"
)

func TestGetFindsProjectedTenantByIDAndExternalID(t *testing.T) {
	t.Parallel()
	pool, _ := pgtest.NewMigrated(t)
	w := newHistory(t)
	a := w.create("Acme Corp")
	b := w.create("Beta Inc")
	w.do(a, aggregate.CompleteProvisioning{})
	last := w.do(a, aggregate.Suspend{Reason: aggregate.ReasonPaymentOverdue, Note: "late"})
	w.do(b, aggregate.CompleteProvisioning{})
	w.project(pool)
	r := queries.NewReader(pool)
	ctx := context.Background()

	want, _, err := w.h.Load(ctx, a)
	if err != nil {
		t.Fatal(err)
	}
	wantState, _ := aggregate.MarshalSnapshot(want)
	for _, key := range []string{a.String(), want.ExternalID} {
		got, pos, err := r.Get(ctx, key)
		if err != nil {
			t.Fatalf("Get(%s): %v", key, err)
		}
		if gotState, _ := aggregate.MarshalSnapshot(got); string(gotState) != string(wantState) {
			t.Fatalf("Get(%s) =\n%s\nwant the fold of the stream\n%s", key, gotState, wantState)
		}
		if pos != last.Position {
			t.Fatalf("Get(%s) position %s, want the last event's %s", key, pos, last.Position)
		}
	}
}

func TestGetUnknownTenantIsNotFound(t *testing.T) {
	t.Parallel()
	pool, _ := pgtest.NewMigrated(t)
	insertTenants(t, pool, newTenant("Someone", base))
	r := queries.NewReader(pool)
	for _, key := range []string{uuid.NewString(), "ORG-00000000"} {
		_, _, err := r.Get(context.Background(), key)
		if !errors.Is(err, queries.ErrNotFound) || !aggregate.HasCode(err, aggregate.CodeNotFound) {
			t.Fatalf("Get(%s): %v, want ErrNotFound with code not_found", key, err)
		}
	}
}

func TestGetOfAStringThatIsNoIDIsNotFound(t *testing.T) {
	t.Parallel()
	pool, _ := pgtest.NewMigrated(t)
	r := queries.NewReader(pool)
	for _, key := range []string{"", "acme", "org-e4900e20", "ORG-E4900E2", "ORG-E4900E20 ", "'; DROP TABLE tenants; --", "\xff\x00"} {
		_, _, err := r.Get(context.Background(), key)
		if !errors.Is(err, queries.ErrNotFound) {
			t.Fatalf("Get(%q): %v, want ErrNotFound", key, err)
		}
	}
}

func TestCountByStatusAndEditionCountsEveryPair(t *testing.T) {
	t.Parallel()
	pool, _ := pgtest.NewMigrated(t)
	r := queries.NewReader(pool)
	var ts []*aggregate.Tenant
	want := map[aggregate.Status]map[aggregate.Edition]int64{}
	for i := range 40 {
		x := newTenant("T", base)
		x.Status = aggregate.Statuses()[i%3]
		x.Edition = aggregate.Editions()[i%4]
		ts = append(ts, x)
		if want[x.Status] == nil {
			want[x.Status] = map[aggregate.Edition]int64{}
		}
		want[x.Status][x.Edition]++
	}
	insertTenants(t, pool, ts...)
	got, err := r.CountByStatusAndEdition(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range aggregate.Statuses() {
		for _, e := range aggregate.Editions() {
			n, ok := got[s][e]
			if !ok || n != want[s][e] {
				t.Errorf("%s/%s: %d (present %v), want %d", s, e, n, ok, want[s][e])
			}
		}
	}
}
