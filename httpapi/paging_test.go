package httpapi_test

import (
	"context"
	"fmt"
	"net/url"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/tenancyhq/tenancy/aggregate"
	"github.com/tenancyhq/tenancy/eventstore"
)

// TestCursorPagesSeeEveryTenantOnceWhileTenantsAreCreated walks GET
// /api/v1/tenants in pages of 37 over 1,000 tenants while another client
// keeps creating tenants: every tenant that existed before the walk is seen
// exactly once, and no tenant is seen twice.
func TestCursorPagesSeeEveryTenantOnceWhileTenantsAreCreated(t *testing.T) {
	t.Parallel()
	s := startService(t)
	ctx := context.Background()
	const n = 1000

	// The originals are written through the command handler, 8 at a time.
	var mu sync.Mutex
	originals := make(map[string]bool, n)
	var last eventstore.Position
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(8)
	for i := range n {
		g.Go(func() error {
			res, err := s.app.Commands.Create(gctx, aggregate.Create{
				Name: fmt.Sprintf("Page Tenant %04d %x", i, (i*7919)%1000), Edition: aggregate.Editions()[i%5],
				Region: aggregate.Regions()[i%len(aggregate.Regions())],
			}, aggregate.Metadata{Actor: "test"})
			if err != nil {
				return err
			}
			mu.Lock()
			defer mu.Unlock()
			originals[res.TenantID.String()] = true
			if res.Position.Compare(last) > 0 {
				last = res.Position
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		t.Fatalf("create: %v", err)
	}

	// Meanwhile, a writer keeps creating tenants over HTTP until the walks end.
	stop := make(chan struct{})
	var created atomic.Int64
	writerDone := make(chan error, 1)
	go func() {
		for i := 0; ; i++ {
			select {
			case <-stop:
				writerDone <- nil
				return
			default:
			}
			r := s.do("POST", "/api/v1/tenants", map[string]any{"name": fmt.Sprintf("Concurrent %d", i), "edition": "free", "region": "eu-west-2"})
			if r.status != 201 {
				writerDone <- fmt.Errorf("concurrent create: %s", r)
				return
			}
			created.Add(1)
		}
	}()

	for _, order := range []string{"sort=created_at", "sort=name&order=desc", "sort=updated_at&order=asc"} {
		seen := map[string]int{}
		cursor, pages := "", 0
		for {
			q := order + "&limit=37"
			if cursor != "" {
				q += "&cursor=" + url.QueryEscape(cursor)
			}
			page := s.must(200, "GET", "/api/v1/tenants?"+q, nil, "X-Consistency-Token", last.String()).json(t)
			items := page["items"].([]any)
			if len(items) > 37 {
				t.Fatalf("%s: a page of %d items", order, len(items))
			}
			for _, it := range items {
				seen[it.(map[string]any)["id"].(string)]++
			}
			pages++
			// Let at least one concurrent create land between any two pages.
			for before, deadline := created.Load(), time.Now().Add(5*time.Second); created.Load() == before && time.Now().Before(deadline); {
				time.Sleep(time.Millisecond)
			}
			cursor, _ = page["next_cursor"].(string)
			if cursor == "" {
				break
			}
			if pages > 200 {
				t.Fatalf("%s: more than 200 pages", order)
			}
		}
		missing, twice, extra := 0, 0, 0
		for id := range originals {
			if seen[id] != 1 {
				missing++
			}
		}
		for id, k := range seen {
			if k > 1 {
				twice++
			}
			if !originals[id] {
				extra++
			}
		}
		if missing > 0 || twice > 0 {
			t.Errorf("%s: %d originals not seen exactly once, %d tenants seen twice", order, missing, twice)
		}
		t.Logf("%s: %d pages, %d originals, %d created during the walks (%d seen)", order, pages, len(originals), created.Load(), extra)
	}
	close(stop)
	select {
	case err := <-writerDone:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("writer did not stop")
	}
	if created.Load() == 0 {
		t.Errorf("no tenant was created during the walks; the test proved nothing about concurrency")
	}
}
