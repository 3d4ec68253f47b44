package service_test

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/tenancyhq/tenancy/aggregate"
	"github.com/tenancyhq/tenancy/eventstore"
	"github.com/tenancyhq/tenancy/internal/auth"
	"github.com/tenancyhq/tenancy/projections/natspub"
	"github.com/tenancyhq/tenancy/projections/readmodel"
	"github.com/tenancyhq/tenancy/queries"
)

// personalContacts are two contacts whose every personal value is unique to
// the test run, and those values.
func personalContacts(label string) ([]map[string]string, []string) {
	u := uuid.NewString()
	phone := func() string { return fmt.Sprintf("+1 555 %07d", rand.IntN(10_000_000)) }
	cs := []map[string]string{
		{"role": "primary", "name": "Person Name-" + label + "-" + u, "email": "gdpr-" + label + "-" + u + "@example.test", "phone": phone()},
		{"role": "billing", "name": "Billing Person-" + label + "-" + u, "email": "gdpr-billing-" + label + "-" + u + "@example.test", "phone": phone()},
	}
	var values []string
	for _, c := range cs {
		values = append(values, c["name"], c["email"], c["phone"])
	}
	return cs, values
}

func TestPurgeErasesPersonalDataEverywhere(t *testing.T) {
	t.Parallel()
	s := startService(t, serviceOptions{auth: true})
	ctx := context.Background()
	admin := token(t, "dpo", nil, auth.ScopeAdmin)
	suffix := uuid.NewString()[:8]

	// The tenant to erase, and another one whose personal data must stay:
	// it proves the dumps below show personal values where they exist.
	contacts, personal := personalContacts("erased")
	keptContacts, kept := personalContacts("kept")
	created := s.must(http.StatusCreated, admin, "POST", "/api/v1/tenants", map[string]any{"name": "Erased " + suffix, "edition": "professional",
		"region": "eu-central-1", "trial": false, "contacts": contacts[:1]}, "Idempotency-Key", "gdpr-create-"+suffix).json(t)
	id := created["id"].(string)
	path := "/api/v1/tenants/" + id
	s.must(http.StatusOK, admin, "POST", path+"/complete-provisioning", nil, "Idempotency-Key", "gdpr-provision-"+suffix)
	s.must(http.StatusOK, admin, "PATCH", path, map[string]any{"contacts": contacts, "labels": map[string]string{"tier": "gold"}},
		"Idempotency-Key", "gdpr-patch-"+suffix)
	s.must(http.StatusOK, admin, "POST", path+"/suspend", map[string]any{"reason": "payment_failed"}, "Idempotency-Key", "gdpr-suspend-"+suffix)
	s.must(http.StatusOK, admin, "POST", path+"/resume", nil)
	keptID := createTenant(s, admin, "Kept "+suffix, keptContacts...)["id"].(string)

	// Before the purge, the export (a GDPR access request) holds them all.
	export := string(s.must(http.StatusOK, admin, "GET", path+"/export", nil).body)
	for _, v := range personal {
		if !strings.Contains(export, v) {
			t.Errorf("the export before the purge lacks %q", v)
		}
	}

	s.must(http.StatusOK, admin, "POST", path+"/terminate", map[string]any{"reason": "contract ended"}, "Idempotency-Key", "gdpr-terminate-"+suffix)
	purged := s.must(http.StatusOK, admin, "POST", path+"/purge", nil, "Idempotency-Key", "gdpr-purge-"+suffix)
	s.read(purged)
	s.caughtUp()

	tables := func() map[string]string { return dumpTables(t, s) }
	expectErased := func(when string, dump map[string]string, names ...string) {
		t.Helper()
		for _, name := range names {
			text, ok := dump[name]
			if !ok {
				t.Fatalf("%s: no table %s", when, name)
			}
			for _, v := range personal {
				if i := strings.Index(text, v); i >= 0 {
					t.Errorf("%s: table %s holds %q: …%s…", when, name, v, text[max(0, i-200):min(len(text), i+100)])
				}
			}
		}
	}
	expectKept := func(when string, dump map[string]string, name string) {
		t.Helper()
		for _, v := range kept {
			if !strings.Contains(dump[name], v) {
				t.Errorf("%s: table %s lost the other tenant's %q (does the dump see plaintext at all?)", when, name, v)
			}
		}
	}

	dump := tables()
	expectErased("after the purge", dump, "events", "tenants", "tenant_events", "unique_claims")
	expectErased("after the purge", dump, keys(dump)...) // and every other table
	expectKept("after the purge", dump, "tenants")
	expectKept("after the purge", dump, "tenant_events")
	// The events themselves, raw: what the store keeps, and what the service reads back.
	stream := aggregate.StreamName(uuid.MustParse(id))
	raw, err := s.app.RawStore().ReadStream(ctx, stream, eventstore.Forward, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	opened, err := s.app.Store().ReadStream(ctx, stream, eventstore.Forward, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	for i, e := range append(raw, opened...) {
		for _, v := range personal {
			if strings.Contains(string(e.Data), v) || strings.Contains(string(e.Metadata), v) {
				t.Errorf("event %d (%s) holds %q: %s", i, e.Type, v, e.Data)
			}
		}
	}
	wantTypes := []string{"TenantCreated", "ProvisioningCompleted", "TenantActivated", "ContactsUpdated", "LabelsUpdated",
		"TenantSuspended", "TenantResumed", "TenantTerminated", "TenantPurged"}
	if got := eventTypes(raw); got != strings.Join(wantTypes, " ") {
		t.Fatalf("stream: %s\nwant %s", got, strings.Join(wantTypes, " "))
	}

	// A rebuilt read model has nothing of it either.
	if err := s.app.Rebuild(ctx, readmodel.Name, nil); err != nil {
		t.Fatalf("rebuild: %v", err)
	}
	dump = tables()
	expectErased("after a rebuild", dump, keys(dump)...)
	expectKept("after a rebuild", dump, "tenants")
	if n := strings.Count(dump["tenant_events"], id); n < len(wantTypes) {
		t.Errorf("the rebuilt tenant_events has %d rows of the purged tenant, want %d", n, len(wantTypes))
	}

	// Replays show every event, personal fields redacted.
	var history struct {
		Redacted bool `json:"redacted"`
		Items    []struct {
			Type string          `json:"type"`
			Data json.RawMessage `json:"data"`
		} `json:"items"`
	}
	hist := s.must(http.StatusOK, admin, "GET", path+"/history", nil)
	if err := json.Unmarshal(hist.body, &history); err != nil {
		t.Fatal(err)
	}
	var histTypes []string
	for _, it := range history.Items {
		histTypes = append(histTypes, it.Type)
	}
	if !history.Redacted || strings.Join(histTypes, " ") != strings.Join(wantTypes, " ") {
		t.Errorf("history: redacted %v, events %v; want redacted and %v", history.Redacted, histTypes, wantTypes)
	}
	for _, v := range personal {
		if strings.Contains(string(hist.body), v) {
			t.Errorf("history after the purge holds %q", v)
		}
	}
	if n := strings.Count(string(hist.body), `"`+aggregate.Redacted+`"`); n < 6+6 { // created: 3, updated: 6 (and the changes)
		t.Errorf("history shows %d redacted values: %s", n, hist.body)
	}

	tl, err := queries.NewReplayer(s.app.Store()).Replay(ctx, uuid.MustParse(id), queries.ReplayOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if !tl.Redacted || len(tl.Entries) != len(wantTypes) {
		t.Errorf("replay: redacted %v, %d entries; want redacted and %d", tl.Redacted, len(tl.Entries), len(wantTypes))
	}
	redactedContacts := 0
	for _, e := range tl.Entries {
		var cs []aggregate.Contact
		switch d := e.Data.(type) {
		case aggregate.TenantCreated:
			cs = d.Contacts
		case aggregate.ContactsUpdated:
			cs = d.Contacts
		}
		for _, c := range cs {
			redactedContacts++
			if c.Name != aggregate.Redacted || c.Email != aggregate.Redacted || c.Phone != aggregate.Redacted || c.Role == "" {
				t.Errorf("replay: %s contact %+v not redacted", e.Type, c)
			}
		}
	}
	for _, c := range tl.State.Contacts {
		if c.Name != aggregate.Redacted || c.Email != aggregate.Redacted {
			t.Errorf("replayed state: contact %+v not redacted", c)
		}
	}
	if redactedContacts != 3 {
		t.Errorf("replay: %d contacts in TenantCreated and ContactsUpdated, want 3", redactedContacts)
	}

	// The export answers, without the personal data.
	export = string(s.must(http.StatusOK, admin, "GET", path+"/export", nil).body)
	for _, v := range personal {
		if strings.Contains(export, v) {
			t.Errorf("the export after the purge holds %q", v)
		}
	}
	// The messages on NATS carry personal fields sealed, never in clear.
	msgs := natsMessages(t, s, natspub.SubjectPrefix+".*."+id)
	if len(msgs) != len(wantTypes) {
		t.Errorf("NATS holds %d messages of the tenant, want %d", len(msgs), len(wantTypes))
	}
	for _, m := range msgs {
		for _, v := range personal {
			if strings.Contains(m.String(), v) {
				t.Errorf("a NATS message holds %q: %s", v, m)
			}
		}
	}
	// A retried request after the purge is still
	// answered with its first outcome, redacted: its events are its record.
	retry := s.must(http.StatusCreated, admin, "POST", "/api/v1/tenants", map[string]any{"name": "Erased " + suffix, "edition": "professional",
		"region": "eu-central-1", "trial": false, "contacts": contacts[:1]}, "Idempotency-Key", "gdpr-create-"+suffix).json(t)
	if retry["id"] != id || !strings.Contains(fmt.Sprint(retry["contacts"]), aggregate.Redacted) {
		t.Errorf("the retried create answered %v, want the first outcome (tenant %s), redacted", retry, id)
	}
	if again, err := s.app.RawStore().ReadStream(ctx, stream, eventstore.Forward, 0, 0); err != nil || len(again) != len(raw) {
		t.Errorf("the retried create appended: %d events, want %d (%v)", len(again), len(raw), err)
	}
	expectErased("after a retried create", tables(), "unique_claims", "events")

	// The other tenant is untouched.
	keptView := string(s.must(http.StatusOK, admin, "GET", "/api/v1/tenants/"+keptID, nil).body)
	for _, v := range kept {
		if !strings.Contains(keptView, v) {
			t.Errorf("the other tenant lost %q: %s", v, keptView)
		}
	}
}

// dumpTables reads every table of the service's database as text, one row
// per line, every column (bytea escaped, so any text in it shows).
func dumpTables(t *testing.T, s *testService) map[string]string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	rows, err := s.app.Pool().Query(ctx, `SELECT c.table_name, c.column_name, c.data_type
		FROM information_schema.columns c JOIN information_schema.tables t USING (table_schema, table_name)
		WHERE c.table_schema = 'public' AND t.table_type = 'BASE TABLE' ORDER BY c.table_name, c.ordinal_position`)
	if err != nil {
		t.Fatal(err)
	}
	cols := map[string][]string{}
	for rows.Next() {
		var table, column, typ string
		if err := rows.Scan(&table, &column, &typ); err != nil {
			t.Fatal(err)
		}
		expr := pgx.Identifier{column}.Sanitize() + "::text"
		if typ == "bytea" {
			expr = "encode(" + pgx.Identifier{column}.Sanitize() + ", 'escape')"
		}
		cols[table] = append(cols[table], expr)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for table, exprs := range cols {
		var b strings.Builder
		rows, err := s.app.Pool().Query(ctx, `SELECT concat_ws(E'\t', `+strings.Join(exprs, ", ")+`) FROM `+pgx.Identifier{table}.Sanitize())
		if err != nil {
			t.Fatalf("dump %s: %v", table, err)
		}
		for rows.Next() {
			var line string
			if err := rows.Scan(&line); err != nil {
				t.Fatalf("dump %s: %v", table, err)
			}
			b.WriteString(line + "\n")
		}
		if err := rows.Err(); err != nil {
			t.Fatalf("dump %s: %v", table, err)
		}
		out[table] = b.String()
	}
	return out
}

func keys(m map[string]string) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

func eventTypes(evs []eventstore.RecordedEvent) string {
	var out []string
	for _, e := range evs {
		out = append(out, e.Type)
	}
	return strings.Join(out, " ")
}

// natsMessage is a message of the events stream.
type natsMessage struct {
	subject string
	header  nats.Header
	data    []byte
}

// String is all of the message: subject, headers and body.
func (m natsMessage) String() string { return fmt.Sprintf("%s %v %s", m.subject, m.header, m.data) }

// natsMessages reads every message of the events stream on subject (a filter).
func natsMessages(t *testing.T, s *testService, subject string) []natsMessage {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	js := jetStream(t, s)
	cons, err := js.OrderedConsumer(ctx, natspub.StreamName, jetstream.OrderedConsumerConfig{FilterSubjects: []string{subject}})
	if err != nil {
		t.Fatal(err)
	}
	info, err := cons.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var out []natsMessage
	for range info.NumPending {
		m, err := cons.Next(jetstream.FetchMaxWait(5 * time.Second))
		if err != nil {
			t.Fatalf("NATS: %v", err)
		}
		out = append(out, natsMessage{subject: m.Subject(), header: m.Headers(), data: m.Data()})
	}
	return out
}
