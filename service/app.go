// Package service is the composition root: it wires the tenancy service
// together from its configuration (the Postgres pool, migrations, the event
// store, the command handler, the read side, the projections and the HTTP
// server), with one Open that releases what it opened on any failure and
// one graceful shutdown. It imports everything and nothing imports it but
// cmd/ and the end-to-end tests.
package service

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
	"golang.org/x/sync/errgroup"

	"github.com/tenancyhq/tenancy/aggregate"
	"github.com/tenancyhq/tenancy/commands"
	"github.com/tenancyhq/tenancy/console"
	"github.com/tenancyhq/tenancy/eventstore"
	"github.com/tenancyhq/tenancy/eventstore/esdb"
	"github.com/tenancyhq/tenancy/eventstore/postgres"
	"github.com/tenancyhq/tenancy/httpapi"
	"github.com/tenancyhq/tenancy/internal/metrics"
	"github.com/tenancyhq/tenancy/internal/natsserver"
	"github.com/tenancyhq/tenancy/migrations"
	"github.com/tenancyhq/tenancy/process"
	"github.com/tenancyhq/tenancy/projections"
	"github.com/tenancyhq/tenancy/projections/natspub"
	"github.com/tenancyhq/tenancy/projections/readmodel"
	"github.com/tenancyhq/tenancy/queries"
	"github.com/tenancyhq/tenancy/tenantlog"
)

// DefaultDatabaseURL is where the service keeps its data when DATABASE_URL is unset.
const DefaultDatabaseURL = "postgres://postgres@127.0.0.1:5432/tenancy?sslmode=disable"

// Config is the service's configuration, parsed once by cmd/tenancy.
type Config struct {
	// DatabaseURL is the Postgres database for the read model, checkpoints
	// and, unless EventStoreURL is set, the events. Created if missing.
	DatabaseURL string
	// DatabaseReadURL (optional) is a read replica of DatabaseURL (a
	// Postgres streaming standby): the queries (tenant reads, lists, events,
	// entitlements, policy evaluation) read the read model there, and a
	// consistency token, or a tenant read's own writes, wait until the
	// replica has the change. Commands, projections, idempotency and the
	// admin jobs stay on DatabaseURL. Empty: everything on DatabaseURL.
	DatabaseReadURL string
	// EventStoreURL selects another event store (esdb://…); empty: Postgres.
	EventStoreURL string
	// EventStoreMaxAppendSize is EventStoreDB's MaxAppendSize setting, in
	// bytes (default 1 MiB): a command writing more is refused with 413
	// before anything is sent.
	EventStoreMaxAppendSize int
	// HTTPAddr is where the API listens; empty: no API.
	HTTPAddr string
	// Listener, when set, is the API's listener (HTTPAddr is then only
	// named in messages): cmd/tenancy listens before anything else, so a
	// taken port is reported before a database is created or a key written.
	Listener net.Listener
	// HTTPBodyTimeout and HTTPRequestTimeout bound a request's body and
	// the whole request (httpapi.Options; defaults 30 s and 60 s).
	HTTPBodyTimeout    time.Duration
	HTTPRequestTimeout time.Duration
	// Migrate applies the migrations at start.
	Migrate bool
	// MaxConns bounds the Postgres pool (default max(16, 4 × CPUs); the
	// URL's pool_max_conns wins).
	MaxConns int
	// ForceStore lets Open use an event store other than the one the read
	// model and checkpoints were built from, recording it as theirs, and a
	// rebuild replace a read model with one built from an empty store
	// (--force: a deliberate move).
	ForceStore bool
	// SkipStoreBinding neither checks nor records the event store (tenancy
	// migrate, which does not open the event store it is not given).
	SkipStoreBinding bool
	// Projections runs the projections in this process.
	Projections bool
	// ProjectionFailure is what a projection does with an event it cannot apply.
	ProjectionFailure projections.FailurePolicy
	// Holder names this replica in projection checkpoints (default host:pid).
	Holder string
	// ShutdownTimeout bounds the graceful shutdown (default 25 s).
	ShutdownTimeout time.Duration
	// ConsistencyWait bounds how long a read waits for a consistency token.
	ConsistencyWait time.Duration
	// DefaultRegion is a create's region when the request names none
	// (DEFAULT_REGION; default us-east-1).
	DefaultRegion aggregate.Region
	// ExternalProvisioning leaves tenants in PROVISIONING for an outside
	// provisioner (PROVISIONING_MODE=external); by default the service
	// provisions them itself.
	ExternalProvisioning bool
	// Provisioner runs the provisioning steps (default: record success).
	Provisioner process.Provisioner
	// Now is the clock of commands and timers (default time.Now); tests inject theirs.
	Now func() time.Time
	// DataDir holds what a single-binary run keeps on disk (the development
	// master key, the embedded NATS server's store); default "data".
	DataDir string
	// MasterKey (base64, 32 bytes; TENANCY_MASTER_KEY) wraps the tenants' data
	// keys. Empty: the development key in DataDir/master.key, generated
	// there only while the database holds no sealed tenant key. Either way
	// Open checks that the key unwraps the sealed keys, and refuses to
	// start otherwise.
	MasterKey string
	// NATSURL is the NATS server the events are published to. Empty with
	// NATSListen set: an embedded nats-server (JetStream, store under
	// NATSStoreDir) listens there. Both empty: no publishing.
	NATSURL      string
	NATSListen   string
	NATSStoreDir string
	// NATSStream configures the TENANCY_EVENTS stream (duplicate window…).
	NATSStream natspub.StreamOptions
	// Auth checks the API's bearer tokens; nil turns authentication off (the
	// binary does that only with --insecure-no-auth).
	Auth httpapi.Verifier
	// TracerProvider traces requests, commands and projections (default: none).
	TracerProvider trace.TracerProvider
	Version        string
	Logger         *slog.Logger
}

