package service_test

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/google/uuid"

	"github.com/tenancyhq/tenancy/aggregate"
	"github.com/tenancyhq/tenancy/internal/auth"
)

// TestEachCommandIsOneWriteTransaction sends commands of every shape (a
// create with contacts, claims and a new key; a rename, which moves a
// claim; plain lifecycle commands; a keyed retry) with the projections
// stopped, then checks the database: every row a command wrote (its events,
// its claims, its tenant key) carries one and the same transaction id, one
// per command, and no other table was written at all.
func TestEachCommandIsOneWriteTransaction(t *testing.T) {
	t.Parallel()
	s := startService(t, serviceOptions{auth: true, noProjections: true})
	admin := token(t, "ops", nil, auth.ScopeAdmin)
	ctx := context.Background()
	counts := func() map[string]int64 {
		t.Helper()
		out := map[string]int64{}
		for _, table := range []string{"tenants", "tenant_events", "timers", "projection_checkpoints", "projection_failures"} {
			var n int64
			if err := s.app.Pool().QueryRow(ctx, `SELECT count(*) FROM `+table).Scan(&n); err != nil {
				t.Fatal(err)
			}
			out[table] = n
		}
		return out
	}
	before := counts()

	suffix := uuid.NewString()[:8]
	off := false
	created := s.must(http.StatusCreated, admin, "POST", "/api/v1/tenants", map[string]any{"name": "One Tx " + suffix, "edition": "professional",
		"region": "eu-west-1", "trial": &off, "contacts": []map[string]string{{"role": "primary", "name": "Pat Doe", "email": "pat@one-tx.example"}}},
		"Idempotency-Key", "one-tx-"+suffix)
	id := created.json(t)["id"].(string)
	path := "/api/v1/tenants/" + id
	steps := []struct {
		method, path string
		body         any
		key          string
	}{
		{"POST", path + "/complete-provisioning", map[string]any{}, ""},
		{"PATCH", path, map[string]any{"name": "One Tx Renamed " + suffix}, "rename-" + suffix},
		{"PATCH", path, map[string]any{"contacts": []map[string]string{{"role": "billing", "email": "bill@one-tx.example"}}}, ""},
		{"POST", path + "/suspend", map[string]any{"reason": "admin_action"}, ""},
		{"POST", path + "/resume", map[string]any{}, ""},
		{"POST", path + "/suspend", map[string]any{"reason": "legal_request"}, "suspend-" + suffix},
		{"POST", path + "/suspend", map[string]any{"reason": "legal_request"}, "suspend-" + suffix}, // a replay: writes nothing
	}
	for _, st := range steps {
		var headers []string
		if st.key != "" {
			headers = []string{"Idempotency-Key", st.key}
		}
		s.must(http.StatusOK, admin, st.method, st.path, st.body, headers...)
	}
	const writingCommands = 7 // the create and every step but the replay

	stream := aggregate.StreamName(uuid.MustParse(id))
	xids := func(query string, args ...any) []string {
		t.Helper()
		rows, err := s.app.Pool().Query(ctx, query, args...)
		if err != nil {
			t.Fatal(err)
		}
		defer rows.Close()
		var out []string
		for rows.Next() {
			var x string
			if err := rows.Scan(&x); err != nil {
				t.Fatal(err)
			}
			out = append(out, x)
		}
		return out
	}
	// One transaction id per command, over all of its events.
	perCommand := xids(`SELECT DISTINCT transaction_id::text FROM events WHERE stream = $1`, stream)
	if len(perCommand) != writingCommands {
		t.Fatalf("%d transactions wrote the tenant's events, want %d (one per command)", len(perCommand), writingCommands)
	}
	byRequest := xids(`SELECT string_agg(DISTINCT transaction_id::text, ',') FROM events WHERE stream = $1 GROUP BY metadata->>'correlation_id'`, stream)
	for _, x := range byRequest {
		if len(byRequest) != writingCommands || strings.Contains(x, ",") {
			t.Fatalf("the requests' events were written by the transactions %v, want one transaction per request", byRequest)
		}
	}
	createXID := xids(`SELECT transaction_id::text FROM events WHERE stream = $1 AND version = 0`, stream)[0]
	renameXID := xids(`SELECT transaction_id::text FROM events WHERE stream = $1 AND event_type = 'TenantRenamed'`, stream)[0]
	// The create's claims and key were written by the create's transaction,
	// the rename's claim by the rename's.
	for _, c := range []struct {
		what, query string
		want        []string
	}{
		{"external id claim", `SELECT xmin::text FROM unique_claims WHERE holder = $1 AND kind = 'external_id'`, []string{createXID}},
		{"name claim", `SELECT xmin::text FROM unique_claims WHERE holder = $1 AND kind = 'tenant_name'`, []string{renameXID}},
		{"tenant key", `SELECT xmin::text FROM tenant_keys WHERE tenant_id = substr($1, 8)::uuid`, []string{createXID}},
	} {
		if got := xids(c.query, stream); fmt.Sprint(got) != fmt.Sprint(c.want) {
			t.Errorf("%s written by transaction %v, want %v (the command's own)", c.what, got, c.want)
		}
	}
	// Nothing else: no remembered response, no side table.
	if after := counts(); fmt.Sprint(after) != fmt.Sprint(before) {
		t.Errorf("other tables changed: %v -> %v", before, after)
	}
}
