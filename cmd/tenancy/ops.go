package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/google/uuid"
	"github.com/spf13/cobra"

	"github.com/tenancyhq/tenancy/aggregate"
	"github.com/tenancyhq/tenancy/eventstore"
	"github.com/tenancyhq/tenancy/projections"
	"github.com/tenancyhq/tenancy/projections/readmodel"
	"github.com/tenancyhq/tenancy/queries"
	"github.com/tenancyhq/tenancy/service"
)

// exitError carries an exit code other than 1 … or 1 without "tenancy:" noise.
type exitError struct {
	code int
	msg  string
}

func (e *exitError) Error() string { return e.msg }

// openOps connects for an operator command: no API, no projections, no
// migrations (tenancy migrate does those).
func openOps(cmd *cobra.Command, o *options) (*service.App, error) {
	// An operator command prints its answer; its logs stay quiet unless asked.
	if !cmd.Flags().Changed("log-level") {
		quiet := *o
		quiet.logLevel = "warn"
		o = &quiet
	}
	log, err := newLogger(cmd.ErrOrStderr(), o)
	if err != nil {
		return nil, err
	}
	// PROVISIONING_MODE as serve reads it: rebuild scheduler sets provision
	// timers only when the service provisions tenants itself.
	a, err := service.Open(cmd.Context(), service.Config{DatabaseURL: o.databaseURL, EventStoreURL: o.eventStoreURL, EventStoreMaxAppendSize: o.maxAppendSize,
		ForceStore: o.force, Logger: log, Version: version,
		DataDir: o.dataDir, MasterKey: o.masterKey, ExternalProvisioning: o.provisioning == "external"})
	if err != nil {
		return nil, err
	}
	if err := a.CheckSchema(cmd.Context()); err != nil {
		a.Close()
		return nil, fmt.Errorf("database %s is not ready (%w); is DATABASE_URL right?", service.RedactURL(o.databaseURL), err)
	}
	return a, nil
}

// projectionArg refuses a projection name the service does not have (or,
// for rebuild, cannot rebuild) with exit status 2, listing the known ones.
func projectionArg(name string, rebuild bool) error {
	err := service.CheckProjectionName(name)
	if err == nil && rebuild && !slices.Contains(service.RebuildableNames(), name) {
		err = &service.UnknownProjectionError{Name: name, Known: service.RebuildableNames(), Hint: "it cannot be rebuilt; tenancy projections reset " + name + " replays it"}
	}
	var ue *service.UnknownProjectionError
	if errors.As(err, &ue) {
		if ue.Hint == "" {
			return &exitError{code: 2, msg: fmt.Sprintf("no projection %q; the projections are %s", name, strings.Join(ue.Known, ", "))}
		}
		return &exitError{code: 2, msg: fmt.Sprintf("projection %q cannot be rebuilt (%s); rebuildable: %s", name, ue.Hint, strings.Join(ue.Known, ", "))}
	}
	return err
}