// App is a running (or ready to run) service.
type App struct {
	cfg  Config
	log  *slog.Logger
	pool *pgxpool.Pool
	// readPool is the read replica the queries use (DatabaseReadURL); nil
	// without one.
	readPool *pgxpool.Pool
	// raw is the event store as it is: personal fields sealed.
	raw eventstore.Store
	// store and feed open personal fields (or show them redacted once shredded).
	store    eventstore.Store
	feed     eventstore.Store
	rawFeed  eventstore.Store
	keys     *tenantlog.Keys
	metrics  *metrics.Metrics
	admin    *admin
	nats     *nats.Conn
	js       jetstream.JetStream
	embedded *natsserver.Server
	esdb     *esdb.Store
	Commands *commands.Handler
	Reader   *queries.Reader
	health   *httpapi.Health
	server   *httpapi.Server
	listener net.Listener
	catalog  *aggregate.Catalog
	// masterKeySource says where the master key came from, for the start-up line.
	masterKeySource string
}

// Open connects to the database (creating it if missing), applies the
// migrations if configured, and builds the service. It listens on HTTPAddr
// (and starts the embedded NATS server) first of all, so a taken port is
// reported before a database is created or a key written. It refuses to
// start with a master key that does not unwrap the sealed tenant keys. Once
// open it logs one line naming the database, event store, NATS and data
// folder it uses.
func Open(ctx context.Context, cfg Config) (_ *App, err error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.DatabaseURL == "" {
		cfg.DatabaseURL = DefaultDatabaseURL
	}
	if cfg.ShutdownTimeout <= 0 {
		cfg.ShutdownTimeout = 25 * time.Second
	}
	if cfg.DataDir == "" {
		cfg.DataDir = "data"
	}
	a := &App{cfg: cfg, log: cfg.Logger, catalog: aggregate.DefaultCatalog(), listener: cfg.Listener}
	defer func() {
		if err != nil {
			a.Close()
		}
	}()
	if cfg.HTTPAddr != "" && a.listener == nil {
		if a.listener, err = Listen(cfg.HTTPAddr); err != nil {
			return nil, err
		}
	}
	if err := a.startEmbeddedNATS(ctx); err != nil {
		return nil, err
	}
	if err := EnsureDatabase(ctx, cfg.DatabaseURL); err != nil {
		return nil, err
	}
	pcfg, err := pgxpool.ParseConfig(cfg.DatabaseURL)
	if err != nil {
		return nil, fmt.Errorf("DATABASE_URL: %w", err)
	}
	// pgxpool's default (max(4, CPUs)) makes concurrent requests queue for a
	// connection; size the pool for the requests, unless the URL says
	// (pool_max_conns).
	if !strings.Contains(cfg.DatabaseURL, "pool_max_conns") {
		pcfg.MaxConns = int32(max(16, 4*runtime.NumCPU()))
		if cfg.MaxConns > 0 {
			pcfg.MaxConns = int32(cfg.MaxConns)
		}
	}
	// A burst leaves the pool full of idle connections, each a server
	// process; give them back within a minute rather than pgxpool's 30.
	if !strings.Contains(cfg.DatabaseURL, "pool_max_conn_idle_time") {
		pcfg.MaxConnIdleTime = 30 * time.Second
	}
	if !strings.Contains(cfg.DatabaseURL, "pool_health_check_period") {
		pcfg.HealthCheckPeriod = 15 * time.Second
	}
	if a.pool, err = pgxpool.NewWithConfig(ctx, pcfg); err != nil {
		return nil, fmt.Errorf("database %s: %w", redactURL(cfg.DatabaseURL), err)
	}
	pool := a.pool
	if cfg.Migrate {
		if err := a.migrate(ctx); err != nil {
			return nil, err
		}
	}
	master, err := a.masterKey(ctx)
	if err != nil {
		return nil, err
	}
	a.keys = tenantlog.NewKeys(pool, master, 0)
	a.metrics = metrics.New()
	// The event store: Postgres (the same database) unless EVENTSTORE_URL
	// names EventStoreDB / KurrentDB. Postgres keeps the read model,
	// checkpoints and keys either way.
	var events, feedStore eventstore.Store
	if cfg.EventStoreURL != "" {
		es, err := esdb.New(ctx, cfg.EventStoreURL, esdb.Options{Logger: a.log, BatchSize: 2000, MaxAppendSize: cfg.EventStoreMaxAppendSize})
		if err != nil {
			return nil, err
		}
		a.esdb = es
		events, feedStore = es, es
	} else {
		events = postgres.New(pool)
		// Projections read the feed in large batches: fewer, bigger
		// transactions catch up faster (see BenchmarkCatchUp).
		feedStore = postgres.New(pool, postgres.WithBatchSize(2000))
	}
	a.raw = timeStore(events, a.metrics)
	a.store = tenantlog.NewStore(a.raw, a.keys, a.log)
	a.rawFeed = feedStore
	a.feed = tenantlog.NewStore(a.rawFeed, a.keys, a.log)
	if !cfg.SkipStoreBinding {
		if err := a.checkStoreBinding(ctx); err != nil {
			return nil, err
		}
	}
	if cfg.TracerProvider == nil {
		cfg.TracerProvider = noop.NewTracerProvider()
		a.cfg.TracerProvider = cfg.TracerProvider
	}
	a.Commands = commands.NewHandler(a.store, commands.Options{Catalog: a.catalog, Logger: a.log, Now: cfg.Now,
		Tracer: cfg.TracerProvider.Tracer("github.com/tenancyhq/tenancy/commands")})
	if err := a.openReader(ctx); err != nil {
		return nil, err
	}
	a.metrics.Registry.MustRegister(
		metrics.NewProjectionsCollector(a.projectionStats),
		metrics.NewTenantsCollector(a.Reader.CountByStatusAndEdition),
	)
	a.health = httpapi.NewHealth(
		httpapi.Check{Name: "postgres", Critical: true, Probe: pool.Ping},
		httpapi.Check{Name: "event_store", Critical: true, Probe: func(ctx context.Context) error { _, err := a.store.Head(ctx); return err }},
		httpapi.Check{Name: "migrations", Critical: true, Probe: a.migrationsAtHead},
	)
	a.health.SetProjections(a.projectionHealth)
	if a.readPool != nil {
		a.health.SetReplica(a.replicaHealth)
		a.metrics.Registry.MustRegister(a.replicaLagMetric())
	}
	if err := a.openNATS(ctx); err != nil {
		return nil, err
	}
	if a.listener != nil {
		a.admin = newAdmin(a)
		a.server, err = httpapi.New(httpapi.Deps{Commands: instrumentCommands(a.Commands, a.metrics, a.log), Queries: a.Reader,
			Auth: cfg.Auth, Observer: a.metrics, TracerProvider: cfg.TracerProvider, Replayer: queries.NewReplayer(a.store), Admin: a.admin,
			Catalog: a.catalog, Health: a.health, Logger: a.log, Head: a.storeEnd(),
			// The live event stream follows the projections' feed as stored
			// (it sends no event data, so nothing needs opening).
			Feed: a.rawFeed},
			httpapi.Options{ConsistencyWait: cfg.ConsistencyWait, Version: cfg.Version, DefaultRegion: cfg.DefaultRegion,
				BodyTimeout: cfg.HTTPBodyTimeout, RequestTimeout: cfg.HTTPRequestTimeout})
		if err != nil {
			return nil, err
		}
	}
	a.logStartup()
	return a, nil
}

