package httpapi

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/tenancyhq/tenancy/internal/idempotency"
)

// IdempotencyStore remembers responses by Idempotency-Key
// (internal/idempotency keeps them in Postgres).
type IdempotencyStore interface {
	Claim(ctx context.Context, scope, key, hash string, ttl time.Duration) (*idempotency.Response, error)
	Save(ctx context.Context, scope, key string, r idempotency.Response) error
	Release(ctx context.Context, scope, key string) error
}

// replayedHeaders are the response headers an idempotent replay repeats.
var replayedHeaders = []string{"Content-Type", "ETag", "Location", "X-Consistency-Token", "Retry-After"}

// idempotency makes a request with an Idempotency-Key run once: the same key
// and the same request within the TTL replays the first response byte for
// byte; the same key with another request answers 422.
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
		sum := sha256.New()
		sum.Write([]byte(req.Method + "\n" + req.URL.Path + "\n"))
		sum.Write(body)
		hash := hex.EncodeToString(sum.Sum(nil))
		scope := principal(c).Subject

		ctx := req.Context()
		stored, err := s.deps.Idempotency.Claim(ctx, scope, key, hash, s.opts.IdempotencyTTL)
		switch {
		case errors.Is(err, idempotency.ErrMismatch):
			p := newProblem(http.StatusUnprocessableEntity, typeIdemMismatch, "Idempotency-Key reused",
				"This Idempotency-Key was used with a different request; use a new key for a new request.")
			p.Field, p.Rule = "Idempotency-Key", "same_request"
			return p
		case errors.Is(err, idempotency.ErrInFlight):
			p := newProblem(http.StatusConflict, typeIdemBusy, "Request in progress",
				"The first request with this Idempotency-Key is still running; retry shortly.")
			p.retryAfter = 1
			return p
		case err != nil:
			return err
		case stored != nil:
			h := c.Response().Header()
			for k, v := range stored.Header {
				h.Set(k, v)
			}
			h.Set("Idempotent-Replayed", "true")
			if s.deps.Observer != nil {
				s.deps.Observer.IdempotencyReplay()
			}
			c.Response().WriteHeader(stored.Status)
			_, err := c.Response().Write(stored.Body)
			return err
		}

		rec := &recorder{ResponseWriter: c.Response().Writer}
		c.Response().Writer = rec
		if err := next(c); err != nil {
			c.Error(err)
		}
		status := c.Response().Status
		// A response of ours that failed (5xx) is not an answer: forget the
		// claim so a retry runs again.
		bg := context.WithoutCancel(ctx)
		if status >= 500 || !c.Response().Committed {
			if err := s.deps.Idempotency.Release(bg, scope, key); err != nil {
				s.logger.ErrorContext(ctx, "release idempotency key", "err", err)
			}
			return nil
		}
		saved := idempotency.Response{Status: status, Header: map[string]string{}, Body: rec.body.Bytes()}
		for _, k := range replayedHeaders {
			if v := c.Response().Header().Get(k); v != "" {
				saved.Header[k] = v
			}
		}
		if err := s.deps.Idempotency.Save(bg, scope, key, saved); err != nil {
			s.logger.ErrorContext(ctx, "save idempotent response", "err", err)
		}
		return nil
	}
}

// recorder keeps a copy of the response body.
type recorder struct {
	http.ResponseWriter
	body bytes.Buffer
}

func (r *recorder) Write(b []byte) (int, error) {
	r.body.Write(b)
	return r.ResponseWriter.Write(b)
}
