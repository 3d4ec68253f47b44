// Package sdk is what the platform's other services import to ask the
// tenancy service "may tenant T do X now?" on every request they serve,
// without a round trip per question.
//
// It has two parts:
//
//   - Client, a typed client of the service's read API: a tenant, its
//     entitlements, a policy evaluation, the tenant list and the edition
//     catalog, decoded into the aggregate package's own types.
//   - Cache, a local copy of the tenants' entitlements and policies. A tenant
//     is fetched from the API the first time it is asked about, then kept
//     fresh by the service's events on NATS JetStream (stream TENANCY_EVENTS,
//     CloudEvents JSON), folded into its state with the server's own
//     aggregate.Tenant.Apply and checked against its stream version: an
//     event that skips a version, or a stream that lost messages or was
//     recreated, makes the cache fetch the tenants again instead of serving
//     them wrong. Questions are answered with the server's own pure policy
//     evaluation (aggregate.Catalog.Evaluate), so a local answer is the answer
//     the service's POST /api/v1/tenants/{id}/policy/evaluate would give for
//     the same state and time.
//
// The cache reports how old what it knows is (Status, Tenant), bounds that
// age (Options.MaxStaleness, after which it fetches from the API again or
// fails closed, Options.WhenStale), keeps answering from the last known
// state while NATS is down, and bounds its memory (Options.Capacity tenants,
// the least recently used evicted first, or every tenant with
// Options.AllTenants).
//
// The sub-package ofprovider exposes the cache as an OpenFeature provider.
package sdk