// storeEnd is the last position the event store holds (see storeEnd).
func (a *App) storeEnd() storeEnd {
	if a.esdb != nil {
		return storeEnd{store: a.store}
	}
	return storeEnd{pool: a.pool, store: a.store}
}

// Listen listens on the API's address, or says plainly that it cannot.
func Listen(addr string) (net.Listener, error) {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listen on %s (is another program using it? set HTTP_ADDR or --http-addr to another address): %w", addr, err)
	}
	return l, nil
}

// logStartup writes the one line that says what this process uses: the
// database (password hidden), the event store, the NATS server and the
// data folder.
func (a *App) logStartup() {
	store := "postgres (the database)"
	if a.cfg.EventStoreURL != "" {
		store = esdb.RedactURL(a.cfg.EventStoreURL)
	}
	var nats string
	switch {
	case a.embedded != nil:
		nats = "embedded on " + a.embedded.ClientURL()
	case a.cfg.NATSURL != "" && a.js != nil:
		nats = redactURL(a.cfg.NATSURL)
	default:
		nats = "none (events are not published here)"
	}
	dir, err := filepath.Abs(a.cfg.DataDir)
	if err != nil {
		dir = a.cfg.DataDir
	}
	attrs := []any{"database", redactURL(a.cfg.DatabaseURL)}
	if a.cfg.DatabaseReadURL != "" {
		attrs = append(attrs, "database_read", redactURL(a.cfg.DatabaseReadURL))
	}
	attrs = append(attrs, "event_store", store, "nats", nats, "data_dir", dir, "master_key", a.masterKeySource)
	if a.listener != nil {
		attrs = append(attrs, "http", a.listener.Addr().String())
	}
	a.log.Info("tenancy uses", attrs...)
}

