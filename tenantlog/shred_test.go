package tenantlog_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"testing"
	"time"

	"github.com/tenancyhq/tenancy/aggregate"
	"github.com/tenancyhq/tenancy/commands"
	"github.com/tenancyhq/tenancy/eventstore"
	"github.com/tenancyhq/tenancy/eventstore/eventstoretest"
	"github.com/tenancyhq/tenancy/eventstore/memory"
	"github.com/tenancyhq/tenancy/internal/pgtest"
	"github.com/tenancyhq/tenancy/tenantlog"
)

func newKeys(t *testing.T) *tenantlog.Keys {
	t.Helper()
	pool, _ := pgtest.NewMigrated(t)
	master, err := tenantlog.ParseMasterKey(base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{7}, 32)))
	if err != nil {
		t.Fatal(err)
	}
	return tenantlog.NewKeys(pool, master, time.Millisecond)
}

func TestShreddingStoreIsAFaithfulEventStore(t *testing.T) {
	t.Parallel()
	keys := newKeys(t)
	eventstoretest.Run(t, func(t *testing.T) eventstore.Store { return tenantlog.NewStore(memory.New(), keys, nil) })
}

func TestPersonalFieldsAreSealedAndShreddedOnPurge(t *testing.T) {
	t.Parallel()
	keys := newKeys(t)
	raw := memory.New()
	store := tenantlog.NewStore(raw, keys, nil)
	h := commands.NewHandler(store, commands.Options{})
	ctx := context.Background()
	res, err := h.Create(ctx, aggregate.Create{Name: "Secret Co", Edition: "free", Region: "eu-west-1",
		Contacts: []aggregate.Contact{{Role: "primary", Name: "Grace Hopper", Email: "grace@secret.example", Phone: "+44 20 7946 0000"}}}, aggregate.Metadata{})
	if err != nil {
		t.Fatal(err)
	}
	id := res.TenantID
	personal := []string{"grace@secret.example", "Grace Hopper", "+44 20 7946 0000"}
	rawDump := func() string {
		evs, err := raw.ReadAll(ctx, eventstore.Start, eventstore.Filter{}, 0)
		if err != nil {
			t.Fatal(err)
		}
		var b bytes.Buffer
		for _, e := range evs {
			b.Write(e.Data)
			b.Write(e.Metadata)
		}
		return b.String()
	}
	dump := rawDump()
	for _, p := range personal {
		if bytes.Contains([]byte(dump), []byte(p)) {
			t.Fatalf("the stored events hold %q in clear: %s", p, dump)
		}
	}
	if !bytes.Contains([]byte(dump), []byte("enc:v1:")) {
		t.Fatalf("no sealed field in the stored events: %s", dump)
	}
	// Through the store, the tenant reads as written.
	tn, _, err := h.Load(ctx, id)
	if err != nil || tn.Contacts[0].Email != "grace@secret.example" {
		t.Fatalf("loaded %+v, %v", tn.Contacts, err)
	}
	// Purge: the key is destroyed, the fields read as redacted for ever.
	for _, cmd := range []aggregate.Command{aggregate.CompleteProvisioning{}, aggregate.Terminate{}, aggregate.Purge{}} {
		if _, err := h.Execute(ctx, commands.Request{TenantID: id, Command: cmd}); err != nil {
			t.Fatalf("%s: %v", cmd.CommandName(), err)
		}
	}
	time.Sleep(5 * time.Millisecond) // past the key cache's ttl
	recs, err := store.ReadStream(ctx, aggregate.StreamName(id), eventstore.Forward, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	created, err := aggregate.DecodeEvent(recs[0].Type, recs[0].SchemaVersion, recs[0].Data)
	if err != nil {
		t.Fatal(err)
	}
	c := created.(aggregate.TenantCreated).Contacts[0]
	if c.Email != aggregate.Redacted || c.Name != aggregate.Redacted || c.Phone != aggregate.Redacted || c.Role != "primary" {
		t.Fatalf("after purge the contact reads %+v", c)
	}
	if _, err := keys.ForOpen(ctx, id); err == nil {
		t.Fatal("the purged tenant's key still opens")
	}
	for _, p := range personal {
		if bytes.Contains([]byte(rawDump()), []byte(p)) {
			t.Fatalf("the stored events hold %q in clear after purge", p)
		}
	}
}
