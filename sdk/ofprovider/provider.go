// Package ofprovider is an OpenFeature provider (github.com/open-feature/go-sdk)
// on the SDK's entitlement cache, so that a service gates features with the
// OpenFeature API it may already use for its own flags.
//
// The flags are the catalog's, for the tenant named by the targeting key (a
// tenant id, or an external id such as ORG-E4900E20):
//
//   - boolean flags named after a feature ("sso", "webhooks"): whether the
//     tenant has it, from its edition or an override;
//   - integer flags named after a limit ("max_users"): its value, 0 meaning
//     unlimited;
//   - boolean flags named after an action ("webhook.create", "data.write"):
//     whether the tenant may do it now, by policy evaluation (status,
//     edition, quotas, region, network, time), with the evaluation context's
//     attributes "region", "source_ip" and "usage" (a map from limit to the
//     current usage, or attributes "usage.<limit>").
//
// Reasons: TARGETING_MATCH when the value depends on the tenant (its
// edition, an override, its state), STATIC when every edition has the same
// value and the tenant no override, ERROR with a standard error code
// otherwise (FLAG_NOT_FOUND, TYPE_MISMATCH, TARGETING_KEY_MISSING,
// INVALID_CONTEXT, GENERAL). The variant says where a value came from: the
// edition's name, "override", or the decision (allow, warn, deny). The flag
// metadata carries the tenant id, its version and the age of what the
// cache knows ("age_ms").
//
// Events: PROVIDER_READY once the cache has reached the event stream (again),
// PROVIDER_STALE when it has not for longer than its MaxStaleness,
// PROVIDER_ERROR when following the stream fails, and
// PROVIDER_CONFIGURATION_CHANGED with the changed flags when a tenant's
// features or limits change.
package ofprovider

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/google/uuid"
	of "github.com/open-feature/go-sdk/openfeature"

	"github.com/tenancyhq/tenancy/aggregate"
	"github.com/tenancyhq/tenancy/sdk"
)

// Name is the provider's name in OpenFeature's metadata.
const Name = "tenancy"

// Options configure a Provider. The zero value is usable.
type Options struct {
	// InitTimeout bounds how long initialisation waits for the cache to
	// reach the event stream (default 10 s); past it the provider starts
	// in the ERROR state, answers from the API's state meanwhile, and
	// becomes READY when the stream is reached.
	InitTimeout time.Duration
}

// Provider is the OpenFeature provider. Make it with New; OpenFeature calls
// Init and Shutdown. It does not own the cache: close the cache after the
// provider is shut down.
type Provider struct {
	cache  *sdk.Cache
	opts   Options
	events chan of.Event
	unsub  func()

	// flags describes every flag, by key.
	flags map[string]flag
}

type flagKind int

const (
	featureFlag flagKind = iota + 1
	limitFlag
	actionFlag
)

type flag struct {
	kind flagKind
	// static: every edition has the same value (features and limits).
	static bool
}

var (
	_ of.FeatureProvider          = (*Provider)(nil)
	_ of.ContextAwareStateHandler = (*Provider)(nil)
	_ of.EventHandler             = (*Provider)(nil)
)

// New returns a provider on cache.
func New(cache *sdk.Cache, opts Options) *Provider {
	if opts.InitTimeout <= 0 {
		opts.InitTimeout = 10 * time.Second
	}
	p := &Provider{cache: cache, opts: opts, events: make(chan of.Event, 256), flags: map[string]flag{}}
	c := aggregate.DefaultCatalog()
	var specs []aggregate.EditionSpec
	for _, e := range aggregate.Editions() {
		if s, ok := c.Edition(e); ok {
			specs = append(specs, s)
		}
	}
	for _, f := range c.Features() {
		n := 0
		for _, s := range specs {
			for _, sf := range s.Features {
				if sf == f {
					n++
				}
			}
		}
		p.flags[string(f)] = flag{kind: featureFlag, static: n == 0 || n == len(specs)}
	}
	for _, l := range c.Limits() {
		static := true
		for _, s := range specs {
			static = static && s.Limits[l] == specs[0].Limits[l]
		}
		p.flags[string(l)] = flag{kind: limitFlag, static: static}
	}
	for _, a := range aggregate.Actions() {
		p.flags[a.Name] = flag{kind: actionFlag}
	}
	return p
}

