package natspub_test

import (
	"io"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/tenancyhq/tenancy/internal/natsserver"
	"github.com/tenancyhq/tenancy/projections/natspub"
)

// TestSilentServerIsGivenUpInSeconds: a server that stops answering
// without closing the connection (a partition: here a proxy that swallows
// the bytes both ways) is noticed by the publisher's connection within
// seconds (5 s pings, two outstanding), not after nats.go's 2 × 2 minutes.
func TestSilentServerIsGivenUpInSeconds(t *testing.T) {
	t.Parallel()
	upstream := strings.TrimPrefix(natsserver.StartTest(t), "nats://")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	var silent atomic.Bool
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			u, err := net.Dial("tcp", upstream)
			if err != nil {
				c.Close()
				return
			}
			t.Cleanup(func() { c.Close(); u.Close() })
			pipe := func(dst io.Writer, src io.Reader) {
				buf := make([]byte, 32<<10)
				for {
					n, err := src.Read(buf)
					if err != nil {
						return
					}
					if !silent.Load() {
						if _, err := dst.Write(buf[:n]); err != nil {
							return
						}
					}
				}
			}
			go pipe(u, c)
			go pipe(c, u)
		}
	}()
	nc, _, err := natspub.Dial("nats://"+ln.Addr().String(), 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	deadline := time.Now().Add(10 * time.Second)
	for nc.Status() != nats.CONNECTED {
		if time.Now().After(deadline) {
			t.Fatalf("never connected through the proxy: %v", nc.Status())
		}
		time.Sleep(10 * time.Millisecond)
	}
	silent.Store(true)
	cut := time.Now()
	for nc.Status() == nats.CONNECTED {
		if time.Since(cut) > 30*time.Second {
			t.Fatalf("still CONNECTED %s after the server went silent", time.Since(cut).Round(time.Second))
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Logf("silent server given up after %s (status %v)", time.Since(cut).Round(100*time.Millisecond), nc.Status())
}
