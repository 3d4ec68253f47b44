// Command tenancy runs the event-sourced tenancy service and its operator tools.
//
//	tenancy serve     the API and the projections in one process
//	tenancy project   the projections alone (run beside API-only replicas)
//	tenancy migrate   apply the database migrations
//	tenancy version   print the version
//	tenancy replay    a tenant's history from its event stream
//	tenancy verify    compare the read model with a fresh fold of the events
//	tenancy projections list|status|reset|skip-failure|retry-failures|rebuild
//	tenancy token     mint a bearer token
//	tenancy events    follow the events published on NATS
//	tenancy healthcheck  exit 0 when the service is ready (container health checks)
//	tenancy bench     drive a deployment over its API and report throughput and latencies
//
// Configuration comes from flags, each with an environment variable as its
// default (DATABASE_URL, EVENTSTORE_URL, NATS_URL, HTTP_ADDR, …).
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/tenancyhq/tenancy/aggregate"
	"github.com/tenancyhq/tenancy/internal/auth"
	"github.com/tenancyhq/tenancy/internal/logging"
	"github.com/tenancyhq/tenancy/internal/natsserver"
	"github.com/tenancyhq/tenancy/internal/tracing"
	"github.com/tenancyhq/tenancy/migrations"
	"github.com/tenancyhq/tenancy/projections"
	"github.com/tenancyhq/tenancy/projections/natspub"
	"github.com/tenancyhq/tenancy/service"
)

// version is set at build time with -ldflags "-X main.version=…".
var version = "dev"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := newRoot(os.Stdout, os.Stderr).ExecuteContext(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "tenancy:", err)
		var ee *exitError
		if errors.As(err, &ee) {
			os.Exit(ee.code)
		}
		os.Exit(1)
	}
}

// options are the flags shared by the commands.
type options struct {
	databaseURL   string
	readURL       string
	eventStoreURL string
	httpAddr      string
	logFormat     string
	logLevel      string
	noMigrate     bool
	noProjections bool
	onFailure     string
	provisioning  string
	dataDir       string
	noAuth        bool
	natsURL       string
	natsListen    string
	natsStoreDir  string
	natsWindow    time.Duration
	natsReplicas  int
	bodyTimeout   time.Duration
	reqTimeout    time.Duration
	defaultRegion string
	force         bool
	maxAppendSize int
	// From the environment only (secrets stay out of flags and ps):
	masterKey string       // TENANCY_MASTER_KEY
	auth      authSettings // JWT_*
}

func env(name, def string) string {
	if v, ok := os.LookupEnv(name); ok {
		return v
	}
	return def
}

// envDuration is the duration in the environment variable name, or def when
// it is unset or not a duration.
func envDuration(name string, def time.Duration) time.Duration {
	if v, err := time.ParseDuration(env(name, "")); err == nil {
		return v
	}
	return def
}

// envInt is the whole number in the environment variable name, or def
// when it is unset or not a number.
func envInt(name string, def int) int {
	if v, err := strconv.Atoi(env(name, "")); err == nil {
		return v
	}
	return def
}

