package main

import (
	"os"
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
	} `yaml:"services"`
	Volumes map[string]any `yaml:"volumes"`
}

// TestComposeFileRunsTheServiceOnKurrentDB checks docker-compose.yml, since
// `docker compose config` cannot run here: its services, their health checks
// and start order, and the service's configuration for each event store.
func TestComposeFileRunsTheServiceOnKurrentDB(t *testing.T) {
	t.Parallel()
	b, err := os.ReadFile("../../docker-compose.yml")
	if err != nil {
		t.Fatal(err)
	}
	var c compose
	if err := yaml.Unmarshal(b, &c); err != nil {
		t.Fatalf("docker-compose.yml: %v", err)
	}
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
