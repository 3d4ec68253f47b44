package readmodel_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/tenancyhq/tenancy/aggregate"
	"github.com/tenancyhq/tenancy/commands"
	"github.com/tenancyhq/tenancy/eventstore"
	"github.com/tenancyhq/tenancy/eventstore/memory"
	"github.com/tenancyhq/tenancy/internal/pgtest"
	"github.com/tenancyhq/tenancy/projections"
	"github.com/tenancyhq/tenancy/projections/readmodel"
	"github.com/tenancyhq/tenancy/tenantlog"
)

var cat = aggregate.DefaultCatalog()

// populate writes random tenant histories through the command handler.
func populate(t *testing.T, store *memory.Store, tenants, steps int, seed uint64) []uuid.UUID {
	t.Helper()
	now := time.Date(2026, 2, 1, 8, 0, 0, 0, time.UTC)
	h := commands.NewHandler(store, commands.Options{Now: func() time.Time { return now }})
	r := rand.New(rand.NewPCG(seed, 1))
	ctx := context.Background()
	var ids []uuid.UUID
	for i := 0; i < tenants; i++ {
		res, err := h.Create(ctx, aggregate.Create{Name: fmt.Sprintf("Tenant %d-%d", seed, i), Edition: aggregate.Editions()[r.IntN(5)],
			Region: aggregate.Regions()[r.IntN(11)], Contacts: []aggregate.Contact{{Role: "primary", Name: "P", Email: "p@example.test"}},
			Labels: map[string]string{"n": fmt.Sprint(i % 3)}}, aggregate.Metadata{Actor: "test"})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, res.TenantID)
	}
	cmds := []aggregate.Command{
		aggregate.CompleteProvisioning{}, aggregate.Activate{}, aggregate.ConvertTrial{},
		aggregate.Suspend{Reason: aggregate.ReasonPaymentOverdue, Note: "late"}, aggregate.Resume{}, aggregate.Cancel{},
		aggregate.RevertCancellation{}, aggregate.MigrateRegion{To: "eu-central-1"}, aggregate.CompleteMigration{},
		aggregate.Terminate{}, aggregate.Restore{}, aggregate.Purge{}, aggregate.ChangeEdition{Edition: "enterprise"},
		aggregate.UpdateProfile{Metadata: &map[string]string{"k": "v"}},
		aggregate.SetOverride{Key: "max_users", Value: ptr(int64(7))},
		aggregate.RecordBillingStatus{Status: aggregate.BillingPastDue, ProviderEventID: "x"},
	}
	for s := 0; s < steps; s++ {
		now = now.Add(time.Duration(r.IntN(120)) * time.Minute)
		_, err := h.Execute(ctx, commands.Request{TenantID: ids[r.IntN(len(ids))], Command: cmds[r.IntN(len(cmds))]})
		if err != nil {
			if _, ok := aggregate.AsError(err); !ok {
				t.Fatal(err)
			}
		}
	}
	return ids
}

func ptr[T any](v T) *T { return &v }

// project applies the whole feed in random batch sizes, each in its own
// transaction, re-applying some batches a second time.
func project(t *testing.T, pool *pgxpool.Pool, store *memory.Store, seed uint64) eventstore.Position {
	t.Helper()
	ctx := context.Background()
	p := readmodel.New(cat)
	r := rand.New(rand.NewPCG(seed, 2))
	all, err := store.ReadAll(ctx, eventstore.Start, p.Filter(), 0)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < len(all); {
		n := min(1+r.IntN(50), len(all)-i)
		batch := all[i:min(i+n, len(all))]
		times := 1 + r.IntN(2)
		for k := 0; k < times; k++ {
			tx, err := pool.Begin(ctx)
			if err != nil {
				t.Fatal(err)
			}
			decoded, err := projections.Decode(batch, tenantlog.Decode)
			if err != nil {
				t.Fatal(err)
			}
			if err := p.Apply(ctx, tx, decoded); err != nil {
				t.Fatal(err)
			}
			if err := tx.Commit(ctx); err != nil {
				t.Fatal(err)
			}
		}
		i += n
	}
	return all[len(all)-1].Position
}