// Metadata implements of.FeatureProvider.
func (p *Provider) Metadata() of.Metadata { return of.Metadata{Name: Name} }

// Hooks implements of.FeatureProvider: none.
func (p *Provider) Hooks() []of.Hook { return nil }

// EventChannel implements of.EventHandler.
func (p *Provider) EventChannel() <-chan of.Event { return p.events }

// Init implements of.StateHandler.
func (p *Provider) Init(evalCtx of.EvaluationContext) error {
	return p.InitWithContext(context.Background(), evalCtx)
}

// InitWithContext implements of.ContextAwareStateHandler: it subscribes to
// the cache's notices and waits (at most InitTimeout) until the cache has
// reached the event stream.
func (p *Provider) InitWithContext(ctx context.Context, _ of.EvaluationContext) error {
	p.unsub = p.cache.Subscribe(p.notice)
	ctx, cancel := context.WithTimeout(ctx, p.opts.InitTimeout)
	defer cancel()
	for {
		st := p.cache.Status()
		if !st.SyncedAt.IsZero() && !st.Stale {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("tenancy provider: the entitlement cache has not reached the event stream (last error: %v): %w", st.LastError, context.Cause(ctx))
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// Shutdown implements of.StateHandler: it stops listening to the cache.
func (p *Provider) Shutdown() {
	_ = p.ShutdownWithContext(context.Background())
}

// ShutdownWithContext implements of.ContextAwareStateHandler.
func (p *Provider) ShutdownWithContext(context.Context) error {
	if p.unsub != nil {
		p.unsub()
		p.unsub = nil
	}
	return nil
}

// notice turns a cache notice into a provider event. It never blocks the
// cache: when OpenFeature is not reading, events are dropped.
func (p *Provider) notice(n sdk.Notice) {
	ev := of.Event{ProviderName: Name}
	switch n.Kind {
	case sdk.NoticeChanged:
		if len(n.Changed) == 0 {
			return
		}
		ev.EventType = of.ProviderConfigChange
		ev.Message = "tenant " + n.Tenant.String() + " changed"
		ev.FlagChanges = n.Changed
		ev.EventMetadata = map[string]any{"tenant_id": n.Tenant.String(), "version": int64(n.Version)}
	case sdk.NoticeFresh:
		ev.EventType = of.ProviderReady
		ev.Message = "the entitlement cache is up to date with the event stream"
	case sdk.NoticeStale:
		ev.EventType = of.ProviderStale
		ev.Message = fmt.Sprintf("the entitlement cache has not been up to date with the event stream for %s", n.Staleness.Round(time.Millisecond))
		ev.EventMetadata = map[string]any{"staleness_ms": n.Staleness.Milliseconds()}
	case sdk.NoticeError:
		ev.EventType = of.ProviderError
		ev.Message = fmt.Sprintf("following the event stream: %v", n.Err)
		ev.ErrorCode = of.GeneralCode
	default:
		return
	}
	select {
	case p.events <- ev:
	default:
	}
}

// BooleanEvaluation implements of.FeatureProvider: features and actions.
func (p *Provider) BooleanEvaluation(ctx context.Context, key string, def bool, flat of.FlattenedContext) of.BoolResolutionDetail {
	fl, res, ok := p.lookup(key, featureFlag, actionFlag)
	if !ok {
		return of.BoolResolutionDetail{Value: def, ProviderResolutionDetail: res}
	}
	tenant, info, res, ok := p.tenant(ctx, flat)
	if !ok {
		return of.BoolResolutionDetail{Value: def, ProviderResolutionDetail: res}
	}
	if fl.kind == actionFlag {
		pctx, err := policyContext(flat)
		if err != nil {
			return of.BoolResolutionDetail{Value: def, ProviderResolutionDetail: failure(of.NewInvalidContextResolutionError(err.Error()))}
		}
		d, err := p.cache.Evaluate(ctx, tenant, key, pctx)
		if err != nil {
			return of.BoolResolutionDetail{Value: def, ProviderResolutionDetail: p.resolutionError(err)}
		}
		md := metadata(info)
		md["reason_code"] = d.Reason
		return of.BoolResolutionDetail{Value: d.Allowed(), ProviderResolutionDetail: of.ProviderResolutionDetail{
			Reason: of.TargetingMatchReason, Variant: d.Decision, FlagMetadata: md}}
	}
	f := aggregate.Feature(key)
	_, overridden := info.Overrides.Features[f]
	return of.BoolResolutionDetail{Value: info.Entitlements.Features[f], ProviderResolutionDetail: p.entitlement(fl, overridden, info)}
}

// IntEvaluation implements of.FeatureProvider: limits.
func (p *Provider) IntEvaluation(ctx context.Context, key string, def int64, flat of.FlattenedContext) of.IntResolutionDetail {
	fl, res, ok := p.lookup(key, limitFlag)
	if !ok {
		return of.IntResolutionDetail{Value: def, ProviderResolutionDetail: res}
	}
	_, info, res, ok := p.tenant(ctx, flat)
	if !ok {
		return of.IntResolutionDetail{Value: def, ProviderResolutionDetail: res}
	}
	l := aggregate.Limit(key)
	_, overridden := info.Overrides.Limits[l]
	return of.IntResolutionDetail{Value: info.Entitlements.Limits[l], ProviderResolutionDetail: p.entitlement(fl, overridden, info)}
}

// FloatEvaluation implements of.FeatureProvider: there are no float flags.
func (p *Provider) FloatEvaluation(_ context.Context, key string, def float64, _ of.FlattenedContext) of.FloatResolutionDetail {
	_, res, _ := p.lookup(key)
	return of.FloatResolutionDetail{Value: def, ProviderResolutionDetail: res}
}

// StringEvaluation implements of.FeatureProvider: there are no string flags.
func (p *Provider) StringEvaluation(_ context.Context, key string, def string, _ of.FlattenedContext) of.StringResolutionDetail {
	_, res, _ := p.lookup(key)
	return of.StringResolutionDetail{Value: def, ProviderResolutionDetail: res}
}

// ObjectEvaluation implements of.FeatureProvider: there are no object flags.
func (p *Provider) ObjectEvaluation(_ context.Context, key string, def any, _ of.FlattenedContext) of.InterfaceResolutionDetail {
	_, res, _ := p.lookup(key)
	return of.InterfaceResolutionDetail{Value: def, ProviderResolutionDetail: res}
}

// lookup finds flag key among the kinds the evaluation's type serves.
func (p *Provider) lookup(key string, kinds ...flagKind) (flag, of.ProviderResolutionDetail, bool) {
	fl, ok := p.flags[key]
	if !ok {
		return flag{}, failure(of.NewFlagNotFoundResolutionError(fmt.Sprintf("no feature, limit or action %q in the catalog", key))), false
	}
	for _, k := range kinds {
		if fl.kind == k {
			return fl, of.ProviderResolutionDetail{}, true
		}
	}
	want := map[flagKind]string{featureFlag: "a feature: a boolean flag", limitFlag: "a limit: an integer flag", actionFlag: "an action: a boolean flag"}[fl.kind]
	return flag{}, failure(of.NewTypeMismatchResolutionError(fmt.Sprintf("%q is %s", key, want))), false
}

// tenant finds the tenant the targeting key names and what the cache knows of it.
func (p *Provider) tenant(ctx context.Context, flat of.FlattenedContext) (id uuid.UUID, info sdk.TenantInfo, res of.ProviderResolutionDetail, ok bool) {
	ref, _ := flat[of.TargetingKey].(string)
	if ref == "" {
		return id, info, failure(of.NewTargetingKeyMissingResolutionError("the targeting key must be the tenant's id or external id")), false
	}
	tid, err := p.cache.Resolve(ctx, ref)
	if err == nil {
		info, err = p.cache.Tenant(ctx, tid)
	}
	if err != nil {
		return id, info, p.resolutionError(err), false
	}
	return tid, info, of.ProviderResolutionDetail{}, true
}

// entitlement is the resolution of a feature or limit of info.
func (p *Provider) entitlement(fl flag, overridden bool, info sdk.TenantInfo) of.ProviderResolutionDetail {
	md := metadata(info)
	switch {
	case overridden:
		md["source"] = "override"
		return of.ProviderResolutionDetail{Reason: of.TargetingMatchReason, Variant: "override", FlagMetadata: md}
	case fl.static:
		md["source"] = "catalog"
		return of.ProviderResolutionDetail{Reason: of.StaticReason, Variant: string(info.Edition), FlagMetadata: md}
	default:
		md["source"] = "edition"
		return of.ProviderResolutionDetail{Reason: of.TargetingMatchReason, Variant: string(info.Edition), FlagMetadata: md}
	}
}

func metadata(info sdk.TenantInfo) of.FlagMetadata {
	return of.FlagMetadata{"tenant_id": info.ID.String(), "edition": string(info.Edition), "status": string(info.Status),
		"version": int64(info.Version), "age_ms": info.Age.Milliseconds()}
}

// resolutionError maps the cache's errors onto OpenFeature's codes.
func (p *Provider) resolutionError(err error) of.ProviderResolutionDetail {
	var de *aggregate.Error
	switch {
	case errors.Is(err, sdk.ErrTenantNotFound):
		return failure(of.NewInvalidContextResolutionError("the targeting key names no tenant: " + err.Error()))
	case errors.As(err, &de):
		return failure(of.NewInvalidContextResolutionError(err.Error()))
	case errors.Is(err, sdk.ErrClosed):
		return failure(of.NewProviderFatalResolutionError(err.Error()))
	}
	return failure(of.NewGeneralResolutionError(err.Error(), err))
}

func failure(e of.ResolutionError) of.ProviderResolutionDetail {
	return of.ProviderResolutionDetail{ResolutionError: e, Reason: of.ErrorReason}
}

// policyContext reads an action's context from the evaluation context:
// "region", "source_ip", and "usage" (map) or "usage.<limit>" (numbers).
func policyContext(flat of.FlattenedContext) (aggregate.PolicyContext, error) {
	var pctx aggregate.PolicyContext
	if v, ok := flat["region"]; ok {
		s, ok := v.(string)
		if !ok {
			return pctx, fmt.Errorf("attribute region must be a string, not %T", v)
		}
		pctx.Region = aggregate.Region(s)
	}
	if v, ok := flat["source_ip"]; ok {
		s, ok := v.(string)
		if !ok {
			return pctx, fmt.Errorf("attribute source_ip must be a string, not %T", v)
		}
		pctx.SourceIP = s
	}
	addUsage := func(name string, v any) error {
		n, ok := integer(v)
		if !ok {
			return fmt.Errorf("usage of %s must be a whole number, not %v", name, v)
		}
		if pctx.Usage == nil {
			pctx.Usage = map[aggregate.Limit]int64{}
		}
		pctx.Usage[aggregate.Limit(name)] = n
		return nil
	}
	for k, v := range flat {
		switch {
		case k == "usage":
			m, ok := v.(map[string]any)
			if !ok {
				return pctx, fmt.Errorf("attribute usage must be a map of limit to usage, not %T", v)
			}
			for l, u := range m {
				if err := addUsage(l, u); err != nil {
					return pctx, err
				}
			}
		case strings.HasPrefix(k, "usage."):
			if err := addUsage(strings.TrimPrefix(k, "usage."), v); err != nil {
				return pctx, err
			}
		}
	}
	return pctx, nil
}

func integer(v any) (int64, bool) {
	switch n := v.(type) {
	case int:
		return int64(n), true
	case int32:
		return int64(n), true
	case int64:
		return n, true
	case float64:
		if n == float64(int64(n)) {
			return int64(n), true
		}
	}
	return 0, false
}