// openNATS starts the embedded server if configured and connects the
// publisher. A NATS that is down is no reason not to start: commands keep
// succeeding, readiness says degraded, and the publisher catches up.
func (a *App) openNATS(ctx context.Context) error {
	if !a.cfg.Projections || (a.cfg.NATSURL == "" && a.cfg.NATSListen == "") {
		return nil
	}
	url := a.cfg.NATSURL
	if a.embedded != nil {
		url = a.embedded.ClientURL()
	}
	nc, js, err := natspub.Dial(url, 0, a.log)
	if err != nil {
		return fmt.Errorf("NATS at %s: %w", url, err)
	}
	a.nats, a.js = nc, js
	// Make the stream now, so subscribers can attach before the first event;
	// if NATS is down, the publisher makes it when it comes back.
	if err := natspub.EnsureStream(ctx, js, a.cfg.NATSStream); err != nil {
		a.log.Warn("NATS stream not ready yet; the publisher will create it", "err", err)
	}
	a.health.Add(httpapi.Check{Name: "nats", Critical: false, Probe: func(ctx context.Context) error {
		if !nc.IsConnected() {
			return fmt.Errorf("not connected to %s (events wait in the store and are published on reconnection)", url)
		}
		return nc.FlushWithContext(ctx)
	}})
	return nil
}

