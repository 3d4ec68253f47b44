package httpapi

import (
	"net/http"

	"github.com/labstack/echo/v4"

	"github.com/tenancyhq/tenancy/aggregate"
)

// tenantCounts is GET /api/v1/tenants/stats: every status and edition,
// with 0 where no tenant is.
type tenantCounts struct {
	Total              int64                                            `json:"total"`
	ByStatus           map[aggregate.Status]int64                       `json:"by_status"`
	ByEdition          map[aggregate.Edition]int64                      `json:"by_edition"`
	ByStatusAndEdition map[aggregate.Status]map[aggregate.Edition]int64 `json:"by_status_and_edition"`
}

func (s *Server) countTenants(c echo.Context) error {
	if err := s.waitConsistent(c); err != nil {
		return err
	}
	var counts map[aggregate.Status]map[aggregate.Edition]int64
	if p := principal(c); p.TenantID != nil {
		// A tenant-bound token sees its own tenant only, in the counts too.
		counts = zeroCounts()
		if t, _, err := s.deps.Queries.Get(c.Request().Context(), p.TenantID.String()); err == nil {
			counts[t.Status][t.Edition] = 1
		}
	} else {
		var err error
		if counts, err = s.deps.Queries.CountByStatusAndEdition(c.Request().Context()); err != nil {
			return err
		}
	}
	out := tenantCounts{ByStatus: map[aggregate.Status]int64{}, ByEdition: map[aggregate.Edition]int64{}, ByStatusAndEdition: counts}
	for _, e := range aggregate.Editions() {
		out.ByEdition[e] = 0
	}
	for st, byEdition := range counts {
		out.ByStatus[st] += 0
		for e, n := range byEdition {
			out.Total += n
			out.ByStatus[st] += n
			out.ByEdition[e] += n
		}
	}
	return c.JSON(http.StatusOK, out)
}

func zeroCounts() map[aggregate.Status]map[aggregate.Edition]int64 {
	out := make(map[aggregate.Status]map[aggregate.Edition]int64)
	for _, s := range aggregate.Statuses() {
		out[s] = make(map[aggregate.Edition]int64)
		for _, e := range aggregate.Editions() {
			out[s][e] = 0
		}
	}
	return out
}
