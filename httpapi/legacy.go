package httpapi

import (
	"net/http"

	"github.com/labstack/echo/v4"

	"github.com/tenancyhq/tenancy/aggregate"
)

// legacyDecision is the original service's policy answer: today's decision
// with the original's allowed and required_upgrade beside it.
type legacyDecision struct {
	aggregate.Decision
	// Allowed is decision != deny (allow or warn).
	Allowed bool `json:"allowed"`
	// RequiredUpgrade is the edition that lifts the denial, or null.
	RequiredUpgrade *aggregate.Edition `json:"required_upgrade"`
}

// legacyEvaluatePolicy is POST /organizations/{id}/policies. The original
// took any action name: one the catalog does not know is evaluated on its
// status, quota, region, network and time rules, and the edition rule says
// it needs no feature (aggregate.EvaluateAnyAction). The canonical route
// (evaluatePolicy) keeps refusing unknown actions with 400.
func (s *Server) legacyEvaluatePolicy(c echo.Context) error {
	var req aggregate.PolicyRequest
	if err := decodeBody(c, &req); err != nil {
		return err
	}
	req.Context.Region = canonical(req.Context.Region, aggregate.Regions())
	if err := s.deps.Catalog.ValidatePolicyContext(req); err != nil {
		return err
	}
	// As the canonical route: it sees the caller's own writes.
	subject, err := s.policySubject(c)
	if err != nil {
		return err
	}
	d := s.deps.Catalog.EvaluateAnyAction(subject, req, s.deps.Now())
	out := legacyDecision{Decision: d, Allowed: d.Allowed()}
	if d.UpgradeRequired && d.RequiredEdition != "" {
		out.RequiredUpgrade = &d.RequiredEdition
	}
	return c.JSON(http.StatusOK, out)
}