func newRoot(stdout, stderr io.Writer) *cobra.Command {
	// The configuration is read here, once: flags with their environment
	// defaults below, and the secrets, which only the environment holds.
	o := &options{masterKey: os.Getenv("TENANCY_MASTER_KEY"), auth: authFromEnv(), provisioning: env("PROVISIONING_MODE", "auto")}
	root := &cobra.Command{
		Use:   "tenancy",
		Short: "Event-sourced tenancy service: the system of record for tenant organizations",
		Long: `tenancy manages the lifecycle of tenant organizations (provisioning, trials,
activation, suspension, cancellation, region migration, termination, erasure),
their editions, policies and billing standing. Every change is an event in the
tenant's stream; a Postgres read model and subscribers are fed from it.`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetOut(stdout)
	root.SetErr(stderr)
	pf := root.PersistentFlags()
	pf.StringVar(&o.databaseURL, "database-url", env("DATABASE_URL", service.DefaultDatabaseURL), "Postgres database (created if missing) [$DATABASE_URL]")
	pf.StringVar(&o.eventStoreURL, "eventstore-url", env("EVENTSTORE_URL", ""), "event store; empty: the Postgres database [$EVENTSTORE_URL]")
	pf.IntVar(&o.maxAppendSize, "eventstore-max-append-size", envInt("EVENTSTORE_MAX_APPEND_SIZE", 1<<20),
		"EventStoreDB's MaxAppendSize in bytes: a command writing more is refused (413) before it is sent [$EVENTSTORE_MAX_APPEND_SIZE]")
	pf.StringVar(&o.dataDir, "data-dir", env("DATA_DIR", "data"), "folder for what a single-binary run keeps on disk (development master key, embedded NATS store) [$DATA_DIR]")
	pf.StringVar(&o.logFormat, "log-format", env("LOG_FORMAT", "json"), "log format: json or text [$LOG_FORMAT]")
	pf.StringVar(&o.logLevel, "log-level", env("LOG_LEVEL", "info"), "log level: debug, info, warn or error [$LOG_LEVEL]")

	serve := &cobra.Command{
		Use:   "serve",
		Short: "Run the API and the projections",
		Long: `serve runs the REST API and, unless --no-projections, the projections that feed
the read model. It applies the migrations at start unless --no-migrate.
SIGTERM or Ctrl-C stop it gracefully: it stops accepting requests, finishes
those in flight, lets projections commit their batch, and exits 0.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return run(cmd.Context(), o, stderr, o.httpAddr, !o.noProjections)
		},
	}
	serve.Flags().StringVar(&o.readURL, "database-read-url", env("DATABASE_READ_URL", ""),
		"a streaming replica of the database for the queries (reads wait there for the caller's writes); empty: the database [$DATABASE_READ_URL]")
	serve.Flags().StringVar(&o.httpAddr, "http-addr", env("HTTP_ADDR", ":8000"), "address the API listens on [$HTTP_ADDR]")
	serve.Flags().DurationVar(&o.bodyTimeout, "http-body-timeout", envDuration("HTTP_BODY_TIMEOUT", 30*time.Second),
		"how long a client may take to send a request body once its headers are in; a slower body is cut with 408 [$HTTP_BODY_TIMEOUT]")
	serve.Flags().StringVar(&o.defaultRegion, "default-region", env("DEFAULT_REGION", "us-east-1"),
		"region of a tenant created without one [$DEFAULT_REGION]")
	serve.Flags().DurationVar(&o.reqTimeout, "http-request-timeout", envDuration("HTTP_REQUEST_TIMEOUT", 60*time.Second),
		"how long one request may take, headers to answer; past it its work is cancelled with 503 [$HTTP_REQUEST_TIMEOUT]")
	serve.Flags().BoolVar(&o.noProjections, "no-projections", false, "do not run projections here (run tenancy project elsewhere)")
	serve.Flags().BoolVar(&o.noAuth, "insecure-no-auth", false, "DEVELOPMENT ONLY: serve the API without authentication")
	addRunFlags(serve, o)

	project := &cobra.Command{
		Use:   "project",
		Short: "Run the projections alone, without the API",
		Long: `project runs the projections (read model) without the API, for deployments that
split them from API replicas started with serve --no-projections. Each
projection runs on one replica at a time; others take over when it stops.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return run(cmd.Context(), o, stderr, "", true) },
	}
	addRunFlags(project, o)

	migrate := &cobra.Command{
		Use:   "migrate",
		Short: "Apply the database migrations",
		Long:  "migrate applies every migration not yet applied (it is safe to run again, and from several replicas at once).",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			log, err := newLogger(stderr, o)
			if err != nil {
				return err
			}
			a, err := service.Open(cmd.Context(), service.Config{DatabaseURL: o.databaseURL, Migrate: true, SkipStoreBinding: true, Logger: log, Version: version,
				DataDir: o.dataDir, MasterKey: o.masterKey})
			if err != nil {
				return err
			}
			defer a.Close()
			conn, err := a.Pool().Acquire(cmd.Context())
			if err != nil {
				return err
			}
			defer conn.Release()
			cur, _, err := migrations.Status(cmd.Context(), conn.Conn())
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "database is at schema version %d\n", cur)
			return nil
		},
	}

	versionCmd := &cobra.Command{
		Use:   "version",
		Short: "Print the version",
		Args:  cobra.NoArgs,
		Run:   func(cmd *cobra.Command, _ []string) { fmt.Fprintln(cmd.OutOrStdout(), "tenancy", version) },
	}
	root.AddCommand(serve, project, migrate, versionCmd, newProjectionsCmd(o), newVerifyCmd(o), newReplayCmd(o), newTokenCmd(o), newEventsCmd(o), newHealthcheckCmd(), newBenchCmd(o))
	return root
}

// addForceFlag adds --force to a command that opens the event store.
func addForceFlag(f *pflag.FlagSet, o *options) {
	f.BoolVar(&o.force, "force", false, "use the configured event store although this database's read model and checkpoints were built from another "+
		"(a deliberate move: it is recorded as theirs; rebuild the projections next), and let a rebuild replace a read model with one built from an empty store")
}