// startEmbeddedNATS starts the embedded NATS server when the events are to
// be published and no NATS_URL names another: first of all, so that a taken
// port stops start-up before anything is created.
func (a *App) startEmbeddedNATS(ctx context.Context) error {
	if !a.cfg.Projections || a.cfg.NATSURL != "" || a.cfg.NATSListen == "" {
		return nil
	}
	dir := a.cfg.NATSStoreDir
	if dir == "" {
		dir = filepath.Join(a.cfg.DataDir, "nats")
	}
	srv, err := natsserver.Start(ctx, natsserver.Options{Listen: a.cfg.NATSListen, StoreDir: dir, Logger: a.log})
	if err != nil {
		return err
	}
	a.embedded = srv
	// Local tools (tenancy events tail) find it here, wherever it listens.
	if err := os.MkdirAll(a.cfg.DataDir, 0o700); err != nil {
		a.log.Warn("could not note the embedded NATS server's URL", "err", err)
	} else if err := os.WriteFile(filepath.Join(a.cfg.DataDir, NATSURLFile), []byte(srv.ClientURL()+"\n"), 0o644); err != nil {
		a.log.Warn("could not note the embedded NATS server's URL", "err", err)
	}
	return nil
}

// NATSURLFile, in the data folder, holds the URL of the embedded NATS server
// the service last started there.
const NATSURLFile = "nats.url"

// masterKey reads TENANCY_MASTER_KEY, or the development key in the data
// folder, and checks that it unwraps the tenant keys already sealed. It
// makes a development key only while nothing is sealed: a new key over
// sealed data would make every personal field unreadable (500s, and replays
// failing with "message authentication failed").
func (a *App) masterKey(ctx context.Context) (*tenantlog.MasterKey, error) {
	path := filepath.Join(a.cfg.DataDir, "master.key")
	sealed, err := tenantlog.SealedKeys(ctx, a.pool)
	if err != nil {
		return nil, err
	}
	db := redactURL(a.cfg.DatabaseURL)
	var k *tenantlog.MasterKey
	if a.cfg.MasterKey != "" {
		if k, err = tenantlog.ParseMasterKey(a.cfg.MasterKey); err != nil {
			return nil, fmt.Errorf("TENANCY_MASTER_KEY: %w", err)
		}
		a.masterKeySource = "TENANCY_MASTER_KEY"
	} else {
		_, statErr := os.Stat(path)
		if errors.Is(statErr, os.ErrNotExist) && sealed.Keys > 0 {
			return nil, fmt.Errorf("no master key: TENANCY_MASTER_KEY is unset and %s does not exist, but database %s holds %d tenant keys sealed since %s "+
				"with a master key; restore that key to %s (a copy of the data folder it was made in) or set TENANCY_MASTER_KEY to it. "+
				"A new key would make every personal field unreadable, so none is made",
				path, db, sealed.Keys, sealed.Since.UTC().Format(time.RFC3339), path)
		}
		var created bool
		if k, created, err = tenantlog.LoadOrCreateMasterKey(path); err != nil {
			return nil, fmt.Errorf("development master key %s: %w", path, err)
		}
		a.masterKeySource = path
		if created {
			a.log.Warn("generated a development master key; set TENANCY_MASTER_KEY in production (losing it makes every personal field unreadable)", "path", path)
		}
	}
	if err := tenantlog.CheckMasterKey(ctx, a.pool, k); err != nil {
		if !errors.Is(err, tenantlog.ErrWrongMasterKey) {
			return nil, err
		}
		where, hint := "TENANCY_MASTER_KEY", "set TENANCY_MASTER_KEY to it (or unset it, if they were sealed with the development key in "+path+")"
		if a.cfg.MasterKey == "" {
			where, hint = "the development key "+path+" (TENANCY_MASTER_KEY is unset)", "put it in "+path+", or set TENANCY_MASTER_KEY to it"
		}
		a.log.Debug("master key check", "err", err)
		return nil, fmt.Errorf("wrong master key: %s does not unwrap the %d tenant keys sealed since %s in database %s; start with the master key that sealed them: %s: %w",
			where, sealed.Keys, sealed.Since.UTC().Format(time.RFC3339), db, hint, tenantlog.ErrWrongMasterKey)
	}
	return k, nil
}

// Addr is the address the API listens on ("" without an API).
func (a *App) Addr() string {
	if a.listener == nil {
		return ""
	}
	return a.listener.Addr().String()
}

