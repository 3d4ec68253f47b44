package aggregate_test

import (
	"testing"

	"github.com/tenancyhq/tenancy/aggregate"
)

// TestMakeActiveIsOneCommandFromEveryStatus: the original service's
// "activate" brings a tenant to ACTIVE in one decision from where it can,
// changes nothing on an ACTIVE tenant, returns a suspended tenant to where
// it was, and refuses (naming activate) where nothing leads to ACTIVE.
func TestMakeActiveIsOneCommandFromEveryStatus(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		from   aggregate.Status
		want   aggregate.Status // "" : refused
		events int
	}{
		{aggregate.StatusProvisioning, aggregate.StatusActive, 3}, // provisioned, trial started, converted
		{aggregate.StatusTrial, aggregate.StatusActive, 1},
		{aggregate.StatusActive, aggregate.StatusActive, 0},
		{aggregate.StatusSuspended, aggregate.StatusActive, 1}, // suspended from ACTIVE
		{aggregate.StatusTerminated, "", 0},
		{aggregate.StatusPurged, "", 0},
	} {
		t.Run(string(tc.from), func(t *testing.T) {
			h := tenantIn(t, tc.from)
			evs, err := h.tenant.Decide(aggregate.MakeActive{}, h.now, cat)
			if tc.want == "" {
				if de, ok := aggregate.AsError(err); !ok || de.Command != aggregate.CmdActivate {
					t.Fatalf("from %s: %v, want a refusal naming activate", tc.from, err)
				}
				return
			}
			if err != nil || len(evs) != tc.events {
				t.Fatalf("from %s: %d events (%v), want %d", tc.from, len(evs), err, tc.events)
			}
			h.apply(aggregate.MakeActive{}, evs)
			if h.tenant.Status != tc.want {
				t.Fatalf("from %s: %s, want %s", tc.from, h.tenant.Status, tc.want)
			}
		})
	}
}

// TestUpdateProfileWithANameIsOneDecision: a rename and a profile change
// in one command are decided together: a refused profile renames nothing.
func TestUpdateProfileWithANameIsOneDecision(t *testing.T) {
	t.Parallel()
	h := tenantIn(t, aggregate.StatusActive)
	name := "Acme Holdings"
	labels := map[string]string{"tier": "gold"}
	evs, err := h.tenant.Decide(aggregate.UpdateProfile{Name: &name, Labels: &labels}, h.now, cat)
	if err != nil || len(evs) != 2 || evs[0].EventType() != "TenantRenamed" {
		t.Fatalf("rename + labels: %v (%v), want TenantRenamed and LabelsUpdated", evs, err)
	}
	bad := map[string]string{"": "empty key"}
	if evs, err := h.tenant.Decide(aggregate.UpdateProfile{Name: &name, Labels: &bad}, h.now, cat); err == nil {
		t.Fatalf("rename + invalid labels decided %v, want a refusal and no rename", evs)
	}
}
