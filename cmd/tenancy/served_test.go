package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tenancyhq/tenancy/internal/auth"
	"github.com/tenancyhq/tenancy/internal/natsserver"
	"github.com/tenancyhq/tenancy/internal/pgtest"
	"github.com/tenancyhq/tenancy/service"
)

// served is a real service (a fresh Postgres database, an embedded NATS,
// tokens checked) with the data folder serve leaves: the development
// secret and the admin token in it.
type served struct {
	addr    string // host:port of the API
	data    string // the data folder
	db      string // the database URL
	natsURL string
	token   string // the admin token, as data/admin.token holds it
}

// serve runs the service until the test ends, its data folder at data.
func serve(t *testing.T, data string) served {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	secret := []byte(strings.Repeat("k", 40))
	v, err := auth.NewVerifier(ctx, auth.Config{Secret: secret})
	if err != nil {
		t.Fatal(err)
	}
	tok, err := auth.Mint(secret, "admin", []string{auth.ScopeAdmin}, nil, time.Hour, "", "")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(data, 0o700); err != nil {
		t.Fatal(err)
	}
	for name, content := range map[string]string{"admin.token": tok, "jwt.secret": string(secret)} {
		if err := os.WriteFile(filepath.Join(data, name), []byte(content+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	s := served{data: data, db: pgtest.NewDatabase(t), natsURL: natsserver.StartTest(t), token: tok}
	a, err := service.Open(ctx, service.Config{DatabaseURL: s.db, HTTPAddr: "127.0.0.1:0", Migrate: true, Projections: true,
		DataDir: data, Auth: v, NATSURL: s.natsURL})
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("run: %v", err)
		}
		a.Close()
	})
	s.addr = a.Addr()
	return s
}
