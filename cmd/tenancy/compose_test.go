package main

import (
	"bufio"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"go.yaml.in/yaml/v4"
)

// compose is the part of docker-compose.yml the test reads.
type compose struct {
	Services map[string]struct {
		Image       string            `yaml:"image"`
		Build       any               `yaml:"build"`
		Profiles    []string          `yaml:"profiles"`
		Environment map[string]string `yaml:"environment"`
		Healthcheck *struct {
			Test []string `yaml:"test"`
		} `yaml:"healthcheck"`
		DependsOn map[string]struct {
			Condition string `yaml:"condition"`
		} `yaml:"depends_on"`
		Volumes []string `yaml:"volumes"`
		Ports   []string `yaml:"ports"`
	} `yaml:"services"`
	Volumes map[string]any `yaml:"volumes"`
}

// TestComposeFileRunsTheServiceOnKurrentDB checks docker-compose.yml, since
// `docker compose config` cannot run here: its services, their health checks
// and start order, and the service's configuration for each event store.
func TestComposeFileRunsTheServiceOnKurrentDB(t *testing.T) {
	t.Parallel()
	c := readCompose(t)
	for _, name := range []string{"postgres", "nats", "kurrentdb", "tenancy", "tenancy-pg", "jaeger"} {
		s, ok := c.Services[name]
		if !ok {
			t.Fatalf("no service %s", name)
		}
		if s.Healthcheck == nil || len(s.Healthcheck.Test) == 0 {
			t.Errorf("service %s has no health check", name)
		}
		for _, v := range s.Volumes {
			if vol, _, _ := strings.Cut(v, ":"); !strings.HasPrefix(vol, ".") && !strings.HasPrefix(vol, "/") {
				if _, ok := c.Volumes[vol]; !ok {
					t.Errorf("service %s uses undeclared volume %s", name, vol)
				}
			}
		}
	}
	k := c.Services["kurrentdb"]
	if !strings.Contains(k.Image, "kurrentdb") || k.Environment["KURRENTDB_INSECURE"] != "true" || k.Environment["KURRENTDB_CLUSTER_SIZE"] != "1" {
		t.Errorf("kurrentdb: image %q, environment %v", k.Image, k.Environment)
	}
	svc := c.Services["tenancy"]
	if svc.Build == nil {
		t.Error("tenancy is not built from the Dockerfile")
	}
	if got := svc.Environment["EVENTSTORE_URL"]; !strings.HasPrefix(got, "esdb://kurrentdb:2113") || !strings.Contains(got, "tls=false") {
		t.Errorf("tenancy EVENTSTORE_URL = %q", got)
	}
	for _, v := range []string{"DATABASE_URL", "NATS_URL", "HTTP_ADDR", "DATA_DIR"} {
		if svc.Environment[v] == "" {
			t.Errorf("tenancy sets no %s", v)
		}
	}
	for _, dep := range []string{"postgres", "nats", "kurrentdb"} {
		if svc.DependsOn[dep].Condition != "service_healthy" {
			t.Errorf("tenancy starts before %s is healthy", dep)
		}
	}
	pg := c.Services["tenancy-pg"]
	if _, ok := pg.Environment["EVENTSTORE_URL"]; ok || !slices.Contains(pg.Profiles, "postgres-store") {
		t.Errorf("tenancy-pg: environment %v, profiles %v: want the Postgres store alone, in its own profile", pg.Environment, pg.Profiles)
	}
	if _, ok := pg.DependsOn["kurrentdb"]; ok {
		t.Error("tenancy-pg depends on kurrentdb")
	}
	if !slices.Contains(c.Services["jaeger"].Profiles, "tracing") {
		t.Error("jaeger is not in the tracing profile")
	}
}

func readCompose(t *testing.T) compose {
	t.Helper()
	b, err := os.ReadFile("../../docker-compose.yml")
	if err != nil {
		t.Fatal(err)
	}
	var c compose
	if err := yaml.Unmarshal(b, &c); err != nil {
		t.Fatalf("docker-compose.yml: %v", err)
	}
	return c
}

// imageKind is what an image holds to run a health check with.
type imageKind struct {
	name string
	// programs are the commands on its PATH (a shell among them or not).
	programs []string
}

var (
	busybox = []string{"sh", "wget", "nc", "cat", "ls", "test", "["}
	// kindScratch and kindDistroless hold no program but what is copied in.
	kindScratch    = imageKind{name: "scratch"}
	kindDistroless = imageKind{name: "distroless"}
)

