package chaos

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// NATSServerBinary is the nats-server the cluster runs.
const NATSServerBinary = "/usr/sbin/nats-server"

// natsNode is one nats-server process of the cluster.
type natsNode struct {
	name              string
	port, clusterPort int
	dir               string
	cmd               *exec.Cmd
	exited            chan struct{}
}

// natsCluster is a JetStream cluster of nats-server processes on loopback,
// joined by routes. The servers do not advertise their client addresses to
// clients (no_advertise), so a service replica reaches them only through
// its proxies, which the harness can cut.
type natsCluster struct {
	nodes []*natsNode
}

// startNATSCluster starts n nodes. Their ports are picked free before the
// servers bind them, which another program on the machine (another test
// run's harness) may do first; a cluster that does not come up is started
// again on new ports, at most three times, each failure named with the
// node's last log lines.
func startNATSCluster(ctx context.Context, dir string, n int) (*natsCluster, error) {
	var errs []error
	for attempt := 1; attempt <= 3; attempt++ {
		c, err := tryNATSCluster(ctx, filepath.Join(dir, fmt.Sprintf("nats-attempt-%d", attempt)), n)
		if err == nil {
			return c, nil
		}
		errs = append(errs, fmt.Errorf("attempt %d: %w", attempt, err))
		if ctx.Err() != nil {
			break
		}
	}
	return nil, errors.Join(errs...)
}

func tryNATSCluster(ctx context.Context, dir string, n int) (*natsCluster, error) {
	c := &natsCluster{}
	for i := range n {
		c.nodes = append(c.nodes, &natsNode{name: fmt.Sprintf("n%d", i+1), port: freePort(), clusterPort: freePort(),
			dir: filepath.Join(dir, fmt.Sprintf("nats-%d", i+1))})
	}
	for i := range c.nodes {
		if err := c.start(i); err != nil {
			c.stop()
			return nil, err
		}
	}
	if err := c.waitReady(ctx, 30*time.Second); err != nil {
		var logs []string
		for _, nd := range c.nodes {
			b, _ := os.ReadFile(filepath.Join(nd.dir, "server.log"))
			lines := strings.Split(strings.TrimSpace(string(b)), "\n")
			logs = append(logs, nd.name+": "+strings.Join(lines[max(0, len(lines)-3):], " | "))
		}
		c.stop()
		return nil, fmt.Errorf("%w (server logs: %s)", err, strings.Join(logs, "; "))
	}
	return c, nil
}

// config is node i's configuration file.
func (c *natsCluster) config(i int) string {
	n := c.nodes[i]
	var routes []string
	for j, o := range c.nodes {
		if j != i {
			routes = append(routes, fmt.Sprintf("nats-route://127.0.0.1:%d", o.clusterPort))
		}
	}
	return fmt.Sprintf(`server_name: %s
listen: 127.0.0.1:%d
jetstream { store_dir: %q }
cluster {
  name: chaos
  listen: 127.0.0.1:%d
  no_advertise: true
  routes: [%s]
}
`, n.name, n.port, filepath.Join(n.dir, "js"), n.clusterPort, strings.Join(routes, ", "))
}

// start starts node i (again, after a kill: its store is kept).
func (c *natsCluster) start(i int) error {
	n := c.nodes[i]
	if err := os.MkdirAll(n.dir, 0o755); err != nil {
		return err
	}
	conf := filepath.Join(n.dir, "nats.conf")
	if err := os.WriteFile(conf, []byte(c.config(i)), 0o644); err != nil {
		return err
	}
	logf, err := os.OpenFile(filepath.Join(n.dir, "server.log"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	n.cmd = exec.Command(NATSServerBinary, "-c", conf)
	n.cmd.Stdout, n.cmd.Stderr = logf, logf
	if err := n.cmd.Start(); err != nil {
		logf.Close()
		return fmt.Errorf("start %s: %w", NATSServerBinary, err)
	}
	n.exited = make(chan struct{})
	go func() { _ = n.cmd.Wait(); logf.Close(); close(n.exited) }()
	return nil
}

// kill kills node i with SIGKILL and waits until it is gone.
func (c *natsCluster) kill(i int) {
	n := c.nodes[i]
	if n.cmd == nil || n.cmd.Process == nil {
		return
	}
	_ = n.cmd.Process.Signal(syscall.SIGKILL)
	<-n.exited
}

func (c *natsCluster) stop() {
	for i := range c.nodes {
		c.kill(i)
	}
}

// addr is node i's client address.
func (c *natsCluster) addr(i int) string { return fmt.Sprintf("127.0.0.1:%d", c.nodes[i].port) }

// URLs are the nodes' client URLs, comma-separated, as NATS_URL takes them.
func (c *natsCluster) URLs() string {
	var urls []string
	for i := range c.nodes {
		urls = append(urls, "nats://"+c.addr(i))
	}
	return strings.Join(urls, ",")
}

// waitReady waits until every node answers and JetStream has a meta
// leader (an account info request succeeds on each node).
func (c *natsCluster) waitReady(ctx context.Context, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for i := range c.nodes {
		for {
			err := func() error {
				nc, err := nats.Connect("nats://"+c.addr(i), nats.Timeout(2*time.Second))
				if err != nil {
					return err
				}
				defer nc.Close()
				js, err := jetstream.New(nc)
				if err != nil {
					return err
				}
				actx, cancel := context.WithTimeout(ctx, 2*time.Second)
				defer cancel()
				_, err = js.AccountInfo(actx)
				return err
			}()
			if err == nil {
				break
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("NATS node %s not ready after %s: %w", c.nodes[i].name, timeout, err)
			}
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(200 * time.Millisecond):
			}
		}
	}
	return nil
}
