package commands_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/tenancyhq/tenancy/aggregate"
	"github.com/tenancyhq/tenancy/commands"
	"github.com/tenancyhq/tenancy/eventstore"
	"github.com/tenancyhq/tenancy/eventstore/memory"
	"github.com/tenancyhq/tenancy/tenantlog"
)

// clock is a settable test clock.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

func newHandler(t *testing.T, store commands.Store) (*commands.Handler, *clock) {
	t.Helper()
	c := &clock{now: time.Date(2026, 2, 1, 8, 0, 0, 0, time.UTC)}
	return commands.NewHandler(store, commands.Options{Now: c.Now}), c
}

func create(t *testing.T, h *commands.Handler, name string) commands.Result {
	t.Helper()
	res, err := h.Create(context.Background(), aggregate.Create{Name: name, Edition: "professional", Region: "us-east-1",
		Contacts: []aggregate.Contact{{Role: "primary", Email: "ops@example.test"}}}, aggregate.Metadata{Actor: "test"})
	if err != nil {
		t.Fatalf("create %q: %v", name, err)
	}
	return res
}

func exec(t *testing.T, h *commands.Handler, id uuid.UUID, cmd aggregate.Command) commands.Result {
	t.Helper()
	res, err := h.Execute(context.Background(), commands.Request{TenantID: id, Command: cmd})
	if err != nil {
		t.Fatalf("%s: %v", cmd.CommandName(), err)
	}
	return res
}

