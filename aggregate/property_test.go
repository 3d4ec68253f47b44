package aggregate_test

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/tenancyhq/tenancy/aggregate"
)

// randomCommand draws any command, with field values that are sometimes
// invalid, so refusals of every kind are exercised too.
func randomCommand(r *rand.Rand, now time.Time) aggregate.Command {
	pick := func(n int) int { return r.IntN(n) }
	regions := append(aggregate.Regions(), "mars-1")
	editions := append(aggregate.Editions(), "gold")
	reasons := append(aggregate.SuspensionReasons(), "")
	future := now.Add(time.Duration(pick(72)-2) * time.Hour)
	switch pick(27) {
	case 0:
		trial := pick(2) == 0
		return aggregate.Create{TenantID: uuid.New(), ExternalID: "ORG-0000AAAA", Name: []string{"Acme", "", "Beta Corp"}[pick(3)],
			Edition: editions[pick(len(editions))], Region: regions[pick(len(regions))], Trial: &trial, TrialDays: pick(100)}
	case 1:
		return aggregate.CompleteProvisioning{}
	case 2:
		return aggregate.FailProvisioning{Reason: "x"}
	case 3:
		return aggregate.ExtendTrial{Days: pick(100)}
	case 4:
		return aggregate.ConvertTrial{}
	case 5:
		return aggregate.ExpireTrial{}
	case 6:
		return aggregate.Activate{}
	case 7:
		s := aggregate.Suspend{Reason: reasons[pick(len(reasons))]}
		if pick(2) == 0 {
			s.AutoResumeAt = &future
		}
		if pick(4) == 0 { // the dunning process manager's
			s = aggregate.Suspend{Reason: aggregate.ReasonPaymentOverdue, Dunning: true}
		}
		return s
	case 8:
		r := aggregate.Resume{Automatic: pick(2) == 0}
		if pick(4) == 0 {
			r = aggregate.Resume{IfReason: aggregate.ReasonPaymentOverdue}
		}
		return r
	case 9:
		c := aggregate.Cancel{}
		if pick(2) == 0 {
			c.EffectiveAt = &future
		}
		return c
	case 10:
		return aggregate.RevertCancellation{}
	case 11:
		return aggregate.CompleteCancellation{}
	case 12:
		return aggregate.MigrateRegion{To: regions[pick(len(regions))]}
	case 13:
		return aggregate.CompleteMigration{}
	case 14:
		return aggregate.FailMigration{}
	case 15:
		return aggregate.RollbackMigration{}
	case 16:
		return aggregate.Terminate{RetentionDays: pick(40) - 1}
	case 17:
		return aggregate.Restore{}
	case 18:
		return aggregate.Purge{}
	case 19:
		return aggregate.ChangeEdition{Edition: editions[pick(len(editions))]}
	case 20:
		return aggregate.Rename{Name: []string{"Acme", "Gamma", " ", "ACME"}[pick(4)]}
	case 21:
		return aggregate.UpdateProfile{Labels: &map[string]string{"k": []string{"a", "b", "Bad Value!"}[pick(3)]}}
	case 22:
		if pick(2) == 0 {
			return aggregate.SetOverride{Key: "max_users", Value: ptr(int64(pick(5)))}
		}
		return aggregate.SetOverride{Key: "sso", Enabled: ptr(pick(2) == 0)}
	case 23:
		return aggregate.ClearOverride{Key: []string{"max_users", "sso"}[pick(2)]}
	case 24:
		return aggregate.SetPolicy{Policy: aggregate.PolicySetting{Type: []aggregate.PolicyType{"mfa_required", "ip_allowlist", "nope"}[pick(3)], Enforced: pick(2) == 0}}
	case 25:
		return aggregate.RemovePolicy{Type: "mfa_required"}
	default:
		bs := aggregate.BillingStatuses()
		return aggregate.RecordBillingStatus{Status: bs[pick(len(bs))], ProviderEventID: []string{"e1", "e2", "e3", "e4"}[pick(4)]}
	}
}

// TestRandomCommandSequencesKeepTheLifecycle decides thousands of random
// command sequences. After every step: a refused command left the state as it
// was and is a domain error; an accepted one moved the status only along an
// edge of the lifecycle table for that command; and folding all events from
// scratch (through their JSON) gives exactly the incrementally folded state.
func TestRandomCommandSequencesKeepTheLifecycle(t *testing.T) {
	t.Parallel()
	sequences, steps := 3000, 40
	if testing.Short() {
		sequences = 300
	}
	for seq := 0; seq < sequences; seq++ {
		r := rand.New(rand.NewPCG(uint64(seq), 42))
		h := &history{tenant: &aggregate.Tenant{}, now: t0}
		var trace []aggregate.CommandName
		var billing billingInvariant
		for step := 0; step < steps; step++ {
			h.now = h.now.Add(time.Duration(r.IntN(48*60)) * time.Minute)
			cmd := randomCommand(r, h.now)
			trace = append(trace, cmd.CommandName())
			before := h.tenant.Clone()
			evs, err := h.tenant.Decide(cmd, h.now, cat)
			if err != nil {
				if _, ok := aggregate.AsError(err); !ok {
					t.Fatalf("seq %d %v: not a domain error: %v", seq, trace, err)
				}
				if !reflect.DeepEqual(before, h.tenant) {
					t.Fatalf("seq %d %v: refused command changed the state", seq, trace)
				}
				continue
			}
			from := h.tenant.Status
			h.apply(cmd, evs)
			to := h.tenant.Status
			billing.observe(evs)
			if err := billing.check(h.tenant); err != nil {
				t.Fatalf("seq %d %v: %v", seq, trace, err)
			}
			if cmd.CommandName() == aggregate.CmdCreate {
				if from != "" || to != aggregate.StatusProvisioning {
					t.Fatalf("seq %d: create moved %q -> %s", seq, from, to)
				}
			} else if targets := aggregate.TargetsOf(from, cmd.CommandName()); len(targets) > 0 {
				if !slices.Contains(targets, to) {
					t.Fatalf("seq %d %v: %s moved %s -> %s; table allows %v", seq, trace, cmd.CommandName(), from, to, targets)
				}
			} else if from != to || !aggregate.Accepts(from, cmd.CommandName()) {
				t.Fatalf("seq %d %v: %s in %s moved to %s", seq, trace, cmd.CommandName(), from, to)
			}
		}
		if refolded := refold(t, h.events); !reflect.DeepEqual(refolded, h.tenant) {
			t.Fatalf("seq %d %v: fold from scratch differs:\n got %+v\nwant %+v", seq, trace, refolded, h.tenant)
		}
	}
}

