package natsserver_test

import (
	"context"
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/tenancyhq/tenancy/internal/natsserver"
)

func TestStartTestServesJetStream(t *testing.T) {
	t.Parallel()
	url := natsserver.StartTest(t)
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "T", Subjects: []string{"t.>"}, Storage: jetstream.FileStorage}); err != nil {
		t.Fatal(err)
	}
	if _, err := js.Publish(ctx, "t.x", []byte("hello")); err != nil {
		t.Fatal(err)
	}
}

func TestStoredMessagesSurviveARestartOnTheSameAddressAndStore(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	s := natsserver.StartTestServer(t, natsserver.Options{StoreDir: dir})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	publish := func(url string) {
		nc, err := nats.Connect(url)
		if err != nil {
			t.Fatal(err)
		}
		defer nc.Close()
		js, _ := jetstream.New(nc)
		if _, err := js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{Name: "T", Subjects: []string{"t.>"}, Storage: jetstream.FileStorage}); err != nil {
			t.Fatal(err)
		}
		if _, err := js.Publish(ctx, "t.x", []byte("hello")); err != nil {
			t.Fatal(err)
		}
	}
	publish(s.ClientURL())
	s.Shutdown()

	addr := strings.TrimPrefix(s.ClientURL(), "nats://")
	s2 := natsserver.StartTestServer(t, natsserver.Options{Listen: addr, StoreDir: dir})
	if s2.ClientURL() != s.ClientURL() {
		t.Fatalf("restarted on %s, want %s", s2.ClientURL(), s.ClientURL())
	}
	nc, err := nats.Connect(s2.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	st, err := js.Stream(ctx, "T")
	if err != nil {
		t.Fatal(err)
	}
	if n := st.CachedInfo().State.Msgs; n != 1 {
		t.Fatalf("stream holds %d messages after the restart, want 1", n)
	}
}

func TestTakenPortIsReportedPlainlyWithNATSURL(t *testing.T) {
	t.Parallel()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	addr := l.Addr().String()
	_, err = natsserver.Start(context.Background(), natsserver.Options{Listen: addr, StoreDir: t.TempDir()})
	if err == nil {
		t.Fatal("Start on a taken port succeeded")
	}
	if !errors.Is(err, natsserver.ErrAddressTaken) {
		t.Errorf("error does not match ErrAddressTaken: %v", err)
	}
	for _, want := range []string{addr + " is taken", "another NATS", "NATS_URL=nats://" + addr, "NATS_LISTEN"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
}

func TestStartNeedsAStoreDirectory(t *testing.T) {
	t.Parallel()
	if _, err := natsserver.Start(context.Background(), natsserver.Options{Listen: "127.0.0.1:0"}); err == nil {
		t.Fatal("Start without a store directory succeeded")
	}
}