func addRunFlags(cmd *cobra.Command, o *options) {
	addForceFlag(cmd.Flags(), o)
	cmd.Flags().StringVar(&o.natsURL, "nats-url", env("NATS_URL", ""), "NATS server to publish events to, or a cluster's servers separated by commas; empty: start an embedded one on --nats-listen [$NATS_URL]")
	cmd.Flags().StringVar(&o.natsListen, "nats-listen", env("NATS_LISTEN", "127.0.0.1:4222"), "where the embedded NATS server listens when NATS_URL is empty [$NATS_LISTEN]")
	cmd.Flags().StringVar(&o.natsStoreDir, "nats-store-dir", env("NATS_STORE_DIR", ""), "the embedded NATS server's JetStream store (default DATA_DIR/nats) [$NATS_STORE_DIR]")
	cmd.Flags().DurationVar(&o.natsWindow, "nats-duplicate-window", envDuration("NATS_DUPLICATE_WINDOW", time.Hour), "how long JetStream remembers event ids to drop re-published copies [$NATS_DUPLICATE_WINDOW]")
	cmd.Flags().IntVar(&o.natsReplicas, "nats-stream-replicas", envInt("NATS_STREAM_REPLICAS", 1),
		"copies of the TENANCY_EVENTS stream in a NATS JetStream cluster (1, 3 or 5; an existing stream is brought to it) [$NATS_STREAM_REPLICAS]")
	cmd.Flags().BoolVar(&o.noMigrate, "no-migrate", false, "do not apply migrations at start")
	cmd.Flags().StringVar(&o.provisioning, "provisioning-mode", env("PROVISIONING_MODE", "auto"),
		"auto: the service provisions new tenants itself; external: an outside provisioner calls complete-provisioning [$PROVISIONING_MODE]")
	cmd.Flags().StringVar(&o.onFailure, "projection-failure", env("PROJECTION_FAILURE", "halt"),
		"what a projection does with an event it cannot apply after retries: halt or skip (recorded either way) [$PROJECTION_FAILURE]")
}

func run(ctx context.Context, o *options, stderr io.Writer, httpAddr string, withProjections bool) error {
	log, err := newLogger(stderr, o)
	if err != nil {
		return err
	}
	policy := projections.Halt
	switch o.onFailure {
	case "halt":
	case "skip":
		policy = projections.Skip
	default:
		return fmt.Errorf("--projection-failure %q: want halt or skip", o.onFailure)
	}
	tp, shutdownTracing, err := tracing.Setup(ctx, "tenancy", version)
	if err != nil {
		return err
	}
	defer func() {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := shutdownTracing(sctx); err != nil {
			log.Warn("flush traces", "err", err)
		}
	}()
	if o.provisioning != "auto" && o.provisioning != "external" {
		return fmt.Errorf("--provisioning-mode %q: want auto or external", o.provisioning)
	}
	if o.defaultRegion != "" && !aggregate.Region(o.defaultRegion).Valid() {
		return fmt.Errorf("--default-region %q: want one of %v", o.defaultRegion, aggregate.Regions())
	}
	// Listen before anything else: a taken port is reported before a
	// database is created or a key or token written.
	var listener net.Listener
	if httpAddr != "" {
		if listener, err = service.Listen(httpAddr); err != nil {
			return err
		}
		defer listener.Close()
	}
	if withProjections && o.natsURL == "" && o.natsListen != "" {
		if err := natsserver.CheckFree(o.natsListen); err != nil {
			return err
		}
	}
	var verify *auth.Verifier
	switch {
	case httpAddr == "":
	case o.noAuth:
		log.Warn("authentication is OFF (--insecure-no-auth): anyone who reaches the API may do anything; never do this in production")
	default:
		if verify, err = verifier(ctx, o, log); err != nil {
			return err
		}
	}
	cfg := service.Config{
		ExternalProvisioning: o.provisioning == "external",
		DataDir:              o.dataDir, MasterKey: o.masterKey, TracerProvider: tp,
		NATSURL: o.natsURL, NATSListen: o.natsListen, NATSStoreDir: o.natsStoreDir,
		NATSStream:  natspub.StreamOptions{DuplicateWindow: o.natsWindow, Replicas: o.natsReplicas},
		DatabaseURL: o.databaseURL, DatabaseReadURL: o.readURL, EventStoreURL: o.eventStoreURL,
		EventStoreMaxAppendSize: o.maxAppendSize, ForceStore: o.force, HTTPAddr: httpAddr, Listener: listener,
		HTTPBodyTimeout: o.bodyTimeout, HTTPRequestTimeout: o.reqTimeout, DefaultRegion: aggregate.Region(o.defaultRegion),
		Migrate: !o.noMigrate, Projections: withProjections, ProjectionFailure: policy,
		Holder: service.DefaultHolder(), Version: version, Logger: log,
	}
	if verify != nil {
		cfg.Auth = verify
	}
	a, err := service.Open(ctx, cfg)
	if err != nil {
		return err
	}
	defer a.Close()
	if addr := a.Addr(); addr != "" {
		base := "http://" + strings.Replace(addr, "[::]", "localhost", 1)
		log.Info("tenancy is serving", "api", base+"/api/v1/tenants", "docs", base+"/docs", "health", base+"/health/ready", "version", version)
	} else {
		log.Info("tenancy is projecting", "version", version)
	}
	if err := a.Run(ctx); err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	log.Info("tenancy stopped")
	return nil
}

// newLogger is the service's logger: it masks personal data in every line
// (internal/logging).
func newLogger(w io.Writer, o *options) (*slog.Logger, error) {
	var level slog.Level
	if err := level.UnmarshalText([]byte(o.logLevel)); err != nil {
		return nil, fmt.Errorf("--log-level %q: %w", o.logLevel, err)
	}
	log, err := logging.New(w, o.logFormat, level)
	if err != nil {
		return nil, fmt.Errorf("--log-format: %w", err)
	}
	return log, nil
}
