// Package migrations holds the service's SQL schema as numbered migrations,
// embedded in the binary and applied with tern (github.com/jackc/tern/v2).
//
// Each file is NNN_name.sql; tern records the applied number in the table
// schema_version and takes an advisory lock while it migrates, so replicas
// starting together apply each migration once. Applying again is a no-op.
package migrations

import (
	"context"
	"embed"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/tern/v2/migrate"
)

//go:embed *.sql
var files embed.FS

// VersionTable is where tern records the schema version.
const VersionTable = "public.schema_version"

// Migrate applies every migration not yet applied to the database conn is
// connected to.
func Migrate(ctx context.Context, conn *pgx.Conn) error {
	m, err := newMigrator(ctx, conn)
	if err != nil {
		return err
	}
	if err := m.Migrate(ctx); err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	return nil
}

// Status reports the database's schema version and the latest one this binary
// knows; the database is at head when they are equal.
func Status(ctx context.Context, conn *pgx.Conn) (current, latest int32, err error) {
	m, err := newMigrator(ctx, conn)
	if err != nil {
		return 0, 0, err
	}
	current, err = m.GetCurrentVersion(ctx)
	if err != nil {
		return 0, 0, fmt.Errorf("read schema version: %w", err)
	}
	return current, int32(len(m.Migrations)), nil
}

func newMigrator(ctx context.Context, conn *pgx.Conn) (*migrate.Migrator, error) {
	m, err := migrate.NewMigrator(ctx, conn, VersionTable)
	if err != nil {
		return nil, fmt.Errorf("migrations: %w", err)
	}
	if err := m.LoadMigrations(files); err != nil {
		return nil, fmt.Errorf("load migrations: %w", err)
	}
	return m, nil
}
