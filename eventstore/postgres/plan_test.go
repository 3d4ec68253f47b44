package postgres_test

import (
	"context"
	"strings"
	"testing"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/tenancyhq/tenancy/eventstore"
	"github.com/tenancyhq/tenancy/eventstore/postgres"
	"github.com/tenancyhq/tenancy/internal/pgtest"
)

// TestStatementsUseIndexes plans every statement of the Store against a
// table of 50,000 events in 100 transactions and fails on a sequential scan
// of it.
func TestStatementsUseIndexes(t *testing.T) {
	t.Parallel()
	pool, _ := pgtest.NewMigrated(t)
	ctx := testContext(t)
	pgtest.Exec(t, pool, `CREATE PROCEDURE fill() LANGUAGE plpgsql AS $$
		BEGIN FOR i IN 1..100 LOOP
			INSERT INTO events (stream, version, event_id, event_type, data)
			SELECT 'tenant-' || i || '-' || g % 100, g / 100, gen_random_uuid(), 'Tested', '{}'
			FROM generate_series(0, 499) g;
			COMMIT;
		END LOOP; END $$`)
	pgtest.Exec(t, pool, `CALL fill()`)
	pgtest.Exec(t, pool, `ANALYZE events`)
	var near eventstore.Position // a position near the end of the feed
	if err := pool.QueryRow(ctx, `SELECT transaction_id, position FROM events
		ORDER BY transaction_id DESC, position DESC OFFSET 100 LIMIT 1`).Scan(&near.Commit, &near.Prepare); err != nil {
		t.Fatal(err)
	}
	id := uuid.New()
	args := map[string][][]any{
		"append one": {{"tenant-1-1", int64(4), id, "Tested", int32(1), []byte(`{}`), []byte(nil)}},
		"append many": {{"tenant-1-1", int64(eventstore.Any), []uuid.UUID{id, uuid.New()}, []string{"A", "B"},
			[]int32{1, 1}, [][]byte{[]byte(`{}`), []byte(`{}`)}, [][]byte{nil, nil}}},
		"stored":       {{"tenant-1-1", []uuid.UUID{id}}},
		"read forward": {{"tenant-1-1", int64(0), nil}, {"tenant-1-1", int64(2), int64(1)}},
		"read back":    {{"tenant-1-1", int64(1 << 62), int64(1)}},
		"read feed": {
			{uint64(0), int64(0), nil, int64(500)},
			{near.Commit, int64(near.Prepare), nil, nil},
			{near.Commit, int64(near.Prepare), []string{"tenant-1-%"}, int64(500)},
		},
		"head": {{}},
		"count after": {
			{near.Commit, int64(near.Prepare), nil},
			{near.Commit, int64(near.Prepare), []string{"tenant-%"}},
		},
	}
	for name, sql := range postgres.Statements {
		cases, ok := args[name]
		if !ok {
			t.Errorf("no arguments to plan %q with", name)
			continue
		}
		for _, a := range cases {
			plan := explain(t, ctx, pool, sql, a)
			if strings.Contains(plan, "Seq Scan on events") {
				t.Errorf("%s with %v scans the table:\n%s", name, a, plan)
			}
		}
	}
}

// explain returns the plan of sql with args, as text.
func explain(t *testing.T, ctx context.Context, pool *pgxpool.Pool, sql string, args []any) string {
	t.Helper()
	rows, err := pool.Query(ctx, "EXPLAIN "+sql, args...)
	if err != nil {
		t.Fatalf("explain %s: %v", sql, err)
	}
	lines, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatalf("explain %s: %v", sql, err)
	}
	return strings.Join(lines, "\n")
}