func newProjectionsCmd(o *options) *cobra.Command {
	root := &cobra.Command{
		Use:   "projections",
		Short: "Inspect and operate the projections (read-model, scheduler, nats-publisher)",
		Long: `projections shows where each projection stands in the event feed and repairs
them: reset one to replay from the start, skip or retry events it could not
apply, or rebuild the read model beside the live one with no outage.`,
	}
	addForceFlag(root.PersistentFlags(), o)
	var asJSON bool
	status := func(cmd *cobra.Command, args []string) error {
		if len(args) == 1 {
			if err := projectionArg(args[0], false); err != nil {
				return err
			}
		}
		a, err := openOps(cmd, o)
		if err != nil {
			return err
		}
		defer a.Close()
		names := service.ProjectionNames()
		if len(args) == 1 {
			names = args
		}
		var out []projections.ProjectionStatus
		for _, n := range names {
			st, err := projections.Status(cmd.Context(), a.Pool(), a.Store(), n)
			if err != nil {
				return err
			}
			out = append(out, st)
		}
		if asJSON {
			type row struct {
				Name            string    `json:"name"`
				State           string    `json:"state"`
				Position        string    `json:"position"`
				Head            string    `json:"head"`
				LagEvents       int64     `json:"lag_events"`
				LagSeconds      float64   `json:"lag_seconds"`
				EventsProcessed int64     `json:"events_processed"`
				Holder          string    `json:"holder,omitempty"`
				Failures        int64     `json:"failures"`
				LastError       string    `json:"last_error,omitempty"`
				UpdatedAt       time.Time `json:"updated_at"`
			}
			rows := make([]row, len(out))
			for i, st := range out {
				rows[i] = row{Name: st.Name, State: string(st.State), Position: st.Position.String(), Head: st.Head.String(), LagEvents: st.LagEvents,
					LagSeconds: st.LagSeconds, EventsProcessed: st.EventsProcessed, Holder: st.Holder, Failures: st.Failures, LastError: st.LastError, UpdatedAt: st.UpdatedAt}
			}
			enc := json.NewEncoder(cmd.OutOrStdout())
			enc.SetIndent("", "  ")
			return enc.Encode(rows)
		}
		w := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
		fmt.Fprintln(w, "NAME\tSTATE\tPOSITION\tHEAD\tLAG EVENTS\tLAG SECONDS\tHOLDER\tFAILURES\tLAST ERROR")
		for _, st := range out {
			holder := st.Holder
			if holder == "" {
				holder = "-"
			}
			fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%d\t%.1f\t%s\t%d\t%s\n", st.Name, st.State, st.Position, st.Head, st.LagEvents, st.LagSeconds, holder, st.Failures, oneLine(st.LastError))
		}
		return w.Flush()
	}
	list := &cobra.Command{Use: "list", Short: "Every projection with its position, head, lag, holder and failures", Args: cobra.NoArgs, RunE: status}
	list.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	st := &cobra.Command{Use: "status [name]", Short: "Where projections stand (position, head, lag in events and seconds, holder, failures)", Args: cobra.MaximumNArgs(1), RunE: status}
	st.Flags().BoolVar(&asJSON, "json", false, "print JSON")

	reset := &cobra.Command{
		Use:   "reset <name>",
		Short: "Move a projection's checkpoint back to the start of the feed",
		Long: `reset moves the checkpoint to the start: the projection replays every event.
For read-model prefer rebuild (no outage); reset of nats-publisher re-publishes
every event (subscribers de-duplicate within the stream's duplicate window).`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := projectionArg(args[0], false); err != nil {
				return err
			}
			a, err := openOps(cmd, o)
			if err != nil {
				return err
			}
			defer a.Close()
			if err := projections.ResetCheckpoint(cmd.Context(), a.Pool(), args[0]); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s: checkpoint reset to the start of the feed\n", args[0])
			return nil
		},
	}
	skip := &cobra.Command{
		Use:   "skip-failure <name> <event id>",
		Short: "Move a halted projection past an event it could not apply (recorded as skipped)",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := projectionArg(args[0], false); err != nil {
				return err
			}
			id, err := uuid.Parse(args[1])
			if err != nil {
				return &exitError{code: 2, msg: fmt.Sprintf("event id %q: %v", args[1], err)}
			}
			a, err := openOps(cmd, o)
			if err != nil {
				return err
			}
			defer a.Close()
			if err := projections.SkipFailure(cmd.Context(), a.Pool(), args[0], id); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s: event %s skipped\n", args[0], id)
			return nil
		},
	}
	retry := &cobra.Command{
		Use:   "retry-failures <name>",
		Short: "Let a halted projection try its failed events again",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := projectionArg(args[0], false); err != nil {
				return err
			}
			a, err := openOps(cmd, o)
			if err != nil {
				return err
			}
			defer a.Close()
			n, err := projections.RetryFailures(cmd.Context(), a.Pool(), args[0])
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s: %d failed events will be retried\n", args[0], n)
			return nil
		},
	}
	rebuild := &cobra.Command{
		Use:   "rebuild <name>",
		Short: "Rebuild a projection from the start of the feed, with no outage",
		Long: `rebuild read-model builds a new read model beside the live one (shadow tables),
from the start of the feed, in batches, showing progress; when it has caught
up it switches over in one transaction and drops the old tables. The live
read model serves queries the whole time. Interrupted (Ctrl-C, kill), it
resumes where it stopped when run again. Two rebuilds at once are refused.
rebuild scheduler builds the timers the same way, beside the live timers table,
which the timer worker keeps firing until the switch-over; it reads
PROVISIONING_MODE as serve does (provision timers only in auto mode).
Progress shows the events applied per second by this run.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := projectionArg(args[0], true); err != nil {
				return err
			}
			a, err := openOps(cmd, o)
			if err != nil {
				return err
			}
			defer a.Close()
			out := cmd.OutOrStdout()
			tty := isTerminal(out)
			last := time.Time{}
			err = a.Rebuild(cmd.Context(), args[0], func(p readmodel.Progress) {
				line := fmt.Sprintf("%-9s %6.1f%%  %d/%d events  %.0f events/s  ETA %s", p.Phase, p.Percent(), p.Processed, p.Total, p.Rate, p.ETA.Round(time.Second))
				if p.Resumed && p.Phase == "building" && last.IsZero() {
					fmt.Fprintln(out, "resuming an interrupted rebuild")
				}
				switch {
				case tty:
					fmt.Fprintf(out, "\r%s %s", bar(p.Percent()), line)
					if p.Phase == "done" {
						fmt.Fprintln(out)
					}
				case p.Phase != "building" || time.Since(last) >= 5*time.Second:
					fmt.Fprintln(out, line)
					last = time.Now()
				}
				if last.IsZero() {
					last = time.Now()
				}
			})
			if err != nil {
				if tty {
					fmt.Fprintln(out)
				}
				return err
			}
			fmt.Fprintf(out, "%s rebuilt\n", args[0])
			return nil
		},
	}
	root.AddCommand(list, st, reset, skip, retry, rebuild)
	return root
}

func newVerifyCmd(o *options) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "verify",
		Short: "Compare the read model with a fresh fold of every stream (exit 1 on any drift)",
		Long: `verify folds every tenant stream, up to the read model's checkpoint, into
temporary tables and compares them with the read model row by row, every
column of tenants and every row of tenant_events. It prints each difference
and exits 1 if there is any, 0 when they are equal.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			a, err := openOps(cmd, o)
			if err != nil {
				return err
			}
			defer a.Close()
			pos, err := projections.ReadCheckpoint(cmd.Context(), a.Pool(), readmodel.Name)
			if err != nil {
				return err
			}
			diffs, err := readmodel.Verify(cmd.Context(), a.Pool(), a.Store(), aggregate.DefaultCatalog(), pos, readmodel.LiveTables)
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if asJSON {
				if diffs == nil {
					diffs = []readmodel.Difference{}
				}
				_ = json.NewEncoder(out).Encode(map[string]any{"checkpoint": pos.String(), "equal": len(diffs) == 0, "differences": diffs})
			} else {
				for _, d := range diffs {
					fmt.Fprintln(out, d)
				}
			}
			if len(diffs) > 0 {
				return &exitError{code: 1, msg: fmt.Sprintf("read model differs from the events (%d differences, up to checkpoint %s)", len(diffs), pos)}
			}
			if !asJSON {
				fmt.Fprintf(out, "read model equals a fresh fold of the events (up to checkpoint %s)\n", pos)
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	addForceFlag(cmd.Flags(), o)
	return cmd
}

func newReplayCmd(o *options) *cobra.Command {
	var asOf string
	var toVersion int64
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "replay <tenant id or external id>",
		Short: "A tenant's history from its event stream, and its state at the end point",
		Long: `replay reads the tenant's event stream (never the read model) and prints its
timeline — one line per event: version, time, type, actor, correlation id and
what changed — then the state at the end point. --as-of and --to-version end
the timeline early. After a purge every event is shown, personal data redacted.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var opts queries.ReplayOptions
			if asOf != "" {
				t, err := time.Parse(time.RFC3339Nano, asOf)
				if err != nil {
					return fmt.Errorf("--as-of %q: want an RFC 3339 time such as 2026-01-31T12:00:00Z", asOf)
				}
				opts.AsOf = &t
			}
			if toVersion >= 0 {
				v := uint64(toVersion)
				opts.ToVersion = &v
			}
			a, err := openOps(cmd, o)
			if err != nil {
				return err
			}
			defer a.Close()
			id, err := resolveTenant(cmd.Context(), a.Store(), args[0])
			if err != nil {
				return err
			}
			tl, err := queries.NewReplayer(a.Store()).Replay(cmd.Context(), id, opts)
			if err != nil {
				return err
			}
			return printTimeline(cmd.OutOrStdout(), tl, asJSON)
		},
	}
	cmd.Flags().StringVar(&asOf, "as-of", "", "end at the last event at or before this RFC 3339 time")
	cmd.Flags().Int64Var(&toVersion, "to-version", -1, "end at this stream version")
	cmd.Flags().BoolVar(&asJSON, "json", false, "one JSON object per line: each event, then the state")
	addForceFlag(cmd.Flags(), o)
	return cmd
}

func printTimeline(w io.Writer, tl queries.Timeline, asJSON bool) error {
	if asJSON {
		enc := json.NewEncoder(w)
		for _, e := range tl.Entries {
			if err := enc.Encode(e); err != nil {
				return err
			}
		}
		return enc.Encode(map[string]any{"state": tl.State, "redacted": tl.Redacted})
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "VERSION\tTIME\tTYPE\tACTOR\tCORRELATION\tCHANGES")
	for _, e := range tl.Entries {
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\n", e.Version, e.OccurredAt.Format(time.RFC3339), e.Type, dash(e.Actor), dash(e.CorrelationID), queries.Summary(e.Changes))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if tl.Redacted {
		fmt.Fprintln(w, "\n(the tenant was purged: personal data shows as "+aggregate.Redacted+")")
	}
	fmt.Fprintln(w, "\nstate at the end point:")
	b, err := json.MarshalIndent(tl.State, "", "  ")
	if err != nil {
		return err
	}
	_, err = fmt.Fprintln(w, string(b))
	return err
}

// resolveTenant accepts a tenant id or an external id; an external id is
// looked up in the claims the event store keeps, not in the read model.
func resolveTenant(ctx context.Context, store eventstore.ClaimReader, arg string) (uuid.UUID, error) {
	if id, err := uuid.Parse(arg); err == nil {
		return id, nil
	}
	if !aggregate.IsExternalID(arg) {
		return uuid.Nil, fmt.Errorf("%q is neither a tenant id (UUID) nor an external id (ORG-XXXXXXXX)", arg)
	}
	stream, err := store.ClaimHolder(ctx, aggregate.ClaimExternalID, arg)
	if errors.Is(err, eventstore.ErrNotFound) {
		return uuid.Nil, fmt.Errorf("no tenant has external id %s", arg)
	}
	if err != nil {
		return uuid.Nil, err
	}
	id, err := uuid.Parse(strings.TrimPrefix(stream, aggregate.StreamPrefix))
	if err != nil {
		return uuid.Nil, fmt.Errorf("external id %s is held by %s, not a tenant", arg, stream)
	}
	return id, nil
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func oneLine(s string) string {
	s = strings.ReplaceAll(s, "\n", " ")
	if len(s) > 60 {
		s = s[:57] + "…"
	}
	return dash(s)
}

func bar(pct float64) string {
	const width = 30
	n := int(pct / 100 * width)
	n = max(0, min(width, n))
	return "[" + strings.Repeat("#", n) + strings.Repeat(".", width-n) + "]"
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}
