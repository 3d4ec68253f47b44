package ofprovider_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	of "github.com/open-feature/go-sdk/openfeature"
	"github.com/open-feature/go-sdk/openfeature/isolated"

	"github.com/tenancyhq/tenancy/aggregate"
	"github.com/tenancyhq/tenancy/sdk"
	"github.com/tenancyhq/tenancy/sdk/internal/sdktest"
	"github.com/tenancyhq/tenancy/sdk/ofprovider"
)

// events records the provider events OpenFeature hands to handlers.
type events struct {
	mu  sync.Mutex
	got []of.EventDetails
	typ []of.EventType
}

func (e *events) handler(t of.EventType) of.EventCallback {
	fn := func(d of.EventDetails) {
		e.mu.Lock()
		defer e.mu.Unlock()
		e.got, e.typ = append(e.got, d), append(e.typ, t)
	}
	return &fn
}

// seen returns the events of type t so far.
func (e *events) seen(t of.EventType) []of.EventDetails {
	e.mu.Lock()
	defer e.mu.Unlock()
	var out []of.EventDetails
	for i, d := range e.got {
		if e.typ[i] == t {
			out = append(out, d)
		}
	}
	return out
}

// detail is what a test expects of an evaluation.
type detail struct {
	value   any
	reason  of.Reason
	variant string
	code    of.ErrorCode
}

// checker checks evaluations, collecting what differs from the expected.
type checker struct {
	c        *of.Client
	problems []string
}

func (k *checker) bool(flag string, ec of.EvaluationContext, want detail) {
	d, _ := k.c.BooleanValueDetails(context.Background(), flag, false, ec)
	k.compare("boolean", flag, ec, detail{d.Value, d.Reason, d.Variant, d.ErrorCode}, want, d.ErrorMessage)
}

func (k *checker) int(flag string, ec of.EvaluationContext, want detail) {
	d, _ := k.c.IntValueDetails(context.Background(), flag, -1, ec)
	k.compare("integer", flag, ec, detail{d.Value, d.Reason, d.Variant, d.ErrorCode}, want, d.ErrorMessage)
}

func (k *checker) compare(kind, flag string, ec of.EvaluationContext, got, want detail, msg string) {
	if got != want {
		k.problems = append(k.problems, fmt.Sprintf("%s %s for %q: got %+v (%s), want %+v", kind, flag, ec.TargetingKey(), got, msg, want))
	}
}

// check runs checks and fails the test with what differed.
func check(t *testing.T, c *of.Client, checks func(k *checker)) {
	t.Helper()
	k := &checker{c: c}
	checks(k)
	for _, p := range k.problems {
		t.Error(p)
	}
}

// eventually polls cond until it holds, or fails the test after within.
func eventually(t *testing.T, within time.Duration, what string, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > within {
			t.Fatalf("%s: not within %s", what, within)
		}
		time.Sleep(5 * time.Millisecond)
	}
	return time.Since(start)
}

