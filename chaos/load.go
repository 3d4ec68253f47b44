package chaos

import (
	"context"
	"net/http"
	"time"

	"github.com/tenancyhq/tenancy/loadgen"
)

// Driver drives the steady load of a run until ctx ends, reporting
// progress, and returns the commands the service acknowledged.
type Driver interface {
	Drive(ctx context.Context, target Target, progress func(ok, failed int64)) (LoadReport, error)
}

// Target is where and how the load goes.
type Target struct {
	// BaseURL and Client reach the replicas through the balancer.
	BaseURL string
	Client  *http.Client
	Token   string
	// NATSURL is the NATS cluster (command-to-NATS delivery is measured).
	NATSURL     string
	Rate        float64
	Concurrency int
}

// LoadReport is what the load saw.
type LoadReport struct {
	// Acks are the acknowledged commands: each must be in the event log.
	Acks []ack
	// InDoubt are commands whose outcome never came (not counted as lost).
	InDoubt int
	// Stale counts reads that answered an older version than the caller's
	// own acknowledged write: a broken read-your-writes promise.
	Stale int
	// Summary is the load's figures, one line each.
	Summary []string
}

// LoadgenDriver drives the load with package loadgen (the engine of
// tenancy bench).
type LoadgenDriver struct{}

// Drive implements Driver.
func (LoadgenDriver) Drive(ctx context.Context, t Target, progress func(ok, failed int64)) (LoadReport, error) {
	rep, err := loadgen.Run(ctx, loadgen.Config{BaseURL: t.BaseURL, Token: t.Token, Rate: t.Rate, Concurrency: t.Concurrency,
		Tenants: 2 * t.Concurrency, NATSURL: t.NATSURL, HTTPClient: t.Client, RequestTimeout: 10 * time.Second,
		Drain: 30 * time.Second, NATSWait: 30 * time.Second, ReadYourWritesEvery: 4},
		func(s loadgen.Snapshot) { progress(int64(s.OK), int64(s.Failed)) })
	if err != nil {
		return LoadReport{}, err
	}
	out := LoadReport{InDoubt: rep.InDoubt, Stale: rep.ReadYourWrites.Stale}
	for _, a := range rep.Acknowledged {
		k := ""
		if a.Op == loadgen.OpCommand {
			k = a.IdempotencyKey // the update-profile's metadata holds it
		}
		out.Acks = append(out.Acks, ack{stream: "tenant-" + a.Tenant, version: a.Version, key: k})
	}
	out.Summary = append(out.Summary, loadSummary(rep)...)
	return out, nil
}

func loadSummary(rep loadgen.Report) []string {
	lines := []string{sprintf("load: %.0f s, %d ok, %d failed, %.1f ops/s; p50 %.1f ms, p99 %.1f ms, p999 %.1f ms; %d acknowledged commands, %d in doubt",
		rep.Seconds, rep.Total.OK, rep.Total.Failed, rep.Total.PerSecond, rep.Total.Latency.P50, rep.Total.Latency.P99, rep.Total.Latency.P999,
		len(rep.Acknowledged), rep.InDoubt)}
	for _, op := range rep.Ops {
		lines = append(lines, sprintf("  %-9s ok %6d failed %4d retries %4d  p50 %7.1f ms  p99 %7.1f ms  errors %v",
			op.Op, op.OK, op.Failed, op.Retries, op.Latency.P50, op.Latency.P99, op.Errors))
	}
	lines = append(lines, sprintf("  read-your-writes: %d checks, stale %d, plain p99 %.1f ms, token p99 %.1f ms, errors %v",
		rep.ReadYourWrites.Checks, rep.ReadYourWrites.Stale, rep.ReadYourWrites.Plain.P99, rep.ReadYourWrites.Token.P99, rep.ReadYourWrites.Errors))
	if n := rep.NATS; n != nil {
		lines = append(lines, sprintf("  command to NATS: delivered %d, missing %d (a plain subscription; the stream check below is the strict one), p50 %.1f ms, p99 %.1f ms, disconnects %d",
			n.Delivered, n.Missing, n.Latency.P50, n.Latency.P99, n.Disconnects))
	}
	return lines
}
