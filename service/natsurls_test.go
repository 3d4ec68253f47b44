package service_test

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/tenancyhq/tenancy/internal/natsserver"
	"github.com/tenancyhq/tenancy/internal/pgtest"
	"github.com/tenancyhq/tenancy/projections/natspub"
	"github.com/tenancyhq/tenancy/service"
)

// TestNATSURLWithSeveralServersFailsOverToTheNextOne: NATS_URL may name
// several servers separated by commas, as a cluster's are. Two servers
// here (not clustered, to keep the test small: what it shows is the
// client's failover, not JetStream's replication): the service connects to
// one; when that one goes, the publisher reconnects to the other, makes
// its stream there, and the next command's event arrives on it.
func TestNATSURLWithSeveralServersFailsOverToTheNextOne(t *testing.T) {
	t.Parallel()
	servers := map[string]*natsserver.Server{}
	var urls []string
	for range 2 {
		s := natsserver.StartTestServer(t, natsserver.Options{})
		servers[s.ClientURL()] = s
		urls = append(urls, s.ClientURL())
	}
	ctx, cancel := context.WithCancel(context.Background())
	a, err := service.Open(ctx, service.Config{DatabaseURL: pgtest.NewDatabase(t), HTTPAddr: "127.0.0.1:0", Migrate: true,
		Projections: true, ExternalProvisioning: true, DataDir: t.TempDir(), NATSURL: strings.Join(urls, ",")})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("run: %v", err)
		}
		a.Close()
	}()
	base := "http://" + a.Addr()

	first := a.NATSURL()
	for wait := time.Now().Add(30 * time.Second); first == "" && time.Now().Before(wait); first = a.NATSURL() {
		time.Sleep(20 * time.Millisecond) // the first connection is made in the background
	}
	if servers[first] == nil {
		t.Fatalf("connected to %q, not one of %v", first, urls)
	}
	other := urls[0]
	if other == first {
		other = urls[1]
	}
	awaitCreatedOn(t, first, createNamed(t, base, "Before Failover"))

	servers[first].Shutdown()
	cut := time.Now()
	id := createNamed(t, base, "After Failover")
	awaitCreatedOn(t, other, id)
	t.Logf("the event of a command sent as %s went away was on %s %s later", first, other, time.Since(cut).Round(time.Millisecond))
	if got := a.NATSURL(); got != other {
		t.Errorf("the service is connected to %q, want %q", got, other)
	}
}

// createNamed creates a tenant and returns its id.
func createNamed(t *testing.T, base, name string) string {
	t.Helper()
	res, err := http.Post(base+"/api/v1/tenants", "application/json", strings.NewReader(`{"name":"`+name+`","edition":"free"}`))
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var tn struct {
		ID string `json:"id"`
	}
	if err := json.NewDecoder(res.Body).Decode(&tn); err != nil || res.StatusCode != http.StatusCreated {
		t.Fatalf("create %s: %d %v", name, res.StatusCode, err)
	}
	return tn.ID
}

// awaitCreatedOn waits until the TenantCreated event of tenant id is in the
// TENANCY_EVENTS stream on the server at url.
func awaitCreatedOn(t *testing.T, url, id string) {
	t.Helper()
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	subject := natspub.Subject("TenantCreated", id)
	deadline := time.Now().Add(60 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		s, err := js.Stream(ctx, natspub.StreamName)
		if err == nil {
			_, err = s.GetLastMsgForSubject(ctx, subject)
		}
		cancel()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("no %s on %s within 60 s: %v", subject, url, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
