package httpapi_test

import (
	"fmt"
	"strings"
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

// TestEnumerationsInAnySpelling: editions, regions and the other
// enumerations are accepted in any case and with '_' for '-' (the
// original's PROFESSIONAL and US_EAST_1), and every response and event
// holds the canonical spelling. An unknown value is still a 400 naming the
// allowed ones.
func TestEnumerationsInAnySpelling(t *testing.T) {
	t.Parallel()
	s := startService(t)
	tn := s.must(201, "POST", "/api/v1/tenants", map[string]any{"name": "Spelling " + uuid.NewString()[:8], "edition": "PROFESSIONAL", "region": "US_EAST_1"}).json(t)
	if tn["edition"] != "professional" || tn["region"] != "us-east-1" {
		t.Fatalf("create: edition %v region %v; want professional, us-east-1", tn["edition"], tn["region"])
	}
	id := tn["id"].(string)
	legacy := s.must(201, "POST", "/organizations", map[string]any{"name": "Spelling Legacy " + uuid.NewString()[:8], "edition": "Enterprise", "region": "EU_WEST_1"}).json(t)
	if legacy["edition"] != "enterprise" || legacy["region"] != "eu-west-1" {
		t.Fatalf("legacy create: edition %v region %v", legacy["edition"], legacy["region"])
	}
	s.must(200, "POST", "/api/v1/tenants/"+id+"/complete-provisioning", nil)
	s.must(200, "POST", "/api/v1/tenants/"+id+"/activate", nil)
	s.must(200, "POST", "/api/v1/tenants/"+id+"/billing-status", map[string]any{"status": "PAST-DUE", "provider": "stripe", "provider_event_id": "evt_" + uuid.NewString()})
	s.must(200, "POST", "/api/v1/tenants/"+id+"/change-edition", map[string]any{"edition": "ENTERPRISE"})
	got := s.must(200, "POST", "/api/v1/tenants/"+id+"/suspend", map[string]any{"reason": "Payment_Failed", "severity": "SOFT"}).json(t)
	susp, _ := got["suspension"].(map[string]any)
	if got["edition"] != "enterprise" || got["billing_status"] != "past_due" || susp["reason"] != "payment_failed" || susp["severity"] != "soft" {
		t.Fatalf("after the commands: edition %v billing %v suspension %v", got["edition"], got["billing_status"], susp)
	}
	for _, q := range []string{"status=suspended&edition=ENTERPRISE&region=US_EAST_1&billing_status=PAST_DUE", "status=Suspended"} {
		items := s.must(200, "GET", "/api/v1/tenants?"+q, nil).json(t)["items"].([]any)
		if len(items) != 1 || items[0].(map[string]any)["id"] != id {
			t.Errorf("list ?%s: %d items; want the one tenant", q, len(items))
		}
	}
	// The events hold the canonical spelling.
	hist := s.must(200, "GET", "/api/v1/tenants/"+id+"/history", nil).body
	for _, bad := range []string{"PROFESSIONAL", "US_EAST_1", "ENTERPRISE", "Payment_Failed", "PAST-DUE", "SOFT"} {
		if strings.Contains(string(hist), `"`+bad+`"`) {
			t.Errorf("the history holds %q as sent", bad)
		}
	}
	checkProblem(t, s.do("POST", "/api/v1/tenants", map[string]any{"name": "Spelling Bad", "edition": "PLATINUM", "region": "us-east-1"}), 400, "edition", "enum")
	checkProblem(t, s.do("GET", "/api/v1/tenants?status=ACTIV", nil), 400, "status", "enum")
}

// TestLegacySuspendTakesTheOriginalReasons: PUT /organizations/{id}/suspend
// maps each of the original's reason words to this service's reason (the
// README's table), keeping the word in the note when there is none; the
// canonical route does not take them.
func TestLegacySuspendTakesTheOriginalReasons(t *testing.T) {
	t.Parallel()
	s := startService(t)
	for word, want := range map[string]string{"billing": "payment_failed", "security": "security_threat", "abuse": "abuse_detected", "legal": "legal_request",
		"administrative": "admin_action", "voluntary": "admin_action", "scheduled": "admin_action", "Billing": "payment_failed"} {
		id, _ := s.createTenant("Reason " + word + " " + uuid.NewString()[:8])
		s.must(200, "POST", "/api/v1/tenants/"+id+"/complete-provisioning", nil)
		got := s.must(200, "PUT", "/organizations/"+id+"/suspend", map[string]any{"reason": word}).json(t)
		susp, _ := got["suspension"].(map[string]any)
		if got["status"] != "SUSPENDED" || susp["reason"] != want || !strings.Contains(fmt.Sprint(susp["note"]), strings.ToLower(word)) {
			t.Errorf("legacy suspend reason %q: status %v suspension %v; want reason %s and the word in the note", word, got["status"], susp, want)
		}
	}
	id, _ := s.createTenant("Reason canonical " + uuid.NewString()[:8])
	checkProblem(t, s.do("POST", "/api/v1/tenants/"+id+"/suspend", map[string]any{"reason": "billing"}), 400, "reason", "enum")
}

// TestLegacyPolicyRouteTakesAnyAction: the original's example
// {"action": "create_workspace", "context": {}} is evaluated (status,
// region, time rules; the edition rule says the catalog does not know it)
// and answered with the original's allowed and required_upgrade beside
// today's fields; a suspended organization is denied it; a known action
// that needs a higher edition names the upgrade. The canonical route still
// refuses the unknown action with 400.
func TestLegacyPolicyRouteTakesAnyAction(t *testing.T) {
	t.Parallel()
	s := startService(t)
	id, _ := s.createTenant("Policy Any " + uuid.NewString()[:8])
	s.must(200, "POST", "/api/v1/tenants/"+id+"/complete-provisioning", nil)
	d := s.must(200, "POST", "/organizations/"+id+"/policies", `{"action": "create_workspace", "context": {}}`).json(t)
	if d["decision"] != "allow" || d["allowed"] != true || d["required_upgrade"] != nil {
		t.Fatalf("create_workspace on a trial: %v", d)
	}
	if _, ok := d["required_upgrade"]; !ok {
		t.Errorf("required_upgrade is missing (want null): %v", d)
	}
	var edition string
	for _, r := range d["rules"].([]any) {
		if r := r.(map[string]any); r["rule"] == "edition" {
			edition = fmt.Sprint(r["explanation"])
		}
	}
	if !strings.Contains(edition, "not in the catalog") {
		t.Errorf("edition rule explanation %q; want it to say the catalog does not know the action", edition)
	}
	// Region and time rules still apply to it.
	if d := s.must(200, "POST", "/organizations/"+id+"/policies", `{"action": "create_workspace", "context": {"region": "AP_SOUTHEAST_1"}}`).json(t); d["rules"] == nil {
		t.Errorf("with a region: %v", d)
	}
	s.must(200, "PUT", "/organizations/"+id+"/suspend", map[string]any{"reason": "security"})
	if d := s.must(200, "POST", "/organizations/"+id+"/policies", `{"action": "create_workspace", "context": {}}`).json(t); d["allowed"] != false || d["decision"] != "deny" {
		t.Errorf("create_workspace on a suspended organization: %v", d)
	}
	free := s.must(201, "POST", "/api/v1/tenants", map[string]any{"name": "Policy Free " + uuid.NewString()[:8], "edition": "free", "region": "us-east-1"}).json(t)["id"].(string)
	s.must(200, "POST", "/api/v1/tenants/"+free+"/complete-provisioning", nil)
	if d := s.must(200, "POST", "/organizations/"+free+"/policies", `{"action": "sso.login", "context": {}}`).json(t); d["allowed"] != false || d["required_upgrade"] == nil {
		t.Errorf("sso.login on a free organization: %v; want denied with the upgrade named", d)
	}
	checkProblem(t, s.do("POST", "/api/v1/tenants/"+id+"/policy/evaluate", `{"action": "create_workspace", "context": {}}`), 400, "action", "enum")
	checkProblem(t, s.do("POST", "/organizations/"+id+"/policies", `{"context": {}}`), 400, "action", "required")
}
