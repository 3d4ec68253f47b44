package main

import (
	"bytes"
	"net"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
)

func TestReadinessURLFollowsHTTPAddr(t *testing.T) {
	t.Parallel()
	for addr, want := range map[string]string{
		":8000":          "http://127.0.0.1:8000/health/ready",
		"0.0.0.0:9000":   "http://127.0.0.1:9000/health/ready",
		"[::]:8000":      "http://[::1]:8000/health/ready",
		"10.1.2.3:8080":  "http://10.1.2.3:8080/health/ready",
		"localhost:8001": "http://localhost:8001/health/ready",
	} {
		if got, err := readinessURL(addr); err != nil || got != want {
			t.Errorf("readinessURL(%q) = %q, %v; want %q", addr, got, err, want)
		}
	}
	if _, err := readinessURL("8000"); err == nil {
		t.Error("an address without a port was taken")
	}
}

// TestHealthcheckChecksTheAddressServeListensOn: tenancy healthcheck with
// only HTTP_ADDR's value (":port") finds the service, and fails on a 503.
func TestHealthcheckChecksTheAddressServeListensOn(t *testing.T) {
	t.Parallel()
	var status atomic.Int32
	status.Store(http.StatusOK)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/health/ready" {
			http.NotFound(w, r)
			return
		}
		w.WriteHeader(int(status.Load()))
	}))
	defer srv.Close()
	_, port, _ := net.SplitHostPort(srv.Listener.Addr().String())
	check := func() error {
		var out bytes.Buffer
		root := newRoot(&out, &out)
		root.SetArgs([]string{"healthcheck", "--http-addr", ":" + port})
		return root.Execute()
	}
	if err := check(); err != nil {
		t.Fatalf("healthy service: %v", err)
	}
	status.Store(http.StatusServiceUnavailable)
	if err := check(); err == nil {
		t.Fatal("a 503 passed the health check")
	}
}