// billingInvariant checks that the lifecycle keeps billing_status honest:
// billing_status is trialing exactly while the tenant is on its trial —
// status TRIAL, or suspended from TRIAL, or a cancellation pending that was
// requested during the trial (or suspended from one), or provisioning with
// a trial to start. (The
// bug it guards against: a suspended trial resumed as ACTIVE, still
// "trialing", for ever.) It holds from what the lifecycle sets (creation,
// conversion, activation) until the billing provider records a status of
// its own, and is not checked once the tenant was terminated.
type billingInvariant struct {
	providerSpoke, terminated bool
}

func (b *billingInvariant) observe(evs []aggregate.Event) {
	for _, e := range evs {
		switch e := e.(type) {
		case aggregate.TenantCreated, aggregate.TrialConverted:
			b.providerSpoke = false
		case aggregate.TenantActivated:
			if e.From == aggregate.StatusTrial {
				b.providerSpoke = false
			}
		case aggregate.BillingStatusChanged:
			b.providerSpoke = true
		case aggregate.TenantTerminated, aggregate.ProvisioningFailed, aggregate.CancellationCompleted:
			b.terminated = true
		}
	}
}

func (b *billingInvariant) check(t *aggregate.Tenant) error {
	if b.providerSpoke || b.terminated {
		return nil
	}
	onTrial := false
	switch t.Status {
	case aggregate.StatusProvisioning:
		onTrial = t.TrialDays > 0
	case aggregate.StatusTrial:
		onTrial = true
	case aggregate.StatusSuspended:
		to := t.Suspension.ResumesTo()
		onTrial = to == aggregate.StatusTrial || to == aggregate.StatusPendingCancellation && t.Cancellation.RevertsTo() == aggregate.StatusTrial
	case aggregate.StatusPendingCancellation:
		onTrial = t.Cancellation.RevertsTo() == aggregate.StatusTrial
	}
	if trialing := t.BillingStatus == aggregate.BillingTrialing; trialing != onTrial {
		return fmt.Errorf("billing_status %s in %s (on a trial: %v)", t.BillingStatus, t.Status, onTrial)
	}
	return nil
}

// refold encodes every event to its wire JSON, decodes it and folds from scratch.
func refold(t *testing.T, envs []aggregate.Envelope) *aggregate.Tenant {
	t.Helper()
	decoded := make([]aggregate.Envelope, len(envs))
	for i, env := range envs {
		data, v, err := aggregate.EncodeEvent(env.Data)
		if err != nil {
			t.Fatal(err)
		}
		e, err := aggregate.DecodeEvent(env.Type, v, data)
		if err != nil {
			t.Fatal(err)
		}
		// Times come back from JSON without a monotonic reading; so do they here.
		var meta aggregate.Metadata
		mb, _ := json.Marshal(env.Metadata)
		_ = json.Unmarshal(mb, &meta)
		decoded[i] = env
		decoded[i].Data = e
		decoded[i].Metadata = meta
	}
	return aggregate.Fold(decoded)
}

func TestSnapshotRoundTripsTheWholeState(t *testing.T) {
	t.Parallel()
	for seq := 0; seq < 300; seq++ {
		r := rand.New(rand.NewPCG(uint64(seq), 9))
		h := &history{tenant: &aggregate.Tenant{}, now: t0}
		for step := 0; step < 30; step++ {
			h.now = h.now.Add(time.Duration(r.IntN(48*60)) * time.Minute)
			cmd := randomCommand(r, h.now)
			if evs, err := h.tenant.Decide(cmd, h.now, cat); err == nil {
				h.apply(cmd, evs)
			}
		}
		b, err := aggregate.MarshalSnapshot(h.tenant)
		if err != nil {
			t.Fatal(err)
		}
		back, err := aggregate.UnmarshalSnapshot(b)
		if err != nil {
			t.Fatal(err)
		}
		if want := refold(t, h.events); !reflect.DeepEqual(back, want) {
			t.Fatalf("seq %d: snapshot round trip differs:\n got %+v\nwant %+v", seq, back, want)
		}
	}
}
