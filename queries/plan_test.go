package queries_test

import (
	"cmp"
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/tenancyhq/tenancy/aggregate"
	"github.com/tenancyhq/tenancy/internal/pgtest"
	"github.com/tenancyhq/tenancy/queries"
)

// explain returns the plan PostgreSQL makes for sql with args: the custom
// plan (made knowing the values, as for the first executions of a statement)
// or the generic one (made for any values, which a prepared statement
// settles on after a few executions when it looks no worse).
func explain(t *testing.T, pool *pgxpool.Pool, generic bool, sql string, args []any) string {
	t.Helper()
	ctx := context.Background()
	conn, err := pool.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Release()
	var plan []string
	collect := func(sql string, args ...any) {
		rows, err := conn.Query(ctx, sql, args...)
		if err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
		defer rows.Close()
		for rows.Next() {
			var line string
			if err := rows.Scan(&line); err != nil {
				t.Fatal(err)
			}
			plan = append(plan, line)
		}
		if err := rows.Err(); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
	}
	if !generic {
		collect("EXPLAIN "+sql, args...)
		return strings.Join(plan, "\n")
	}
	// PREPARE with force_generic_plan, then EXPLAIN EXECUTE with the values.
	name := "q_" + strings.ReplaceAll(uuid.NewString(), "-", "")
	if _, err := conn.Exec(ctx, "SET plan_cache_mode = force_generic_plan"); err != nil {
		t.Fatal(err)
	}
	defer conn.Exec(ctx, "RESET plan_cache_mode")
	if _, err := conn.Exec(ctx, "PREPARE "+name+" AS "+sql); err != nil {
		t.Fatalf("prepare %s: %v", sql, err)
	}
	defer conn.Exec(ctx, "DEALLOCATE "+name)
	// EXECUTE takes its values as literals of the statement's parameter types.
	var types []string
	if err := conn.QueryRow(ctx, `SELECT parameter_types::text[] FROM pg_prepared_statements WHERE name = $1`, name).Scan(&types); err != nil {
		t.Fatal(err)
	}
	params := make([]string, len(args))
	for i, a := range args {
		var lit string
		if err := conn.QueryRow(ctx, "SELECT quote_literal(CAST($1 AS "+types[i]+"))", a).Scan(&lit); err != nil {
			t.Fatalf("literal of %v: %v", a, err)
		}
		params[i] = lit + "::" + types[i]
	}
	collect("EXPLAIN EXECUTE " + name + "(" + strings.Join(params, ", ") + ")")
	return strings.Join(plan, "\n")
}