// streamState folds the tenant's stream as stored.
func streamState(t *testing.T, s eventstore.StreamReader, id uuid.UUID) (*aggregate.Tenant, []aggregate.Envelope) {
	t.Helper()
	recs, err := s.ReadStream(context.Background(), aggregate.StreamName(id), eventstore.Forward, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	envs, err := tenantlog.DecodeAll(recs)
	if err != nil {
		t.Fatal(err)
	}
	return aggregate.Fold(envs), envs
}

func TestFullLifecycleThroughTheHandler(t *testing.T) {
	t.Parallel()
	store := memory.New()
	h, clk := newHandler(t, store)
	res := create(t, h, "Test Corp")
	id := res.TenantID
	if res.Tenant.Status != aggregate.StatusProvisioning || !aggregate.IsExternalID(res.Tenant.ExternalID) || res.Version != 0 {
		t.Fatalf("created: %+v", res.Tenant)
	}
	steps := []struct {
		cmd  aggregate.Command
		want aggregate.Status
	}{
		{aggregate.CompleteProvisioning{}, aggregate.StatusTrial},
		{aggregate.Activate{}, aggregate.StatusActive},
		{aggregate.Suspend{Reason: aggregate.ReasonPaymentFailed}, aggregate.StatusSuspended},
		{aggregate.Resume{}, aggregate.StatusActive},
		{aggregate.ChangeEdition{Edition: aggregate.EditionEnterprise}, aggregate.StatusActive},
		{aggregate.Cancel{}, aggregate.StatusPendingCancellation},
		{aggregate.RevertCancellation{}, aggregate.StatusActive},
		{aggregate.Terminate{}, aggregate.StatusTerminated},
		{aggregate.Restore{}, aggregate.StatusActive},
		{aggregate.Terminate{RetentionDays: 1}, aggregate.StatusTerminated},
		{aggregate.Purge{}, aggregate.StatusPurged},
	}
	for _, st := range steps {
		clk.Advance(time.Hour)
		res = exec(t, h, id, st.cmd)
		if res.Tenant.Status != st.want {
			t.Fatalf("%s: status %s, want %s", st.cmd.CommandName(), res.Tenant.Status, st.want)
		}
		stored, _ := streamState(t, store, id)
		if !reflect.DeepEqual(stored, res.Tenant) {
			t.Fatalf("%s: returned state differs from the stream's fold", st.cmd.CommandName())
		}
		if res.Version != stored.Version || res.Position.IsZero() {
			t.Fatalf("%s: version %d position %v, stream at %d", st.cmd.CommandName(), res.Version, res.Position, stored.Version)
		}
	}
	// Purged: the name is free again.
	create(t, h, "TEST corp")
}

func TestRefusedTransitionNamesStatusAndAllowedCommands(t *testing.T) {
	t.Parallel()
	h, _ := newHandler(t, memory.New())
	id := create(t, h, "Acme").TenantID
	_, err := h.Execute(context.Background(), commands.Request{TenantID: id, Command: aggregate.Resume{}})
	de, ok := aggregate.AsError(err)
	if !ok || de.Code != aggregate.CodeTransition || de.Status != aggregate.StatusProvisioning || len(de.Allowed) == 0 {
		t.Fatalf("err = %#v", err)
	}
}

func TestUnknownTenantIsNotFound(t *testing.T) {
	t.Parallel()
	h, _ := newHandler(t, memory.New())
	_, err := h.Execute(context.Background(), commands.Request{TenantID: uuid.New(), Command: aggregate.Activate{}})
	if !aggregate.HasCode(err, aggregate.CodeNotFound) {
		t.Fatalf("err = %v, want not found", err)
	}
}

func TestPinnedVersionMismatchFailsWithoutWriting(t *testing.T) {
	t.Parallel()
	store := memory.New()
	h, _ := newHandler(t, store)
	id := create(t, h, "Acme").TenantID
	exec(t, h, id, aggregate.CompleteProvisioning{})
	stale := uint64(0)
	_, err := h.Execute(context.Background(), commands.Request{TenantID: id, Command: aggregate.Activate{}, ExpectedVersion: &stale})
	if !errors.Is(err, commands.ErrVersionMismatch) {
		t.Fatalf("err = %v, want ErrVersionMismatch", err)
	}
	if st, _ := streamState(t, store, id); st.Status != aggregate.StatusTrial {
		t.Fatalf("status %s after a refused pinned command", st.Status)
	}
	current := uint64(2)
	if _, err := h.Execute(context.Background(), commands.Request{TenantID: id, Command: aggregate.Activate{}, ExpectedVersion: &current}); err != nil {
		t.Fatalf("pinned at the current version: %v", err)
	}
}

// racingStore lets another writer slip an event in just before the handler's
// first write, to force a conflict.
type racingStore struct {
	*memory.Store
	races atomic.Int32
	slip  func()
}

func (s *racingStore) Commit(ctx context.Context, w eventstore.Write) (eventstore.AppendResult, error) {
	if strings.HasPrefix(w.Stream, aggregate.StreamPrefix) && s.races.Add(-1) >= 0 {
		s.slip()
	}
	return s.Store.Commit(ctx, w)
}

func TestConflictIsDecidedAgainAgainstTheFreshStream(t *testing.T) {
	t.Parallel()
	store := &racingStore{Store: memory.New()}
	h, _ := newHandler(t, store)
	id := create(t, h, "Acme").TenantID
	exec(t, h, id, aggregate.CompleteProvisioning{})
	other, _ := newHandler(t, store.Store)
	store.slip = func() {
		if _, err := other.Execute(context.Background(), commands.Request{TenantID: id, Command: aggregate.ExtendTrial{Days: 3}}); err != nil {
			t.Errorf("slip: %v", err)
		}
	}
	store.races.Store(1)
	res, err := h.Execute(context.Background(), commands.Request{TenantID: id, Command: aggregate.ExtendTrial{Days: 5}})
	if err != nil {
		t.Fatal(err)
	}
	if res.Attempts != 2 || res.Tenant.TrialDays != 14+3+5 {
		t.Fatalf("attempts %d, trial days %d; want 2 and 22", res.Attempts, res.Tenant.TrialDays)
	}
	// Endless contention gives up after MaxAttempts with nothing written by us.
	store.races.Store(100)
	_, err = h.Execute(context.Background(), commands.Request{TenantID: id, Command: aggregate.ExtendTrial{Days: 1}})
	if !errors.Is(err, commands.ErrTooManyConflicts) {
		t.Fatalf("err = %v, want ErrTooManyConflicts", err)
	}
}

func TestIdempotentRequestIsAppliedOnce(t *testing.T) {
	t.Parallel()
	store := memory.New()
	h, clk := newHandler(t, store)
	ctx := context.Background()
	alice := commands.ClientScope("alice", "")
	create := commands.Request{Command: aggregate.Create{Name: "Idem Corp", Edition: "free", Region: "eu-west-1"},
		Identity: &commands.Identity{Scope: alice, Key: "key-1", Fingerprint: "create idem"}}
	first, err := h.Execute(ctx, create)
	if err != nil {
		t.Fatal(err)
	}
	again, err := h.Execute(ctx, create)
	if err != nil {
		t.Fatal(err)
	}
	if !again.Duplicate || again.TenantID != first.TenantID || again.Events[0].EventID != first.Events[0].EventID {
		t.Fatalf("retried create: duplicate=%v id %s (first %s)", again.Duplicate, again.TenantID, first.TenantID)
	}
	id := first.TenantID
	req := commands.Request{TenantID: id, Command: aggregate.CompleteProvisioning{}, Identity: &commands.Identity{Scope: alice, Key: "key-2"}}
	r1, err := h.Execute(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	clk.Advance(time.Minute)
	exec(t, h, id, aggregate.Activate{}) // something else happens in between
	r2, err := h.Execute(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	if !r2.Duplicate || r2.Version != r1.Version || len(r2.Events) != 2 || r2.Events[1].EventID != r1.Events[1].EventID {
		t.Fatalf("replayed request: %+v, first %+v", r2, r1)
	}
	if r2.Tenant.Status != r1.Tenant.Status || r2.Tenant.Version != r1.Tenant.Version {
		t.Fatalf("replay answers state %s@%d, the first attempt %s@%d", r2.Tenant.Status, r2.Tenant.Version, r1.Tenant.Status, r1.Tenant.Version)
	}
	_, envs := streamState(t, store, id)
	if len(envs) != 4 {
		t.Fatalf("stream has %d events, want 4 (created, provisioned, trial started, activated)", len(envs))
	}
}

// TestIdempotencyKeyBelongsToItsCaller: a key is scoped by the caller that
// sent it and bound to its request.
func TestIdempotencyKeyBelongsToItsCaller(t *testing.T) {
	t.Parallel()
	store := memory.New()
	h, _ := newHandler(t, store)
	ctx := context.Background()
	id := create(t, h, "Keyed").TenantID
	exec(t, h, id, aggregate.CompleteProvisioning{})
	alice := &commands.Identity{Scope: commands.ClientScope("alice", ""), Key: "k", Fingerprint: "suspend"}
	if _, err := h.Execute(ctx, commands.Request{TenantID: id, Command: aggregate.Suspend{Reason: aggregate.ReasonAdminAction}, Identity: alice}); err != nil {
		t.Fatal(err)
	}
	// Alice again, same key, another request: refused, nothing written.
	other := *alice
	other.Fingerprint = "extend-trial"
	before, _ := streamState(t, store, id)
	_, err := h.Execute(ctx, commands.Request{TenantID: id, Command: aggregate.ExtendTrial{Days: 3}, Identity: &other})
	if !errors.Is(err, commands.ErrIdempotencyKeyReused) {
		t.Fatalf("same key, other request: %v, want ErrIdempotencyKeyReused", err)
	}
	// Bob with Alice's key string: his own command, applied.
	bob := &commands.Identity{Scope: commands.ClientScope("bob", ""), Key: "k", Fingerprint: "resume"}
	res, err := h.Execute(ctx, commands.Request{TenantID: id, Command: aggregate.Resume{}, Identity: bob})
	if err != nil || res.Duplicate || res.Tenant.Status == aggregate.StatusSuspended {
		t.Fatalf("bob's command with alice's key: dup=%v status=%v err=%v", res.Duplicate, res.Tenant, err)
	}
	after, _ := streamState(t, store, id)
	if after.Version != before.Version+1 {
		t.Fatalf("version %d -> %d, want one event (bob's resume)", before.Version, after.Version)
	}
	// A token bound to a tenant is another caller than its subject unbound.
	if commands.ClientScope("alice", "") == commands.ClientScope("alice", id.String()) {
		t.Fatal("tenant binding does not change the scope")
	}
	// No client scope is a system scope, whatever the subject says.
	if commands.ClientScope("system:timers", "") == commands.SystemScope("timers") {
		t.Fatal("a client can forge the timers' scope")
	}
}

// TestConcurrentCopiesOfOneRequestApplyOnce: 20 copies of one idempotent
// request at once: one effect; every answer is the command's outcome.
func TestConcurrentCopiesOfOneRequestApplyOnce(t *testing.T) {
	t.Parallel()
	store := memory.New()
	h, _ := newHandler(t, store)
	id := create(t, h, "Twenty").TenantID
	exec(t, h, id, aggregate.CompleteProvisioning{})
	before, _ := streamState(t, store, id)
	req := commands.Request{TenantID: id, Command: aggregate.Suspend{Reason: aggregate.ReasonAdminAction},
		Identity: &commands.Identity{Scope: commands.ClientScope("alice", ""), Key: "once", Fingerprint: "f"}}
	var wg sync.WaitGroup
	errs := make([]error, 20)
	results := make([]commands.Result, 20)
	for i := range 20 {
		wg.Go(func() { results[i], errs[i] = h.Execute(context.Background(), req) })
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("copy %d: %v", i, err)
		}
		if results[i].Tenant.Status != aggregate.StatusSuspended || results[i].Version != before.Version+1 {
			t.Fatalf("copy %d answered %s@%d", i, results[i].Tenant.Status, results[i].Version)
		}
	}
	after, _ := streamState(t, store, id)
	if after.Version != before.Version+1 {
		t.Fatalf("%d events written, want 1", after.Version-before.Version)
	}
}

// failingStore fails every tenant-stream write while fail is set, as a
// crash or a lost connection would.
type failingStore struct {
	*memory.Store
	fail atomic.Bool
}

func (s *failingStore) Commit(ctx context.Context, w eventstore.Write) (eventstore.AppendResult, error) {
	if s.fail.Load() {
		return eventstore.AppendResult{}, errors.New("connection reset")
	}
	return s.Store.Commit(ctx, w)
}

// TestFailedCreateLeavesNothingBehind: the name is claimed in the create's
// own write, so a create that failed claims nothing: its retry, or anyone
// else, gets the name at once.
func TestFailedCreateLeavesNothingBehind(t *testing.T) {
	t.Parallel()
	store := &failingStore{Store: memory.New()}
	h, _ := newHandler(t, store)
	ctx := context.Background()
	req := commands.Request{Command: aggregate.Create{Name: "Crashy", Edition: "free", Region: "us-east-1"},
		Identity: &commands.Identity{Scope: commands.ClientScope("alice", ""), Key: "k"}}
	store.fail.Store(true)
	if _, err := h.Execute(ctx, req); err == nil {
		t.Fatal("create succeeded with a failing store")
	}
	store.fail.Store(false)
	if _, err := h.Execute(ctx, req); err != nil {
		t.Fatalf("retry with the same key: %v", err)
	}
	store.fail.Store(true)
	_, _ = h.Create(ctx, aggregate.Create{Name: "Crashy Two", Edition: "free", Region: "us-east-1"}, aggregate.Metadata{})
	store.fail.Store(false)
	if _, err := h.Create(ctx, aggregate.Create{Name: "crashy two", Edition: "free", Region: "us-east-1"}, aggregate.Metadata{}); err != nil {
		t.Fatalf("a name whose create failed: %v", err)
	}
}

func TestNamesAreUniqueAcrossTenants(t *testing.T) {
	t.Parallel()
	h, _ := newHandler(t, memory.New())
	a := create(t, h, "Acme Corp")
	_, err := h.Create(context.Background(), aggregate.Create{Name: "  ACME   corp ", Edition: "free", Region: "us-east-1"}, aggregate.Metadata{})
	if de, ok := aggregate.AsError(err); !ok || de.Code != aggregate.CodeConflict || de.Field != "name" {
		t.Fatalf("duplicate name: err = %v", err)
	}
	b := create(t, h, "Beta")
	exec(t, h, b.TenantID, aggregate.CompleteProvisioning{})
	exec(t, h, a.TenantID, aggregate.CompleteProvisioning{})
	// Renaming onto a taken name is refused; the tenant keeps its own.
	_, err = h.Execute(context.Background(), commands.Request{TenantID: b.TenantID, Command: aggregate.Rename{Name: "acme corp"}})
	if !aggregate.HasCode(err, aggregate.CodeConflict) {
		t.Fatalf("rename onto a taken name: %v", err)
	}
	// A rename frees the old name.
	exec(t, h, a.TenantID, aggregate.Rename{Name: "Acme Holdings"})
	exec(t, h, b.TenantID, aggregate.Rename{Name: "Acme Corp"})
	// Changing only case keeps the reservation.
	exec(t, h, b.TenantID, aggregate.Rename{Name: "ACME CORP"})
	if _, err := h.Create(context.Background(), aggregate.Create{Name: "acme corp", Edition: "free", Region: "us-east-1"}, aggregate.Metadata{}); !aggregate.HasCode(err, aggregate.CodeConflict) {
		t.Fatalf("name held after a case-only rename: %v", err)
	}
}

// TestRacingCommandsLinearize races 64 goroutines sending commands to one
// tenant, through one handler or spread over two (two replicas, each with
// its cached state), then checks the stored history is one a sequential run
// could have produced: replaying each command in stored order against the
// state before it decides exactly the events that were stored.
func TestRacingCommandsLinearize(t *testing.T) {
	t.Parallel()
	for _, replicas := range []int{1, 2} {
		t.Run(fmt.Sprintf("%d replicas", replicas), func(t *testing.T) {
			t.Parallel()
			racingCommandsLinearize(t, replicas)
		})
	}
}

func racingCommandsLinearize(t *testing.T, replicas int) {
	store := memory.New()
	hs := make([]*commands.Handler, replicas)
	for i := range hs {
		hs[i] = commands.NewHandler(store, commands.Options{MaxAttempts: 10})
	}
	h := hs[0]
	id := create(t, h, "Racy").TenantID
	exec(t, h, id, aggregate.CompleteProvisioning{})
	exec(t, h, id, aggregate.ConvertTrial{})
	var mu sync.Mutex
	sent := map[string]aggregate.Command{}
	var wg sync.WaitGroup
	for g := 0; g < 64; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := rand.New(rand.NewPCG(uint64(g), 7))
			for i := 0; i < 10; i++ {
				cmd := []aggregate.Command{
					aggregate.Suspend{Reason: aggregate.ReasonAdminAction}, aggregate.Resume{},
					aggregate.UpdateProfile{Labels: &map[string]string{"g": fmt.Sprint(g)}},
					aggregate.ExtendTrial{Days: 1},
					aggregate.RecordBillingStatus{Status: aggregate.BillingPastDue, ProviderEventID: fmt.Sprintf("e%d-%d", g, i)},
				}[r.IntN(5)]
				corr := fmt.Sprintf("g%d-%d", g, i)
				mu.Lock()
				sent[corr] = cmd
				mu.Unlock()
				_, err := hs[g%replicas].Execute(context.Background(), commands.Request{TenantID: id, Command: cmd, Metadata: aggregate.Metadata{CorrelationID: corr}})
				// Refusals and giving up under contention are fine: neither writes.
				if err != nil && !aggregate.HasCode(err, aggregate.CodeTransition) && !aggregate.HasCode(err, aggregate.CodeInvariant) && !errors.Is(err, commands.ErrTooManyConflicts) {
					t.Errorf("%s: %v", cmd.CommandName(), err)
				}
			}
		}()
	}
	wg.Wait()
	_, envs := streamState(t, store, id)
	state := aggregate.Fold(envs[:4])
	for i := 4; i < len(envs); {
		corr := envs[i].Metadata.CorrelationID
		j := i
		for j < len(envs) && envs[j].Metadata.CorrelationID == corr {
			j++
		}
		evs, err := state.Decide(sent[corr], envs[i].OccurredAt, aggregate.DefaultCatalog())
		if err != nil {
			t.Fatalf("event %d (%s): replaying %s sequentially is refused: %v", i, corr, sent[corr].CommandName(), err)
		}
		if len(evs) != j-i {
			t.Fatalf("event %d (%s): sequential replay emits %d events, stored %d", i, corr, len(evs), j-i)
		}
		for k, e := range evs {
			want, _ := json.Marshal(envs[i+k].Data)
			got, _ := json.Marshal(e)
			if string(got) != string(want) {
				t.Fatalf("event %d: sequential replay emits %s, stored %s", i+k, got, want)
			}
			state.Apply(envs[i+k])
		}
		i = j
	}
	if len(envs) < 10 {
		t.Fatalf("only %d events: the race exercised nothing", len(envs))
	}
}

