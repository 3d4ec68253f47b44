package queries_test

import (
	"context"
	"testing"

	"github.com/tenancyhq/tenancy/aggregate"
	"github.com/tenancyhq/tenancy/internal/pgtest"
	"github.com/tenancyhq/tenancy/queries"
)

// TestGetRowBringsTheStateOnlyWhenNeeded: a read that can send the
// projection's rendering gets it without the state; one that holds the
// row's version gets neither; any other gets the state, decoded.
func TestGetRowBringsTheStateOnlyWhenNeeded(t *testing.T) {
	t.Parallel()
	pool, _ := pgtest.NewMigrated(t)
	w := newHistory(t)
	id := w.create("Rendered Inc")
	w.do(id, aggregate.CompleteProvisioning{})
	w.project(pool)
	r := queries.NewReader(pool)
	ctx := context.Background()
	want, _, err := w.h.Load(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	format := aggregate.DefaultCatalog().RenderFormat()
	view, _ := aggregate.RenderView(want)

	for _, key := range []string{id.String(), want.ExternalID} {
		row, err := r.GetRow(ctx, key, queries.Want{Rendering: queries.TenantView, Format: format})
		if err != nil {
			t.Fatal(err)
		}
		if string(row.JSON) != string(view) || row.Tenant != nil || row.ID != id || row.Version != want.Version {
			t.Errorf("%s: rendered read = %+v, want the rendering alone at version %d", key, row, want.Version)
		}
		row, err = r.GetRow(ctx, key, queries.Want{Rendering: queries.TenantView, Format: "another/format"})
		if err != nil {
			t.Fatal(err)
		}
		if row.JSON != nil || row.Tenant == nil || row.Tenant.Version != want.Version {
			t.Errorf("%s: read in another format = %+v, want the state alone", key, row)
		}
		row, err = r.GetRow(ctx, key, queries.Want{HeldID: id, HeldVersion: want.Version})
		if err != nil {
			t.Fatal(err)
		}
		if row.JSON != nil || row.Tenant != nil || row.Version != want.Version {
			t.Errorf("%s: read holding the version = %+v, want neither rendering nor state", key, row)
		}
		row, err = r.GetRow(ctx, key, queries.Want{HeldID: id, HeldVersion: want.Version - 1})
		if err != nil {
			t.Fatal(err)
		}
		if row.Tenant == nil || row.Tenant.Version != want.Version {
			t.Errorf("%s: read holding an older version = %+v, want the state", key, row)
		}
	}
}
