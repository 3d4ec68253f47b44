package httpapi_test

import (
	"strings"
	"testing"
)

// TestVersionPastTheHeadIsNotFound: ?version=N beyond the tenant's last
// event is a 404 problem naming the last version, not the latest state.
func TestVersionPastTheHeadIsNotFound(t *testing.T) {
	t.Parallel()
	s := startService(t)
	created := s.must(201, "POST", "/api/v1/tenants", map[string]any{"name": "Version Co", "edition": "free", "region": "us-east-1"})
	path := "/api/v1/tenants/" + created.json(t)["id"].(string)
	s.must(200, "GET", path+"?version=0", nil)
	p := checkProblem(t, s.do("GET", path+"?version=999", nil), 404, "version", "at_most_head")
	if d, _ := p["detail"].(string); !strings.Contains(d, "ends at version 0") {
		t.Errorf("detail %q does not name the last version", d)
	}
}
