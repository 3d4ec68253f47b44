package postgres_test

import (
	"testing"
	"time"

	"github.com/tenancyhq/tenancy/eventstore"
	"github.com/tenancyhq/tenancy/eventstore/eventstoretest"
	"github.com/tenancyhq/tenancy/eventstore/postgres"
	"github.com/tenancyhq/tenancy/internal/pgtest"
)

// newStore is a Store on a fresh, migrated database of its own, polling fast
// so that a lost notification costs a test little.
func newStore(t testing.TB, opts ...postgres.Option) *postgres.Store {
	t.Helper()
	pool, _ := pgtest.NewMigrated(t)
	return postgres.New(pool, append([]postgres.Option{postgres.WithPollInterval(100 * time.Millisecond)}, opts...)...)
}

func TestConformance(t *testing.T) {
	eventstoretest.Run(t, func(t *testing.T) eventstore.Store { return newStore(t) })
	eventstoretest.RunAtomicCommit(t, func(t *testing.T) eventstore.Store { return newStore(t) })
}
