// Package pgerr classifies PostgreSQL errors the service answers alike
// wherever they come from: the event store, the read model, the key store.
package pgerr

import (
	"errors"
	"io"
	"net"
	"strings"
	"syscall"

	"github.com/jackc/pgx/v5/pgconn"
)

// IsUnavailable reports whether err means the database cannot be reached
// now: the connection was refused, lost or closed, or the server is
// shutting down, starting up or out of connections. Such an error is
// transient: the same request may succeed later, and a client should be
// told so (503 + Retry-After), not that the service failed.
func IsUnavailable(err error) bool {
	if err == nil {
		return false
	}
	var connErr *pgconn.ConnectError
	if errors.As(err, &connErr) {
		return true
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		switch {
		case len(pgErr.Code) == 5 && pgErr.Code[:2] == "08": // connection_exception
			return true
		case pgErr.Code == "57P01", pgErr.Code == "57P02", pgErr.Code == "57P03": // shutdown, crash, starting up
			return true
		case pgErr.Code == "53300": // too_many_connections
			return true
		}
		return false
	}
	var netErr net.Error
	return errors.As(err, &netErr) || errors.Is(err, net.ErrClosed) ||
		errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) ||
		pgconn.SafeToRetry(err)
}

// IsRecoveryConflict reports whether a hot standby cancelled the query so
// that it could replay the primary's changes (SQLSTATE 40001, "canceling
// statement due to conflict with recovery"). Sent again, the query
// usually succeeds: the API answers it 503 with Retry-After.
func IsRecoveryConflict(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && pgErr.Code == "40001" && strings.Contains(pgErr.Message, "conflict with recovery")
}
