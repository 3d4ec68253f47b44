package main

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tenancyhq/tenancy/internal/app"
	"github.com/tenancyhq/tenancy/internal/auth"
	"github.com/tenancyhq/tenancy/internal/natsserver"
	"github.com/tenancyhq/tenancy/internal/pgtest"
)

// readmeBlock returns the first ```sh block after the heading.
func readmeBlock(t *testing.T, heading string) string {
	t.Helper()
	b, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(b), heading+"\n")
	if !ok {
		t.Fatalf("README has no %q", heading)
	}
	_, rest, ok = strings.Cut(rest, "```sh\n")
	if !ok {
		t.Fatalf("no sh block under %q", heading)
	}
	block, _, _ := strings.Cut(rest, "```")
	return block
}

// TestReadmeExamplesWork runs the README's curl examples, as written, against
// the real service (only the address is swapped for the test's).
func TestReadmeExamplesWork(t *testing.T) {
	t.Parallel()
	if _, err := exec.LookPath("curl"); err != nil {
		t.Fatalf("curl is needed to run the README's examples: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	// The README reads the admin token serve writes to data/admin.token: the
	// script runs in a folder holding one for this test's secret.
	dir := t.TempDir()
	secret := []byte(strings.Repeat("k", 40))
	v, err := auth.NewVerifier(ctx, auth.Config{Secret: secret})
	if err != nil {
		t.Fatal(err)
	}
	tok, err := auth.Mint(secret, "admin", []string{auth.ScopeAdmin}, nil, time.Hour, "", "")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(dir, "data"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "data", "admin.token"), []byte(tok+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	a, err := app.Open(ctx, app.Config{DatabaseURL: pgtest.NewDatabase(t), HTTPAddr: "127.0.0.1:0", Migrate: true, Projections: true,
		DataDir: t.TempDir(), Auth: v, NATSURL: natsserver.StartTest(t)})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("run: %v", err)
		}
		a.Close()
	}()

	script := strings.ReplaceAll(readmeBlock(t, "## Try it"), "localhost:8000", a.Addr())
	cctx, ccancel := context.WithTimeout(ctx, 60*time.Second)
	defer ccancel()
	cmd := exec.CommandContext(cctx, "bash", "-euo", "pipefail", "-c", script)
	cmd.Dir = dir
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		t.Fatalf("README examples failed: %v\n%s", err, out.String())
	}
	for _, want := range []string{
		`"status":"PROVISIONING"`, `"external_id":"ORG-`, `"actor":"system:timer"`, `"status":"SUSPENDED"`,
		`"status":"ACTIVE"`, `invalid-transition`, `"allowed_commands"`, `"edition":"professional"`,
		`"decision":`, `"items":[`, `TenantCreated`, `Idempotent-Replayed: true`,
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("README examples' output lacks %s:\n%s", want, out.String())
		}
	}
}

func TestHelpNamesEveryCommand(t *testing.T) {
	t.Parallel()
	var out bytes.Buffer
	root := newRoot(&out, &out)
	root.SetArgs([]string{"--help"})
	if err := root.Execute(); err != nil {
		t.Fatal(err)
	}
	for _, c := range []string{"serve", "project", "migrate", "version", "replay", "verify", "projections", "token", "events"} {
		if !strings.Contains(out.String(), c) {
			t.Errorf("--help does not mention %s", c)
		}
	}
}
