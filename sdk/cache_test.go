package sdk_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/tenancyhq/tenancy/aggregate"
	"github.com/tenancyhq/tenancy/sdk"
	"github.com/tenancyhq/tenancy/sdk/internal/sdktest"
)

// propagationBound is how soon after a command's response the cache must
// answer with it in these tests: generous, for a loaded machine (the race
// detector, other test binaries) where the service's own publisher can lag;
// BenchmarkPropagation measures the real figure.
const propagationBound = 10 * time.Second

// openCache opens a cache on the service, closed when the test ends.
func openCache(t testing.TB, svc *sdktest.Service, opts sdk.Options) *sdk.Cache {
	t.Helper()
	client, err := sdk.NewClient(svc.BaseURL, sdk.ClientOptions{Token: svc.ReadToken})
	if err != nil {
		t.Fatal(err)
	}
	opts.Client, opts.NATSURL = client, svc.NATSURL
	if opts.SyncInterval == 0 {
		opts.SyncInterval = 50 * time.Millisecond
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := sdk.Open(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

// eventually polls cond until it holds, failing the test after within; it
// returns how long it took.
func eventually(t testing.TB, within time.Duration, what string, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > within {
			t.Fatalf("%s: not within %s", what, within)
		}
		time.Sleep(2 * time.Millisecond)
	}
	return time.Since(start)
}

// caughtUp waits until the cache holds the tenant at version v or later.
func caughtUp(t testing.TB, c *sdk.Cache, id uuid.UUID, v uint64) {
	t.Helper()
	eventually(t, propagationBound, "cache at the command's version", func() bool {
		ti, err := c.Tenant(context.Background(), id)
		return err == nil && ti.Version >= v
	})
}

func enabled(t testing.TB, c *sdk.Cache, id uuid.UUID, f aggregate.Feature) bool {
	t.Helper()
	on, err := c.Enabled(context.Background(), id, f)
	if err != nil {
		t.Fatalf("Enabled(%s): %v", f, err)
	}
	return on
}

func decision(t testing.TB, c *sdk.Cache, id uuid.UUID, action string, pctx aggregate.PolicyContext) aggregate.Decision {
	t.Helper()
	d, err := c.Evaluate(context.Background(), id, action, pctx)
	if err != nil {
		t.Fatalf("Evaluate(%s): %v", action, err)
	}
	return d
}

func TestCacheAnswersChangeAfterEditionOverrideAndSuspension(t *testing.T) {
	t.Parallel()
	svc := sdktest.Start(t)
	id := svc.CreateActive("Acme Gating", aggregate.EditionEssentials, "eu-west-1")
	c := openCache(t, svc, sdk.Options{})
	ctx := context.Background()

	if enabled(t, c, id, aggregate.FeatureSSO) {
		t.Fatal("an essentials tenant has sso")
	}
	if d := decision(t, c, id, "sso.login", aggregate.PolicyContext{}); d.Decision != aggregate.DecisionDeny || d.Reason != "feature_not_in_edition" {
		t.Fatalf("sso.login on essentials = %s/%s", d.Decision, d.Reason)
	}

	steps := []struct {
		name string
		do   func()
		// answered reports whether the cache answers as the command made the tenant.
		answered func() bool
	}{
		{"change-edition", func() {
			svc.Command(id, aggregate.CmdChangeEdition, map[string]any{"edition": "professional"})
		}, func() bool {
			return enabled(t, c, id, aggregate.FeatureSSO) && decision(t, c, id, "sso.login", aggregate.PolicyContext{}).Decision == aggregate.DecisionAllow
		}},
		{"set-override feature", func() {
			svc.Must(http.MethodPut, "/api/v1/tenants/"+id.String()+"/overrides/sso", map[string]any{"enabled": false})
		}, func() bool {
			return !enabled(t, c, id, aggregate.FeatureSSO) && decision(t, c, id, "sso.login", aggregate.PolicyContext{}).Reason == "feature_disabled"
		}},
		{"set-override limit", func() {
			svc.Must(http.MethodPut, "/api/v1/tenants/"+id.String()+"/overrides/max_users", map[string]any{"value": 3})
		}, func() bool {
			n, err := c.Limit(ctx, id, aggregate.LimitMaxUsers)
			usage := aggregate.PolicyContext{Usage: map[aggregate.Limit]int64{aggregate.LimitMaxUsers: 3}}
			return err == nil && n == 3 && decision(t, c, id, "user.create", usage).Reason == "quota_exceeded"
		}},
		{"suspend", func() {
			svc.Command(id, aggregate.CmdSuspend, map[string]any{"reason": "payment_failed"})
		}, func() bool {
			w := decision(t, c, id, "data.write", aggregate.PolicyContext{})
			r := decision(t, c, id, "data.read", aggregate.PolicyContext{})
			return w.Decision == aggregate.DecisionDeny && w.Reason == "tenant_suspended" && r.Decision == aggregate.DecisionWarn
		}},
	}
	for _, st := range steps {
		if st.answered() {
			t.Fatalf("%s: the cache answers as if it had happened already", st.name)
		}
		st.do()
		took := eventually(t, propagationBound, st.name+fmt.Sprintf(" (cache %+v)", c.Status()), st.answered)
		t.Logf("%s: the cache answered with it %s after the command's response", st.name, took.Round(time.Millisecond))
	}
	if st := c.Status(); st.Fetches != 1 || st.Gaps != 0 || st.Events < 4 {
		t.Errorf("status = %+v, want one fetch, no gap, the events folded in", st)
	}
}

func TestCacheHoldsAtMostCapacityTenants(t *testing.T) {
	t.Parallel()
	svc := sdktest.Start(t)
	c := openCache(t, svc, sdk.Options{Capacity: 2})
	ids := []uuid.UUID{
		svc.CreateActive("Cap One", aggregate.EditionFree, "us-east-1"),
		svc.CreateActive("Cap Two", aggregate.EditionProfessional, "us-east-1"),
		svc.CreateActive("Cap Three", aggregate.EditionEnterprise, "us-east-1"),
	}
	want := []bool{false, true, true}
	for round := 0; round < 2; round++ {
		for i, id := range ids {
			if got := enabled(t, c, id, aggregate.FeatureSSO); got != want[i] {
				t.Errorf("tenant %d: sso = %v, want %v", i, got, want[i])
			}
		}
	}
	st := c.Status()
	if st.Tenants > 2 || st.Evictions == 0 {
		t.Errorf("status = %+v, want at most 2 tenants held and evictions", st)
	}
	// An unknown tenant is an error, and a denial.
	missing := uuid.New()
	if _, err := c.Enabled(context.Background(), missing, aggregate.FeatureSSO); !errors.Is(err, sdk.ErrTenantNotFound) {
		t.Errorf("Enabled(unknown tenant) = %v, want ErrTenantNotFound", err)
	}
	if d, err := c.Evaluate(context.Background(), missing, "data.read", aggregate.PolicyContext{}); d.Allowed() || !errors.Is(err, sdk.ErrTenantNotFound) {
		t.Errorf("Evaluate(unknown tenant) = %s, %v, want a denial and ErrTenantNotFound", d.Decision, err)
	}
	if _, err := c.Enabled(context.Background(), ids[0], "no_such_feature"); !errors.Is(err, sdk.ErrUnknownFeature) {
		t.Errorf("Enabled(unknown feature) = %v, want ErrUnknownFeature", err)
	}
}

func TestCacheFetchesATenantAgainAfterAMissedEvent(t *testing.T) {
	t.Parallel()
	svc := sdktest.Start(t)
	id := svc.CreateActive("Gap Corp", aggregate.EditionEssentials, "us-west-2")
	other := svc.CreateActive("Gap Neighbour", aggregate.EditionEssentials, "us-west-2")
	c := openCache(t, svc, sdk.Options{})
	ctx := context.Background()
	enabled(t, c, id, aggregate.FeatureSSO)
	enabled(t, c, other, aggregate.FeatureSSO)

	t.Run("version gap", func(t *testing.T) {
		var mu sync.Mutex
		lost := false
		sdk.LoseEvents(c, func(tenant uuid.UUID, version uint64) sdk.DropModeForTest {
			mu.Lock()
			defer mu.Unlock()
			if tenant == id && !lost {
				lost = true
				return sdk.DropEvent
			}
			return sdk.KeepMessage
		})
		before := c.Status()
		r := svc.Must(http.MethodPut, "/api/v1/tenants/"+id.String()+"/overrides/sso", map[string]any{"enabled": true})
		eventually(t, propagationBound, "the event lost", func() bool { mu.Lock(); defer mu.Unlock(); return lost })
		time.Sleep(100 * time.Millisecond)
		if enabled(t, c, id, aggregate.FeatureSSO) {
			t.Fatal("the cache saw the event it lost")
		}
		// The next event skips a version: the cache fetches the tenant
		// again rather than fold it onto a state that misses one.
		r2 := svc.Must(http.MethodPut, "/api/v1/tenants/"+id.String()+"/overrides/max_users", map[string]any{"value": 7})
		caughtUp(t, c, id, r2.Version())
		if !enabled(t, c, id, aggregate.FeatureSSO) {
			t.Error("after the gap the cache still misses the lost event's change")
		}
		if n, _ := c.Limit(ctx, id, aggregate.LimitMaxUsers); n != 7 {
			t.Errorf("max_users = %d, want 7", n)
		}
		after := c.Status()
		if after.Gaps == before.Gaps || after.Fetches == before.Fetches {
			t.Errorf("status before %+v, after %+v: want a gap and a fetch", before, after)
		}
		_ = r
	})

	t.Run("stream sequence gap", func(t *testing.T) {
		var mu sync.Mutex
		lost := false
		sdk.LoseEvents(c, func(tenant uuid.UUID, version uint64) sdk.DropModeForTest {
			mu.Lock()
			defer mu.Unlock()
			if tenant == other && !lost {
				lost = true
				return sdk.DropMessage
			}
			return sdk.KeepMessage
		})
		before := c.Status()
		svc.Command(other, aggregate.CmdChangeEdition, map[string]any{"edition": "professional"})
		eventually(t, propagationBound, "the message lost", func() bool { mu.Lock(); defer mu.Unlock(); return lost })
		// Any later message shows the stream skipped one: every tenant is
		// fetched again before it is used.
		svc.Must(http.MethodPut, "/api/v1/tenants/"+id.String()+"/overrides/max_users", map[string]any{"value": 8})
		eventually(t, propagationBound, "invalidation", func() bool { return c.Status().Invalidations > before.Invalidations })
		if !enabled(t, c, other, aggregate.FeatureSSO) {
			t.Error("after the stream gap the cache still misses the lost message's change")
		}
		if n, _ := c.Limit(ctx, id, aggregate.LimitMaxUsers); n != 8 {
			t.Errorf("max_users = %d, want 8", n)
		}
	})
}

func TestCacheKeepsAnsweringWhileNATSIsDown(t *testing.T) {
	t.Parallel()
	svc := sdktest.Start(t)
	id := svc.CreateActive("Outage Ltd", aggregate.EditionEssentials, "ap-south-1")
	const bound = 1500 * time.Millisecond
	serve := openCache(t, svc, sdk.Options{MaxStaleness: bound, WhenStale: sdk.ServeStale})
	refetch := openCache(t, svc, sdk.Options{MaxStaleness: bound, WhenStale: sdk.FetchFromAPI})
	closed := openCache(t, svc, sdk.Options{MaxStaleness: bound, WhenStale: sdk.FailClosed})
	caches := []*sdk.Cache{serve, refetch, closed}
	notices := make(chan sdk.Notice, 100)
	serve.Subscribe(func(n sdk.Notice) {
		if n.Kind != sdk.NoticeChanged {
			notices <- n
		}
	})
	for _, c := range caches {
		enabled(t, c, id, aggregate.FeatureSSO)
		eventually(t, propagationBound, "fresh", func() bool { return c.Status().Staleness < bound/2 })
	}

	svc.StopNATS()
	// A command while NATS is down: the service takes it; the event waits
	// in the event store until NATS is back.
	svc.Command(id, aggregate.CmdChangeEdition, map[string]any{"edition": "professional"})
	// Every cache last knew the tenant before NATS stopped (when it last
	// synced, or fetched it): past the bound, each is stale.
	time.Sleep(bound + 200*time.Millisecond)
	st := serve.Status()
	if st.Connected || st.Staleness < bound {
		t.Errorf("status with NATS down = %+v, want disconnected and stale", st)
	}
	// serve-stale: the last known state, saying how old it is.
	if enabled(t, serve, id, aggregate.FeatureSSO) {
		t.Error("serve-stale: answered a state it could not know")
	}
	if ti, _ := serve.Tenant(context.Background(), id); ti.Age < bound {
		t.Errorf("serve-stale: tenant age %s, want past %s", ti.Age, bound)
	}
	// fetch-from-api: past the bound it asks the API, which has the change.
	if !enabled(t, refetch, id, aggregate.FeatureSSO) {
		t.Error("fetch-from-api: past the bound it did not answer from the API")
	}
	// fail-closed: past the bound, an error and a denial.
	if on, err := closed.Enabled(context.Background(), id, aggregate.FeatureSSO); on || !errors.Is(err, sdk.ErrStale) {
		t.Errorf("fail-closed: Enabled = %v, %v; want false, ErrStale", on, err)
	}
	if d, err := closed.Evaluate(context.Background(), id, "data.read", aggregate.PolicyContext{}); d.Allowed() || d.Reason != "entitlements_stale" || !errors.Is(err, sdk.ErrStale) {
		t.Errorf("fail-closed: Evaluate = %s/%s, %v; want a denial", d.Decision, d.Reason, err)
	}

	svc.StartNATS()
	for i, c := range caches {
		eventually(t, 20*time.Second, "caught up after the outage", func() bool {
			st := c.Status()
			on, err := c.Enabled(context.Background(), id, aggregate.FeatureSSO)
			return !st.Stale && err == nil && on
		})
		t.Logf("cache %d after the outage: %+v", i, c.Status())
	}
	kinds := map[sdk.NoticeKind]bool{}
	for len(notices) > 0 {
		kinds[(<-notices).Kind] = true
	}
	for _, k := range []sdk.NoticeKind{sdk.NoticeFresh, sdk.NoticeStale, sdk.NoticeError} {
		if !kinds[k] {
			t.Errorf("no notice of kind %d during the outage (got %v)", k, kinds)
		}
	}
}

func TestCacheHoldsEveryTenantWhenAskedTo(t *testing.T) {
	t.Parallel()
	svc := sdktest.Start(t)
	ids := []uuid.UUID{
		svc.CreateActive("All One", aggregate.EditionFree, "eu-west-2"),
		svc.CreateActive("All Two", aggregate.EditionEnterprise, "eu-west-2"),
	}
	c := openCache(t, svc, sdk.Options{AllTenants: true})
	listed := c.Status()
	if listed.Tenants != 2 || listed.Fetches > 2 {
		t.Fatalf("status after Open = %+v, want both tenants from the listing", listed)
	}
	// A new tenant is folded from its events, without a fetch.
	created := svc.CreateActive("All Three", aggregate.EditionProfessional, "eu-west-2")
	eventually(t, propagationBound, "the new tenant", func() bool { return c.Status().Tenants == 3 })
	eventually(t, propagationBound, "the new tenant active", func() bool {
		ti, err := c.Tenant(context.Background(), created)
		return err == nil && ti.Status == aggregate.StatusActive
	})
	if !enabled(t, c, created, aggregate.FeatureSSO) || enabled(t, c, ids[0], aggregate.FeatureSSO) || !enabled(t, c, ids[1], aggregate.FeatureSSO) {
		t.Error("wrong sso answers")
	}
	if st := c.Status(); st.Fetches != listed.Fetches {
		t.Errorf("status = %+v, want no fetch beyond the listing", st)
	}
}
