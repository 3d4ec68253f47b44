// Package natsserver runs a NATS server with JetStream inside the tenancy
// process. With no NATS_URL the service starts one, so a single binary runs
// on a bare machine (DESIGN.md, "NATS"); tests start one on a random port
// with StartTest.
package natsserver

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strconv"
	"syscall"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// DefaultListen is where the embedded server listens when Options.Listen is
// empty: loopback only, on NATS's usual port.
const DefaultListen = "127.0.0.1:4222"

// ErrAddressTaken is matched (errors.Is) by Start's error when another
// process already listens on the address, typically another NATS server
// that the service could use through NATS_URL instead.
var ErrAddressTaken = errors.New("listen address taken")

// Options configure the embedded server.
type Options struct {
	// Listen is the host:port clients connect to (default DefaultListen).
	// Port 0 picks a free port; ClientURL tells which.
	Listen string
	// StoreDir is the directory JetStream keeps its streams in. Required:
	// the published events must survive a restart, so it must not be a
	// temporary directory in production.
	StoreDir string
	// Logger receives the server's warnings and errors (its notices at
	// debug level); default: discard.
	Logger *slog.Logger
}

// Server is a running embedded NATS server. Stop it with Shutdown.
type Server struct {
	ns  *server.Server
	url string
	log *slog.Logger
}

// Start starts the server and waits until it accepts clients with JetStream
// enabled; ctx bounds only that wait (default 10 s when ctx has no
// deadline), not the server's life. When the address is taken, the error
// says so, matches ErrAddressTaken and names NATS_URL and NATS_LISTEN.
func Start(ctx context.Context, opts Options) (*Server, error) {
	if opts.Listen == "" {
		opts.Listen = DefaultListen
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.StoreDir == "" {
		return nil, errors.New("embedded NATS: a JetStream store directory is required")
	}
	host, portText, err := net.SplitHostPort(opts.Listen)
	if err != nil {
		return nil, fmt.Errorf("embedded NATS: listen address %q: %w", opts.Listen, err)
	}
	port, err := strconv.Atoi(portText)
	if err != nil || port < 0 || port > 65535 {
		return nil, fmt.Errorf("embedded NATS: listen address %q: bad port", opts.Listen)
	}
	if port == 0 {
		port = server.RANDOM_PORT // nats-server reads 0 as its default port, 4222
	} else if err := checkFree(opts.Listen); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(opts.StoreDir, 0o750); err != nil {
		return nil, fmt.Errorf("embedded NATS: store directory: %w", err)
	}

	ns, err := server.NewServer(&server.Options{
		ServerName:             "tenancy-embedded",
		Host:                   host,
		Port:                   port,
		JetStream:              true,
		StoreDir:               opts.StoreDir,
		NoSigs:                 true, // the service owns signal handling
		DisableJetStreamBanner: true,
	})
	if err != nil {
		return nil, fmt.Errorf("embedded NATS: %w", err)
	}
	ns.SetLoggerV2(serverLog{opts.Logger}, false, false, false)
	ns.Start()

	wait := 10 * time.Second
	if dl, ok := ctx.Deadline(); ok {
		wait = time.Until(dl)
	}
	if !ns.ReadyForConnections(wait) {
		ns.Shutdown()
		ns.WaitForShutdown()
		if err := checkFree(opts.Listen); err != nil && port != server.RANDOM_PORT {
			return nil, err // taken between our check and the server's listen
		}
		return nil, fmt.Errorf("embedded NATS on %s: not ready after %s (see its log)", opts.Listen, wait.Round(time.Millisecond))
	}
	if !ns.JetStreamEnabled() {
		ns.Shutdown()
		ns.WaitForShutdown()
		return nil, fmt.Errorf("embedded NATS on %s: JetStream did not start (store directory %s; see its log)", opts.Listen, opts.StoreDir)
	}
	s := &Server{ns: ns, url: ns.ClientURL(), log: opts.Logger}
	s.log.Info("embedded NATS started", "url", s.url, "store_dir", opts.StoreDir)
	return s, nil
}

// CheckFree reports, in words an operator can act on (naming NATS_URL and
// NATS_LISTEN), that addr is taken; nil when it is free. Start checks
// itself; the service calls it earlier, before it creates anything.
func CheckFree(addr string) error {
	if _, port, err := net.SplitHostPort(addr); err == nil && port == "0" {
		return nil
	}
	return checkFree(addr)
}

// checkFree reports, in words an operator can act on, that addr is taken.
// nats-server itself only logs a failed listen, so Start looks first.
func checkFree(addr string) error {
	l, err := net.Listen("tcp", addr)
	if err == nil {
		return l.Close()
	}
	if errors.Is(err, syscall.EADDRINUSE) {
		host, port, _ := net.SplitHostPort(addr)
		if host == "" || host == "0.0.0.0" || host == "::" {
			host = "127.0.0.1"
		}
		url := "nats://" + net.JoinHostPort(host, port)
		return fmt.Errorf("embedded NATS: %s is taken (is another NATS running there?); set NATS_URL=%s to use it, or NATS_LISTEN to another address: %w",
			addr, url, errors.Join(ErrAddressTaken, err))
	}
	return fmt.Errorf("embedded NATS: listen on %s: %w", addr, err)
}

// ClientURL is the URL clients connect to, e.g. nats://127.0.0.1:4222.
func (s *Server) ClientURL() string { return s.url }

// Shutdown stops the server and waits until it has stopped: clients are
// disconnected and JetStream has flushed its store, so a server started
// again on the same store directory finds every stored message.
func (s *Server) Shutdown() {
	s.ns.Shutdown()
	s.ns.WaitForShutdown()
	s.log.Info("embedded NATS stopped", "url", s.url)
}

// serverLog hands nats-server's log lines to slog. Notices are routine
// (ports, limits, recovery progress) and go to debug; Fatalf, which the
// server calls on errors it cannot recover from, is an error here: the
// process must not exit behind the service's back.
type serverLog struct{ l *slog.Logger }

func (s serverLog) Noticef(format string, v ...any) {
	s.l.Debug(fmt.Sprintf(format, v...), "component", "nats-server")
}

func (s serverLog) Warnf(format string, v ...any) {
	s.l.Warn(fmt.Sprintf(format, v...), "component", "nats-server")
}

func (s serverLog) Fatalf(format string, v ...any) {
	s.l.Error(fmt.Sprintf(format, v...), "component", "nats-server")
}

func (s serverLog) Errorf(format string, v ...any) {
	s.l.Error(fmt.Sprintf(format, v...), "component", "nats-server")
}

func (s serverLog) Debugf(format string, v ...any) {
	s.l.Debug(fmt.Sprintf(format, v...), "component", "nats-server")
}

func (s serverLog) Tracef(format string, v ...any) {
	s.l.Debug(fmt.Sprintf(format, v...), "component", "nats-server")
}
