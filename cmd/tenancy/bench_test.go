package main

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/tenancyhq/tenancy/loadgen"
)

// bench runs tenancy bench and returns its stdout, stderr and error.
func bench(t *testing.T, args ...string) (string, string, error) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	root := newRoot(&stdout, &stderr)
	root.SetArgs(append([]string{"bench"}, args...))
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	err := root.ExecuteContext(ctx)
	return stdout.String(), stderr.String(), err
}

func TestBenchReportsEveryOperationOfARealRun(t *testing.T) {
	t.Parallel()
	srv := serve(t, t.TempDir())
	base, data, natsURL := "http://"+srv.addr, srv.data, srv.natsURL

	// --json, with the token from the data folder and NATS by flag.
	// Equal weights over 4 s: every operation is drawn on a loaded machine
	// (the default mix gives creates 1 draw in 20).
	stdout, stderr, err := bench(t, "--url", base, "--data-dir", data, "--duration", "4s", "--concurrency", "4",
		"--mix", "create=1,command=1,get=1,list=1,evaluate=1",
		"--nats-url", natsURL, "--json", "--acks")
	if err != nil {
		t.Fatalf("bench --json: %v\n%s", err, stderr)
	}
	var rep loadgen.Report
	dec := json.NewDecoder(strings.NewReader(stdout))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&rep); err != nil {
		t.Fatalf("--json is not a report: %v\n%s", err, stdout)
	}
	for _, op := range loadgen.Ops {
		s := rep.Op(op)
		l := s.Latency
		if s.OK == 0 || s.Failed != 0 || l.P50 <= 0 || l.P50 > l.P99 || l.P99 > l.P999 || l.P999 > l.Max {
			t.Errorf("%s: %+v: want answers, no failures, 0 < p50 <= p99 <= p99.9 <= max", op, s)
		}
	}
	if rep.ReadYourWrites.Checks == 0 || rep.ReadYourWrites.Stale != 0 {
		t.Errorf("read-your-writes %+v", rep.ReadYourWrites)
	}
	if rep.NATS == nil || rep.NATS.Delivered == 0 || rep.NATS.Missing != 0 || len(rep.Acknowledged) != rep.NATS.Delivered {
		t.Errorf("NATS %+v for %d acknowledged commands", rep.NATS, len(rep.Acknowledged))
	}
	if !strings.Contains(stderr, "run ") || !strings.Contains(stderr, "ok") {
		t.Errorf("no progress lines on stderr:\n%s", stderr)
	}

	// The table, with NATS found through NATS_URL's fallback (none here).
	stdout, _, err = bench(t, "--url", base, "--data-dir", data, "--duration", "1s", "--nats-url", "none", "--quiet",
		"--mix", "get=1,command=1")
	if err != nil {
		t.Fatalf("bench: %v\n%s", err, stdout)
	}
	for _, want := range []string{"operation", "p99.9 ms", "command", "get", "total", "read-your-writes:", "NATS delivery: not measured", "in doubt: 0"} {
		if !strings.Contains(stdout, want) {
			t.Errorf("the report lacks %q:\n%s", want, stdout)
		}
	}
}

func TestBenchRefusesBadFlagsWithExit2(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--mix", "get=1,upsert=2", "--token", "x"}, `unknown operation "upsert"`},
		{[]string{"--mix", "get=0", "--token", "x"}, "at least one operation"},
		{[]string{"--duration", "0s", "--token", "x"}, "--duration"},
		{[]string{"--ryw-every", "-1", "--token", "x"}, "--ryw-every"},
		{[]string{"--data-dir", dir}, "no token"},
		{[]string{"--url", "localhost:8000", "--token", "x"}, "want http(s)://host[:port]"},
	} {
		_, _, err := bench(t, tc.args...)
		if exitCode(err) != 2 || err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("bench %v: %v (exit %d), want exit 2 saying %q", tc.args, err, exitCode(err), tc.want)
		}
	}
}
