package migrations_test

import (
	"context"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/tenancyhq/tenancy/internal/pgtest"
	"github.com/tenancyhq/tenancy/migrations"
)

func TestMigrationsApplyAndReapplyAsNoOp(t *testing.T) {
	t.Parallel()
	pool, dbURL := pgtest.NewMigrated(t)
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if err := migrations.Migrate(ctx, conn); err != nil {
		t.Fatalf("re-apply: %v", err)
	}
	cur, latest, err := migrations.Status(ctx, conn)
	if err != nil {
		t.Fatal(err)
	}
	if cur != latest || latest == 0 {
		t.Fatalf("schema version %d, latest %d", cur, latest)
	}
	var n int
	if err := pool.QueryRow(ctx, "SELECT count(*) FROM events").Scan(&n); err != nil {
		t.Fatalf("events table: %v", err)
	}
}
