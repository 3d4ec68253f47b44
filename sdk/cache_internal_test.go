package sdk

import (
	"context"
	"encoding/json"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/tenancyhq/tenancy/aggregate"
	"github.com/tenancyhq/tenancy/eventstore"
	"github.com/tenancyhq/tenancy/projections/natspub"
)

func TestWireNamesAreThePublishers(t *testing.T) {
	t.Parallel()
	for _, tc := range [][2]string{
		{DefaultStreamName, natspub.StreamName},
		{DefaultSubjectPrefix, natspub.SubjectPrefix},
		{cloudEventTypePrefix, natspub.TypePrefix},
	} {
		if tc[0] != tc[1] {
			t.Errorf("SDK %q, publisher %q", tc[0], tc[1])
		}
	}
}

// TestEveryEventDecodesAsThePublisherSendsIt feeds every event type's golden
// envelope through the publisher's Message and the cache's decoder: the
// envelope the cache folds is the one the service folds.
func TestEveryEventDecodesAsThePublisherSendsIt(t *testing.T) {
	t.Parallel()
	files, err := filepath.Glob("../aggregate/testdata/events/*.golden")
	if err != nil || len(files) < len(aggregate.EventTypes()) {
		t.Fatalf("golden events: %d files, %v", len(files), err)
	}
	for _, f := range files {
		raw, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var g struct {
			Data          json.RawMessage    `json:"data"`
			EventID       uuid.UUID          `json:"event_id"`
			Metadata      aggregate.Metadata `json:"metadata"`
			SchemaVersion int                `json:"schema_version"`
			Stream        string             `json:"stream"`
			Type          string             `json:"type"`
			Version       uint64             `json:"version"`
		}
		if err := json.Unmarshal(raw, &g); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		meta, _ := json.Marshal(g.Metadata)
		rec := eventstore.RecordedEvent{ID: g.EventID, Type: g.Type, SchemaVersion: g.SchemaVersion, Stream: g.Stream, Version: g.Version,
			Position: eventstore.Position{Commit: 41, Prepare: 7}, Data: g.Data, Metadata: meta, RecordedAt: time.Now()}
		msg, err := natspub.Message(rec, "test")
		if err != nil {
			t.Fatalf("%s: %v", g.Type, err)
		}
		ev, err := decodeEvent(msg.Data)
		if err != nil {
			t.Fatalf("%s: %v", g.Type, err)
		}
		want, err := aggregate.DecodeEvent(g.Type, g.SchemaVersion, g.Data)
		if err != nil {
			t.Fatal(err)
		}
		g.Metadata.Command = "" // the CloudEvent does not carry it; Apply does not read it
		env := ev.env
		if env.EventID != g.EventID || env.Type != g.Type || env.Stream != g.Stream || env.Version != g.Version ||
			!env.OccurredAt.Equal(g.Metadata.OccurredAt) || !reflect.DeepEqual(env.Metadata, g.Metadata) ||
			!reflect.DeepEqual(env.Data, want) || ev.position != rec.Position.String() || ev.version != g.Version {
			t.Errorf("%s: decoded %+v (position %s), want the golden envelope %+v", g.Type, env, ev.position, g)
		}
	}
}

