package httpapi_test

import (
	"slices"
	"testing"
)

// TestSuspendedTrialComesBackATrial suspends a trial and resumes it, through
// the API and through the legacy activate route: it is a trial again each
// time (same trial end, billing trialing), never a paid tenant, and its
// transitions say where a resume leads.
func TestSuspendedTrialComesBackATrial(t *testing.T) {
	t.Parallel()
	s := startService(t)
	created := s.must(201, "POST", "/api/v1/tenants", map[string]any{"name": "Resume Trial Co", "edition": "professional", "region": "us-east-1"})
	id := created.json(t)["id"].(string)
	path := "/api/v1/tenants/" + id
	trial := s.must(200, "POST", path+"/complete-provisioning", map[string]any{}).json(t)
	ends := trial["trial_ends_at"]

	suspended := s.must(200, "POST", path+"/suspend", map[string]any{"reason": "admin_action"})
	tr := s.must(200, "GET", path+"/transitions", nil, "X-Consistency-Token", suspended.header.Get("X-Consistency-Token")).json(t)
	var resumeTo []string
	for _, x := range tr["transitions"].([]any) {
		if m := x.(map[string]any); m["command"] == "resume" {
			resumeTo = append(resumeTo, m["to"].(string))
		}
	}
	if !slices.Equal(resumeTo, []string{"TRIAL"}) {
		t.Errorf("transitions of a suspended trial: resume leads to %v, want [TRIAL]", resumeTo)
	}

	for _, route := range []struct{ method, path string }{{"POST", path + "/resume"}, {"PUT", "/organizations/" + id + "/activate"}} {
		got := s.must(200, route.method, route.path, map[string]any{}).json(t)
		if got["status"] != "TRIAL" || got["billing_status"] != "trialing" || got["trial_ends_at"] != ends {
			t.Errorf("%s %s: status %v billing %v trial ends %v, want TRIAL trialing %v", route.method, route.path,
				got["status"], got["billing_status"], got["trial_ends_at"], ends)
		}
		s.must(200, "POST", path+"/suspend", map[string]any{"reason": "admin_action"})
	}
}

// TestSuspendedPendingCancellationKeepsItsDate: a tenant suspended while its
// cancellation is pending resumes into PENDING_CANCELLATION, same date.
func TestSuspendedPendingCancellationKeepsItsDate(t *testing.T) {
	t.Parallel()
	s := startService(t)
	created := s.must(201, "POST", "/api/v1/tenants", map[string]any{"name": "Resume Cancel Co", "edition": "professional", "region": "us-east-1", "trial": false})
	path := "/api/v1/tenants/" + created.json(t)["id"].(string)
	s.must(200, "POST", path+"/complete-provisioning", map[string]any{})
	s.must(200, "POST", path+"/cancel", map[string]any{"effective_at": "2099-01-01T00:00:00Z"})
	s.must(200, "POST", path+"/suspend", map[string]any{"reason": "payment_failed"})
	got := s.must(200, "POST", path+"/resume", map[string]any{}).json(t)
	c, _ := got["cancellation"].(map[string]any)
	if got["status"] != "PENDING_CANCELLATION" || c["effective_at"] != "2099-01-01T00:00:00Z" {
		t.Fatalf("resumed: status %v cancellation %v, want PENDING_CANCELLATION effective 2099-01-01", got["status"], got["cancellation"])
	}
}
