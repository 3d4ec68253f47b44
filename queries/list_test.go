package queries_test

import (
	"bytes"
	"cmp"
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tenancyhq/tenancy/aggregate"
	"github.com/tenancyhq/tenancy/internal/pgtest"
	"github.com/tenancyhq/tenancy/queries"
)

// filterFixture is a varied set of tenants: every status, edition, region and
// billing status, labels with and without values, names with LIKE's special
// characters, and timestamps with ties (so the id tie-break matters).
func filterFixture() []*aggregate.Tenant {
	names := []string{"Acme %d", "ACME Corp %d", "Acmes %d", "Beta_%d", "Betax %d", "100%% Pure %d", "1000 Pure %d",
		`a\b %d`, "Ünïcode %d", "Zeta %d"}
	envs := []string{"prod", "dev", "staging"}
	var ts []*aggregate.Tenant
	for i := range 130 {
		x := newTenant(fmt.Sprintf(names[i%len(names)], i), base.Add(time.Duration(i/3)*time.Minute))
		x.UpdatedAt = base.Add(time.Duration((i*7)%50) * time.Hour)
		x.Status = aggregate.Statuses()[i%8]
		x.Edition = aggregate.Editions()[i%5]
		x.Region = aggregate.Regions()[i%11]
		x.BillingStatus = aggregate.BillingStatuses()[i%6]
		x.Labels = map[string]string{"env": envs[i%3]}
		if i%4 == 0 {
			x.Labels["team"] = []string{"a", "b"}[i/4%2]
		}
		if i%7 == 0 {
			x.Labels["flag"] = ""
		}
		ts = append(ts, x)
	}
	return ts
}

// filterCase is a filter and the same selection written in Go.
type filterCase struct {
	name  string
	f     queries.ListFilter
	match func(*aggregate.Tenant) bool
}

