package commands_test

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"reflect"
	"slices"
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
)

// readRecorder records where each read of a tenant stream started: 0 is a
// whole-stream read, anything else a read of the events after a cached state.
type readRecorder struct {
	*memory.Store
	mu    sync.Mutex
	reads map[string][]int64
}

func newReadRecorder() *readRecorder {
	return &readRecorder{Store: memory.New(), reads: map[string][]int64{}}
}

func (s *readRecorder) ReadStream(ctx context.Context, stream string, d eventstore.Direction, from int64, limit int) ([]eventstore.RecordedEvent, error) {
	if strings.HasPrefix(stream, aggregate.StreamPrefix) && d == eventstore.Forward {
		s.mu.Lock()
		s.reads[stream] = append(s.reads[stream], from)
		s.mu.Unlock()
	}
	return s.Store.ReadStream(ctx, stream, d, from, limit)
}

// readsOf lists where the reads of the tenant's stream started.
func (s *readRecorder) readsOf(id uuid.UUID) []int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.reads[aggregate.StreamName(id)])
}

// replicas returns n handlers on one store and one clock, as n service
// replicas on one database; sizes[i] is replica i's StateCacheSize.
func replicas(store commands.Store, sizes ...int) ([]*commands.Handler, *clock) {
	c := &clock{now: time.Date(2026, 2, 1, 8, 0, 0, 0, time.UTC)}
	hs := make([]*commands.Handler, len(sizes))
	for i, size := range sizes {
		hs[i] = commands.NewHandler(store, commands.Options{Now: c.Now, StateCacheSize: size})
	}
	return hs, c
}

// TestCachedTenantIsDecidedWithoutReading: a tenant whose state the
// handler holds is decided on it without a read (the write's expected
// version checks it); without the cache every command reads the stream.
func TestCachedTenantIsDecidedWithoutReading(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name  string
		size  int
		reads []int64 // the reads each command makes
	}{
		{"cache on", 0, nil},
		{"cache off", -1, []int64{0}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			store := newReadRecorder()
			h := commands.NewHandler(store, commands.Options{StateCacheSize: tc.size})
			res := create(t, h, "Readers")
			for _, cmd := range []aggregate.Command{aggregate.CompleteProvisioning{}, aggregate.Activate{},
				aggregate.Suspend{Reason: aggregate.ReasonAdminAction}, aggregate.Resume{}} {
				before := store.readsOf(res.TenantID)
				res = exec(t, h, res.TenantID, cmd)
				if got := store.readsOf(res.TenantID)[len(before):]; !slices.Equal(got, tc.reads) {
					t.Fatalf("%s read from %v, want %v", cmd.CommandName(), got, tc.reads)
				}
			}
		})
	}
}

// TestStaleCacheReadsOnlyTheNewEvents: when another replica wrote since,
// the write on the cached state is refused and only the events after it
// are read.
func TestStaleCacheReadsOnlyTheNewEvents(t *testing.T) {
	t.Parallel()
	store := newReadRecorder()
	hs, _ := replicas(store, 0, 0)
	a, b := hs[0], hs[1]
	id := create(t, a, "Two Writers").TenantID
	exec(t, a, id, aggregate.CompleteProvisioning{})
	res := exec(t, b, id, aggregate.Activate{}) // a's cached state is now behind
	before := store.readsOf(id)
	exec(t, a, id, aggregate.Suspend{Reason: aggregate.ReasonAdminAction})
	if got := store.readsOf(id)[len(before):]; !slices.Equal(got, []int64{int64(res.Version)}) {
		t.Fatalf("stale replica read from %v, want [%d] (the events after its cached state)", got, res.Version)
	}
}

func TestStateCacheEvictsBeyondItsSize(t *testing.T) {
	t.Parallel()
	store := newReadRecorder()
	h := commands.NewHandler(store, commands.Options{StateCacheSize: 2})
	a := create(t, h, "Alpha").TenantID
	b := create(t, h, "Beta").TenantID
	c := create(t, h, "Gamma").TenantID // evicts Alpha, the least recently used
	labels := &map[string]string{"k": "v"}
	for i, step := range []struct {
		id     uuid.UUID
		cmd    aggregate.Command
		cached bool
	}{
		{b, aggregate.CompleteProvisioning{}, true},
		{a, aggregate.CompleteProvisioning{}, false}, // cached again, evicting Gamma
		{c, aggregate.CompleteProvisioning{}, false}, // evicts Beta
		{a, aggregate.UpdateProfile{Labels: labels}, true},
		{b, aggregate.UpdateProfile{Labels: labels}, false},
	} {
		before := len(store.readsOf(step.id))
		exec(t, h, step.id, step.cmd)
		if read := len(store.readsOf(step.id)) > before; read == step.cached {
			t.Fatalf("step %d: read the stream: %v, want cached=%v", i, read, step.cached)
		}
	}
}