// TestListQueriesUseTheIndexes lists 10,000 tenants with each kind of filter
// and sort and checks, from EXPLAIN after ANALYZE, that PostgreSQL reads
// tenants through an index, never by a sequential scan, in custom and in
// generic plans alike.
func TestListQueriesUseTheIndexes(t *testing.T) {
	t.Parallel()
	pool, _ := pgtest.NewMigrated(t)
	const n = 10000
	var ts []*aggregate.Tenant
	for i := range n {
		name := fmt.Sprintf("Tenant %05d", i)
		if i%100 == 0 {
			name = fmt.Sprintf("Acme %05d", i)
		}
		x := newTenant(name, base.Add(time.Duration(i)*time.Minute))
		x.UpdatedAt = base.Add(time.Duration(i*7919%n) * time.Minute)
		x.Status = aggregate.Statuses()[i%7] // PURGED is rare:
		if i%500 == 0 {
			x.Status = aggregate.StatusPurged
		}
		x.Edition = aggregate.Editions()[i%5]
		x.Region = aggregate.Regions()[i%11]
		x.BillingStatus = aggregate.BillingStatuses()[i%6]
		x.Labels = map[string]string{"env": []string{"prod", "dev", "staging"}[i%3], "cohort": fmt.Sprint(i % 100)}
		if i%50 == 0 {
			x.Labels["vip"] = ""
		}
		ts = append(ts, x)
	}
	for i := 0; i < n; i += 2000 {
		insertTenants(t, pool, ts[i:i+2000]...)
	}
	pgtest.Exec(t, pool, "ANALYZE tenants")
	r := queries.NewReader(pool)

	cases := []struct {
		name string
		f    queries.ListFilter
	}{
		{"default", queries.ListFilter{}},
		{"newest first", queries.ListFilter{Order: queries.OrderDesc}},
		{"by update", queries.ListFilter{Sort: queries.SortUpdatedAt, Order: queries.OrderDesc}},
		{"by name", queries.ListFilter{Sort: queries.SortName}},
		{"by name descending", queries.ListFilter{Sort: queries.SortName, Order: queries.OrderDesc}},
		{"one status", queries.ListFilter{Statuses: []aggregate.Status{aggregate.StatusSuspended}}},
		{"rare status", queries.ListFilter{Statuses: []aggregate.Status{aggregate.StatusPurged}}},
		{"rare status newest first", queries.ListFilter{Statuses: []aggregate.Status{aggregate.StatusPurged}, Order: queries.OrderDesc, Limit: 5}},
		{"two statuses", queries.ListFilter{Statuses: []aggregate.Status{aggregate.StatusSuspended, aggregate.StatusTrial}}},
		{"edition", queries.ListFilter{Editions: []aggregate.Edition{aggregate.EditionEnterprise}}},
		{"region", queries.ListFilter{Regions: []aggregate.Region{"eu-west-1"}}},
		{"billing status", queries.ListFilter{BillingStatuses: []aggregate.BillingStatus{aggregate.BillingPastDue}}},
		{"name prefix", queries.ListFilter{NamePrefix: "acme"}},
		{"name prefix by name", queries.ListFilter{NamePrefix: "acme", Sort: queries.SortName}},
		{"name prefix newest first", queries.ListFilter{NamePrefix: "tenant 0012", Order: queries.OrderDesc}},
		{"rare label", queries.ListFilter{Labels: map[string]string{"cohort": "42"}}},
		{"common label", queries.ListFilter{Labels: map[string]string{"env": "prod"}}},
		{"label key", queries.ListFilter{Labels: map[string]string{"vip": ""}}},
		{"created range", queries.ListFilter{CreatedAfter: ptr(base.Add(5000 * time.Minute)), CreatedBefore: ptr(base.Add(5100 * time.Minute))}},
		{"combined", queries.ListFilter{Statuses: []aggregate.Status{aggregate.StatusActive}, Labels: map[string]string{"env": "prod"}, NamePrefix: "tenant"}},
	}
	for _, c := range cases {
		// The first page, and a page after a cursor from the middle.
		first := c.f
		first.Limit = cmp.Or(first.Limit, 20)
		p, err := r.List(context.Background(), first)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		pages := map[string]queries.ListFilter{"first page": first}
		if p.NextCursor != "" {
			next := first
			next.Cursor = p.NextCursor
			pages["next page"] = next
		}
		for page, f := range pages {
			sql, args, err := queries.ListSQL(f)
			if err != nil {
				t.Fatal(err)
			}
			for _, generic := range []bool{false, true} {
				plan := explain(t, pool, generic, sql, args)
				if strings.Contains(plan, "Seq Scan") || !strings.Contains(plan, "Index") {
					t.Errorf("%s, %s, generic plan %v: not through an index:\n%s\n%s", c.name, page, generic, sql, plan)
				} else if testing.Verbose() {
					t.Logf("%s, %s, generic %v:\n%s", c.name, page, generic, plan)
				}
			}
		}
	}
}

// TestEventsQueriesUseTheIndexes does the same for a tenant's events among
// 20,000 of 200 tenants.
func TestEventsQueriesUseTheIndexes(t *testing.T) {
	t.Parallel()
	pool, _ := pgtest.NewMigrated(t)
	pgtest.Exec(t, pool, `
		INSERT INTO tenant_events (id, tenant_id, event_type, event_version, stream_version, payload, metadata, created_at, sequence_number, position_commit)
		SELECT gen_random_uuid(), t.id, (ARRAY['TenantCreated','TenantSuspended','TenantResumed','MetadataUpdated'])[1 + v % 4], 1, v, '{}', '{}',
		       $1::timestamptz + v * interval '1 hour', v, v
		FROM (SELECT gen_random_uuid() AS id FROM generate_series(1, 200)) t, generate_series(0, 99) v`, base)
	pgtest.Exec(t, pool, "ANALYZE tenant_events")
	var id uuid.UUID
	if err := pool.QueryRow(context.Background(), `SELECT tenant_id FROM tenant_events LIMIT 1`).Scan(&id); err != nil {
		t.Fatal(err)
	}
	r := queries.NewReader(pool)
	for name, f := range map[string]queries.EventFilter{
		"all":        {},
		"one type":   {Types: []string{"TenantSuspended"}},
		"time range": {After: ptr(base.Add(10 * time.Hour)), Before: ptr(base.Add(20 * time.Hour))},
	} {
		f.Limit = 10
		p, err := r.Events(context.Background(), id, f)
		if err != nil {
			t.Fatal(err)
		}
		for _, cur := range []string{"", p.NextCursor} {
			f.Cursor = cur
			sql, args, err := queries.EventsSQL(id, f)
			if err != nil {
				t.Fatal(err)
			}
			for _, generic := range []bool{false, true} {
				plan := explain(t, pool, generic, sql, args)
				if strings.Contains(plan, "Seq Scan") || !strings.Contains(plan, "Index") {
					t.Errorf("%s, cursor %v, generic plan %v: not through an index:\n%s\n%s", name, cur != "", generic, sql, plan)
				}
			}
		}
	}
}