func TestProjectedReadModelEqualsAFreshFold(t *testing.T) {
	t.Parallel()
	pool, _ := pgtest.NewMigrated(t)
	store := memory.New()
	ids := populate(t, store, 40, 600, 1)
	head := project(t, pool, store, 1)
	ctx := context.Background()

	diffs, err := readmodel.Verify(ctx, pool, store, cat, head, readmodel.LiveTables)
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range diffs {
		t.Errorf("drift: %s", d)
	}
	var tenants, events int
	if err := pool.QueryRow(ctx, `SELECT (SELECT count(*) FROM tenants), (SELECT count(*) FROM tenant_events)`).Scan(&tenants, &events); err != nil {
		t.Fatal(err)
	}
	all, _ := store.ReadAll(ctx, eventstore.Start, eventstore.Filter{StreamPrefixes: []string{"tenant-"}}, 0)
	if tenants != len(ids) || events != len(all) {
		t.Fatalf("%d tenant rows and %d event rows, want %d and %d", tenants, events, len(ids), len(all))
	}
	// Columns come from the state: compare a few with the fold of one stream.
	h := commands.NewHandler(store, commands.Options{})
	for _, id := range ids {
		want, _, err := h.Load(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		var status, tier, region, billing, view, entitlements, format string
		var version int64
		var created, updated time.Time
		if err := pool.QueryRow(ctx, `SELECT status::text, plan_tier::text, region, billing_status, version, created_at, updated_at,
			view_json, entitlements_json, rendered_as FROM tenants WHERE id = $1`, id).
			Scan(&status, &tier, &region, &billing, &version, &created, &updated, &view, &entitlements, &format); err != nil {
			t.Fatal(err)
		}
		// The views the API sends as they are (migration 010).
		wantView, _ := aggregate.RenderView(want)
		wantEnt, _ := cat.RenderEntitlements(want)
		if view != string(wantView) || entitlements != string(wantEnt) || format != cat.RenderFormat() {
			t.Fatalf("tenant %s rendered as %q:\n%s\n%s\nwant %q:\n%s\n%s", id, format, view, entitlements, cat.RenderFormat(), wantView, wantEnt)
		}
		if status != string(want.Status) || tier != string(want.Edition) || region != string(want.Region) || billing != string(want.BillingStatus) ||
			version != int64(want.Version) || !created.Equal(want.CreatedAt) || !updated.Equal(want.UpdatedAt) {
			t.Fatalf("tenant %s row (%s %s %s %s v%d %v %v) differs from its fold %+v", id, status, tier, region, billing, version, created, updated, want)
		}
	}
}

func TestVerifyFindsCorruptedRows(t *testing.T) {
	t.Parallel()
	pool, _ := pgtest.NewMigrated(t)
	store := memory.New()
	ids := populate(t, store, 5, 40, 2)
	head := project(t, pool, store, 2)
	ctx := context.Background()
	pgtest.Exec(t, pool, `UPDATE tenants SET name = 'Tampered' WHERE id = $1`, ids[0])
	pgtest.Exec(t, pool, `DELETE FROM tenant_events WHERE id = (SELECT id FROM tenant_events WHERE tenant_id = $1 ORDER BY stream_version DESC LIMIT 1)`, ids[1])
	diffs, err := readmodel.Verify(ctx, pool, store, cat, head, readmodel.LiveTables)
	if err != nil {
		t.Fatal(err)
	}
	var sawName, sawMissing bool
	for _, d := range diffs {
		sawName = sawName || (d.Table == "tenants" && d.ID == ids[0] && d.Column == "name" && d.Actual == "Tampered")
		sawMissing = sawMissing || (d.Table == "tenant_events" && d.Actual == "missing")
	}
	if !sawName || !sawMissing {
		t.Fatalf("differences %v: want the tampered name and the missing event", diffs)
	}
}
