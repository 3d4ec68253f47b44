package httpapi

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"strings"

	"github.com/labstack/echo/v4"

	"github.com/tenancyhq/tenancy/commands"
)

// identityKey is the request context key of a command's identity.
type identityKey struct{}

// idempotency gives a request that carries an Idempotency-Key its command
// identity: the key, scoped by the caller that sent it (its token's subject
// and tenant binding), and bound to a fingerprint of the request (method,
// route, path parameters and canonical body). The command handler does the
// rest in the command's own write: the same caller, key and request is
// answered with the first outcome; the same caller and key with another
// request gets 422; another caller's identical key is another command.
// Nothing is remembered outside the event log, so nothing outlives a
// crashed request, and a purge leaves no copy of personal data behind.
func (s *Server) idempotency(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		req := c.Request()
		key := req.Header.Get("Idempotency-Key")
		if key == "" {
			return next(c)
		}
		if len(key) > 255 || strings.ContainsFunc(key, func(r rune) bool { return r < 0x20 || r > 0x7e }) {
			return invalidField("Idempotency-Key", "format", "Idempotency-Key must be 1 to 255 printable ASCII characters.")
		}
		body, err := io.ReadAll(io.LimitReader(req.Body, maxBody+1))
		if err != nil {
			return err
		}
		if len(body) > maxBody {
			return echo.NewHTTPError(http.StatusRequestEntityTooLarge)
		}
		req.Body = io.NopCloser(bytes.NewReader(body))
		p := principal(c)
		bound := ""
		if p.TenantID != nil {
			bound = p.TenantID.String()
		}
		id := &commands.Identity{Scope: commands.ClientScope(p.Subject, bound), Key: key, Fingerprint: fingerprint(c, body)}
		c.SetRequest(req.WithContext(context.WithValue(req.Context(), identityKey{}, id)))
		return next(c)
	}
}

// identity is the request's command identity, nil without an Idempotency-Key.
func identity(c echo.Context) *commands.Identity {
	id, _ := c.Request().Context().Value(identityKey{}).(*commands.Identity)
	return id
}

// subIdentity is the identity of the part-th command a request issues
// (a legacy route that completes provisioning, then activates).
func subIdentity(c echo.Context, part string) *commands.Identity {
	id := identity(c)
	if id == nil {
		return nil
	}
	sub := *id
	sub.Key += "\x00" + part
	return &sub
}

// fingerprint hashes what makes a request the same request: its method,
// route, path parameters and body, the body in a canonical form (object
// members sorted, numbers as written) so that a client that re-encodes its
// retry is still recognised.
func fingerprint(c echo.Context, body []byte) string {
	h := sha256.New()
	h.Write([]byte(c.Request().Method + "\n" + c.Path() + "\n"))
	for _, name := range c.ParamNames() {
		h.Write([]byte(name + "=" + c.Param(name) + "\n"))
	}
	h.Write(canonicalJSON(body))
	return hex.EncodeToString(h.Sum(nil))
}

// canonicalJSON re-encodes a JSON document with sorted object members, or
// returns body as it is when it is not JSON.
func canonicalJSON(body []byte) []byte {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil || dec.More() {
		return body
	}
	out, err := json.Marshal(v)
	if err != nil {
		return body
	}
	return out
}
