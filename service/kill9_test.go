package service_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tenancyhq/tenancy/internal/auth"
	"github.com/tenancyhq/tenancy/internal/pgtest"
	"github.com/tenancyhq/tenancy/service"
)

// The child service's settings, passed through its environment.
const (
	childDBEnv   = "TENANCY_TEST_CHILD_DATABASE_URL"
	childAddrEnv = "TENANCY_TEST_CHILD_ADDR"
	childDirEnv  = "TENANCY_TEST_CHILD_DATA_DIR"
)

// TestServiceChildProcess is the service as a child process of
// TestKilledServiceRetryIsAnsweredAtOnce; it does nothing in a normal run.
func TestServiceChildProcess(t *testing.T) {
	dbURL := os.Getenv(childDBEnv)
	if dbURL == "" {
		return
	}
	ctx := context.Background()
	v, err := auth.NewVerifier(ctx, auth.Config{Secret: testSecret, Issuer: testIssuer, Audience: testAud})
	if err != nil {
		t.Fatal(err)
	}
	a, err := service.Open(ctx, service.Config{DatabaseURL: dbURL, HTTPAddr: os.Getenv(childAddrEnv), Migrate: true,
		DataDir: os.Getenv(childDirEnv), Auth: v, Version: "child"})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	if err := a.Run(ctx); err != nil {
		t.Fatal(err)
	}
}

// TestKilledServiceRetryIsAnsweredAtOnce SIGKILLs the service while
// creates with Idempotency-Keys are in flight, starts it again, and
// retries every request with its key: each retry is answered at once (not
// blocked by the dead process's claim) and every create is applied exactly
// once.
func TestKilledServiceRetryIsAnsweredAtOnce(t *testing.T) {
	t.Parallel()
	dbURL := pgtest.NewDatabase(t)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	dataDir := t.TempDir()
	base := "http://" + addr
	client := &http.Client{Timeout: 10 * time.Second}
	admin := token(t, "ops", nil, auth.ScopeAdmin)

	startChild := func() *exec.Cmd {
		t.Helper()
		var out bytes.Buffer
		cmd := exec.Command(os.Args[0], "-test.run=^TestServiceChildProcess$", "-test.count=1", "-test.timeout=5m")
		cmd.Env = append(os.Environ(), childDBEnv+"="+dbURL, childAddrEnv+"="+addr, childDirEnv+"="+dataDir)
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(30 * time.Second)
		for {
			res, err := client.Get(base + "/health/live")
			if err == nil {
				res.Body.Close()
				if res.StatusCode == http.StatusOK {
					return cmd
				}
			}
			if time.Now().After(deadline) {
				_ = cmd.Process.Kill()
				t.Fatalf("the child service did not start: %v\n%s", err, out.String())
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	create := func(i int) (int, error) {
		off := false
		body := map[string]any{"name": fmt.Sprintf("Kill9 %05d", i), "edition": "free", "region": "eu-west-1", "trial": &off}
		j, err := json.Marshal(body)
		if err != nil {
			return 0, err
		}
		req, err := http.NewRequest(http.MethodPost, base+"/api/v1/tenants", bytes.NewReader(j))
		if err != nil {
			return 0, err
		}
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", "Bearer "+admin)
		req.Header.Set("Idempotency-Key", fmt.Sprintf("kill9-%05d", i))
		res, err := client.Do(req)
		if err != nil {
			return 0, err
		}
		res.Body.Close()
		return res.StatusCode, nil
	}

	const rounds, workers = 3, 8
	var next atomic.Int64
	var inFlightAtKill atomic.Int64
	for round := range rounds {
		child := startChild()
		stop := make(chan struct{})
		var wg sync.WaitGroup
		for range workers {
			wg.Go(func() {
				for {
					select {
					case <-stop:
						return
					default:
					}
					i := int(next.Add(1))
					if _, err := create(i); err != nil {
						inFlightAtKill.Add(1) // unknown outcome: the retry below settles it
						return
					}
				}
			})
		}
		time.Sleep(time.Duration(300+200*round) * time.Millisecond)
		if err := child.Process.Kill(); err != nil { // SIGKILL, mid-request
			t.Fatal(err)
		}
		var exit *exec.ExitError
		if err := child.Wait(); !errors.As(err, &exit) {
			t.Fatalf("round %d: the child ended by itself: %v", round, err)
		}
		close(stop)
		wg.Wait()
	}
	if inFlightAtKill.Load() == 0 {
		t.Fatal("no request was in flight at a kill: the test proved nothing")
	}

	// Every request again, with its key: answered at once, applied once.
	child := startChild()
	defer func() { _ = child.Process.Kill(); _ = child.Wait() }()
	sent := int(next.Load())
	var slowest time.Duration
	for i := 1; i <= sent; i++ {
		began := time.Now()
		status, err := create(i)
		took := time.Since(began)
		slowest = max(slowest, took)
		if err != nil || status != http.StatusCreated || took > 2*time.Second {
			t.Fatalf("retry of request %d: %d %v after %s, want 201 within 2 s", i, status, err, took)
		}
	}
	var tenants, names int
	conn, err := pgx.Connect(context.Background(), dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	if err := conn.QueryRow(context.Background(),
		`SELECT count(*), count(DISTINCT data->>'name') FROM events WHERE event_type = 'TenantCreated'`).Scan(&tenants, &names); err != nil {
		t.Fatal(err)
	}
	if tenants != sent || names != sent {
		t.Fatalf("%d requests made %d tenants with %d distinct names, want %d of each (each applied exactly once)", sent, tenants, names, sent)
	}
	t.Logf("%d creates over %d kills, %d in flight at a kill; slowest retry %s", sent, rounds, inFlightAtKill.Load(), slowest)
}
