package chaos_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tenancyhq/tenancy/chaos"
	"github.com/tenancyhq/tenancy/internal/pgtest"
)

// TestChaos runs the fault harness: the smoke schedule by default (every
// kind of fault, short cuts, about two minutes: part of make test), the
// full one with CHAOS=full (make chaos: 20 s cuts, every fault again but
// the pause, about five minutes). Either fails on any lost acknowledged
// command, duplicate, drift, missing timer or failover over the aim.
// CHAOS_DIR keeps the processes' data and logs there.
func TestChaos(t *testing.T) {
	full := os.Getenv("CHAOS") == "full"
	cfg := chaos.Config{
		Faults: []chaos.Fault{chaos.KillLeader, chaos.KillNATS, chaos.CutNATS, chaos.CutPostgres, chaos.PauseStandby},
		CutFor: 6 * time.Second, Settle: 4 * time.Second, Rate: 30, Concurrency: 4,
		// make test runs beside every other package on a shared machine:
		// the smoke run allows twice the aim; make chaos holds it.
		FailoverAim: 10 * time.Second,
	}
	if full {
		cfg.Faults = []chaos.Fault{chaos.KillLeader, chaos.KillReplica, chaos.KillNATS, chaos.CutNATS, chaos.CutPostgres,
			chaos.PauseStandby, chaos.KillLeader, chaos.KillNATS, chaos.CutNATS, chaos.KillReplica, chaos.CutPostgres}
		cfg.CutFor, cfg.Settle, cfg.Rate, cfg.Concurrency, cfg.FailoverAim = 20*time.Second, 10*time.Second, 40, 6, 5*time.Second
	}
	cfg.Dir = os.Getenv("CHAOS_DIR")
	if cfg.Dir == "" {
		cfg.Dir = t.TempDir()
	}
	cfg.Print = func(s string) { t.Log(s) }
	start := time.Now()
	cfg.Binary = build(t, cfg.Dir)
	t.Logf("chaos: built the service in %s", time.Since(start).Round(time.Second))

	primary := pgtest.StartCluster(t)
	standby := primary.StartStandby()
	cfg.PrimaryAddr = fmt.Sprintf("127.0.0.1:%d", primary.Port())
	cfg.StandbyAddr = fmt.Sprintf("127.0.0.1:%d", standby.Port())
	replay := func(fn string) func(ctx context.Context) error {
		return func(ctx context.Context) error {
			conn, err := pgx.Connect(ctx, standby.URL())
			if err != nil {
				return err
			}
			defer conn.Close(ctx)
			_, err = conn.Exec(ctx, "SELECT "+fn+"()")
			return err
		}
	}
	cfg.Pause, cfg.Resume = replay("pg_wal_replay_pause"), replay("pg_wal_replay_resume")

	ctx, cancel := context.WithTimeout(context.Background(), 14*time.Minute)
	defer cancel()
	h, err := chaos.Start(ctx, cfg)
	if err != nil {
		t.Fatalf("start: %v", err)
	}
	defer h.Close()
	res, err := h.Run(ctx)
	if err != nil {
		t.Fatalf("run: %v", err)
	}
	t.Logf("chaos: %d faults, %d checks in %s", len(res.Faults), len(res.Checks), time.Since(start).Round(time.Second))
	if err := res.Err(); err != nil {
		t.Fatalf("broken promises:\n%v", err)
	}
}

// build builds the tenancy binary the replicas run.
func build(t *testing.T, dir string) string {
	t.Helper()
	bin := filepath.Join(dir, "tenancy")
	cmd := exec.Command("go", "build", "-o", bin, "github.com/tenancyhq/tenancy/cmd/tenancy")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}
