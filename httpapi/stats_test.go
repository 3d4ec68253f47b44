package httpapi_test

import (
	"encoding/json"
	"testing"

	"github.com/tenancyhq/tenancy/aggregate"
)

// TestTenantCountsByStatusAndEdition: every status and edition is
// counted, with 0 where no tenant is.
func TestTenantCountsByStatusAndEdition(t *testing.T) {
	t.Parallel()
	s := startService(t)
	a, _ := s.createTenant("Counted One")
	s.createTenant("Counted Two")
	r := s.must(200, "POST", "/api/v1/tenants/"+a+"/complete-provisioning", nil)
	var c struct {
		Total              int64                       `json:"total"`
		ByStatus           map[string]int64            `json:"by_status"`
		ByEdition          map[string]int64            `json:"by_edition"`
		ByStatusAndEdition map[string]map[string]int64 `json:"by_status_and_edition"`
	}
	res := s.must(200, "GET", "/api/v1/tenants/stats", nil, "X-Consistency-Token", r.header.Get("X-Consistency-Token"))
	if err := json.Unmarshal(res.body, &c); err != nil {
		t.Fatal(err)
	}
	if c.Total != 2 || c.ByStatus["TRIAL"] != 1 || c.ByStatus["PROVISIONING"] != 1 || c.ByEdition["professional"] != 2 ||
		c.ByStatusAndEdition["TRIAL"]["professional"] != 1 {
		t.Errorf("counts %s", res.body)
	}
	for _, st := range aggregate.Statuses() {
		if _, ok := c.ByStatus[string(st)]; !ok {
			t.Errorf("no count for status %s", st)
		}
	}
	for _, e := range aggregate.Editions() {
		if _, ok := c.ByEdition[string(e)]; !ok {
			t.Errorf("no count for edition %s", e)
		}
	}
}
