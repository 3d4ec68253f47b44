package service_test

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"log/slog"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/tenancyhq/tenancy/aggregate"
	"github.com/tenancyhq/tenancy/internal/logging"
	"github.com/tenancyhq/tenancy/internal/pgtest"
	"github.com/tenancyhq/tenancy/service"
	"github.com/tenancyhq/tenancy/tenantlog"
)

func newMasterKey(t *testing.T) string {
	t.Helper()
	raw := make([]byte, 32)
	if _, err := rand.Read(raw); err != nil {
		t.Fatal(err)
	}
	return base64.StdEncoding.EncodeToString(raw)
}

// sealOne opens the service with cfg, creates a tenant with a contact (so
// one tenant key is sealed with the master key) and closes it.
func sealOne(t *testing.T, cfg service.Config) {
	t.Helper()
	ctx := context.Background()
	cfg.Migrate = true
	a, err := service.Open(ctx, cfg)
	if err != nil {
		t.Fatalf("first start: %v", err)
	}
	defer a.Close()
	_, err = a.Commands.Create(ctx, aggregate.Create{Name: "Sealed " + uuid.NewString()[:8], Edition: "free", Region: "us-east-1",
		Contacts: []aggregate.Contact{{Role: "primary", Name: "Ada", Email: "ada@example.com"}}}, aggregate.Metadata{Actor: "test"})
	if err != nil {
		t.Fatalf("create: %v", err)
	}
}

// TestAMasterKeyThatDoesNotFitTheSealedDataStopsStartUp: started again on
// the same database with another master key, or with none where the
// development key file is gone, the service refuses to start, says which
// key it needs and where it looks, and writes no new key.
func TestAMasterKeyThatDoesNotFitTheSealedDataStopsStartUp(t *testing.T) {
	t.Parallel()
	db := pgtest.NewDatabase(t)
	ctx := context.Background()

	t.Run("TENANCY_MASTER_KEY", func(t *testing.T) {
		keyA, keyB := newMasterKey(t), newMasterKey(t)
		db := pgtest.NewDatabase(t)
		sealOne(t, service.Config{DatabaseURL: db, DataDir: t.TempDir(), MasterKey: keyA})
		_, err := service.Open(ctx, service.Config{DatabaseURL: db, DataDir: t.TempDir(), MasterKey: keyB})
		if !errors.Is(err, tenantlog.ErrWrongMasterKey) {
			t.Fatalf("started with another key: %v", err)
		}
		for _, want := range []string{"wrong master key", "TENANCY_MASTER_KEY does not unwrap", "1 tenant keys", "master.key"} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("message lacks %q: %v", want, err)
			}
		}
		a, err := service.Open(ctx, service.Config{DatabaseURL: db, DataDir: t.TempDir(), MasterKey: keyA})
		if err != nil {
			t.Fatalf("the right key: %v", err)
		}
		a.Close()
	})

	t.Run("development key", func(t *testing.T) {
		dir := t.TempDir()
		sealOne(t, service.Config{DatabaseURL: db, DataDir: dir})
		key := filepath.Join(dir, "master.key")
		saved, err := os.ReadFile(key)
		if err != nil {
			t.Fatal(err)
		}
		// The data folder is lost (a re-clone, rm -rf data): no new key over sealed data.
		fresh := t.TempDir()
		_, err = service.Open(ctx, service.Config{DatabaseURL: db, DataDir: fresh})
		if err == nil || !strings.Contains(err.Error(), "no master key") || !strings.Contains(err.Error(), filepath.Join(fresh, "master.key")) {
			t.Fatalf("started without the key: %v", err)
		}
		if _, err := os.Stat(filepath.Join(fresh, "master.key")); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("a new master key was written over sealed data: %v", err)
		}
		// Another development key file is refused too.
		other := t.TempDir()
		if err := os.WriteFile(filepath.Join(other, "master.key"), []byte(newMasterKey(t)+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		_, err = service.Open(ctx, service.Config{DatabaseURL: db, DataDir: other})
		if !errors.Is(err, tenantlog.ErrWrongMasterKey) || !strings.Contains(err.Error(), filepath.Join(other, "master.key")) {
			t.Fatalf("started with another key file: %v", err)
		}
		// Restored, it starts.
		if err := os.WriteFile(filepath.Join(fresh, "master.key"), saved, 0o600); err != nil {
			t.Fatal(err)
		}
		a, err := service.Open(ctx, service.Config{DatabaseURL: db, DataDir: fresh})
		if err != nil {
			t.Fatalf("restored key: %v", err)
		}
		a.Close()
	})
}