// kindOf says what an image of docker-compose.yml is built on. An image
// the table does not know fails the test: add it, with what it holds.
func kindOf(t *testing.T, image string) imageKind {
	t.Helper()
	repo, tag, _ := strings.Cut(image, ":")
	switch {
	case repo == "nats" && strings.Contains(tag, "alpine"):
		return imageKind{"alpine", append([]string{"nats-server"}, busybox...)}
	case repo == "nats": // the default tags are scratch images
		return imageKind{"scratch", []string{"nats-server"}}
	case repo == "postgres" && strings.Contains(tag, "alpine"):
		return imageKind{"alpine", append([]string{"pg_isready", "psql"}, busybox...)}
	case repo == "postgres":
		return imageKind{"debian", []string{"sh", "bash", "cat", "pg_isready", "psql"}}
	case strings.HasSuffix(repo, "/kurrentdb"): // Ubuntu, with curl installed for its own HEALTHCHECK
		return imageKind{"ubuntu", []string{"sh", "bash", "cat", "curl"}}
	case repo == "jaegertracing/all-in-one" && strings.HasPrefix(tag, "1."): // alpine base since 1.3x
		return imageKind{"alpine", busybox}
	case strings.HasPrefix(repo, "gcr.io/distroless/"):
		return kindDistroless
	case repo == "scratch":
		return kindScratch
	}
	t.Fatalf("image %s: unknown kind; add it to kindOf with the programs it holds", image)
	return imageKind{}
}

// dockerfile is what the test reads of the Dockerfile's final stage.
type dockerfile struct {
	base        string
	copied      []string // destination paths
	healthcheck []string // the exec form's arguments
	env         map[string]string
}

func readDockerfile(t *testing.T) dockerfile {
	t.Helper()
	f, err := os.Open("../../Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var d dockerfile
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) == 0 || strings.HasPrefix(fields[0], "#") {
			continue
		}
		switch strings.ToUpper(fields[0]) {
		case "FROM": // a new stage: only the last one is the image
			d = dockerfile{base: fields[1], env: map[string]string{}}
		case "COPY":
			d.copied = append(d.copied, fields[len(fields)-1])
		case "ENV":
			if k, v, ok := strings.Cut(fields[1], "="); ok {
				d.env[k] = v
			}
		case "HEALTHCHECK":
			line := sc.Text()
			i := strings.Index(line, "CMD [")
			if i < 0 {
				t.Fatalf("Dockerfile HEALTHCHECK without an exec-form CMD: %s", line)
			}
			if err := yaml.Unmarshal([]byte(line[i+4:]), &d.healthcheck); err != nil {
				t.Fatalf("Dockerfile HEALTHCHECK: %v", err)
			}
		}
	}
	return d
}

// runs reports whether the image can run program: it is on the kind's
// PATH, or a file copied into the image (by absolute path, or by name in
// /usr/local/bin, which is on the PATH).
func (k imageKind) runs(program string, copied []string) bool {
	if slices.Contains(k.programs, program) {
		return true
	}
	for _, c := range copied {
		if c == program || c == "/usr/local/bin/"+program {
			return true
		}
	}
	return false
}

// shellCommands are the programs a CMD-SHELL line runs.
func shellCommands(line string) []string {
	var out []string
	for _, part := range regexp.MustCompile(`\|\||&&|;|\|`).Split(line, -1) {
		if f := strings.Fields(part); len(f) > 0 {
			out = append(out, f[0])
		}
	}
	return out
}