// Handler is what the HTTP listener serves: /metrics (Prometheus, no
// authentication, like health), the operator console's static assets
// (public: the console calls the API with the operator's token) and the API.
func (a *App) Handler() http.Handler {
	mux := http.NewServeMux()
	metrics := promhttp.HandlerFor(a.metrics.Registry, promhttp.HandlerOpts{Registry: a.metrics.Registry})
	mux.Handle("GET /metrics", metrics)
	mux.Handle("GET /api/v1/metrics", metrics) // where the original service served them
	mux.Handle("/console/", console.Handler())
	mux.Handle("GET /console", http.RedirectHandler("/console/", http.StatusMovedPermanently))
	mux.Handle("/", a.server)
	return mux
}

// Metrics is the service's Prometheus registry and metrics.
func (a *App) Metrics() *metrics.Metrics { return a.metrics }

// Pool is the Postgres pool.
func (a *App) Pool() *pgxpool.Pool { return a.pool }

// Store is the event store, personal fields opened.
func (a *App) Store() eventstore.Store { return a.store }

// RawStore is the event store as stored: personal fields sealed.
func (a *App) RawStore() eventstore.Store { return a.raw }

// Run serves until ctx ends, then shuts down gracefully: it stops accepting,
// lets in-flight requests finish, lets projections commit their batch, and
// returns nil.
func (a *App) Run(ctx context.Context) error {
	g, ctx := errgroup.WithContext(ctx)
	if a.admin != nil {
		a.admin.ctx = ctx // jobs end with the service
	}
	if a.listener != nil {
		// The API sets each request's read and write deadlines itself
		// (httpapi.Options.BodyTimeout, RequestTimeout); WriteTimeout makes
		// the server reset the write deadline for each request on a kept-alive
		// connection, whatever route it is for.
		requestTimeout := a.cfg.HTTPRequestTimeout
		if requestTimeout <= 0 {
			requestTimeout = time.Minute
		}
		srv := &http.Server{Handler: a.Handler(), ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 2 * time.Minute,
			WriteTimeout: requestTimeout + 10*time.Second,
			ErrorLog:     slog.NewLogLogger(a.log.Handler(), slog.LevelWarn)}
		// Live event streams never end by themselves: end them when the
		// shutdown begins, so it waits only for ordinary requests.
		srv.RegisterOnShutdown(a.server.CloseStreams)
		g.Go(func() error {
			if err := srv.Serve(a.listener); err != nil && !errors.Is(err, http.ErrServerClosed) {
				return fmt.Errorf("http: %w", err)
			}
			return nil
		})
		g.Go(func() error {
			<-ctx.Done()
			sctx, cancel := context.WithTimeout(context.Background(), a.cfg.ShutdownTimeout)
			defer cancel()
			return srv.Shutdown(sctx)
		})
	}
	if a.cfg.Projections {
		for _, p := range a.projections() {
			// The read model and the scheduler get tenant events decoded
			// (once, by the runner); the publisher forwards them as
			// stored, personal fields sealed, and decodes nothing.
			feed, decode := a.feed, tenantlog.Decode
			if p.Name() == natspub.Name {
				feed, decode = a.rawFeed, nil
			}
			r := projections.NewRunner(a.pool, feed, p, projections.Options{Logger: a.log, Holder: a.cfg.Holder,
				OnFailure: a.cfg.ProjectionFailure, AsynchronousCommit: true, Linger: projectionLinger, OnBatch: a.observeBatch,
				Tracer: a.projectionTracer(), Decode: decode})
			g.Go(func() error { return a.runProjection(ctx, p.Name(), r) })
		}
		timers := process.NewTimers(a.pool, a.Commands, process.TimerOptions{Now: a.cfg.Now, Holder: a.cfg.Holder, Logger: a.log, Provisioner: a.cfg.Provisioner})
		g.Go(func() error { return timers.Run(ctx) })
	}
	a.health.MarkStarted()
	err := g.Wait()
	if a.admin != nil {
		a.admin.wg.Wait()
	}
	return err
}

// projectionLinger lets the projections batch a steady stream of commands
// (see projections.Options.Linger): measured with 16 clients on 2 cores,
// BenchmarkCommandPath.
const projectionLinger = 10 * time.Millisecond

// ProjectionNames are the projections the service runs, for operators.
func ProjectionNames() []string {
	return []string{readmodel.Name, process.SchedulerName, natspub.Name}
}

