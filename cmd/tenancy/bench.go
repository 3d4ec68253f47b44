package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/tenancyhq/tenancy/loadgen"
	"github.com/tenancyhq/tenancy/service"
)

// benchOptions are the flags of tenancy bench.
type benchOptions struct {
	url, token, tokenFile, mix, natsURL string
	duration                            time.Duration
	rate                                float64
	concurrency, tenants, rywEvery      int
	json, acks, allowErrors, quiet      bool
}

func newBenchCmd(o *options) *cobra.Command {
	b := &benchOptions{}
	cmd := &cobra.Command{
		Use:   "bench",
		Short: "Drive a deployment over its API and report throughput and latencies",
		Long: `bench sends a steady mix of requests to a running service over its public
HTTP API, as a client would, and reports what it saw:

  create    POST /api/v1/tenants
  command   PATCH /api/v1/tenants/{id} (update-profile: replaces the metadata)
  get       GET /api/v1/tenants/{id}
  list      GET /api/v1/tenants?limit=20
  evaluate  POST /api/v1/tenants/{id}/policy/evaluate

First it creates --tenants tenants and waits until they leave PROVISIONING
(completing provisioning itself after 3 s, for PROVISIONING_MODE=external);
commands and evaluations go to them, GETs to every tenant the run made.
The tenants it makes (named bench-<start time>-<n>) stay: bench writes, so
point it at a deployment where test tenants are welcome.

The report has, per operation, the answers that succeeded and failed,
errors by HTTP status ("connection"/"timeout" when no answer came), per
second, and latency percentiles p50/p99/p99.9/max in milliseconds; then:

  read-your-writes  after each command, a GET without any consistency header
                    and a GET with the command's X-Consistency-Token, each
                    timed until it shows the command's version; a read that
                    shows an older version counts as stale (two requests
                    per command besides the mix, not paced by --rate;
                    --ryw-every N checks every Nth command, 0 none)
  NATS delivery     from a command's answer to its event arriving on
                    tenancy.events.> (with --nats-url, NATS_URL or the
                    DATA_DIR/nats.url serve writes; skipped without one)

Commands carry an Idempotency-Key and are sent again with the same key after
a 5xx, a 409 concurrent-modification or a lost connection, so a brief
outage is counted and waited out, and nothing is applied twice; a read
answered 503 or 429 is sent again after its Retry-After (three attempts at
most). Failed attempts are counted by status either way. Progress goes to
stderr once a second; the report to stdout (--json for CI).

Exit status: 0; 1 when a request failed (unless --allow-errors), a read
was stale, an acknowledged command's event never reached NATS or a
command's outcome stayed unknown; 2 for bad flags or when the run could
not start.`,
		Example: `  tenancy bench --url http://localhost:8000 --duration 30s
  tenancy bench --url https://tenancy.internal --token-file ./admin.token \
    --rate 500 --concurrency 32 --mix create=1,command=4,get=10,list=1,evaluate=4
  tenancy bench --duration 10s --json > bench.json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return runBench(cmd, o, b) },
	}
	f := cmd.Flags()
	f.StringVar(&b.url, "url", env("TENANCY_URL", "http://localhost:8000"), "the service's API [$TENANCY_URL]")
	f.StringVar(&b.token, "token", "", "bearer token (admin scope: bench creates tenants) [$TENANCY_TOKEN]")
	f.StringVar(&b.tokenFile, "token-file", "", "file holding the token (default: DATA_DIR/admin.token, which serve writes without JWT_SECRET)")
	f.DurationVar(&b.duration, "duration", 10*time.Second, "how long to send requests (after the setup)")
	f.Float64Var(&b.rate, "rate", 0, "target requests per second over all workers; 0: as fast as --concurrency allows")
	f.IntVar(&b.concurrency, "concurrency", 8, "requests in flight at most")
	f.IntVar(&b.tenants, "tenants", 0, "tenants to create before the run (default --concurrency)")
	f.IntVar(&b.rywEvery, "ryw-every", 1, "check read-your-writes after every Nth command; 0: never")
	f.StringVar(&b.mix, "mix", loadgen.DefaultMix.String(), "relative weights of the operations; left out: 0")
	f.StringVar(&b.natsURL, "nats-url", "", "NATS to measure event delivery on, servers separated by commas (default: NATS_URL, else DATA_DIR/nats.url); none: skip")
	f.BoolVar(&b.json, "json", false, "print the report as JSON")
	f.BoolVar(&b.acks, "acks", false, "with --json: list every acknowledged command (tenant, Idempotency-Key, version, token)")
	f.BoolVar(&b.allowErrors, "allow-errors", false, "exit 0 even when requests failed")
	f.BoolVar(&b.quiet, "quiet", false, "no progress lines")
	return cmd
}

func runBench(cmd *cobra.Command, o *options, b *benchOptions) error {
	mix, err := loadgen.ParseMix(b.mix)
	if err != nil {
		return &exitError{code: 2, msg: "bench: --" + err.Error()}
	}
	if b.duration <= 0 || b.rate < 0 || b.concurrency <= 0 || b.tenants < 0 || b.rywEvery < 0 {
		return &exitError{code: 2, msg: "bench: --duration and --concurrency must be above 0, --rate, --tenants and --ryw-every at least 0"}
	}
	ryw := b.rywEvery
	if ryw == 0 {
		ryw = -1 // loadgen: negative is never
	}
	token, err := benchToken(o, b)
	if err != nil {
		return &exitError{code: 2, msg: "bench: " + err.Error()}
	}
	natsURL := b.natsURL
	switch {
	case natsURL == "none":
		natsURL = ""
	case natsURL == "":
		if natsURL = env("NATS_URL", ""); natsURL == "" {
			if data, err := os.ReadFile(filepath.Join(o.dataDir, service.NATSURLFile)); err == nil {
				natsURL = strings.TrimSpace(string(data))
			}
		}
	}
	stderr := cmd.ErrOrStderr()
	cfg := loadgen.Config{BaseURL: b.url, Token: token, Duration: b.duration, Rate: b.rate, Concurrency: b.concurrency,
		Tenants: b.tenants, Mix: mix, NATSURL: natsURL, ReadYourWritesEvery: ryw}
	var progress func(loadgen.Snapshot)
	if !b.quiet {
		progress = func(s loadgen.Snapshot) { fmt.Fprintln(stderr, progressLine(s, b.duration)) }
	}
	rep, err := loadgen.Run(cmd.Context(), cfg, progress)
	if err != nil {
		return &exitError{code: 2, msg: "bench: " + err.Error()}
	}
	out := cmd.OutOrStdout()
	if b.json {
		if !b.acks {
			rep.Acknowledged = nil
		}
		enc := json.NewEncoder(out)
		enc.SetIndent("", "  ")
		if err := enc.Encode(rep); err != nil {
			return err
		}
	} else {
		writeBenchReport(out, rep, natsURL)
	}
	if broken := benchFailures(rep, b.allowErrors); len(broken) > 0 {
		return &exitError{code: 1, msg: "bench: " + strings.Join(broken, "; ")}
	}
	return nil
}

// benchToken is --token, $TENANCY_TOKEN, or the token file's content.
func benchToken(o *options, b *benchOptions) (string, error) {
	if b.token != "" {
		return b.token, nil
	}
	if t := os.Getenv("TENANCY_TOKEN"); t != "" && b.tokenFile == "" {
		return t, nil
	}
	file := b.tokenFile
	if file == "" {
		file = adminTokenPath(o)
	}
	data, err := os.ReadFile(file)
	if err != nil {
		return "", fmt.Errorf("no token: pass --token or --token-file, or set TENANCY_TOKEN (%v)", err)
	}
	return strings.TrimSpace(string(data)), nil
}

// progressLine is one second's progress.
func progressLine(s loadgen.Snapshot, total time.Duration) string {
	switch {
	case s.Setup:
		return fmt.Sprintf("setup    %3ds  %d tenants created", int(s.Elapsed.Seconds()), s.Tenants)
	case s.Ceiling:
		return fmt.Sprintf("ceiling  %3ds  GET /health/live", int(s.Elapsed.Seconds()))
	}
	return fmt.Sprintf("run      %3ds/%ds  %8d ok  %5d failed  %8.0f/s", int(s.Elapsed.Round(time.Second).Seconds()), int(total.Seconds()),
		s.OK, s.Failed, s.PerSecond)
}

// writeBenchReport prints the human report.
func writeBenchReport(w io.Writer, r loadgen.Report, natsURL string) {
	rate := "as fast as possible"
	if r.Rate > 0 {
		rate = fmt.Sprintf("target %g/s", r.Rate)
	}
	fmt.Fprintf(w, "bench %s: %.1f s, concurrency %d, %s, mix %s\n", r.BaseURL, r.Seconds, r.Concurrency, rate, r.Mix)
	fmt.Fprintf(w, "setup: %d tenants created and settled in %.1f s\n\n", r.Setup.Tenants, r.Setup.Seconds)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "operation\tok\tfailed\tper s\tp50 ms\tp99 ms\tp99.9 ms\tmax ms\t")
	row := func(s loadgen.OpStats) {
		l := s.Latency
		fmt.Fprintf(tw, "%s\t%d\t%d\t%.0f\t%.2f\t%.2f\t%.2f\t%.2f\t\n", s.Op, s.OK, s.Failed, s.PerSecond, l.P50, l.P99, l.P999, l.Max)
	}
	for _, s := range r.Ops {
		row(s)
	}
	row(r.Total)
	if r.Ceiling != nil {
		c := *r.Ceiling
		c.Op = "ceiling"
		row(c)
	}
	tw.Flush()
	if r.Ceiling != nil {
		fmt.Fprintf(w, "ceiling: GET /health/live (no database, no token check) as fast as %d workers could, just before the run; total/ceiling %.2f\n",
			r.Concurrency, r.CeilingRatio)
	}
	fmt.Fprintln(w)
	ryw := r.ReadYourWrites
	fmt.Fprintf(w, "read-your-writes: %d checks, %d stale; plain GET p50 %.2f ms p99 %.2f ms; with X-Consistency-Token p50 %.2f ms p99 %.2f ms\n",
		ryw.Checks, ryw.Stale, ryw.Plain.P50, ryw.Plain.P99, ryw.Token.P50, ryw.Token.P99)
	if n := r.NATS; n != nil {
		fmt.Fprintf(w, "NATS delivery: %d events, %d missing; p50 %.2f ms p99 %.2f ms p99.9 %.2f ms max %.2f ms\n",
			n.Delivered, n.Missing, n.Latency.P50, n.Latency.P99, n.Latency.P999, n.Latency.Max)
	} else {
		fmt.Fprintln(w, "NATS delivery: not measured (no --nats-url, NATS_URL or DATA_DIR/nats.url)")
	}
	fmt.Fprintf(w, "acknowledged commands: %d, in doubt: %d\n", len(r.Acknowledged), r.InDoubt)
	if errs := r.Total.Errors; len(errs) > 0 {
		keys := make([]string, 0, len(errs))
		for k := range errs {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		parts := make([]string, len(keys))
		for i, k := range keys {
			parts[i] = fmt.Sprintf("%s ×%d", k, errs[k])
		}
		fmt.Fprintf(w, "failed attempts: %s (retries %d)\n", strings.Join(parts, ", "), r.Total.Retries)
	}
}

// benchFailures are the reasons the run fails.
func benchFailures(r loadgen.Report, allowErrors bool) []string {
	var out []string
	if n := r.Errors(); n > 0 && !allowErrors {
		out = append(out, fmt.Sprintf("%d requests failed", n))
	}
	if n := r.ReadYourWrites.Stale; n > 0 {
		out = append(out, fmt.Sprintf("%d reads were stale", n))
	}
	if r.NATS != nil && r.NATS.Missing > 0 {
		out = append(out, fmt.Sprintf("%d acknowledged commands' events never reached NATS", r.NATS.Missing))
	}
	if r.InDoubt > 0 {
		out = append(out, fmt.Sprintf("%d commands' outcome is unknown", r.InDoubt))
	}
	return out
}
