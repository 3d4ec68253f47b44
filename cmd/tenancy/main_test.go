package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/tenancyhq/tenancy/internal/auth"
	"github.com/tenancyhq/tenancy/internal/natsserver"
	"github.com/tenancyhq/tenancy/internal/pgtest"
)

// runMainEnv makes the test binary run the tenancy command itself: tests
// start "the binary" as a user would, without building it again.
const runMainEnv = "TENANCY_TEST_RUN_MAIN"

func TestMain(m *testing.M) {
	if os.Getenv(runMainEnv) == "1" {
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// tenancyBinary returns a folder holding an executable "tenancy" that is
// this test binary running main: put it first on PATH, or run it directly.
func tenancyBinary(t testing.TB) string {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	script := "#!/bin/sh\n" + runMainEnv + "=1 exec '" + self + "' \"$@\"\n"
	if err := os.WriteFile(filepath.Join(dir, "tenancy"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// environ is the environment of a started tenancy: the test's own without
// the service's variables, plus vars.
func environ(vars ...string) []string {
	var out []string
	for _, kv := range os.Environ() {
		name, _, _ := strings.Cut(kv, "=")
		switch name {
		case "DATABASE_URL", "DATABASE_READ_URL", "EVENTSTORE_URL", "NATS_URL", "NATS_LISTEN", "NATS_STREAM_REPLICAS", "HTTP_ADDR", "DATA_DIR", "TENANCY_MASTER_KEY",
			"JWT_SECRET", "JWT_JWKS_URL", "JWT_ISSUER", "JWT_AUDIENCE", "LOG_FORMAT", "OTEL_EXPORTER_OTLP_ENDPOINT":
			continue
		}
		out = append(out, kv)
	}
	return append(out, vars...)
}

// TestServeRefusesAMasterKeyThatDoesNotFitTheSealedData starts the binary
// on one database twice, with two master keys: the second start stops with
// a message naming the key it needs and where it looks, instead of serving
// 500s on every personal field. Started without a key where the data folder
// is gone, it refuses to make one.
func TestServeRefusesAMasterKeyThatDoesNotFitTheSealedData(t *testing.T) {
	t.Parallel()
	bin := filepath.Join(tenancyBinary(t), "tenancy")
	db := pgtest.NewDatabase(t)
	secret := strings.Repeat("m", 40)
	base := []string{"DATABASE_URL=" + db, "NATS_URL=" + natsserver.StartTest(t), "JWT_SECRET=" + secret, "LOG_FORMAT=json", "HTTP_ADDR=127.0.0.1:0"}
	key := func() string {
		raw := make([]byte, 32)
		_, _ = rand.Read(raw)
		return base64.StdEncoding.EncodeToString(raw)
	}
	keyA, keyB := key(), key()

	// First start: serve, create a tenant with a contact (its key is
	// sealed with key A), stop.
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	first := exec.CommandContext(ctx, bin, "serve", "--data-dir", t.TempDir())
	first.Env = environ(append(base, "TENANCY_MASTER_KEY="+keyA)...)
	stderr, err := first.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := first.Start(); err != nil {
		t.Fatal(err)
	}
	api := ""
	lines := bufio.NewScanner(stderr)
	var seen bytes.Buffer
	for api == "" && lines.Scan() {
		seen.WriteString(lines.Text() + "\n")
		var rec map[string]any
		if json.Unmarshal(lines.Bytes(), &rec) == nil && rec["msg"] == "tenancy is serving" {
			api, _ = rec["api"].(string)
		}
	}
	if api == "" {
		_ = first.Process.Kill()
		t.Fatalf("serve did not start:\n%s", seen.String())
	}
	go func() { _, _ = io.Copy(io.Discard, stderr) }()
	tok, err := auth.Mint([]byte(secret), "admin", []string{auth.ScopeAdmin}, nil, time.Hour, "", "")
	if err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest("POST", api, strings.NewReader(`{"name": "Sealed Co", "edition": "free", "region": "us-east-1",
		"contacts": [{"role": "primary", "name": "Ada", "email": "ada@example.com"}]}`))
	req.Header.Set("Authorization", "Bearer "+tok)
	req.Header.Set("Content-Type", "application/json")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != 201 {
		t.Fatalf("create: %d", res.StatusCode)
	}
	_ = first.Process.Signal(syscall.SIGTERM)
	if err := first.Wait(); err != nil {
		t.Fatalf("first serve: %v", err)
	}

	for _, tc := range []struct {
		name  string
		env   []string
		wants []string
	}{
		{"another TENANCY_MASTER_KEY", []string{"TENANCY_MASTER_KEY=" + keyB}, []string{"wrong master key", "TENANCY_MASTER_KEY does not unwrap", "1 tenant keys"}},
		{"no key and no key file", nil, []string{"no master key", "TENANCY_MASTER_KEY is unset", "master.key does not exist"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			cmd := exec.CommandContext(ctx, bin, "serve", "--data-dir", dir)
			cmd.Env = environ(append(base, tc.env...)...)
			var out bytes.Buffer
			cmd.Stdout, cmd.Stderr = &out, &out
			err := cmd.Run()
			var ee *exec.ExitError
			if !errors.As(err, &ee) || ee.ExitCode() == 0 {
				t.Fatalf("serve started (%v):\n%s", err, out.String())
			}
			t.Logf("serve said:\n%s", out.String())
			for _, want := range tc.wants {
				if !strings.Contains(out.String(), want) {
					t.Errorf("output lacks %q:\n%s", want, out.String())
				}
			}
			if _, err := os.Stat(filepath.Join(dir, "master.key")); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("a master key was written: %v", err)
			}
		})
	}
}

// TestServeOnATakenPortCreatesNothing: serve on a taken API port (or a
// taken embedded NATS port) says so and exits before it creates the
// database or writes a secret, token or key.
func TestServeOnATakenPortCreatesNothing(t *testing.T) {
	t.Parallel()
	bin := filepath.Join(tenancyBinary(t), "tenancy")
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	u, err := url.Parse(pgtest.NewDatabase(t))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		env  []string
		want string
	}{
		{"API", []string{"HTTP_ADDR=" + taken.Addr().String()}, "set HTTP_ADDR"},
		{"embedded NATS", []string{"HTTP_ADDR=127.0.0.1:0", "NATS_LISTEN=" + taken.Addr().String()}, "set NATS_URL"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			db := *u
			db.Path = "/tenancy_never_" + strings.ReplaceAll(uuid.NewString()[:8], "-", "")
			dir := t.TempDir()
			cmd := exec.Command(bin, "serve", "--data-dir", dir)
			cmd.Env = environ(append(tc.env, "DATABASE_URL="+db.String())...)
			out, err := cmd.CombinedOutput()
			if err == nil || !strings.Contains(string(out), taken.Addr().String()) || !strings.Contains(string(out), tc.want) {
				t.Fatalf("serve on a taken port: %v\n%s", err, out)
			}
			if entries, _ := os.ReadDir(dir); len(entries) > 0 {
				t.Errorf("the data folder holds %v", entries)
			}
			conn, err := pgx.Connect(context.Background(), u.String())
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close(context.Background())
			var exists bool
			name := strings.TrimPrefix(db.Path, "/")
			if err := conn.QueryRow(context.Background(), `SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)`, name).Scan(&exists); err != nil {
				t.Fatal(err)
			}
			if exists {
				t.Errorf("database %s was created", name)
				_, _ = conn.Exec(context.Background(), "DROP DATABASE "+pgx.Identifier{name}.Sanitize())
			}
		})
	}
}
