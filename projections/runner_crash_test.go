package projections_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/tenancyhq/tenancy/eventstore"
	"github.com/tenancyhq/tenancy/internal/pgtest"
	"github.com/tenancyhq/tenancy/projections"
)

// errCrash is what the crash hook returns after cancelling the run.
var errCrash = errors.New("crash")

// TestRunnerAppliesEveryEventOnceAcrossCancellations stops a runner many
// times at random points (inside Apply before or after its writes, while
// moving the checkpoint or committing), with events arriving meanwhile; a
// last run catches up, and every event must be applied exactly once.
func TestRunnerAppliesEveryEventOnceAcrossCancellations(t *testing.T) {
	t.Parallel()
	forEachFeed(t, func(t *testing.T, pool *pgxpool.Pool, store runnerTestStore) {
		rng := newLockedRand(t)
		p := newRecorder("crash")
		p.createTable(t, pool)
		appendEvents(t, store, 1000, 10)

		const restarts = 40
		var crashes int // runs that crashed in a batch (not while waiting)
		for i := range restarts {
			appendEvents(t, store, 25, 10)
			ctx, cancel := context.WithCancel(context.Background())
			// Each run crashes in its first or second batch: before Apply's
			// writes, after them (the checkpoint is never moved), or on a
			// timer started at the end of Apply (which lands in the checkpoint
			// move, the commit, or just after it).
			crashBatch, crashAt := 1+rng.intN(3)/2, []string{"before", "after", "timer"}[rng.intN(3)]
			batch := 0
			p.hook = func(ctx context.Context, stage string) error {
				// Apply runs on this goroutine: Run is synchronous here.
				if stage == "before" {
					batch++
				}
				switch {
				case batch != crashBatch:
					if stage == "after" { // no second batch may come: end the run anyway
						time.AfterFunc(30*time.Millisecond, cancel)
					}
				case stage == crashAt:
					crashes++
					cancel()
					return errCrash
				case crashAt == "timer" && stage == "after":
					crashes++
					time.AfterFunc(time.Duration(rng.intN(3000))*time.Microsecond, cancel)
				}
				return nil
			}
			safety := time.AfterFunc(5*time.Second, cancel)
			opts := testOptions(t, fmt.Sprintf("run-%d", i))
			opts.LockPollInterval = 10 * time.Millisecond
			err := projections.NewRunner(pool, store, p, opts).Run(ctx)
			safety.Stop()
			cancel()
			if err != nil {
				t.Fatalf("run %d: %v", i, err)
			}
		}
		cp, err := projections.ReadCheckpoint(context.Background(), pool, p.name)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("after %d interrupted runs: checkpoint %s, %d Apply calls, %d crashed in a batch", restarts, cp, p.calls.Load(), crashes)
		if crashes < 8 || cp.IsZero() {
			t.Fatalf("%d runs crashed in a batch, checkpoint %s: the test proves little", crashes, cp)
		}

		p.hook = nil
		last := appendEvents(t, store, 10, 10)
		start(t, projections.NewRunner(pool, store, p, testOptions(t, "final")))
		waitCaughtUp(t, pool, p.name, last, 20*time.Second)
		assertAppliedOnce(t, pool, store, p)
	})
}

// Environment of the child process of the kill -9 test.
const (
	childDBEnv    = "TENANCY_PROJECTIONS_CHILD_DB"
	childNameEnv  = "TENANCY_PROJECTIONS_CHILD_NAME"
	childRunnerID = "TENANCY_PROJECTIONS_CHILD_HOLDER"
)

// TestRunnerChildProcess is not a test of its own: it is the body of the
// child process TestRunnerAppliesEveryEventOnceAcrossKill9 starts (the same
// test binary, with the child's environment set) and kills. Without that
// environment it returns at once.
func TestRunnerChildProcess(t *testing.T) {
	dbURL := os.Getenv(childDBEnv)
	if dbURL == "" {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	pool, err := pgxpool.New(ctx, dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	rng := newLockedRand(t)
	p := newRecorder(os.Getenv(childNameEnv))
	p.by = os.Getenv(childRunnerID)
	p.hook = func(ctx context.Context, stage string) error {
		// Linger inside the transaction so that kills land mid-batch.
		time.Sleep(time.Duration(rng.intN(4)) * time.Millisecond)
		return nil
	}
	if err := projections.NewRunner(pool, newPostgresFeed(pool), p, testOptions(t, p.by)).Run(ctx); err != nil {
		t.Fatal(err)
	}
}

// TestRunnerAppliesEveryEventOnceAcrossKill9 runs the runner in child
// processes over the Postgres event store, SIGKILLs each at a random moment while
// events keep arriving, then finishes in-process: every event must be
// applied exactly once, none missing.
func TestRunnerAppliesEveryEventOnceAcrossKill9(t *testing.T) {
	t.Parallel()
	pool, dbURL := pgtest.NewMigrated(t)
	ctx := context.Background()
	rng := newLockedRand(t)
	store := newPostgresFeed(pool)
	p := newRecorder("kill9")
	p.createTable(t, pool)
	last := appendEvents(t, store, 1500, 10)

	// Events arrive while children run and die.
	stopAppending := make(chan struct{})
	var appending sync.WaitGroup
	appending.Go(func() {
		for {
			select {
			case <-stopAppending:
				return
			case <-time.After(20 * time.Millisecond):
				pos, err := appendEventsErr(store, 10, 10)
				if err != nil {
					t.Errorf("append while children run: %v", err)
					return
				}
				last = pos // read only after appending.Wait
			}
		}
	})
	stopOnce := sync.OnceFunc(func() {
		close(stopAppending)
		appending.Wait()
	})
	defer stopOnce()

	const kills = 6
	for i := range kills {
		var out bytes.Buffer
		cmd := exec.Command(os.Args[0], "-test.run=^TestRunnerChildProcess$", "-test.count=1", "-test.timeout=2m")
		cmd.Env = append(os.Environ(), childDBEnv+"="+dbURL, childNameEnv+"="+p.name, childRunnerID+"="+fmt.Sprintf("child-%d", i))
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Duration(250+rng.intN(500)) * time.Millisecond)
		if err := cmd.Process.Kill(); err != nil { // SIGKILL
			t.Fatal(err)
		}
		err := cmd.Wait()
		var exit *exec.ExitError
		if !errors.As(err, &exit) || exit.ExitCode() != -1 {
			t.Fatalf("child %d ended by itself (%v) before the kill:\n%s", i, err, out.String())
		}
		st, err := projections.Status(ctx, pool, store, p.name)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("killed child %d: checkpoint %s, %d events processed, lag %d", i, st.Position, st.EventsProcessed, st.LagEvents)
	}
	var byChildren int
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM `+p.table()).Scan(&byChildren); err != nil {
		t.Fatal(err)
	}
	if byChildren == 0 {
		t.Fatal("the children applied nothing before being killed: the test proves nothing")
	}

	stopOnce()
	start(t, projections.NewRunner(pool, store, p, testOptions(t, "parent")))
	waitCaughtUp(t, pool, p.name, last, 20*time.Second)
	assertAppliedOnce(t, pool, store, p)
	t.Logf("%d events applied by the children, the rest by the parent", byChildren)
}

// headOf is the feed's head, for tests that wait for it.
func headOf(t testing.TB, feed eventstore.FeedReader) eventstore.Position {
	t.Helper()
	h, err := feed.Head(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return h
}
