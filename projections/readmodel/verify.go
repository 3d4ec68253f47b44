package readmodel

import (
	"context"
	"encoding/json"
	"fmt"
	"reflect"
	"slices"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/tenancyhq/tenancy/aggregate"
	"github.com/tenancyhq/tenancy/eventstore"
	"github.com/tenancyhq/tenancy/projections"
	"github.com/tenancyhq/tenancy/tenantlog"
)

// Difference is one way the read model differs from a fresh fold of the events.
type Difference struct {
	Table    string    `json:"table"`
	ID       uuid.UUID `json:"id"` // tenant id, or event id for tenant_events
	Column   string    `json:"column"`
	Expected any       `json:"expected"`
	Actual   any       `json:"actual"`
}

func (d Difference) String() string {
	return fmt.Sprintf("%s %s: %s: expected %v, found %v", d.Table, d.ID, d.Column, d.Expected, d.Actual)
}

// Beginner starts transactions (a *pgxpool.Pool or a *pgx.Conn).
type Beginner interface {
	Begin(ctx context.Context) (pgx.Tx, error)
}

// Verify folds every tenant event of the feed up to position upTo (the read
// model's checkpoint) into temporary tables, with the projector itself, and
// compares them with the live read model, every column of every row. It
// returns every difference found; none means the read model is exact.
func Verify(ctx context.Context, db Beginner, feed eventstore.FeedReader, cat *aggregate.Catalog, upTo eventstore.Position, live Tables) ([]Difference, error) {
	tx, err := db.Begin(ctx)
	if err != nil {
		return nil, fmt.Errorf("verify: %w", err)
	}
	defer tx.Rollback(context.WithoutCancel(ctx))
	expected := Tables{Tenants: "verify_tenants", TenantEvents: "verify_tenant_events"}
	for _, q := range []string{
		`CREATE TEMP TABLE verify_tenants (LIKE ` + pgx.Identifier{live.Tenants}.Sanitize() + ` INCLUDING ALL) ON COMMIT DROP`,
		`CREATE TEMP TABLE verify_tenant_events (LIKE ` + pgx.Identifier{live.TenantEvents}.Sanitize() + ` INCLUDING ALL) ON COMMIT DROP`,
	} {
		if _, err := tx.Exec(ctx, q); err != nil {
			return nil, fmt.Errorf("verify: %w", err)
		}
	}
	p := NewInto(cat, "verify", expected)
	after := eventstore.Start
	for {
		batch, err := feed.ReadAll(ctx, after, p.Filter(), 1000)
		if err != nil {
			return nil, fmt.Errorf("verify: read feed: %w", err)
		}
		n := len(batch)
		for i, e := range batch {
			if e.Position.Compare(upTo) > 0 {
				batch, n = batch[:i], -1
				break
			}
		}
		if len(batch) > 0 {
			decoded, err := projections.Decode(batch, tenantlog.Decode)
			if err != nil {
				return nil, fmt.Errorf("verify: %w", err)
			}
			if err := p.Apply(ctx, tx, decoded); err != nil {
				return nil, fmt.Errorf("verify: %w", err)
			}
			after = batch[len(batch)-1].Position
		}
		if n <= 0 {
			break
		}
	}
	var diffs []Difference
	for _, pair := range []struct{ table, exp, act string }{
		{live.Tenants, expected.Tenants, live.Tenants},
		{live.TenantEvents, expected.TenantEvents, live.TenantEvents},
	} {
		d, err := diffTables(ctx, tx, pair.table, pair.exp, pair.act)
		if err != nil {
			return nil, err
		}
		diffs = append(diffs, d...)
	}
	return diffs, nil
}

// diffTables compares two tables of the same shape row by row (joined on id)
// and column by column.
func diffTables(ctx context.Context, tx pgx.Tx, name, expected, actual string) ([]Difference, error) {
	rows, err := tx.Query(ctx, `SELECT coalesce(e.id, a.id), to_jsonb(e), to_jsonb(a)
		FROM `+pgx.Identifier{expected}.Sanitize()+` e FULL JOIN `+pgx.Identifier{actual}.Sanitize()+` a ON a.id = e.id
		WHERE to_jsonb(e) IS DISTINCT FROM to_jsonb(a) ORDER BY 1`)
	if err != nil {
		return nil, fmt.Errorf("verify %s: %w", name, err)
	}
	defer rows.Close()
	var out []Difference
	for rows.Next() {
		var id uuid.UUID
		var exp, act map[string]any
		if err := rows.Scan(&id, &exp, &act); err != nil {
			return nil, fmt.Errorf("verify %s: %w", name, err)
		}
		switch {
		case act == nil:
			out = append(out, Difference{Table: name, ID: id, Column: "(row)", Expected: "present", Actual: "missing"})
		case exp == nil:
			out = append(out, Difference{Table: name, ID: id, Column: "(row)", Expected: "missing", Actual: "present"})
		default:
			cols := make([]string, 0, len(exp))
			for c := range exp {
				cols = append(cols, c)
			}
			slices.Sort(cols)
			for _, c := range cols {
				if !reflect.DeepEqual(exp[c], act[c]) {
					out = append(out, Difference{Table: name, ID: id, Column: c, Expected: short(exp[c]), Actual: short(act[c])})
				}
			}
		}
	}
	return out, rows.Err()
}

// short renders a value for a difference report, cutting long JSON.
func short(v any) any {
	switch v.(type) {
	case map[string]any, []any:
		b, _ := json.Marshal(v)
		if len(b) > 200 {
			return string(b[:200]) + "…"
		}
		return string(b)
	}
	return v
}
