package queries_test

import (
	"context"
	"encoding/json"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/tenancyhq/tenancy/aggregate"
	"github.com/tenancyhq/tenancy/commands"
	"github.com/tenancyhq/tenancy/eventstore"
	"github.com/tenancyhq/tenancy/eventstore/memory"
	"github.com/tenancyhq/tenancy/projections"
	"github.com/tenancyhq/tenancy/projections/readmodel"
	"github.com/tenancyhq/tenancy/tenantlog"
)

var (
	cat  = aggregate.DefaultCatalog()
	base = time.Date(2026, 3, 1, 8, 0, 0, 0, time.UTC)
	// seq hands out external ids and positions unique within the test binary.
	seq atomic.Uint64
)

// newTenant returns a tenant as the projection would fold it, for direct
// insertion: the fields the read model filters and sorts on, and an id.
func newTenant(name string, created time.Time) *aggregate.Tenant {
	return &aggregate.Tenant{
		ID:             uuid.New(),
		ExternalID:     fmt.Sprintf("ORG-%08X", seq.Add(1)),
		Name:           name,
		NormalizedName: aggregate.NormalizeName(name),
		Status:         aggregate.StatusActive,
		Edition:        aggregate.EditionProfessional,
		Region:         "us-east-1",
		BillingStatus:  aggregate.BillingActive,
		Labels:         map[string]string{},
		CreatedAt:      created,
		UpdatedAt:      created,
	}
}

// insertTenants writes tenants into the tenants table the way the read-model
// projection lays them out (the columns queries read, and the state), in one
// statement. It is much faster than going through commands for thousands of
// rows, and lets a test choose timestamps (ties included).
func insertTenants(t testing.TB, pool *pgxpool.Pool, ts ...*aggregate.Tenant) {
	t.Helper()
	if err := writeTenants(context.Background(), pool, ts...); err != nil {
		t.Fatal(err)
	}
}

// writeTenants is insertTenants for goroutines other than the test's.
func writeTenants(ctx context.Context, pool *pgxpool.Pool, ts ...*aggregate.Tenant) error {
	n := len(ts)
	ids := make([]uuid.UUID, n)
	names, norm, ext, status, tier, region, billing, labels, state := make([]string, n), make([]string, n), make([]string, n),
		make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n)
	created, updated := make([]time.Time, n), make([]time.Time, n)
	versions, pos := make([]int64, n), make([]int64, n)
	for i, x := range ts {
		ids[i], names[i], norm[i], ext[i] = x.ID, x.Name, x.NormalizedName, x.ExternalID
		status[i], tier[i], region[i], billing[i] = string(x.Status), string(x.Edition), string(x.Region), string(x.BillingStatus)
		l, err := json.Marshal(x.Labels)
		if err != nil {
			return err
		}
		labels[i] = string(l)
		s, err := aggregate.MarshalSnapshot(x)
		if err != nil {
			return err
		}
		state[i] = string(s)
		created[i], updated[i], versions[i], pos[i] = x.CreatedAt, x.UpdatedAt, int64(x.Version), int64(seq.Add(1))
	}
	_, err := pool.Exec(ctx, `
		INSERT INTO tenants (id, name, normalized_name, external_id, status, plan_tier, region, billing_status,
		                     labels, state, created_at, updated_at, version, position_commit, position_prepare)
		SELECT id, name, norm, ext, status::tenant_status, tier::plan_tier, region, billing,
		       labels::jsonb, state::jsonb, created, updated, version, pos, pos
		FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[],
		            $9::text[], $10::text[], $11::timestamptz[], $12::timestamptz[], $13::bigint[], $14::bigint[])
		     AS x(id, name, norm, ext, status, tier, region, billing, labels, state, created, updated, version, pos)`,
		ids, names, norm, ext, status, tier, region, billing, labels, state, created, updated, versions, pos)
	if err != nil {
		return fmt.Errorf("insert %d tenants: %w", n, err)
	}
	return nil
}

// history writes tenants through the real command handler into an in-memory
// store, with a clock the test moves, so the read model is filled by the real
// projection.
type history struct {
	t     *testing.T
	store *memory.Store
	h     *commands.Handler
	now   time.Time
}

func newHistory(t *testing.T) *history {
	w := &history{t: t, store: memory.New(), now: base}
	w.h = commands.NewHandler(w.store, commands.Options{Now: func() time.Time { return w.now }})
	return w
}

// create makes a tenant (a paid one, so provisioning completes to ACTIVE).
func (w *history) create(name string) uuid.UUID {
	w.t.Helper()
	trial := false
	res, err := w.h.Create(context.Background(), aggregate.Create{Name: name, Edition: aggregate.EditionEnterprise, Region: "eu-west-1",
		Trial: &trial, Labels: map[string]string{"env": "prod"}}, aggregate.Metadata{Actor: "test"})
	if err != nil {
		w.t.Fatal(err)
	}
	return res.TenantID
}

// do runs a command an hour after the previous one.
func (w *history) do(id uuid.UUID, cmd aggregate.Command) commands.Result {
	w.t.Helper()
	w.now = w.now.Add(time.Hour)
	res, err := w.h.Execute(context.Background(), commands.Request{TenantID: id, Command: cmd, Metadata: aggregate.Metadata{Actor: "test"}})
	if err != nil {
		w.t.Fatalf("%T: %v", cmd, err)
	}
	return res
}

// project applies the whole feed to the read model in one transaction (the
// projection skips what it already applied) and returns the feed's head.
func (w *history) project(pool *pgxpool.Pool) eventstore.Position {
	w.t.Helper()
	ctx := context.Background()
	p := readmodel.New(cat)
	all, err := w.store.ReadAll(ctx, eventstore.Start, p.Filter(), 0)
	if err != nil {
		w.t.Fatal(err)
	}
	tx, err := pool.Begin(ctx)
	if err != nil {
		w.t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	decoded, err := projections.Decode(all, tenantlog.Decode)
	if err != nil {
		w.t.Fatal(err)
	}
	if err := p.Apply(ctx, tx, decoded); err != nil {
		w.t.Fatal(err)
	}
	if err := tx.Commit(ctx); err != nil {
		w.t.Fatal(err)
	}
	return all[len(all)-1].Position
}

// stream returns a tenant's events as stored.
func (w *history) stream(id uuid.UUID) []eventstore.RecordedEvent {
	w.t.Helper()
	rs, err := w.store.ReadStream(context.Background(), aggregate.StreamPrefix+id.String(), eventstore.Forward, 0, 0)
	if err != nil {
		w.t.Fatal(err)
	}
	return rs
}

// validation asserts that err is a validation error of field and rule.
func validation(t *testing.T, err error, field, rule string) {
	t.Helper()
	de, ok := aggregate.AsError(err)
	if !ok || de.Code != aggregate.CodeValidation || de.Field != field || de.Rule != rule {
		t.Fatalf("error %v (%#v), want a validation error of field %q rule %q", err, de, field, rule)
	}
}

func ptr[T any](v T) *T { return &v }