// TestStartUpSaysWhatItUses: one log line names the database (without its
// password), the event store, the NATS server and the data folder.
func TestStartUpSaysWhatItUses(t *testing.T) {
	t.Parallel()
	u, err := url.Parse(pgtest.NewDatabase(t))
	if err != nil {
		t.Fatal(err)
	}
	u.User = url.UserPassword(u.User.Username(), "hunter2-secret") // the test server trusts; the password is only shown
	logs := &logBuffer{}
	logger, err := logging.New(logs, "json", slog.LevelInfo)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	a, err := service.Open(context.Background(), service.Config{DatabaseURL: u.String(), DataDir: dir, Migrate: true, Projections: true,
		NATSListen: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0", Logger: logger})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	if strings.Contains(logs.String(), "hunter2-secret") {
		t.Errorf("the database password is in the log:\n%s", logs)
	}
	var line map[string]any
	for _, r := range logs.records(t) {
		if r["msg"] == "tenancy uses" {
			if line != nil {
				t.Errorf("two start-up lines")
			}
			line = r
		}
	}
	if line == nil {
		t.Fatalf("no start-up line:\n%s", logs)
	}
	db, _ := line["database"].(string)
	if !strings.Contains(db, u.Host) || !strings.Contains(db, u.Path) {
		t.Errorf("database %q, want %s%s", db, u.Host, u.Path)
	}
	if nats, _ := line["nats"].(string); !strings.HasPrefix(nats, "embedded on nats://127.0.0.1:") || nats == "embedded on nats://127.0.0.1:4222" {
		t.Errorf("nats %q", nats)
	}
	if line["event_store"] != "postgres (the database)" || line["data_dir"] != dir || line["master_key"] != filepath.Join(dir, "master.key") {
		t.Errorf("start-up line %v", line)
	}
}

// TestATakenPortStopsStartUpBeforeAnythingIsCreated: the API's port and the
// embedded NATS server's are checked before the database is created or a
// key written.
func TestATakenPortStopsStartUpBeforeAnythingIsCreated(t *testing.T) {
	t.Parallel()
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	base, err := url.Parse(pgtest.NewDatabase(t))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name       string
		http, nats string
		want       string
	}{
		{"API", taken.Addr().String(), "", "HTTP_ADDR"},
		{"embedded NATS", "127.0.0.1:0", taken.Addr().String(), "NATS_URL"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			u := *base
			name := "tenancy_never_" + strings.ReplaceAll(uuid.NewString()[:8], "-", "")
			u.Path = "/" + name
			dir := t.TempDir()
			_, err := service.Open(context.Background(), service.Config{DatabaseURL: u.String(), DataDir: dir, Migrate: true, Projections: true,
				HTTPAddr: tc.http, NATSListen: tc.nats})
			if err == nil || !strings.Contains(err.Error(), taken.Addr().String()) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Open on a taken port: %v", err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			conn, err := pgx.Connect(ctx, base.String())
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close(ctx)
			var exists bool
			if err := conn.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)`, name).Scan(&exists); err != nil {
				t.Fatal(err)
			}
			if exists {
				t.Errorf("database %s was created", name)
				_, _ = conn.Exec(ctx, "DROP DATABASE "+pgx.Identifier{name}.Sanitize())
			}
			if entries, _ := os.ReadDir(dir); len(entries) > 0 {
				t.Errorf("the data folder holds %v", entries)
			}
		})
	}
}
