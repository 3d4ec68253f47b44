package service_test

import (
	"context"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/tenancyhq/tenancy/aggregate"
	"github.com/tenancyhq/tenancy/internal/auth"
	"github.com/tenancyhq/tenancy/process"
)

// TestForgedTimerKeyCannotSwitchOffATimer: a tenant can compute its own
// cancellation timer's key and send it with a harmless PATCH first. Its
// key lives in its own scope, so when the timer fires, the cancellation
// still takes effect, as it does for a tenant that forged nothing.
func TestForgedTimerKeyCannotSwitchOffATimer(t *testing.T) {
	t.Parallel()
	var (
		mu    sync.Mutex
		ahead time.Duration // how far the service's clock is ahead of the wall clock
	)
	now := func() time.Time {
		mu.Lock()
		defer mu.Unlock()
		return time.Now().Add(ahead)
	}
	s := startService(t, serviceOptions{auth: true, now: now})
	admin := token(t, "ops", nil, auth.ScopeAdmin)
	ctx := context.Background()
	effective := time.Now().Add(time.Hour).UTC().Truncate(time.Second)
	var ids []uuid.UUID
	for _, name := range []string{"Forger", "Control"} {
		tenant := createTenant(s, admin, name+" "+uuid.NewString()[:8])
		id := uuid.MustParse(tenant["id"].(string))
		s.must(http.StatusOK, admin, "POST", "/api/v1/tenants/"+id.String()+"/cancel", map[string]any{"effective_at": effective})
		ids = append(ids, id)
	}
	s.caughtUp()
	timers, err := process.Pending(ctx, s.app.Pool(), ids[0])
	if err != nil {
		t.Fatal(err)
	}
	var cancellation *process.Timer
	for i := range timers {
		if timers[i].Kind == process.TimerCancellation {
			cancellation = &timers[i]
		}
	}
	if cancellation == nil {
		t.Fatalf("no cancellation timer among %+v", timers)
	}
	// The attack: the tenant's own write token, the timer's key.
	bound := token(t, "tenant-admin@forger", &ids[0], auth.ScopeWrite)
	s.must(http.StatusOK, bound, "PATCH", "/api/v1/tenants/"+ids[0].String(), map[string]any{"labels": map[string]string{"innocent": "yes"}},
		"Idempotency-Key", process.TimerKey(*cancellation))
	s.caughtUp()

	// An hour passes: the service's timer worker fires both cancellations.
	mu.Lock()
	ahead = time.Hour + time.Second
	mu.Unlock()
	for i, id := range ids {
		deadline := time.Now().Add(20 * time.Second)
		for {
			tenant, _, err := s.app.Commands.Load(ctx, id)
			if err != nil {
				t.Fatal(err)
			}
			if tenant.Status == aggregate.StatusTerminated {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("tenant %d (%s) is %s 20 s after its cancellation was due, want TERMINATED", i, []string{"forger", "control"}[i], tenant.Status)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
}

// TestAnotherCallersKeyIsAnotherCommand: a key is its caller's. Bob sending
// Alice's request with Alice's key is Bob's command: applied, or refused on
// its own merits, never answered with Alice's outcome.
func TestAnotherCallersKeyIsAnotherCommand(t *testing.T) {
	t.Parallel()
	s := startService(t, serviceOptions{auth: true})
	alice := token(t, "alice", nil, auth.ScopeWrite)
	bob := token(t, "bob", nil, auth.ScopeWrite)
	off := false
	name := "Shared Key " + uuid.NewString()[:8]
	body := map[string]any{"name": name, "edition": "professional", "region": "eu-west-1", "trial": &off}
	first := s.must(http.StatusCreated, alice, "POST", "/api/v1/tenants", body, "Idempotency-Key", "k-create")
	// Bob's identical create is his own: refused, since the name is taken.
	theirs := s.do(bob, "POST", "/api/v1/tenants", body, "Idempotency-Key", "k-create")
	if theirs.status != http.StatusConflict || theirs.header.Get("Idempotent-Replayed") != "" || strings.Contains(string(theirs.body), first.json(t)["id"].(string)) {
		t.Fatalf("bob's create with alice's key: %d %v %s, want 409 (the name is taken), no replay of alice's tenant", theirs.status, theirs.header, theirs.body)
	}
	// Alice's retry replays hers.
	again := s.must(http.StatusCreated, alice, "POST", "/api/v1/tenants", body, "Idempotency-Key", "k-create")
	if again.header.Get("Idempotent-Replayed") != "true" || string(again.body) != string(first.body) {
		t.Fatalf("alice's retry: %v %s, want her first answer replayed", again.header, again.body)
	}
	// Same key, another request: 422.
	if r := s.do(alice, "POST", "/api/v1/tenants", map[string]any{"name": name + " 2", "edition": "free", "region": "eu-west-1"}, "Idempotency-Key", "k-create"); r.status != http.StatusUnprocessableEntity {
		t.Fatalf("alice's key on another request: %d %s, want 422", r.status, r.body)
	}

	id := first.json(t)["id"].(string)
	path := "/api/v1/tenants/" + id
	s.must(http.StatusOK, alice, "POST", path+"/complete-provisioning", map[string]any{})
	suspend := map[string]any{"reason": "admin_action"}
	s.must(http.StatusOK, alice, "POST", path+"/suspend", suspend, "Idempotency-Key", "k-suspend")
	resumed := s.must(http.StatusOK, alice, "POST", path+"/resume", map[string]any{})
	// Bob's suspend with alice's key is applied: a new suspension.
	bobs := s.must(http.StatusOK, bob, "POST", path+"/suspend", suspend, "Idempotency-Key", "k-suspend")
	if bobs.header.Get("Idempotent-Replayed") != "" || bobs.json(t)["status"] != "SUSPENDED" || bobs.header.Get("ETag") == resumed.header.Get("ETag") {
		t.Fatalf("bob's suspend with alice's key: %v %s, want his own suspension applied", bobs.header, bobs.body)
	}
	s.read(bobs)
	history := s.must(http.StatusOK, alice, "GET", path+"/events?type=TenantSuspended", nil).json(t)
	evs, _ := history["items"].([]any)
	if len(evs) != 2 {
		t.Fatalf("%d suspensions in the history, want 2 (alice's, bob's): %v", len(evs), history)
	}
}

// TestConcurrentCopiesOfARequestApplyOnce: 20 copies of one request with
// one key, at once: one effect; every answer is the command's outcome (the
// others replayed) or a 409 with Retry-After.
func TestConcurrentCopiesOfARequestApplyOnce(t *testing.T) {
	t.Parallel()
	s := startService(t, serviceOptions{auth: true})
	admin := token(t, "ops", nil, auth.ScopeAdmin)
	id := createTenant(s, admin, "Twenty "+uuid.NewString()[:8])["id"].(string)
	path := "/api/v1/tenants/" + id
	const copies = 20
	var wg sync.WaitGroup
	answers := make([]response, copies)
	start := make(chan struct{})
	for i := range copies {
		wg.Go(func() {
			<-start
			answers[i] = s.do(admin, "POST", path+"/suspend", map[string]any{"reason": "security_threat", "note": "one"}, "Idempotency-Key", "suspend-once")
		})
	}
	close(start)
	wg.Wait()
	applied, replayed := 0, 0
	for i, r := range answers {
		switch {
		case r.status == http.StatusOK && r.header.Get("Idempotent-Replayed") == "true":
			replayed++
		case r.status == http.StatusOK:
			applied++
		case r.status == http.StatusConflict && r.header.Get("Retry-After") != "":
		default:
			t.Errorf("copy %d: %d %v %s", i, r.status, r.header, r.body)
		}
		if r.status == http.StatusOK && r.json(t)["status"] != "SUSPENDED" {
			t.Errorf("copy %d answered status %v", i, r.json(t)["status"])
		}
	}
	if applied != 1 {
		t.Errorf("%d copies applied (%d replayed), want exactly 1", applied, replayed)
	}
	s.read(answers[0])
	history := s.must(http.StatusOK, admin, "GET", path+"/events?type=TenantSuspended", nil).json(t)
	if evs, _ := history["items"].([]any); len(evs) != 1 {
		t.Fatalf("%d suspensions stored, want 1", len(evs))
	}
}