func filterCases() []filterCase {
	all := func(*aggregate.Tenant) bool { return true }
	hasPrefix := func(p string) func(*aggregate.Tenant) bool {
		return func(t *aggregate.Tenant) bool { return strings.HasPrefix(t.NormalizedName, p) }
	}
	after, before := base.Add(10*time.Minute), base.Add(30*time.Minute)
	return []filterCase{
		{"everything", queries.ListFilter{}, all},
		{"one status", queries.ListFilter{Statuses: []aggregate.Status{aggregate.StatusActive}},
			func(t *aggregate.Tenant) bool { return t.Status == aggregate.StatusActive }},
		{"two statuses", queries.ListFilter{Statuses: []aggregate.Status{aggregate.StatusTrial, aggregate.StatusActive, aggregate.StatusTrial}},
			func(t *aggregate.Tenant) bool {
				return t.Status == aggregate.StatusActive || t.Status == aggregate.StatusTrial
			}},
		{"edition", queries.ListFilter{Editions: []aggregate.Edition{aggregate.EditionEnterprise}},
			func(t *aggregate.Tenant) bool { return t.Edition == aggregate.EditionEnterprise }},
		{"regions", queries.ListFilter{Regions: []aggregate.Region{"eu-west-1", "us-east-1"}},
			func(t *aggregate.Tenant) bool { return t.Region == "eu-west-1" || t.Region == "us-east-1" }},
		{"billing status", queries.ListFilter{BillingStatuses: []aggregate.BillingStatus{aggregate.BillingPastDue}},
			func(t *aggregate.Tenant) bool { return t.BillingStatus == aggregate.BillingPastDue }},
		{"label value", queries.ListFilter{Labels: map[string]string{"env": "prod"}},
			func(t *aggregate.Tenant) bool { return t.Labels["env"] == "prod" }},
		{"label key", queries.ListFilter{Labels: map[string]string{"team": ""}},
			func(t *aggregate.Tenant) bool { _, ok := t.Labels["team"]; return ok }},
		{"label key with empty values", queries.ListFilter{Labels: map[string]string{"flag": ""}},
			func(t *aggregate.Tenant) bool { _, ok := t.Labels["flag"]; return ok }},
		{"labels value and key", queries.ListFilter{Labels: map[string]string{"env": "prod", "team": "a", "flag": ""}},
			func(t *aggregate.Tenant) bool {
				_, flag := t.Labels["flag"]
				return t.Labels["env"] == "prod" && t.Labels["team"] == "a" && flag
			}},
		{"name prefix, case-folded", queries.ListFilter{NamePrefix: "  ACME"}, hasPrefix("acme")},
		{"name prefix keeps a trailing space", queries.ListFilter{NamePrefix: "Acme "}, hasPrefix("acme ")},
		{"name prefix escapes %", queries.ListFilter{NamePrefix: "100%"}, hasPrefix("100%")},
		{"name prefix escapes _", queries.ListFilter{NamePrefix: "beta_"}, hasPrefix("beta_")},
		{"name prefix escapes backslash", queries.ListFilter{NamePrefix: `A\`}, hasPrefix(`a\`)},
		{"name prefix non-ASCII", queries.ListFilter{NamePrefix: "ÜNÏ"}, hasPrefix("ünï")},
		{"name prefix matching nothing", queries.ListFilter{NamePrefix: "nobody"}, hasPrefix("nobody")},
		{"name prefix of spaces only", queries.ListFilter{NamePrefix: "   "}, all},
		{"created after", queries.ListFilter{CreatedAfter: &after},
			func(t *aggregate.Tenant) bool { return t.CreatedAt.After(after) }},
		{"created before", queries.ListFilter{CreatedBefore: &before},
			func(t *aggregate.Tenant) bool { return t.CreatedAt.Before(before) }},
		{"created between", queries.ListFilter{CreatedAfter: &after, CreatedBefore: &before},
			func(t *aggregate.Tenant) bool { return t.CreatedAt.After(after) && t.CreatedAt.Before(before) }},
		{"combined", queries.ListFilter{
			Statuses: []aggregate.Status{aggregate.StatusActive, aggregate.StatusSuspended, aggregate.StatusTrial},
			Editions: []aggregate.Edition{aggregate.EditionFree, aggregate.EditionEnterprise, aggregate.EditionUnlimited},
			Labels:   map[string]string{"env": "prod"}, NamePrefix: "a", CreatedAfter: &after,
		}, func(t *aggregate.Tenant) bool {
			return slices.Contains([]aggregate.Status{aggregate.StatusActive, aggregate.StatusSuspended, aggregate.StatusTrial}, t.Status) &&
				slices.Contains([]aggregate.Edition{aggregate.EditionFree, aggregate.EditionEnterprise, aggregate.EditionUnlimited}, t.Edition) &&
				t.Labels["env"] == "prod" && strings.HasPrefix(t.NormalizedName, "a") && t.CreatedAt.After(after)
		}},
	}
}

// sortKey orders tenants as List does: by the sort's key, then id (PostgreSQL
// compares uuids byte by byte, and text_pattern_ops compares names byte by
// byte, as Go compares strings).
func sortKey(sort string) func(a, b *aggregate.Tenant) int {
	return func(a, b *aggregate.Tenant) int {
		var c int
		switch sort {
		case "", queries.SortCreatedAt:
			c = a.CreatedAt.Compare(b.CreatedAt)
		case queries.SortUpdatedAt:
			c = a.UpdatedAt.Compare(b.UpdatedAt)
		case queries.SortName:
			c = strings.Compare(a.NormalizedName, b.NormalizedName)
		}
		return cmp.Or(c, bytes.Compare(a.ID[:], b.ID[:]))
	}
}

// expected is what a walk over every page must return.
func expected(ts []*aggregate.Tenant, match func(*aggregate.Tenant) bool, sort, order string) []string {
	var sel []*aggregate.Tenant
	for _, t := range ts {
		if match(t) {
			sel = append(sel, t)
		}
	}
	slices.SortFunc(sel, sortKey(sort))
	if order == queries.OrderDesc {
		slices.Reverse(sel)
	}
	out := make([]string, len(sel))
	for i, t := range sel {
		out[i] = t.ID.String()
	}
	return out
}

// walk lists every page of f and returns the tenant ids in order.
func walk(t *testing.T, r *queries.Reader, f queries.ListFilter) []string {
	t.Helper()
	var ids []string
	for pages := 0; ; pages++ {
		if pages > 1000 {
			t.Fatal("more than 1000 pages: the cursor does not advance")
		}
		p, err := r.List(context.Background(), f)
		if err != nil {
			t.Fatalf("List(%+v): %v", f, err)
		}
		if len(p.Tenants) > max(f.Limit, 1) && f.Limit != 0 {
			t.Fatalf("page of %d tenants, limit %d", len(p.Tenants), f.Limit)
		}
		for _, x := range p.Tenants {
			ids = append(ids, x.ID.String())
		}
		if p.NextCursor == "" {
			return ids
		}
		if len(p.Tenants) == 0 {
			t.Fatal("an empty page with a next cursor")
		}
		f.Cursor = p.NextCursor
	}
}

func TestListFiltersSortsAndOrdersOverEveryPage(t *testing.T) {
	t.Parallel()
	pool, _ := pgtest.NewMigrated(t)
	ts := filterFixture()
	insertTenants(t, pool, ts...)
	r := queries.NewReader(pool)
	for _, c := range filterCases() {
		for _, sort := range []string{"", queries.SortCreatedAt, queries.SortUpdatedAt, queries.SortName} {
			for _, order := range []string{"", queries.OrderAsc, queries.OrderDesc} {
				t.Run(fmt.Sprintf("%s/%s/%s", c.name, sort, order), func(t *testing.T) {
					t.Parallel()
					f := c.f
					f.Sort, f.Order, f.Limit = sort, order, 7
					want := expected(ts, c.match, sort, order)
					if len(want) == 0 && c.name != "name prefix matching nothing" {
						t.Fatal("the fixture selects nothing: the case proves little")
					}
					if got := walk(t, r, f); !slices.Equal(got, want) {
						t.Fatalf("got %d tenants\n%v\nwant %d\n%v", len(got), got, len(want), want)
					}
				})
			}
		}
	}
}

func TestListPageSizes(t *testing.T) {
	t.Parallel()
	pool, _ := pgtest.NewMigrated(t)
	var ts []*aggregate.Tenant
	for i := range 250 {
		ts = append(ts, newTenant(fmt.Sprintf("T %d", i), base.Add(time.Duration(i)*time.Second)))
	}
	insertTenants(t, pool, ts...)
	r := queries.NewReader(pool)
	for _, c := range []struct {
		limit, want int
		more        bool
	}{
		{0, queries.DefaultLimit, true},
		{1, 1, true},
		{queries.MaxLimit, queries.MaxLimit, true},
	} {
		p, err := r.List(context.Background(), queries.ListFilter{Limit: c.limit})
		if err != nil {
			t.Fatalf("limit %d: %v", c.limit, err)
		}
		if len(p.Tenants) != c.want || (p.NextCursor != "") != c.more {
			t.Fatalf("limit %d: %d tenants, next cursor %q; want %d, more %v", c.limit, len(p.Tenants), p.NextCursor, c.want, c.more)
		}
	}
	// The last page says so, also when it is exactly full.
	p, err := r.List(context.Background(), queries.ListFilter{Limit: 50, CreatedAfter: ptr(base.Add(199 * time.Second))})
	if err != nil || len(p.Tenants) != 50 || p.NextCursor != "" {
		t.Fatalf("exactly full last page: %d tenants, cursor %q, %v", len(p.Tenants), p.NextCursor, err)
	}
	// The page size may change from page to page.
	p, err = r.List(context.Background(), queries.ListFilter{Limit: 10})
	if err != nil {
		t.Fatal(err)
	}
	p, err = r.List(context.Background(), queries.ListFilter{Limit: 200, Cursor: p.NextCursor})
	if err != nil || len(p.Tenants) != 200 || p.Tenants[0].ID != ts[10].ID {
		t.Fatalf("second page with another limit: %d tenants, %v", len(p.Tenants), err)
	}
	// An empty result is an empty page, not nil.
	p, err = r.List(context.Background(), queries.ListFilter{NamePrefix: "nobody"})
	if err != nil || p.Tenants == nil || len(p.Tenants) != 0 || p.NextCursor != "" {
		t.Fatalf("empty result: %#v, %v", p, err)
	}
}