// TestReplicasWithCachesDecideAgainstTheLatestStream interleaves random
// commands on a few tenants through three replicas (default cache, a cache
// of three tenants, no cache): each must decide exactly what a fresh fold
// of the stream decides, and return the stream's state, however stale its
// cached state.
func TestReplicasWithCachesDecideAgainstTheLatestStream(t *testing.T) {
	t.Parallel()
	store := memory.New()
	hs, clk := replicas(store, 0, 3, -1)
	ctx := context.Background()
	r := rand.New(rand.NewPCG(3, 4))
	ids := make([]uuid.UUID, 6)
	fresh := func(i int) {
		ids[i] = create(t, hs[r.IntN(len(hs))], fmt.Sprintf("Replicated %s", uuid.NewString()[:8])).TenantID
	}
	for i := range ids {
		fresh(i)
	}
	cmds := func(id uuid.UUID) aggregate.Command {
		return []aggregate.Command{
			aggregate.CompleteProvisioning{}, aggregate.Activate{}, aggregate.ConvertTrial{}, aggregate.ExpireTrial{},
			aggregate.Suspend{Reason: aggregate.ReasonAbuseDetected}, aggregate.Resume{}, aggregate.Cancel{},
			aggregate.RevertCancellation{}, aggregate.CompleteCancellation{}, aggregate.MigrateRegion{To: "eu-west-1"},
			aggregate.CompleteMigration{}, aggregate.FailMigration{}, aggregate.RollbackMigration{},
			aggregate.Terminate{}, aggregate.Restore{}, aggregate.Purge{}, aggregate.ChangeEdition{Edition: "free"},
			aggregate.ChangeEdition{Edition: "unlimited"}, aggregate.ExtendTrial{Days: 10},
			aggregate.Rename{Name: fmt.Sprintf("%s %d", id.String()[:8], r.IntN(3))},
			aggregate.UpdateProfile{Labels: &map[string]string{"n": fmt.Sprint(r.IntN(4))}},
			aggregate.RecordBillingStatus{Status: aggregate.BillingPastDue, ProviderEventID: uuid.NewString()},
		}[r.IntN(22)]
	}
	var decided int
	for step := range 2000 {
		clk.Advance(time.Duration(r.IntN(48)) * time.Hour)
		i := r.IntN(len(ids))
		id, h, cmd := ids[i], hs[r.IntN(len(hs))], cmds(ids[i])
		before, _ := streamState(t, store, id)
		want, wantErr := before.Decide(cmd, clk.Now(), aggregate.DefaultCatalog())
		res, err := h.Execute(ctx, commands.Request{TenantID: id, Command: cmd})
		if wantErr != nil || err != nil {
			we, _ := aggregate.AsError(wantErr)
			ge, ok := aggregate.AsError(err)
			if !ok || we == nil || ge.Code != we.Code {
				t.Fatalf("step %d %s: err %v, a fresh fold decides %v", step, cmd.CommandName(), err, wantErr)
			}
			continue
		}
		if len(res.Events) != len(want) {
			t.Fatalf("step %d %s: %d events, a fresh fold decides %d", step, cmd.CommandName(), len(res.Events), len(want))
		}
		for k, e := range want {
			w, _ := json.Marshal(e)
			g, _ := json.Marshal(res.Events[k].Data)
			if string(g) != string(w) {
				t.Fatalf("step %d %s: decided %s, a fresh fold decides %s", step, cmd.CommandName(), g, w)
			}
		}
		decided += len(want)
		after, _ := streamState(t, store, id)
		if !reflect.DeepEqual(after, res.Tenant) || res.Version != after.Version {
			t.Fatalf("step %d %s: returned state differs from a fold of the stream", step, cmd.CommandName())
		}
		if after.Status == aggregate.StatusPurged {
			fresh(i) // keep six live tenants
		}
	}
	if decided < 200 {
		t.Fatalf("only %d events decided: the test exercised little", decided)
	}
}