// Rebuild rebuilds a projection from the start of the feed with no outage,
// blue-green: the read model (readmodel.Rebuild) and the scheduler's timers
// (process.RebuildScheduler) are each built beside the live one and switched
// over in one transaction. An unknown or not rebuildable name is an
// *UnknownProjectionError.
func (a *App) Rebuild(ctx context.Context, name string, progress func(readmodel.Progress)) error {
	switch name {
	case readmodel.Name:
		if err := a.checkRebuildSource(ctx); err != nil {
			return err
		}
		return readmodel.Rebuild(ctx, a.pool, a.feed, a.catalog, readmodel.RebuildOptions{Progress: progress, Logger: a.log, Holder: a.cfg.Holder})
	case process.SchedulerName:
		return process.RebuildScheduler(ctx, a.pool, a.feed, process.RebuildOptions{AutoProvision: !a.cfg.ExternalProvisioning,
			Progress: progress, Logger: a.log, Holder: a.cfg.Holder})
	}
	return &UnknownProjectionError{Name: name, Known: RebuildableNames(),
		Hint: "for " + natspub.Name + " use tenancy projections reset, which re-publishes"}
}

// RebuildableNames are the projections Rebuild rebuilds.
func RebuildableNames() []string { return []string{readmodel.Name, process.SchedulerName} }

// UnknownProjectionError names a projection that does not exist (or cannot
// be operated on so), with the ones that can.
type UnknownProjectionError struct {
	Name  string
	Known []string
	Hint  string
}

func (e *UnknownProjectionError) Error() string {
	msg := fmt.Sprintf("no projection %q; known: %s", e.Name, strings.Join(e.Known, ", "))
	if e.Hint != "" {
		msg += " (" + e.Hint + ")"
	}
	return msg
}

// CheckProjectionName returns an *UnknownProjectionError unless name is
// one of ProjectionNames.
func CheckProjectionName(name string) error {
	if slices.Contains(ProjectionNames(), name) {
		return nil
	}
	return &UnknownProjectionError{Name: name, Known: ProjectionNames()}
}

// observeBatch records and logs one committed projection batch.
func (a *App) observeBatch(projection string, events int, took time.Duration) {
	a.metrics.ObserveBatch(projection, events, took)
	if projection == natspub.Name {
		a.metrics.NATSPublish.Observe(took.Seconds())
	}
	a.log.Info("projection batch", "projection", projection, "events", events, "duration", took)
}

// projectionTracer is the runners' tracer, or nil when tracing is off, so
// the projection loop does not parse every event's metadata for a trace
// context no one records.
func (a *App) projectionTracer() trace.Tracer {
	if _, off := a.cfg.TracerProvider.(noop.TracerProvider); off {
		return nil
	}
	return a.cfg.TracerProvider.Tracer("github.com/tenancyhq/tenancy/projections")
}

// projectionStats feeds the projections collector.
func (a *App) projectionStats(ctx context.Context) ([]metrics.ProjectionStat, error) {
	var out []metrics.ProjectionStat
	for _, p := range a.projections() {
		st, err := projections.Status(ctx, a.pool, a.feed, p.Name())
		if err != nil {
			return nil, err
		}
		out = append(out, metrics.ProjectionStat{Name: p.Name(), Position: st.Position, LagEvents: st.LagEvents,
			LagSeconds: st.LagSeconds, Failures: st.Failures, Halted: st.State == projections.StateHalted})
	}
	return out, nil
}

// projections are the projections this service runs.
func (a *App) projections() []projections.Projection {
	ps := []projections.Projection{
		readmodel.New(a.catalog),
		process.Scheduler{AutoProvision: !a.cfg.ExternalProvisioning},
	}
	if a.js != nil {
		ps = append(ps, natspub.New(a.js, natspub.Options{Logger: a.log, Stream: &a.cfg.NATSStream}))
	}
	return ps
}

