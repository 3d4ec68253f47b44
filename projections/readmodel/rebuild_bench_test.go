package readmodel_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/tenancyhq/tenancy/aggregate"
	"github.com/tenancyhq/tenancy/eventstore/postgres"
	"github.com/tenancyhq/tenancy/internal/pgtest"
	"github.com/tenancyhq/tenancy/projections/readmodel"
)

// BenchmarkRebuild reports rebuild throughput (events/s) for 1,000,000
// events over 50,000 tenants, beside a raw COPY of the same rows into an
// unlogged table in the same run, and the ratio. TENANCY_BENCH_EVENTS scales
// it down (it keeps 20 events per tenant).
func BenchmarkRebuild(b *testing.B) {
	total := 1_000_000
	if v, err := strconv.Atoi(os.Getenv("TENANCY_BENCH_EVENTS")); err == nil && v > 0 {
		total = v
	}
	const perTenant = 20
	tenants := total / perTenant
	pool, _ := pgtest.NewMigrated(b)
	ctx := context.Background()
	rows := syntheticHistory(b, tenants, perTenant)
	b.Logf("writing %d events of %d tenants", len(rows), tenants)
	if _, err := pool.CopyFrom(ctx, pgx.Identifier{"events"}, []string{"stream", "version", "event_id", "event_type", "schema_version", "data", "metadata"},
		pgx.CopyFromRows(rows)); err != nil {
		b.Fatal(err)
	}
	pgtest.Exec(b, pool, `ANALYZE events`)

	for i := 0; i < b.N; i++ {
		// The baseline: the same rows, as tenant_events rows, COPYed into an unlogged table.
		raw := copyBaseline(b, pool, rows)
		start := time.Now()
		err := readmodel.Rebuild(ctx, pool, postgres.New(pool, postgres.WithBatchSize(5000)), cat, readmodel.RebuildOptions{ProgressEvery: 100 * time.Millisecond})
		if err != nil {
			b.Fatal(err)
		}
		rate := float64(len(rows)) / time.Since(start).Seconds()
		b.ReportMetric(rate, "rebuild-events/s")
		b.ReportMetric(raw, "copy-events/s")
		b.ReportMetric(rate/raw, "ratio")
	}
}

// syntheticHistory writes lifelike tenant histories as events rows: each
// tenant is created, provisioned, then relabelled, suspended and resumed.
func syntheticHistory(b *testing.B, tenants, perTenant int) [][]any {
	b.Helper()
	at := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	rows := make([][]any, 0, tenants*perTenant)
	for t := 0; t < tenants; t++ {
		id := uuid.New()
		evs := []aggregate.Event{
			aggregate.TenantCreated{TenantID: id, ExternalID: fmt.Sprintf("ORG-%08X", t), Name: fmt.Sprintf("Tenant %d", t), NormalizedName: fmt.Sprintf("tenant %d", t),
				Edition: "professional", Region: "eu-west-1", Trial: true, TrialDays: 14,
				Contacts: []aggregate.Contact{{Role: "primary", Email: "ops@example.test"}}, Metadata: map[string]string{}, Labels: map[string]string{}, ComplianceStandards: []string{}},
			aggregate.ProvisioningCompleted{Steps: []string{"recorded"}},
			aggregate.TrialStarted{Days: 14, EndsAt: at.AddDate(0, 0, 14)},
		}
		for len(evs) < perTenant {
			switch len(evs) % 3 {
			case 0:
				evs = append(evs, aggregate.LabelsUpdated{Labels: map[string]string{"n": strconv.Itoa(len(evs))}})
			case 1:
				evs = append(evs, aggregate.TenantSuspended{Reason: "payment_failed", Severity: "soft"})
			default:
				evs = append(evs, aggregate.TenantResumed{})
			}
		}
		for v, e := range evs {
			data, sv, err := aggregate.EncodeEvent(e)
			if err != nil {
				b.Fatal(err)
			}
			meta, _ := json.Marshal(aggregate.Metadata{OccurredAt: at.Add(time.Duration(v) * time.Minute), Actor: "bench", CorrelationID: "c"})
			rows = append(rows, []any{aggregate.StreamName(id), int64(v), uuid.New(), e.EventType(), int32(sv), string(data), string(meta)})
			_ = rows[len(rows)-1]
		}
	}
	return rows
}

// copyBaseline COPYs the rows, shaped as tenant_events rows, into an unlogged
// table and returns the rows per second.
func copyBaseline(b *testing.B, pool *pgxpool.Pool, rows [][]any) float64 {
	b.Helper()
	ctx := context.Background()
	pgtest.Exec(b, pool, `DROP TABLE IF EXISTS copy_baseline`)
	pgtest.Exec(b, pool, `CREATE UNLOGGED TABLE copy_baseline (LIKE tenant_events INCLUDING ALL)`)
	now := time.Now()
	shaped := make([][]any, len(rows))
	for i, r := range rows {
		stream := r[0].(string)
		tenant := uuid.MustParse(stream[len("tenant-"):])
		// [16]byte ids: pgx's fastest encoding, so the baseline is at its best.
		shaped[i] = []any{[16]byte(r[2].(uuid.UUID)), [16]byte(tenant), r[3], r[4], r[1], r[5], r[6], now, int64(i + 1), int64(i + 1)}
	}
	start := time.Now()
	if _, err := pool.CopyFrom(ctx, pgx.Identifier{"copy_baseline"},
		[]string{"id", "tenant_id", "event_type", "event_version", "stream_version", "payload", "metadata", "created_at", "sequence_number", "position_commit"},
		pgx.CopyFromRows(shaped)); err != nil {
		b.Fatal(err)
	}
	return float64(len(rows)) / time.Since(start).Seconds()
}