func TestIdempotentReplayIsRecognisedByAWarmReplica(t *testing.T) {
	t.Parallel()
	store := memory.New()
	hs, clk := replicas(store, 0, 0)
	a, b := hs[0], hs[1]
	ctx := context.Background()
	id := create(t, a, "Idem Replicas").TenantID
	req := commands.Request{TenantID: id, Command: aggregate.CompleteProvisioning{},
		Identity: &commands.Identity{Scope: commands.ClientScope("alice", ""), Key: "provision-1"}}
	first, err := a.Execute(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	clk.Advance(time.Minute)
	exec(t, b, id, aggregate.Activate{}) // b caches the tenant after the request
	exec(t, a, id, aggregate.Suspend{Reason: aggregate.ReasonAdminAction})
	for _, h := range []*commands.Handler{b, a, b} {
		again, err := h.Execute(ctx, req)
		if err != nil {
			t.Fatal(err)
		}
		if !again.Duplicate || again.Version != first.Version || !slices.EqualFunc(again.Events, first.Events,
			func(x, y aggregate.Envelope) bool { return x.EventID == y.EventID }) {
			t.Fatalf("replayed request: duplicate=%v version %d (first %d)", again.Duplicate, again.Version, first.Version)
		}
	}
	res := exec(t, b, id, aggregate.Resume{})
	if stored, envs := streamState(t, store, id); !reflect.DeepEqual(stored, res.Tenant) || len(envs) != 6 {
		t.Fatalf("after the replays: %d events (want 6: created, provisioned, trial started, activated, suspended, resumed), state equal to the stream's: %v",
			len(envs), reflect.DeepEqual(stored, res.Tenant))
	}
}

// copyingStore lets a concurrent copy of an idempotent request store its
// events just before the handler's own write.
type copyingStore struct {
	*memory.Store
	once atomic.Bool
	copy func()
}

func (s *copyingStore) Commit(ctx context.Context, w eventstore.Write) (eventstore.AppendResult, error) {
	if strings.HasPrefix(w.Stream, aggregate.StreamPrefix) && s.copy != nil && s.once.CompareAndSwap(false, true) {
		s.copy()
	}
	return s.Store.Commit(ctx, w)
}

// TestConcurrentIdempotentCopyLeavesNoStaleState: when two copies of one
// idempotent request race, the store keeps the first copy's events (its
// times, its metadata) and refuses the second's. The second handler answers
// with the first's outcome and must not cache its own version of them.
func TestConcurrentIdempotentCopyLeavesNoStaleState(t *testing.T) {
	t.Parallel()
	store := &copyingStore{Store: memory.New()}
	h, clk := newHandler(t, store)
	id := create(t, h, "Copycat").TenantID
	exec(t, h, id, aggregate.CompleteProvisioning{})
	ctx := context.Background()
	req := commands.Request{TenantID: id, Command: aggregate.Suspend{Reason: aggregate.ReasonAdminAction},
		Identity: &commands.Identity{Scope: commands.ClientScope("alice", ""), Key: "suspend-1"}}
	other, otherClock := newHandler(t, store.Store)
	otherClock.Advance(time.Hour) // the copy decides at another time
	store.copy = func() {
		if _, err := other.Execute(ctx, req); err != nil {
			t.Errorf("copy: %v", err)
		}
	}
	if _, err := h.Execute(ctx, req); err != nil {
		t.Fatal(err)
	}
	clk.Advance(time.Minute)
	res := exec(t, h, id, aggregate.UpdateProfile{Labels: &map[string]string{"after": "copy"}})
	if stored, _ := streamState(t, store, id); !reflect.DeepEqual(stored, res.Tenant) {
		t.Fatalf("state after the race: suspended at %v, the stream says %v", res.Tenant.Suspension.At, stored.Suspension.At)
	}
}

func TestPurgedTenantIsNotCached(t *testing.T) {
	t.Parallel()
	store := newReadRecorder()
	hs, clk := replicas(store, 0, 0)
	a, b := hs[0], hs[1]
	id := create(t, a, "Forget Me").TenantID
	exec(t, b, id, aggregate.CompleteProvisioning{}) // b caches the tenant, contacts and all
	exec(t, a, id, aggregate.Terminate{RetentionDays: 1})
	clk.Advance(time.Hour)
	res := exec(t, a, id, aggregate.Purge{})
	for _, c := range res.Tenant.Contacts {
		if c.Email != aggregate.Redacted {
			t.Fatalf("purged tenant's contact e-mail is %q", c.Email)
		}
	}
	// b learns of the purge from the events after its cached state, and
	// drops the tenant; a never kept it.
	for _, h := range []*commands.Handler{b, b, a} {
		if _, err := h.Execute(context.Background(), commands.Request{TenantID: id, Command: aggregate.Restore{}}); !aggregate.HasCode(err, aggregate.CodeTransition) {
			t.Fatalf("restore a purged tenant: %v", err)
		}
	}
	s := store.reads[aggregate.StreamName(id)]
	if got := s[len(s)-3:]; got[0] == 0 || got[1] != 0 || got[2] != 0 {
		t.Fatalf("reads after the purge start at %v: want a cached read by b, then whole-stream reads", got)
	}
}