// TestMemoAnswersAsEvaluateDoes compares the cache's answers, evaluated and
// remembered, with aggregate.Catalog.Evaluate called directly.
func TestMemoAnswersAsEvaluateDoes(t *testing.T) {
	t.Parallel()
	clock := time.Date(2026, 3, 2, 9, 15, 30, 500_000_000, time.UTC)
	c := offlineCache(t, Options{Now: func() time.Time { return clock }, WhenStale: ServeStale})
	id := uuid.New()
	tenant := activeTenant(id, aggregate.EditionProfessional,
		aggregate.PolicySet{Policy: aggregate.PolicySetting{Type: aggregate.PolicyAccessHours, Enforced: true, Settings: json.RawMessage(`{"end_hour":17,"start_hour":8}`)}})
	c.hold(tenant)
	subject := tenant.PolicySubject(aggregate.DefaultCatalog())
	r := rand.New(rand.NewPCG(1, 2))
	actions := aggregate.Actions()
	limits := aggregate.DefaultCatalog().Limits()
	for n := range 2000 {
		if n%50 == 0 {
			clock = clock.Add(time.Duration(r.IntN(5000)) * time.Millisecond)
		}
		pctx := aggregate.PolicyContext{}
		if r.IntN(2) == 0 {
			pctx.Usage = map[aggregate.Limit]int64{limits[r.IntN(len(limits))]: int64(r.IntN(150))}
		}
		if r.IntN(4) == 0 {
			at := clock.Add(time.Duration(r.IntN(48)) * time.Hour)
			pctx.Time = &at
		}
		if r.IntN(3) == 0 {
			pctx.Region = "us-east-1"
		}
		action := actions[r.IntN(len(actions))].Name
		got, err := c.Evaluate(context.Background(), id, action, pctx)
		if err != nil {
			t.Fatal(err)
		}
		want := aggregate.Evaluate(subject, aggregate.PolicyRequest{Action: action, Context: pctx}, clock.Truncate(time.Second))
		gj, _ := json.Marshal(got)
		wj, _ := json.Marshal(want)
		if string(gj) != string(wj) {
			t.Fatalf("request %d (%s, %+v): cache %s\nEvaluate %s", n, action, pctx, gj, wj)
		}
	}
}

func TestCacheEvictsTheTenantNotAskedAboutSinceTheLastSweep(t *testing.T) {
	t.Parallel()
	ts := newTenantSet(3)
	a, b, c, d := uuid.New(), uuid.New(), uuid.New(), uuid.New()
	for _, id := range []uuid.UUID{a, b, c} {
		ts.getOrAdd(id)
	}
	// A sweep clears every bit, then evicts the first entry again (a):
	// every entry was just added, so each had its bit set.
	if _, ev := ts.getOrAdd(d); ev == nil || ev.id != a {
		t.Fatalf("evicted %v, want the first tenant", ev)
	}
	ts.get(b).ref.Store(true) // b is asked about
	if _, ev := ts.getOrAdd(uuid.New()); ev == nil || ev.id != c {
		t.Fatalf("evicted %v, want c (b was asked about)", ev)
	}
	if ts.len() != 3 || ts.get(b) == nil {
		t.Errorf("len %d, b held %v", ts.len(), ts.get(b) != nil)
	}
}

func TestAdvanceFoldsTheNextVersionAndRefusesAGap(t *testing.T) {
	t.Parallel()
	c := offlineCache(t, Options{})
	id := uuid.New()
	s := c.newState(slim(activeTenant(id, aggregate.EditionFree)), 0, 0) // versions 0..2
	ev := func(v uint64, e aggregate.Event) event {
		return event{tenant: id, version: v, env: aggregate.Envelope{Type: e.EventType(), Version: v, Data: e}}
	}
	upgrade := aggregate.EditionUpgraded{From: aggregate.EditionFree, To: aggregate.EditionProfessional}
	if next, ok := c.advance(s, ev(2, upgrade)); !ok || next != s {
		t.Errorf("an event already folded changed the state")
	}
	if _, ok := c.advance(s, ev(4, upgrade)); ok {
		t.Errorf("an event skipping version 3 was folded")
	}
	next, ok := c.advance(s, ev(3, upgrade))
	if !ok || next.version != 3 || !next.subject.Entitlements.Has(aggregate.FeatureSSO) || s.subject.Entitlements.Has(aggregate.FeatureSSO) {
		t.Errorf("folding version 3: ok %v, version %d, sso %v (before %v)", ok, next.version, next.subject.Entitlements.Has(aggregate.FeatureSSO), s.subject.Entitlements.Has(aggregate.FeatureSSO))
	}
	if next.tenant.Contacts != nil || next.tenant.Name != "" {
		t.Errorf("the held state keeps profile fields: %+v", next.tenant)
	}
	missing := c.newState(&aggregate.Tenant{}, 0, 0) // known not to exist
	if _, ok := c.advance(missing, ev(1, upgrade)); ok {
		t.Errorf("an event at version 1 of a tenant not known to exist was folded")
	}
}
