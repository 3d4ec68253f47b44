package sdk

import (
	"context"
	"log/slog"
	"net/http"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/tenancyhq/tenancy/aggregate"
)

// ClientOptions configure a Client. The zero value is usable against an API
// without authentication.
type ClientOptions struct {
	// Token is a bearer token with scope tenancy:read, sent on every request.
	Token string
	// TokenSource, when set, is asked for the bearer token before every
	// request instead (for tokens that expire); it must be quick and safe
	// for concurrent use.
	TokenSource func(ctx context.Context) (string, error)
	// HTTPClient sends the requests (default: a client with a 10 s timeout).
	HTTPClient *http.Client
	// UserAgent is sent as User-Agent (default "tenancy-sdk-go").
	UserAgent string
}

// StalePolicy is what the cache does with a tenant it knows of only for
// longer than Options.MaxStaleness.
type StalePolicy int

const (
	// FetchFromAPI fetches the tenant from the API again and answers from
	// that (then fresh) state; if the API does not answer, it fails closed
	// with ErrStale. The default.
	FetchFromAPI StalePolicy = iota
	// FailClosed answers with ErrStale (a denial, false) without trying the API.
	FailClosed
	// ServeStale keeps answering from the last known state, however old;
	// Status and Tenant still say how old it is.
	ServeStale
)

func (p StalePolicy) String() string {
	switch p {
	case FetchFromAPI:
		return "fetch-from-api"
	case FailClosed:
		return "fail-closed"
	case ServeStale:
		return "serve-stale"
	}
	return "unknown"
}

// The defaults of Options.
const (
	DefaultCapacity      = 100_000
	DefaultMaxStaleness  = 30 * time.Second
	DefaultSyncInterval  = time.Second
	DefaultFetchTimeout  = 5 * time.Second
	DefaultStreamName    = "TENANCY_EVENTS"
	DefaultSubjectPrefix = "tenancy.events"
)

// Options configure a Cache. Client and one of NATS or NATSURL are required.
type Options struct {
	// Client fetches tenants from the API: on first use, after a gap, and
	// when stale (FetchFromAPI).
	Client *Client
	// NATS is a connection to the NATS server the service publishes to; the
	// caller keeps owning it. Without it the cache connects to NATSURL
	// itself (reconnecting for ever, starting even while NATS is down) and
	// closes that connection on Close.
	NATS    *nats.Conn
	NATSURL string
	// NATSOptions are added to the connection the cache makes from NATSURL
	// (credentials, TLS).
	NATSOptions []nats.Option
	// Stream and SubjectPrefix name the service's JetStream stream and
	// subjects (default TENANCY_EVENTS and tenancy.events, as the service
	// publishes them). The stream must hold the tenancy events only: a
	// missing stream sequence number means a lost event.
	Stream        string
	SubjectPrefix string

	// Catalog is the edition catalog evaluation reads (default
	// aggregate.DefaultCatalog()). It must be the server's: Open compares
	// versions with GET /api/v1/editions and says so in Status when they
	// differ.
	Catalog *aggregate.Catalog

	// Capacity is how many tenants the cache holds (default
	// DefaultCapacity); past it the least recently asked about is evicted
	// (CLOCK, an LRU approximation that costs readers no lock). Ignored with
	// AllTenants. A held tenant costs about 0.9 KB (3 KB with overrides and
	// policies), plus about 1 KB per decision Evaluate remembers for it (at
	// most 8); see BenchmarkBytesPerTenant.
	Capacity int
	// AllTenants fetches every tenant at Open (paging GET /api/v1/tenants)
	// and keeps all of them, new ones included, without eviction.
	AllTenants bool

	// MaxStaleness bounds how old an answer may be: past it, WhenStale
	// applies (default DefaultMaxStaleness; negative: no bound, as
	// ServeStale). A tenant's age is the time since the cache last knew it
	// had every event of the stream (or since it fetched the tenant, if later).
	MaxStaleness time.Duration
	// WhenStale is what happens past MaxStaleness (default FetchFromAPI).
	WhenStale StalePolicy
	// SyncInterval is how often the cache asks the stream how far it is, to
	// know it is up to date (default DefaultSyncInterval). Staleness is
	// measured to about this precision.
	SyncInterval time.Duration
	// FetchTimeout bounds one fetch of a tenant from the API (default
	// DefaultFetchTimeout).
	FetchTimeout time.Duration

	// Logger receives the cache's logs (default: discard).
	Logger *slog.Logger
	// Now is the clock (default time.Now, which the cache then reads every
	// few milliseconds rather than on every answer). Evaluation reads it at
	// a resolution of one second (see Cache.Evaluate).
	Now func() time.Time
	// nowDefault: Now is time.Now, so the coarse clock may stand in for it.
	nowDefault bool
}

func (o Options) withDefaults() Options {
	if o.Stream == "" {
		o.Stream = DefaultStreamName
	}
	if o.SubjectPrefix == "" {
		o.SubjectPrefix = DefaultSubjectPrefix
	}
	if o.Catalog == nil {
		o.Catalog = aggregate.DefaultCatalog()
	}
	if o.Capacity <= 0 {
		o.Capacity = DefaultCapacity
	}
	if o.MaxStaleness == 0 {
		o.MaxStaleness = DefaultMaxStaleness
	}
	if o.MaxStaleness < 0 {
		o.WhenStale = ServeStale
	}
	if o.SyncInterval <= 0 {
		o.SyncInterval = DefaultSyncInterval
	}
	if o.FetchTimeout <= 0 {
		o.FetchTimeout = DefaultFetchTimeout
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now, o.nowDefault = time.Now, true
	}
	return o
}