func TestProviderAnswersThroughTheOpenFeatureClient(t *testing.T) {
	t.Parallel()
	svc := sdktest.Start(t)
	id := svc.CreateActive("Flagged Inc", aggregate.EditionEssentials, "eu-central-1")
	var tenant struct {
		ExternalID string `json:"external_id"`
	}
	if err := json.Unmarshal(svc.Must(http.MethodGet, "/api/v1/tenants/"+id.String(), nil).Body, &tenant); err != nil {
		t.Fatal(err)
	}

	client, err := sdk.NewClient(svc.BaseURL, sdk.ClientOptions{Token: svc.ReadToken})
	if err != nil {
		t.Fatal(err)
	}
	const bound = 1500 * time.Millisecond
	ctx := context.Background()
	cache, err := sdk.Open(ctx, sdk.Options{Client: client, NATSURL: svc.NATSURL, SyncInterval: 50 * time.Millisecond, MaxStaleness: bound, WhenStale: sdk.ServeStale})
	if err != nil {
		t.Fatal(err)
	}
	defer cache.Close()

	api := isolated.NewAPI()
	defer func() { _ = api.Shutdown(ctx) }()
	var ev events
	for _, typ := range []of.EventType{of.ProviderReady, of.ProviderStale, of.ProviderError, of.ProviderConfigChange} {
		api.AddHandler(typ, ev.handler(typ))
	}
	if err := api.SetProviderAndWait(ctx, ofprovider.New(cache, ofprovider.Options{})); err != nil {
		t.Fatal(err)
	}
	c := api.NewClient()
	if c.State() != of.ReadyState {
		t.Fatalf("provider state %s, want READY", c.State())
	}
	eventually(t, 5*time.Second, "a ready event", func() bool { return len(ev.seen(of.ProviderReady)) > 0 })
	byID := of.NewEvaluationContext(id.String(), nil)
	byExternalID := of.NewEvaluationContext(tenant.ExternalID, nil)
	const (
		tm     = of.TargetingMatchReason
		static = of.StaticReason
		erred  = of.ErrorReason
	)

	t.Run("edition", func(t *testing.T) {
		check(t, c, func(k *checker) {
			k.bool("webhooks", byID, detail{true, tm, "essentials", ""})
			k.bool("sso", byID, detail{false, tm, "essentials", ""})
			k.bool("sso", byExternalID, detail{false, tm, "essentials", ""})
			k.int("max_users", byID, detail{int64(25), tm, "essentials", ""})
			k.bool("webhook.create", byID, detail{true, tm, "allow", ""})
			k.bool("sso.login", byID, detail{false, tm, "deny", ""})
			usage := of.NewEvaluationContext(id.String(), map[string]any{"usage": map[string]any{"max_users": 25}})
			k.bool("user.create", usage, detail{false, tm, "deny", ""})
			nearly := of.NewEvaluationContext(id.String(), map[string]any{"usage.max_users": 21})
			k.bool("user.create", nearly, detail{true, tm, "warn", ""})
		})
	})
	t.Run("static flag", func(t *testing.T) {
		// rest_api is in every edition: nothing about the tenant decides it.
		check(t, c, func(k *checker) { k.bool("rest_api", byID, detail{true, static, "essentials", ""}) })
	})
	t.Run("errors", func(t *testing.T) {
		check(t, c, func(k *checker) {
			k.bool("no_such_flag", byID, detail{false, erred, "", of.FlagNotFoundCode})
			k.int("no_such_flag", byID, detail{int64(-1), erred, "", of.FlagNotFoundCode})
			k.bool("max_users", byID, detail{false, erred, "", of.TypeMismatchCode})
			k.int("sso", byID, detail{int64(-1), erred, "", of.TypeMismatchCode})
			k.bool("sso", of.NewTargetlessEvaluationContext(nil), detail{false, erred, "", of.TargetingKeyMissingCode})
			k.bool("sso", of.NewEvaluationContext(uuid.NewString(), nil), detail{false, erred, "", of.InvalidContextCode})
			k.bool("sso", of.NewEvaluationContext("not a tenant", nil), detail{false, erred, "", of.InvalidContextCode})
			bad := of.NewEvaluationContext(id.String(), map[string]any{"usage.max_users": "many"})
			k.bool("user.create", bad, detail{false, erred, "", of.InvalidContextCode})
		})
		if d, _ := c.StringValueDetails(ctx, "sso", "x", byID); d.ErrorCode != of.TypeMismatchCode || d.Value != "x" {
			t.Errorf("string sso = %+v", d)
		}
	})

	// Each change reaches the client within the propagation bound, and the
	// ones that change features or limits say so with an event.
	changes := []struct {
		name   string
		do     func()
		check  func(k *checker)
		reload []string // flags an event must name
	}{
		{"change-edition", func() {
			svc.Command(id, aggregate.CmdChangeEdition, map[string]any{"edition": "professional"})
		}, func(k *checker) {
			k.bool("sso", byID, detail{true, tm, "professional", ""})
			k.int("max_users", byID, detail{int64(100), tm, "professional", ""})
			k.bool("sso.login", byExternalID, detail{true, tm, "allow", ""})
		}, []string{"sso", "max_users"}},
		{"set-override", func() {
			svc.Must(http.MethodPut, "/api/v1/tenants/"+id.String()+"/overrides/sso", map[string]any{"enabled": false})
			svc.Must(http.MethodPut, "/api/v1/tenants/"+id.String()+"/overrides/max_users", map[string]any{"value": 7})
		}, func(k *checker) {
			k.bool("sso", byID, detail{false, tm, "override", ""})
			k.int("max_users", byID, detail{int64(7), tm, "override", ""})
			k.bool("sso.login", byID, detail{false, tm, "deny", ""})
		}, []string{"sso", "max_users"}},
		{"suspend", func() {
			svc.Command(id, aggregate.CmdSuspend, map[string]any{"reason": "security_threat"})
		}, func(k *checker) {
			k.bool("data.read", byID, detail{false, tm, "deny", ""})
			k.bool("webhooks", byID, detail{true, tm, "professional", ""}) // entitlements stay
		}, nil},
	}
	for _, ch := range changes {
		t.Run(ch.name, func(t *testing.T) {
			before := len(ev.seen(of.ProviderConfigChange))
			ch.do()
			took := eventually(t, 10*time.Second, ch.name, func() bool {
				k := &checker{c: c}
				ch.check(k)
				return len(k.problems) == 0
			})
			check(t, c, ch.check)
			t.Logf("%s reached the OpenFeature client in %s", ch.name, took.Round(time.Millisecond))
			if ch.reload == nil {
				return
			}
			eventually(t, 10*time.Second, "configuration-changed events", func() bool {
				var flags []string
				for _, d := range ev.seen(of.ProviderConfigChange)[before:] {
					flags = append(flags, d.FlagChanges...)
				}
				for _, f := range ch.reload {
					if !slices.Contains(flags, f) {
						return false
					}
				}
				return true
			})
		})
	}

	t.Run("stream recreated", func(t *testing.T) {
		// The stream is lost (deleted, or a NATS that came back without its
		// store) and the service makes it again: the cache cannot know what
		// it missed, so it fetches the tenants again.
		nc, err := nats.Connect(svc.NATSURL)
		if err != nil {
			t.Fatal(err)
		}
		defer nc.Close()
		js, err := jetstream.New(nc)
		if err != nil {
			t.Fatal(err)
		}
		before := cache.Status().Invalidations
		if err := js.DeleteStream(ctx, sdk.DefaultStreamName); err != nil {
			t.Fatal(err)
		}
		svc.Must(http.MethodDelete, "/api/v1/tenants/"+id.String()+"/overrides/max_users", nil)
		eventually(t, 30*time.Second, "the cleared override", func() bool {
			k := &checker{c: c}
			k.int("max_users", byID, detail{int64(100), tm, "professional", ""})
			return len(k.problems) == 0
		})
		if st := cache.Status(); st.Invalidations == before {
			t.Errorf("status %+v: want an invalidation after the stream was recreated", st)
		}
		eventually(t, 30*time.Second, "following the new stream", func() bool { return cache.Status().Staleness < bound/3 })
	})

	t.Run("NATS down", func(t *testing.T) {
		staleBefore := len(ev.seen(of.ProviderStale))
		svc.StopNATS()
		eventually(t, 10*time.Second, "a stale event", func() bool { return len(ev.seen(of.ProviderStale)) > staleBefore })
		if c.State() != of.StaleState {
			t.Errorf("state %s, want STALE", c.State())
		}
		if len(ev.seen(of.ProviderError)) == 0 {
			t.Error("no error event while NATS was down")
		}
		// Still answering, from the last known state, and saying how old.
		eventually(t, 10*time.Second, "an answer older than the bound", func() bool {
			d, err := c.BooleanValueDetails(ctx, "data.read", true, byID)
			if err != nil || d.Value || d.Variant != "deny" {
				t.Fatalf("data.read while stale = %+v, %v", d, err)
			}
			age, _ := d.FlagMetadata.GetInt("age_ms")
			return age > bound.Milliseconds()
		})
		readyBefore := len(ev.seen(of.ProviderReady))
		svc.StartNATS()
		eventually(t, 20*time.Second, "ready again", func() bool { return len(ev.seen(of.ProviderReady)) > readyBefore })
		if c.State() != of.ReadyState {
			t.Errorf("state %s after NATS is back, want READY", c.State())
		}
	})
}