// TestEveryHealthCheckRunsInItsImage: each health check's program exists in
// the image it runs in (no wget in a scratch image, no shell or curl in the
// distroless one), every service waited for has a health check, and the
// service's own check follows HTTP_ADDR instead of naming an address.
func TestEveryHealthCheckRunsInItsImage(t *testing.T) {
	t.Parallel()
	c := readCompose(t)
	d := readDockerfile(t)
	built := kindOf(t, d.base)
	if built.name != kindDistroless.name {
		t.Logf("the service image is %s", built.name)
	}
	if len(d.healthcheck) == 0 || !built.runs(d.healthcheck[0], d.copied) {
		t.Errorf("Dockerfile HEALTHCHECK %v: not a program of its %s image (copied: %v)", d.healthcheck, built.name, d.copied)
	}
	for name, s := range c.Services {
		kind, copied := built, d.copied
		if s.Build == nil {
			kind, copied = kindOf(t, s.Image), nil
		}
		if s.Healthcheck == nil || len(s.Healthcheck.Test) < 2 {
			t.Errorf("service %s: no health check", name)
			continue
		}
		test := s.Healthcheck.Test
		switch test[0] {
		case "CMD":
			if !kind.runs(test[1], copied) {
				t.Errorf("service %s: health check runs %s, which its %s image does not have", name, test[1], kind.name)
			}
		case "CMD-SHELL":
			if !kind.runs("sh", copied) {
				t.Errorf("service %s: CMD-SHELL health check, but its %s image has no shell", name, kind.name)
			}
			for _, p := range shellCommands(strings.Join(test[1:], " ")) {
				if p != "exit" && !kind.runs(p, copied) {
					t.Errorf("service %s: health check runs %s, which its %s image does not have", name, p, kind.name)
				}
			}
		default:
			t.Errorf("service %s: health check %v: want CMD or CMD-SHELL", name, test)
		}
		for dep, cond := range s.DependsOn {
			ds, ok := c.Services[dep]
			if !ok {
				t.Errorf("service %s depends on %s, which the file does not define", name, dep)
				continue
			}
			if cond.Condition == "service_healthy" && (ds.Healthcheck == nil || len(ds.Healthcheck.Test) == 0) {
				t.Errorf("service %s waits for %s to be healthy, but %s has no health check", name, dep, dep)
			}
		}
	}
	// The service's checks name no address: they follow HTTP_ADDR.
	for _, check := range [][]string{d.healthcheck, c.Services["tenancy"].Healthcheck.Test, c.Services["tenancy-pg"].Healthcheck.Test} {
		if joined := strings.Join(check, " "); strings.Contains(joined, "--url") || strings.Contains(joined, "127.0.0.1") || strings.Contains(joined, "localhost") {
			t.Errorf("health check %v names an address; tenancy healthcheck follows HTTP_ADDR", check)
		}
	}
	if d.env["HTTP_ADDR"] == "" || d.env["DATA_DIR"] == "" {
		t.Errorf("the image sets HTTP_ADDR %q, DATA_DIR %q", d.env["HTTP_ADDR"], d.env["DATA_DIR"])
	}
}

// TestComposePublishesNoPortADeveloperUses: the host ports of NATS and
// PostgreSQL are a developer's own servers'; compose does not take them.
func TestComposePublishesNoPortADeveloperUses(t *testing.T) {
	t.Parallel()
	for name, s := range readCompose(t).Services {
		for _, p := range s.Ports {
			parts := strings.Split(p, ":")
			if len(parts) < 2 {
				t.Errorf("service %s publishes %q on a random host port; say which", name, p)
				continue
			}
			if host := parts[len(parts)-2]; host == "4222" || host == "5432" {
				t.Errorf("service %s publishes host port %s, which clashes with a local NATS or PostgreSQL", name, host)
			}
		}
	}
}

// envRead finds the environment variables the service's code reads.
var envRead = regexp.MustCompile(`(?:\benv|envDuration|envInt|os\.Getenv|os\.LookupEnv)\("([A-Z][A-Z0-9_]*)"`)

// serviceEnv is every variable the non-test code of the module reads.
func serviceEnv(t *testing.T) map[string]string {
	t.Helper()
	vars := map[string]string{}
	err := filepath.WalkDir("../..", func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (d.Name() == ".git" || d.Name() == "data" || d.Name() == "testdata") {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		for _, m := range envRead.FindAllStringSubmatch(string(b), -1) {
			vars[m[1]] = path
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return vars
}

// TestEveryVariableIsSpelledAsTheReadmeSays: each environment variable the
// code reads is in the README's configuration table, each one the table (or
// the compose file) sets is read by the code, so a misspelt one cannot
// pass silently.
func TestEveryVariableIsSpelledAsTheReadmeSays(t *testing.T) {
	t.Parallel()
	read := serviceEnv(t)
	if len(read) < 10 {
		t.Fatalf("found only %v: is the pattern still right?", read)
	}
	b, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, table, ok := strings.Cut(string(b), "## Configuration\n")
	if !ok {
		t.Fatal("README has no ## Configuration")
	}
	table, _, _ = strings.Cut(table, "\nCommands:")
	documented := map[string]bool{}
	for _, line := range strings.Split(table, "\n") {
		if !strings.HasPrefix(line, "| `") {
			continue
		}
		first := strings.Split(line, "|")[1]
		for _, m := range regexp.MustCompile("`([A-Z][A-Z0-9_]*)`").FindAllStringSubmatch(first, -1) {
			documented[m[1]] = true
		}
	}
	for v, file := range read {
		if !documented[v] {
			t.Errorf("%s (read in %s) is not in the README's configuration table", v, file)
		}
	}
	for v := range documented {
		if _, ok := read[v]; !ok {
			t.Errorf("the README documents %s, which no code reads", v)
		}
	}
	c := readCompose(t)
	for _, name := range []string{"tenancy", "tenancy-pg"} {
		for v := range c.Services[name].Environment {
			if _, ok := read[v]; !ok {
				t.Errorf("compose sets %s on %s, which the service does not read", v, name)
			}
		}
	}
	d := readDockerfile(t)
	for v := range d.env {
		if _, ok := read[v]; !ok {
			t.Errorf("the Dockerfile sets %s, which the service does not read", v)
		}
	}
}