// runProjection keeps a projection running: a halt (a poison event) is
// logged loudly and retried after a pause, so an operator's retry-failures
// or skip-failure takes effect without a restart.
func (a *App) runProjection(ctx context.Context, name string, r *projections.Runner) error {
	for {
		err := r.Run(ctx)
		if ctx.Err() != nil {
			return nil
		}
		if err != nil {
			a.log.ErrorContext(ctx, "projection stopped", "projection", name, "err", err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(10 * time.Second):
		}
	}
}

// Close releases the connections, the listener (if Run never ran) and the
// embedded NATS server. Call it after Run has returned.
func (a *App) Close() {
	if a.listener != nil {
		_ = a.listener.Close()
	}
	if a.nats != nil {
		a.nats.Close()
	}
	if a.embedded != nil {
		a.embedded.Shutdown()
	}
	if a.esdb != nil {
		_ = a.esdb.Close()
	}
	if a.readPool != nil {
		a.readPool.Close()
	}
	if a.pool != nil {
		a.pool.Close()
	}
}

// NATSURL is the NATS server events are published to ("" without one).
func (a *App) NATSURL() string {
	if a.nats == nil {
		return ""
	}
	return a.nats.ConnectedUrl()
}

func (a *App) migrate(ctx context.Context) error {
	conn, err := a.pool.Acquire(ctx)
	if err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	defer conn.Release()
	if err := migrations.Migrate(ctx, conn.Conn()); err != nil {
		return err
	}
	return nil
}

// ProjectionLag is a projection's lag in events (for tests and tools).
func (a *App) ProjectionLag(ctx context.Context, name string) (int64, error) {
	st, err := projections.Status(ctx, a.pool, a.feed, name)
	return st.LagEvents, err
}

// CheckSchema reports whether the database's schema is the one this binary needs.
func (a *App) CheckSchema(ctx context.Context) error { return a.migrationsAtHead(ctx) }

func (a *App) migrationsAtHead(ctx context.Context) error {
	conn, err := a.pool.Acquire(ctx)
	if err != nil {
		return err
	}
	defer conn.Release()
	cur, latest, err := migrations.Status(ctx, conn.Conn())
	if err != nil {
		return err
	}
	if cur != latest {
		return fmt.Errorf("schema at version %d, this binary needs %d: run tenancy migrate", cur, latest)
	}
	return nil
}

func (a *App) projectionHealth(ctx context.Context) ([]httpapi.ProjectionHealth, error) {
	var out []httpapi.ProjectionHealth
	for _, p := range a.projections() {
		name := p.Name()
		st, err := projections.Status(ctx, a.pool, a.store, name)
		if err != nil {
			return nil, err
		}
		out = append(out, httpapi.ProjectionHealth{Name: name, State: string(st.State), Position: st.Position.String(), Head: st.Head.String(),
			LagEvents: st.LagEvents, LagSeconds: st.LagSeconds, Failures: st.Failures, Holder: st.Holder, LastError: st.LastError})
	}
	return out, nil
}

// EnsureDatabase creates the database of dbURL if it does not exist, by
// connecting to the server's "postgres" database.
func EnsureDatabase(ctx context.Context, dbURL string) error {
	// pgxpool's parser knows the pool_* parameters (a plain connection
	// would send them to the server, which refuses them).
	pcfg, err := pgxpool.ParseConfig(dbURL)
	if err != nil {
		return fmt.Errorf("DATABASE_URL: %w", err)
	}
	cfg := pcfg.ConnConfig
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err == nil {
		return conn.Close(ctx)
	}
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || pgErr.Code != "3D000" { // invalid_catalog_name
		return fmt.Errorf("connect to %s: %w (is PostgreSQL running? set DATABASE_URL)", redactURL(dbURL), err)
	}
	name := cfg.Database
	admin := cfg.Copy()
	admin.Database = "postgres"
	aconn, err := pgx.ConnectConfig(ctx, admin)
	if err != nil {
		return fmt.Errorf("create database %s: %w", name, err)
	}
	defer aconn.Close(ctx)
	if _, err := aconn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil {
		var pe *pgconn.PgError
		if errors.As(err, &pe) && pe.Code == "42P04" { // created meanwhile
			return nil
		}
		return fmt.Errorf("create database %s: %w", name, err)
	}
	return nil
}

// RedactURL hides a URL's password for messages and logs.
func RedactURL(s string) string { return redactURL(s) }

// redactURL hides a URL's password for messages and logs.
func redactURL(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		return "(unparsable URL)"
	}
	return u.Redacted()
}

// DefaultHolder names this replica: host and process id.
func DefaultHolder() string {
	host, _ := os.Hostname()
	return strings.TrimSpace(host) + ":" + fmt.Sprint(os.Getpid())
}
