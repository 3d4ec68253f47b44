package main

import (
	"bytes"
	"context"
	"errors"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/tenancyhq/tenancy/aggregate"
	"github.com/tenancyhq/tenancy/commands"
	"github.com/tenancyhq/tenancy/internal/pgtest"
	"github.com/tenancyhq/tenancy/process"
	"github.com/tenancyhq/tenancy/projections"
	"github.com/tenancyhq/tenancy/service"
)

// opsDatabase is a migrated database with one ACTIVE and one TRIAL tenant
// whose projections (read model, scheduler) have caught up; it returns the
// flags that point the CLI at it and the trial tenant's id.
func opsDatabase(t *testing.T) ([]string, string) {
	t.Helper()
	dbURL := pgtest.NewDatabase(t)
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	a, err := service.Open(ctx, service.Config{DatabaseURL: dbURL, Migrate: true, Projections: true, DataDir: dir, ExternalProvisioning: true})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- a.Run(runCtx) }()
	var trial string
	for _, name := range []string{"Ops Paid", "Ops Trial"} {
		res, err := a.Commands.Create(ctx, aggregate.Create{Name: name, Edition: "professional", Region: "us-east-1", Trial: ptr(name == "Ops Trial")}, aggregate.Metadata{})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := a.Commands.Execute(ctx, commands.Request{TenantID: res.TenantID, Command: aggregate.CompleteProvisioning{}}); err != nil {
			t.Fatal(err)
		}
		trial = res.TenantID.String()
	}
	for _, name := range []string{"read-model", process.SchedulerName} {
		for {
			lag, err := a.ProjectionLag(ctx, name)
			st, _ := projections.Status(ctx, a.Pool(), a.Store(), name)
			if err == nil && lag == 0 && st.EventsProcessed > 0 {
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	stop()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	return []string{"--database-url", dbURL, "--data-dir", dir}, trial
}

func ptr[T any](v T) *T { return &v }

// runCLI runs the tenancy command line and returns its output and error.
func runCLI(t *testing.T, args ...string) (string, error) {
	t.Helper()
	var out bytes.Buffer
	root := newRoot(&out, &out)
	root.SetArgs(args)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	err := root.ExecuteContext(ctx)
	return out.String(), err
}

func exitCode(err error) int {
	var ee *exitError
	if errors.As(err, &ee) {
		return ee.code
	}
	if err != nil {
		return 1
	}
	return 0
}

// TestOperatorCommandsRefuseNonsense: an unknown projection name is exit 2
// naming the known ones (and no checkpoint row appears for it), a version
// past the stream's end is an error naming the last version, and a token
// lifetime must be positive.
func TestOperatorCommandsRefuseNonsense(t *testing.T) {
	t.Parallel()
	db, trial := opsDatabase(t)
	for _, args := range [][]string{
		{"projections", "status", "bogus"},
		{"projections", "reset", "bogus"},
		{"projections", "rebuild", "bogus"},
		{"projections", "rebuild", "nats-publisher"},
		{"projections", "retry-failures", "bogus"},
		{"projections", "skip-failure", "bogus", "0b9e5f9a-7d3c-4a55-9c1e-2f6d8a4b1c00"},
	} {
		_, err := runCLI(t, append(args, db...)...)
		if exitCode(err) != 2 || !strings.Contains(err.Error(), "read-model") || !strings.Contains(err.Error(), "scheduler") {
			t.Errorf("%v: exit %d (%v), want 2 listing the projections", args, exitCode(err), err)
		}
	}
	out, err := runCLI(t, append([]string{"replay", trial, "--to-version", "999"}, db...)...)
	if err == nil || !strings.Contains(err.Error(), "ends at version 2") {
		t.Errorf("replay --to-version 999: %v (output %q), want an error naming the last version", err, out)
	}
	if _, err := runCLI(t, append([]string{"replay", trial, "--to-version", "2"}, db...)...); err != nil {
		t.Errorf("replay --to-version 2 (the last): %v", err)
	}
	for _, ttl := range []string{"0s", "-1h"} {
		if _, err := runCLI(t, "token", "--ttl", ttl); exitCode(err) != 2 || !strings.Contains(err.Error(), "positive") {
			t.Errorf("token --ttl %s: exit %d (%v), want 2", ttl, exitCode(err), err)
		}
	}
}

// TestRebuildSchedulerFromTheCLIKeepsTheTimers: the trial's expiry timer is
// still pending after tenancy projections rebuild scheduler, the scheduler's
// checkpoint did not go back to the start, and the progress shows a real
// rate.
func TestRebuildSchedulerFromTheCLIKeepsTheTimers(t *testing.T) {
	t.Parallel()
	db, trial := opsDatabase(t)
	pending := func() []string {
		pool, err := pgxpool.New(context.Background(), db[1])
		if err != nil {
			t.Fatal(err)
		}
		defer pool.Close()
		rows, err := pool.Query(context.Background(), `SELECT kind || ' ' || tenant_id || ' ' || due_at FROM timers ORDER BY 1`)
		if err != nil {
			t.Fatal(err)
		}
		defer rows.Close()
		var out []string
		for rows.Next() {
			var s string
			_ = rows.Scan(&s)
			out = append(out, s)
		}
		return out
	}
	before := pending()
	if len(before) != 1 || !strings.Contains(before[0], "trial_expiry "+trial) {
		t.Fatalf("timers before: %v", before)
	}
	out, err := runCLI(t, append([]string{"projections", "rebuild", "scheduler"}, db...)...)
	if err != nil {
		t.Fatalf("rebuild: %v\n%s", err, out)
	}
	if after := pending(); strings.Join(after, "\n") != strings.Join(before, "\n") {
		t.Fatalf("timers after the rebuild: %v, want %v", after, before)
	}
	m := regexp.MustCompile(`done .* (\d+) events/s`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no done line with a rate in:\n%s", out)
	}
	if rate, _ := strconv.Atoi(m[1]); rate <= 0 {
		t.Errorf("rebuild reported %s events/s:\n%s", m[1], out)
	}
	out, err = runCLI(t, append([]string{"projections", "status", "scheduler", "--json"}, db...)...)
	if err != nil || strings.Contains(out, `"position": "0/0"`) || !strings.Contains(out, `"lag_events": 0`) {
		t.Errorf("scheduler status after the rebuild (%v):\n%s", err, out)
	}
}
