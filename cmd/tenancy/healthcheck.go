package main

import (
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/spf13/cobra"
)

// newHealthcheckCmd is a container health check for images without curl or
// a shell (the distroless image): it exits 0 when the service's readiness
// URL answers 200. The URL follows HTTP_ADDR, as serve does, so the image's
// HEALTHCHECK needs no address written into it.
func newHealthcheckCmd() *cobra.Command {
	var url, addr string
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "healthcheck",
		Short: "Exit 0 when the service's readiness URL answers 200 (for container health checks)",
		Long: `healthcheck GETs /health/ready of the service listening on --http-addr
(default $HTTP_ADDR, as serve reads it: ":8000" is checked on 127.0.0.1:8000)
and exits 0 on 200, 1 otherwise. It needs no shell, curl or wget, so it runs
in the distroless image.`,
		Example: `  tenancy healthcheck
  HTTP_ADDR=:9000 tenancy healthcheck
  tenancy healthcheck --url http://127.0.0.1:8000/health/live`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if url == "" {
				u, err := readinessURL(addr)
				if err != nil {
					return &exitError{code: 1, msg: err.Error()}
				}
				url = u
			}
			client := &http.Client{Timeout: timeout}
			resp, err := client.Get(url)
			if err != nil {
				return &exitError{code: 1, msg: err.Error()}
			}
			defer resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				return &exitError{code: 1, msg: fmt.Sprintf("%s answered %d", url, resp.StatusCode)}
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&addr, "http-addr", env("HTTP_ADDR", ":8000"), "the address the service listens on [$HTTP_ADDR]")
	cmd.Flags().StringVar(&url, "url", "", "the URL to check (default: /health/ready on --http-addr)")
	cmd.Flags().DurationVar(&timeout, "timeout", 3*time.Second, "how long to wait")
	return cmd
}

// readinessURL is the readiness URL of a service listening on addr: an
// address on every interface (":8000", "0.0.0.0:8000", "[::]:8000") is
// reached on loopback.
func readinessURL(addr string) (string, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "", fmt.Errorf("HTTP_ADDR %q: %w", addr, err)
	}
	switch host {
	case "", "0.0.0.0":
		host = "127.0.0.1"
	case "::":
		host = "::1"
	}
	return "http://" + net.JoinHostPort(host, port) + "/health/ready", nil
}
