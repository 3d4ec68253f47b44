package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

func readme(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// readmeBlock returns the first ```sh block after the heading.
func readmeBlock(t *testing.T, heading string) string {
	t.Helper()
	_, rest, ok := strings.Cut(readme(t), heading+"\n")
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

// readmeCommand is one command the README shows.
type readmeCommand struct {
	heading string // the ## heading it is under
	line    string // the command (continuations joined)
	// output is what a transcript shows after it ("$ " blocks only).
	output []string
}

// readmeCommands are every command the README shows: each line of its ```sh
// blocks (continuations joined, comments and blank lines left out), and
// each "$ " line of its transcripts with the output shown after it.
func readmeCommands(t *testing.T) []readmeCommand {
	t.Helper()
	var out []readmeCommand
	heading, fence, pending := "", "", ""
	for _, line := range strings.Split(readme(t), "\n") {
		if fence == "" {
			if strings.HasPrefix(line, "## ") {
				heading = line
			}
			if strings.HasPrefix(line, "```") {
				fence = strings.TrimPrefix(line, "```")
				if fence == "" {
					fence = "transcript"
				}
			}
			continue
		}
		if strings.HasPrefix(line, "```") {
			fence = ""
			continue
		}
		switch fence {
		case "sh":
			trimmed := strings.TrimSpace(line)
			if pending == "" && (trimmed == "" || strings.HasPrefix(trimmed, "#")) {
				continue
			}
			if strings.HasSuffix(trimmed, `\`) {
				pending += strings.TrimSuffix(trimmed, `\`) + " "
				continue
			}
			out = append(out, readmeCommand{heading: heading, line: pending + trimmed})
			pending = ""
		case "transcript":
			if cmd, ok := strings.CutPrefix(line, "$ "); ok {
				out = append(out, readmeCommand{heading: heading, line: cmd})
			} else if n := len(out); n > 0 && out[n-1].heading == heading && strings.TrimSpace(line) != "" {
				out[n-1].output = append(out[n-1].output, line)
			}
		}
	}
	return out
}

// readmeCoverage says how the tests cover a README command: "run" (by
// TestReadmeCommandsWork), another test that runs it, or why it cannot run
// here. "" means nothing covers it.
func readmeCoverage(c readmeCommand) string {
	switch {
	case c.heading == "## Try it":
		return "run: the Try it block, twice (TestReadmeCommandsWork)"
	case c.line == "make run":
		return "TestMakeRunPrefersTheEmbeddedNATSOverAnotherServer runs scripts/run.sh"
	case c.line == "make test":
		return "it is the test suite itself"
	case c.line == "make chaos":
		return "it is chaos.TestChaos with CHAOS=full; make test runs its smoke schedule"
	case strings.HasPrefix(c.line, "docker compose exec tenancy "):
		return "run: the command in the container, with the container's environment"
	case strings.Contains(c.line, "docker compose"):
		return "no Docker here: compose_test.go checks the file"
	case strings.HasPrefix(c.line, "TENANCY_TEST_ESDB_URL="):
		return "needs a real KurrentDB: the same suite runs on the esdbtest server"
	case strings.HasPrefix(c.line, "tenancy "), strings.HasPrefix(c.line, "psql "):
		return "run"
	}
	return ""
}

// TestReadmeShowsNoCommandTheTestsSkip: every command the README shows is
// run by a test, or has a stated reason it cannot run here.
func TestReadmeShowsNoCommandTheTestsSkip(t *testing.T) {
	t.Parallel()
	cmds := readmeCommands(t)
	if len(cmds) < 20 {
		t.Fatalf("found only %d README commands: is the parser still right?", len(cmds))
	}
	for _, c := range cmds {
		if readmeCoverage(c) == "" {
			t.Errorf("README %s shows %q, which no test runs: run it in TestReadmeCommandsWork, or say in readmeCoverage why it cannot run", c.heading, c.line)
		}
	}
}

// readmeEnv is a shell session like a developer's: the checkout's folder
// with data/ as serve leaves it, tenancy on the PATH, the service's
// database and NATS in the environment.
type readmeEnv struct {
	t    *testing.T
	dir  string
	env  []string
	base string // the service's address, for localhost:8000
}

// run runs a README command with bash in the session and returns what it
// printed (stdout and stderr).
func (e *readmeEnv) run(ctx context.Context, script string) (string, error) {
	cmd := exec.CommandContext(ctx, "bash", "-uo", "pipefail", "-c", strings.ReplaceAll(script, "localhost:8000", e.base))
	cmd.Dir, cmd.Env = e.dir, e.env
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return out.String(), err
}

// TestReadmeCommandsWork runs the README's commands, as written, against
// the real service (only the address is swapped for the test's, and the
// transcripts' example ids for the test's tenant): "Try it" twice (it must
// be repeatable), then every tenancy and psql command in the order shown.
func TestReadmeCommandsWork(t *testing.T) {
	t.Parallel()
	if _, err := exec.LookPath("curl"); err != nil {
		t.Fatalf("curl is needed to run the README's examples: %v", err)
	}
	if _, err := exec.LookPath("psql"); err != nil {
		t.Fatalf("psql is needed to run the README's drift example: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	// The folder serve leaves: data/ with the development secret and the
	// admin token (the service uses the same master key there).
	dir := t.TempDir()
	srv := serve(t, filepath.Join(dir, "data"))
	data, db, natsURL, tok := srv.data, srv.db, srv.natsURL, srv.token
	e := &readmeEnv{t: t, dir: dir, base: srv.addr, env: environ("PATH="+tenancyBinary(t)+":"+os.Getenv("PATH"),
		"DATABASE_URL="+db, "NATS_URL="+natsURL, "DATA_DIR="+data, "LOG_FORMAT=text")}
	cctx, ccancel := context.WithTimeout(ctx, 3*time.Minute)
	defer ccancel()

	// Try it, twice.
	var id string
	for run := 1; run <= 2; run++ {
		out, err := e.run(cctx, "set -e\n"+readmeBlock(t, "## Try it"))
		if err != nil {
			t.Fatalf("Try it, run %d: %v\n%s", run, err, out)
		}
		for _, want := range []string{
			`"status":"PROVISIONING"`, `"external_id":"ORG-`, `"actor":"system:timer"`, `"status":"SUSPENDED"`,
			`"status":"ACTIVE"`, `invalid-transition`, `"allowed_commands"`, `"edition":"professional"`,
			`"decision":`, `"items":[`, `TenantCreated`, `Idempotent-Replayed: true`,
			`"region":"us-east-1"`, `"allowed":`, `"required_upgrade":`,
		} {
			if !strings.Contains(out, want) {
				t.Errorf("Try it, run %d: the output lacks %s:\n%s", run, want, out)
			}
		}
		id = regexp.MustCompile(`(?m)^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$`).FindString(out)
	}
	if id == "" {
		t.Fatal("Try it printed no tenant id")
	}
	ext := e.external(id, tok)

	// Every other command, in the README's order; the tails together.
	var tails []string
	for _, c := range readmeCommands(t) {
		if c.heading == "## Try it" || !strings.HasPrefix(readmeCoverage(c), "run") {
			continue
		}
		line := strings.TrimPrefix(c.line, "docker compose exec tenancy ")
		line = strings.NewReplacer("<id>", id, "ORG-C4096449", ext).Replace(line)
		if strings.HasPrefix(line, "tenancy events tail") {
			tails = append(tails, line)
			continue
		}
		out, err := e.run(cctx, line)
		t.Logf("$ %s\n%s", line, out)
		e.check(c, line, out, err, tok)
	}
	e.tail(cctx, tails, id, tok)
}

// external is the tenant's external id.
func (e *readmeEnv) external(id, tok string) string {
	req, _ := http.NewRequest("GET", "http://"+e.base+"/api/v1/tenants/"+id, nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer res.Body.Close()
	var tn struct {
		ExternalID string `json:"external_id"`
	}
	if err := json.NewDecoder(res.Body).Decode(&tn); err != nil || tn.ExternalID == "" {
		e.t.Fatalf("tenant %s: %v", id, err)
	}
	return tn.ExternalID
}

// check holds a command's output to what the README says of it.
func (e *readmeEnv) check(c readmeCommand, line, out string, err error, admin string) {
	t := e.t
	t.Helper()
	switch {
	case strings.HasPrefix(line, "tenancy token"):
		if err != nil {
			t.Errorf("%s: %v\n%s", line, err, out)
			return
		}
		tok := strings.TrimSpace(out)
		req, _ := http.NewRequest("GET", "http://"+e.base+"/api/v1/tenants", nil)
		req.Header.Set("Authorization", "Bearer "+tok)
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != 200 {
			t.Errorf("%s: its token answers %d", line, res.StatusCode)
		}
		return
	case strings.HasPrefix(line, "tenancy projections status bogus"):
		// an unknown projection: exit 2 naming the known ones, as shown.
		for _, want := range []string{`no projection "bogus"`, "read-model, scheduler, nats-publisher", "exit 2"} {
			if !strings.Contains(out, want) {
				t.Errorf("%s: the output lacks %q:\n%s", line, want, out)
			}
		}
		return
	case strings.HasSuffix(line, `echo "exit $?"`):
		// verify after the drift: differences, exit 1, as shown.
		for _, want := range []string{"plan_tier: expected professional, found free", "read model differs", "exit 1"} {
			if !strings.Contains(out, want) {
				t.Errorf("%s: the output lacks %q:\n%s", line, want, out)
			}
		}
		return
	}
	if err != nil {
		t.Errorf("%s: %v\n%s", line, err, out)
		return
	}
	// The transcript's output, loosely: each line shown starts with a word
	// the real output has.
	for _, shown := range c.output {
		f := strings.Fields(shown)
		if len(f) == 0 || f[0] == "{" || f[0] == "state" {
			continue
		}
		if !strings.Contains(out, f[0]) {
			t.Errorf("%s: the README shows %q, the output has no %q:\n%s", line, shown, f[0], out)
		}
	}
}

// tail runs the README's tails together, makes an event they all follow,
// and checks that each printed it, then stops them as Ctrl-C would.
func (e *readmeEnv) tail(ctx context.Context, lines []string, id, tok string) {
	t := e.t
	t.Helper()
	if len(lines) < 3 {
		t.Fatalf("the README shows %d tails, want at least 3", len(lines))
	}
	type running struct {
		line string
		cmd  *exec.Cmd
		mu   sync.Mutex
		out  bytes.Buffer
		up   chan struct{}
	}
	var all []*running
	for _, line := range lines {
		r := &running{line: line, up: make(chan struct{})}
		r.cmd = exec.CommandContext(ctx, "bash", "-c", "exec "+line)
		r.cmd.Dir, r.cmd.Env = e.dir, e.env
		stdout, _ := r.cmd.StdoutPipe()
		stderr, _ := r.cmd.StderrPipe()
		if err := r.cmd.Start(); err != nil {
			t.Fatal(err)
		}
		go func() {
			sc := bufio.NewScanner(stderr)
			for sc.Scan() {
				if strings.Contains(sc.Text(), "tailing tenant events") {
					close(r.up)
				}
			}
		}()
		go func() {
			sc := bufio.NewScanner(stdout)
			for sc.Scan() {
				r.mu.Lock()
				r.out.WriteString(sc.Text() + "\n")
				r.mu.Unlock()
			}
		}()
		all = append(all, r)
	}
	for _, r := range all {
		select {
		case <-r.up:
		case <-time.After(30 * time.Second):
			t.Fatalf("%s did not start", r.line)
		}
	}
	req, _ := http.NewRequest("POST", "http://"+e.base+"/api/v1/tenants/"+id+"/suspend", strings.NewReader(`{"reason": "abuse_detected"}`))
	req.Header.Set("Authorization", "Bearer "+tok)
	req.Header.Set("Content-Type", "application/json")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != 200 {
		t.Fatalf("suspend: %d", res.StatusCode)
	}
	deadline := time.Now().Add(30 * time.Second)
	for _, r := range all {
		for {
			r.mu.Lock()
			got := r.out.String()
			r.mu.Unlock()
			if strings.Contains(got, "TenantSuspended") {
				t.Logf("$ %s\n%s", r.line, got)
				break
			}
			if time.Now().After(deadline) {
				t.Errorf("%s printed no TenantSuspended:\n%s", r.line, got)
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
		_ = r.cmd.Process.Signal(syscall.SIGINT)
		if err := r.cmd.Wait(); err != nil {
			t.Errorf("%s after Ctrl-C: %v", r.line, err)
		}
	}
}

// TestMakeRunPrefersTheEmbeddedNATSOverAnotherServer runs scripts/run.sh
// (make run) with a stand-in go that builds a stand-in tenancy, which
// prints what it was started with: run.sh says it builds before building,
// and without NATS_URL it starts the embedded NATS on a free port rather
// than publish to whatever listens on 4222; with NATS_URL it uses that.
func TestMakeRunPrefersTheEmbeddedNATSOverAnotherServer(t *testing.T) {
	t.Parallel()
	root := t.TempDir()
	script, err := os.ReadFile("../../scripts/run.sh")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(root, "scripts"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "scripts", "run.sh"), script, 0o755); err != nil {
		t.Fatal(err)
	}
	fakes := t.TempDir()
	goScript := `#!/bin/sh
echo "go $*"
cat > bin/tenancy <<'EOF'
#!/bin/sh
echo "tenancy $* NATS_URL=${NATS_URL:-} NATS_LISTEN=${NATS_LISTEN:-}"
EOF
chmod +x bin/tenancy
`
	if err := os.WriteFile(filepath.Join(fakes, "go"), []byte(goScript), 0o755); err != nil {
		t.Fatal(err)
	}
	run := func(vars ...string) string {
		cmd := exec.Command("bash", filepath.Join(root, "scripts", "run.sh"))
		cmd.Env = environ(append([]string{"PATH=" + fakes + ":" + os.Getenv("PATH"), "DATABASE_URL=postgres://postgres@127.0.0.1:5432/tenancy"}, vars...)...)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("run.sh: %v\n%s", err, out)
		}
		return string(out)
	}
	taken := false
	if c, err := net.DialTimeout("tcp", "127.0.0.1:4222", time.Second); err == nil {
		c.Close()
		taken = true
	}

	first := run()
	if i, j := strings.Index(first, "first build downloads modules"), strings.Index(first, "go build"); i < 0 || j < 0 || i > j {
		t.Errorf("run.sh does not say it builds before the first build:\n%s", first)
	}
	m := regexp.MustCompile(`NATS_URL= NATS_LISTEN=127\.0\.0\.1:(\d+)`).FindStringSubmatch(first)
	if m == nil {
		t.Fatalf("run.sh did not start serve with the embedded NATS:\n%s", first)
	}
	if taken && (m[1] == "4222" || !strings.Contains(first, "127.0.0.1:4222 is taken")) {
		t.Errorf("with 4222 taken, run.sh chose %s and said:\n%s", m[1], first)
	}
	if !strings.Contains(first, "NATS: embedded, on 127.0.0.1:"+m[1]) {
		t.Errorf("run.sh does not say which NATS:\n%s", first)
	}

	again := run("NATS_URL=nats://127.0.0.1:4222")
	if !strings.Contains(again, "NATS_URL=nats://127.0.0.1:4222 NATS_LISTEN=") || !strings.Contains(again, "NATS: nats://127.0.0.1:4222 (NATS_URL)") {
		t.Errorf("with NATS_URL set, run.sh said:\n%s", again)
	}
	if strings.Contains(again, "first build") {
		t.Errorf("the second run says it is the first build:\n%s", again)
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
	for _, c := range []string{"serve", "project", "migrate", "version", "replay", "verify", "projections", "token", "events", "healthcheck", "bench"} {
		if !strings.Contains(out.String(), c) {
			t.Errorf("--help does not mention %s", c)
		}
	}
}
