package queries_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/tenancyhq/tenancy/aggregate"
	"github.com/tenancyhq/tenancy/internal/pgtest"
	"github.com/tenancyhq/tenancy/queries"
)

// randomTenant has timestamps inside the fixture's range (ties likely) and a
// name among the fixture's, so inserts land before, at and after a cursor.
func randomTenant(r *rand.Rand, tag string) *aggregate.Tenant {
	x := newTenant(fmt.Sprintf("Tenant %03d %s", r.IntN(1000), tag), base.Add(time.Duration(r.IntN(250))*time.Minute))
	x.UpdatedAt = base.Add(time.Duration(r.IntN(100)) * time.Hour)
	return x
}

func TestListPagesNeverLoseNorRepeatATenantWhileOthersAreCreated(t *testing.T) {
	t.Parallel()
	for _, sort := range []string{queries.SortCreatedAt, queries.SortUpdatedAt, queries.SortName} {
		for _, order := range []string{queries.OrderAsc, queries.OrderDesc} {
			t.Run(sort+"/"+order, func(t *testing.T) {
				t.Parallel()
				pool, _ := pgtest.NewMigrated(t)
				rnd := rand.New(rand.NewPCG(uint64(len(sort)), uint64(len(order))))
				originals := make([]*aggregate.Tenant, 1000)
				for i := range originals {
					// created_at in groups of four ties, updated_at and names with ties too
					originals[i] = newTenant(fmt.Sprintf("Tenant %03d", i/2), base.Add(time.Duration(i/4)*time.Minute))
					originals[i].UpdatedAt = base.Add(time.Duration(i%100) * time.Hour)
				}
				insertTenants(t, pool, originals...)
				r := queries.NewReader(pool)

				// A writer creates tenants the whole time the pages are walked.
				ctx, stop := context.WithCancel(context.Background())
				var wg sync.WaitGroup
				var writerErr error
				wg.Go(func() {
					wr := rand.New(rand.NewPCG(7, 7))
					for n := 0; ctx.Err() == nil; n++ {
						if err := writeTenants(ctx, pool, randomTenant(wr, fmt.Sprint("bg", n))); err != nil && ctx.Err() == nil {
							writerErr = err
							return
						}
					}
				})
				defer func() { stop(); wg.Wait() }()

				seen := map[string]int{}
				var all []*aggregate.Tenant // everything the pages gave, in order
				var order0 []string         // the originals, in the order the pages gave them
				isOriginal := map[string]bool{}
				for _, x := range originals {
					isOriginal[x.ID.String()] = true
				}
				f := queries.ListFilter{Sort: sort, Order: order}
				for pages := 0; ; pages++ {
					f.Limit = 1 + rnd.IntN(60)
					p, err := r.List(context.Background(), f)
					if err != nil {
						t.Fatal(err)
					}
					for _, x := range p.Tenants {
						id := x.ID.String()
						seen[id]++
						all = append(all, x)
						if isOriginal[id] {
							order0 = append(order0, id)
						}
					}
					if p.NextCursor == "" {
						break
					}
					f.Cursor = p.NextCursor
					// and some more between this page and the next
					var batch []*aggregate.Tenant
					for i := range 3 {
						batch = append(batch, randomTenant(rnd, fmt.Sprint("p", pages, "-", i)))
					}
					insertTenants(t, pool, batch...)
				}
				stop()
				wg.Wait()
				if writerErr != nil {
					t.Fatalf("writer: %v", writerErr)
				}
				// Keyset pages concatenate into one strictly ordered list.
				less := sortKey(sort)
				for i := 1; i < len(all); i++ {
					c := less(all[i-1], all[i])
					if order == queries.OrderDesc {
						c = -c
					}
					if c >= 0 {
						t.Fatalf("row %d (%s) does not follow row %d (%s)", i, all[i].ID, i-1, all[i-1].ID)
					}
				}

				for id, n := range seen {
					if n > 1 {
						t.Errorf("tenant %s seen %d times", id, n)
					}
				}
				for id := range isOriginal {
					if seen[id] != 1 {
						t.Errorf("original tenant %s seen %d times, want once", id, seen[id])
					}
				}
				if want := expected(originals, func(*aggregate.Tenant) bool { return true }, sort, order); !slices.Equal(order0, want) {
					t.Errorf("the originals came out of order")
				}
				var total int
				if err := pool.QueryRow(context.Background(), `SELECT count(*) FROM tenants`).Scan(&total); err != nil {
					t.Fatal(err)
				}
				t.Logf("%d tenants seen of %d at the end (1000 originals)", len(seen), total)
			})
		}
	}
}
