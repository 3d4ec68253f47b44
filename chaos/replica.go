package chaos

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"
)

// replica is one `tenancy serve` process, reaching Postgres (primary and
// standby) and each NATS node through proxies of its own.
type replica struct {
	name string
	bin  string
	port int
	dir  string
	env  []string
	// pg are its proxies to the primary and the standby; nats to each
	// NATS node.
	pg, nats []*Proxy

	mu     sync.Mutex
	cmd    *exec.Cmd
	pid    int
	exited chan struct{}
}

// base is the replica's API.
func (r *replica) base() string { return fmt.Sprintf("http://127.0.0.1:%d", r.port) }

// holder is how the replica names itself in projection checkpoints
// (service.DefaultHolder: host and process id).
func (r *replica) holder() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	host, _ := os.Hostname()
	return strings.TrimSpace(host) + ":" + fmt.Sprint(r.pid)
}

// start starts the process and waits until it is ready.
func (r *replica) start(ctx context.Context) error {
	if err := os.MkdirAll(r.dir, 0o755); err != nil {
		return err
	}
	logf, err := os.OpenFile(filepath.Join(r.dir, "service.log"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	cmd := exec.Command(r.bin, "serve")
	cmd.Env = append(os.Environ(), r.env...)
	cmd.Env = append(cmd.Env, fmt.Sprintf("HTTP_ADDR=127.0.0.1:%d", r.port), "DATA_DIR="+r.dir)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		logf.Close()
		return fmt.Errorf("start %s: %w", r.name, err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); logf.Close(); close(exited) }()
	r.mu.Lock()
	r.cmd, r.pid, r.exited = cmd, cmd.Process.Pid, exited
	r.mu.Unlock()
	return r.waitReady(ctx, 90*time.Second, exited)
}

// waitReady polls /health/ready until it answers 200.
func (r *replica) waitReady(ctx context.Context, timeout time.Duration, exited chan struct{}) error {
	client := &http.Client{Timeout: 2 * time.Second}
	deadline := time.Now().Add(timeout)
	for {
		res, err := client.Get(r.base() + "/health/ready")
		if err == nil {
			res.Body.Close()
			if res.StatusCode == http.StatusOK {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("replica %s not ready after %s (see %s)", r.name, timeout, filepath.Join(r.dir, "service.log"))
		}
		select {
		case <-exited:
			return fmt.Errorf("replica %s exited during start-up (see %s)", r.name, filepath.Join(r.dir, "service.log"))
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// kill kills the process with SIGKILL and waits until it is gone.
func (r *replica) kill() {
	r.mu.Lock()
	cmd, exited := r.cmd, r.exited
	r.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Signal(syscall.SIGKILL)
	<-exited
}

// stop ends the process gracefully (SIGTERM), killing it after 30 s.
func (r *replica) stop() {
	r.mu.Lock()
	cmd, exited := r.cmd, r.exited
	r.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-exited:
	case <-time.After(30 * time.Second):
		r.kill()
	}
}

// cutFrom cuts (or restores) the replica's links to Postgres or NATS.
func (r *replica) cutFrom(proxies []*Proxy, cut bool) {
	for _, p := range proxies {
		p.SetCut(cut)
	}
}

func freePort() int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}
