package pgtest

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"testing"
)

// Cluster is a private PostgreSQL server a test starts and stops at will,
// for outage tests: the machine's own server is never stopped. It runs as
// the postgres user (initdb refuses root) on a free loopback port, from the
// binaries of the installed PostgreSQL, and is removed when the test ends.
type Cluster struct {
	t     testing.TB
	bin   string
	dir   string
	port  int
	runAs []string
}

// Port is the port the cluster listens on (127.0.0.1).
func (c *Cluster) Port() int { return c.port }

// StartCluster initialises and starts a private cluster. It fails the test
// (it never skips) when PostgreSQL's server binaries cannot be found.
func StartCluster(t testing.TB) *Cluster {
	t.Helper()
	bin := serverBinaries(t)
	base, err := os.MkdirTemp("", "tenancy-pgtest-")
	if err != nil {
		t.Fatal(err)
	}
	c := &Cluster{t: t, bin: bin, dir: filepath.Join(base, "data"), port: freePort(t)}
	if os.Geteuid() == 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			t.Fatalf("pgtest: running as root needs a postgres user for initdb: %v", err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		if err := os.Chown(base, uid, gid); err != nil {
			t.Fatal(err)
		}
		c.runAs = []string{"runuser", "-u", "postgres", "--"}
	}
	c.run("initdb", "-D", c.dir, "-U", "postgres", "-A", "trust", "--no-sync")
	c.Start()
	t.Cleanup(func() {
		c.Stop()
		_ = os.RemoveAll(base)
	})
	return c
}

// URL is the cluster's postgres database.
func (c *Cluster) URL() string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable", c.port)
}

// DatabaseURL is a database of the cluster by name (created by whoever connects first).
func (c *Cluster) DatabaseURL(name string) string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/%s?sslmode=disable", c.port, name)
}

// Start starts the server and waits until it accepts connections.
func (c *Cluster) Start() {
	c.t.Helper()
	// wal_level and the WAL senders let StartStandby stream from it (the
	// defaults, said here so a changed default does not break the tests).
	c.run("pg_ctl", "-D", c.dir, "-l", filepath.Join(c.dir, "server.log"), "-w", "-o",
		fmt.Sprintf("-p %d -k %s -c listen_addresses=127.0.0.1 -c fsync=off -c wal_level=replica -c max_wal_senders=10 -c hot_standby=on", c.port, c.dir), "start")
}

// StartStandby starts a streaming replica of c: a base backup of c
// (pg_basebackup -R, which writes the standby's primary_conninfo) started
// on another free port as a hot standby, read-only, replaying c's WAL as it
// streams in. It is stopped and removed when the test ends. Pause its
// replay with SELECT pg_wal_replay_pause() on it (pg_wal_replay_resume()
// resumes), to make it lag at will.
func (c *Cluster) StartStandby() *Cluster {
	c.t.Helper()
	base, err := os.MkdirTemp("", "tenancy-pgtest-standby-")
	if err != nil {
		c.t.Fatal(err)
	}
	if len(c.runAs) > 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			c.t.Fatal(err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		if err := os.Chown(base, uid, gid); err != nil {
			c.t.Fatal(err)
		}
	}
	s := &Cluster{t: c.t, bin: c.bin, dir: filepath.Join(base, "data"), port: freePort(c.t), runAs: c.runAs}
	s.run("pg_basebackup", "-h", "127.0.0.1", "-p", strconv.Itoa(c.port), "-U", "postgres", "-D", s.dir, "-R", "-X", "stream", "--no-sync")
	s.Start()
	c.t.Cleanup(func() {
		s.Stop()
		_ = os.RemoveAll(base)
	})
	return s
}

// Stop stops the server at once (immediate shutdown: connections drop as
// they would in a crash). Stopping a stopped server is not an error.
func (c *Cluster) Stop() {
	c.t.Helper()
	cmd := exec.Command(c.cmd("pg_ctl")[0], append(c.cmd("pg_ctl")[1:], "-D", c.dir, "-m", "immediate", "-w", "stop")...)
	_ = cmd.Run()
}

func (c *Cluster) cmd(name string) []string {
	return append(append([]string(nil), c.runAs...), filepath.Join(c.bin, name))
}

func (c *Cluster) run(name string, args ...string) {
	c.t.Helper()
	argv := append(c.cmd(name), args...)
	out, err := exec.Command(argv[0], argv[1:]...).CombinedOutput()
	if err != nil {
		c.t.Fatalf("pgtest: %s: %v\n%s", name, err, out)
	}
}

// serverBinaries finds initdb, pg_ctl and pg_basebackup: on PATH, or in Debian's
// /usr/lib/postgresql/<version>/bin.
func serverBinaries(t testing.TB) string {
	t.Helper()
	if p, err := exec.LookPath("initdb"); err == nil {
		// A link on PATH (/usr/local/bin/initdb): the folder it points
		// into holds the other programs too (pg_basebackup).
		if real, err := filepath.EvalSymlinks(p); err == nil {
			p = real
		}
		return filepath.Dir(p)
	}
	matches, _ := filepath.Glob("/usr/lib/postgresql/*/bin/initdb")
	if len(matches) == 0 {
		t.Fatal("pgtest: PostgreSQL's server binaries (initdb, pg_ctl) are required for outage tests and were not found")
	}
	return filepath.Dir(matches[len(matches)-1])
}

func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}
