package sdk

import (
	"context"
	"runtime"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/tenancyhq/tenancy/aggregate"
)

// BenchmarkEvaluate measures Cache.Evaluate on a held tenant, on one
// goroutine: "hit" asks the same question again (answered from the memo),
// "miss" changes the usage on every call (a full evaluation each time).
func BenchmarkEvaluate(b *testing.B) {
	c := offlineCache(b, Options{})
	id := uuid.New()
	c.hold(activeTenant(id, aggregate.EditionProfessional))
	ctx := context.Background()
	b.Run("hit", func(b *testing.B) {
		pctx := aggregate.PolicyContext{Usage: map[aggregate.Limit]int64{aggregate.LimitMaxUsers: 7}}
		if d, err := c.Evaluate(ctx, id, "user.create", pctx); err != nil || !d.Allowed() {
			b.Fatalf("Evaluate = %+v, %v", d, err)
		}
		b.ReportAllocs()
		b.ResetTimer()
		start := time.Now()
		for b.Loop() {
			d, err := c.Evaluate(ctx, id, "user.create", pctx)
			if err != nil || d.Decision != aggregate.DecisionAllow {
				b.Fatalf("Evaluate = %+v, %v", d, err)
			}
		}
		b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "evaluations/s")
	})
	b.Run("miss", func(b *testing.B) {
		b.ReportAllocs()
		start := time.Now()
		i := int64(0)
		for b.Loop() {
			i++
			pctx := aggregate.PolicyContext{Usage: map[aggregate.Limit]int64{aggregate.LimitMaxUsers: i % 50}}
			if _, err := c.Evaluate(ctx, id, "user.create", pctx); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "evaluations/s")
	})
}

// BenchmarkEnabled measures Cache.Enabled and Cache.Limit on a held tenant.
func BenchmarkEnabled(b *testing.B) {
	c := offlineCache(b, Options{})
	id := uuid.New()
	c.hold(activeTenant(id, aggregate.EditionProfessional))
	ctx := context.Background()
	b.ReportAllocs()
	start := time.Now()
	for b.Loop() {
		on, err := c.Enabled(ctx, id, aggregate.FeatureSSO)
		if err != nil || !on {
			b.Fatal(on, err)
		}
		if n, err := c.Limit(ctx, id, aggregate.LimitMaxUsers); err != nil || n != 100 {
			b.Fatal(n, err)
		}
	}
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "checks/s")
}

// BenchmarkBytesPerTenant measures the heap a held tenant costs: 20,000
// tenants without overrides (sharing their edition's entitlements), the
// same with three decisions remembered each, and 20,000 with a feature and
// a limit override and a policy.
func BenchmarkBytesPerTenant(b *testing.B) {
	const n = 20_000
	for _, tc := range []struct {
		name  string
		extra []aggregate.Event
		// asked are actions evaluated once each (remembered in the memo).
		asked []string
	}{
		{"edition", nil, nil},
		{"edition+3-decisions", nil, []string{"sso.login", "user.create", "data.write"}},
		{"overrides", []aggregate.Event{
			aggregate.FeatureOverrideSet{Feature: aggregate.FeatureSSO, Enabled: true},
			aggregate.LimitOverrideSet{Limit: aggregate.LimitMaxUsers, Value: 500},
			aggregate.PolicySet{Policy: aggregate.PolicySetting{Type: aggregate.PolicyDataResidency, Enforced: true,
				Settings: []byte(`{"allowed_regions":["eu-west-1"]}`)}},
		}, nil},
	} {
		b.Run(tc.name, func(b *testing.B) {
			for b.Loop() {
				before := heapInUse()
				tenants := make([]*aggregate.Tenant, n)
				for i := range tenants {
					tenants[i] = activeTenant(uuid.New(), aggregate.EditionEssentials, tc.extra...)
				}
				c := newCache(Options{WhenStale: ServeStale}.withDefaults())
				for _, t := range tenants {
					c.hold(t)
					for _, a := range tc.asked {
						if _, err := c.Evaluate(context.Background(), t.ID, a, aggregate.PolicyContext{}); err != nil {
							b.Fatal(err)
						}
					}
				}
				tenants = nil
				after := heapInUse()
				runtime.KeepAlive(c)
				b.ReportMetric(float64(after-before)/n, "bytes/tenant")
				c.Close()
			}
		})
	}
}

func heapInUse() int64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return int64(m.HeapAlloc)
}