// TestRandomSequencesReturnTheStreamsState sends random commands through the
// handler and checks that the state it returns always equals a fold of the
// stream from scratch.
func TestRandomSequencesReturnTheStreamsState(t *testing.T) {
	t.Parallel()
	store := memory.New()
	h, clk := newHandler(t, store)
	r := rand.New(rand.NewPCG(1, 2))
	cmds := func() aggregate.Command {
		return []aggregate.Command{
			aggregate.CompleteProvisioning{}, aggregate.Activate{}, aggregate.ConvertTrial{}, aggregate.ExpireTrial{},
			aggregate.Suspend{Reason: aggregate.ReasonAbuseDetected}, aggregate.Resume{}, aggregate.Cancel{},
			aggregate.RevertCancellation{}, aggregate.CompleteCancellation{}, aggregate.MigrateRegion{To: "eu-west-1"},
			aggregate.MigrateRegion{To: "us-east-1"}, aggregate.CompleteMigration{}, aggregate.FailMigration{},
			aggregate.RollbackMigration{}, aggregate.Terminate{}, aggregate.Restore{}, aggregate.Purge{},
			aggregate.ChangeEdition{Edition: "free"}, aggregate.ChangeEdition{Edition: "unlimited"},
			aggregate.Rename{Name: fmt.Sprintf("Name %d", r.IntN(5))}, aggregate.ExtendTrial{Days: 10},
		}[r.IntN(21)]
	}
	for n := 0; n < 200; n++ {
		id := create(t, h, fmt.Sprintf("Tenant %d", n)).TenantID
		for i := 0; i < 25; i++ {
			clk.Advance(time.Duration(r.IntN(72)) * time.Hour)
			res, err := h.Execute(context.Background(), commands.Request{TenantID: id, Command: cmds()})
			if err != nil {
				if _, ok := aggregate.AsError(err); !ok {
					t.Fatal(err)
				}
				continue
			}
			if stored, _ := streamState(t, store, id); !reflect.DeepEqual(stored, res.Tenant) {
				t.Fatalf("tenant %d step %d: returned state differs from a fold of the stream", n, i)
			}
		}
	}
}
