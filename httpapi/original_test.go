package httpapi_test

import (
	"testing"

	"github.com/google/uuid"
)

// TestOriginalServiceClientsKeepWorking: what a client of the original
// service does still works: its create example without a region (the
// default region is echoed), activate on an active organization (200,
// unchanged), and its probe and metrics paths under /api/v1; GET / names
// the service.
func TestOriginalServiceClientsKeepWorking(t *testing.T) {
	t.Parallel()
	s := startService(t)
	name := "Acme " + uuid.NewString()[:8]
	created := s.must(201, "POST", "/api/v1/tenants", `{"name": "`+name+`", "edition": "professional"}`).json(t)
	if created["region"] != "us-east-1" {
		t.Errorf("create without a region: region %v, want the default us-east-1", created["region"])
	}
	id := created["id"].(string)
	s.must(200, "POST", "/api/v1/tenants/"+id+"/complete-provisioning", nil)
	active := s.must(200, "PUT", "/organizations/"+id+"/activate", nil).json(t)
	if active["status"] != "ACTIVE" {
		t.Fatalf("activate: status %v", active["status"])
	}
	again := s.must(200, "PUT", "/organizations/"+id+"/activate", nil)
	if again.json(t)["status"] != "ACTIVE" || again.header.Get("ETag") == "" {
		t.Fatalf("activate an ACTIVE organization: %s", again.body)
	}
	for _, path := range []string{"/api/v1/health", "/api/v1/health/live", "/api/v1/health/ready"} {
		s.must(200, "GET", path, nil)
	}
	info := s.must(200, "GET", "/", nil).json(t)
	if info["service"] != "tenancy" || info["links"] == nil {
		t.Errorf("GET /: %v", info)
	}
}
