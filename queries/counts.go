package queries

import (
	"context"
	"fmt"

	"github.com/tenancyhq/tenancy/aggregate"
)

// CountByStatusAndEdition counts tenants by status and edition, for the
// service's gauges. Every status and edition is present, with 0 where no
// tenant is, so a gauge falls to zero instead of keeping its last value.
func (r *Reader) CountByStatusAndEdition(ctx context.Context) (map[aggregate.Status]map[aggregate.Edition]int64, error) {
	out := make(map[aggregate.Status]map[aggregate.Edition]int64)
	for _, s := range aggregate.Statuses() {
		out[s] = make(map[aggregate.Edition]int64)
		for _, e := range aggregate.Editions() {
			out[s][e] = 0
		}
	}
	rows, err := r.pool.Query(ctx, `SELECT status::text, plan_tier::text, count(*) FROM tenants GROUP BY status, plan_tier`)
	if err != nil {
		return nil, fmt.Errorf("count tenants by status and edition: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var s, e string
		var n int64
		if err := rows.Scan(&s, &e, &n); err != nil {
			return nil, fmt.Errorf("count tenants by status and edition: %w", err)
		}
		if out[aggregate.Status(s)] == nil {
			out[aggregate.Status(s)] = make(map[aggregate.Edition]int64)
		}
		out[aggregate.Status(s)][aggregate.Edition(e)] = n
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("count tenants by status and edition: %w", err)
	}
	return out, nil
}
