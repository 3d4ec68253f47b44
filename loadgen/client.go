package loadgen

import (
	"bytes"
	"context"
	crand "crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// answer is one HTTP answer.
type answer struct {
	status int
	header http.Header
	body   []byte
}

// tenantBody is the part of a tenant answer the load reads.
type tenantBody struct {
	ID      string `json:"id"`
	Status  string `json:"status"`
	Version uint64 `json:"version"`
}

// send makes one attempt. A failure without an answer is returned as an
// error; any answer, whatever its status, is an answer.
func (g *gen) send(ctx context.Context, method, path string, body []byte, header map[string]string) (answer, error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, g.cfg.BaseURL+path, rd)
	if err != nil {
		return answer{}, err
	}
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", "tenancy-bench")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if g.cfg.Token != "" {
		req.Header.Set("Authorization", "Bearer "+g.cfg.Token)
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	res, err := g.cfg.HTTPClient.Do(req)
	if err != nil {
		return answer{}, err
	}
	defer res.Body.Close()
	data, err := io.ReadAll(io.LimitReader(res.Body, 4<<20))
	if err != nil {
		return answer{}, fmt.Errorf("read answer: %w", err)
	}
	return answer{status: res.StatusCode, header: res.Header, body: data}, nil
}

// failure names a failed attempt for the error counts: its status, or
// "timeout" or "connection" when no answer came.
func failure(a answer, err error) string {
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) || isTimeout(err) {
			return "timeout"
		}
		return "connection"
	}
	return strconv.Itoa(a.status)
}

func isTimeout(err error) bool {
	var t interface{ Timeout() bool }
	return errors.As(err, &t) && t.Timeout()
}

func ok(a answer, err error) bool { return err == nil && a.status >= 200 && a.status <= 299 }

// readAttempts bounds the attempts of a read answered 503 or 429.
const readAttempts = 3

// read sends a read and records it under op. A 503 or 429 (the read model
// behind, the database away) is sent again after its Retry-After, as a
// client following the API's advice would, up to readAttempts; a read
// without an answer is not: it is counted and the load goes on.
func (g *gen) read(ctx context.Context, op Op, method, path string, body []byte) {
	start := time.Now()
	var failures []string
	for attempt := 1; ; attempt++ {
		a, err := g.send(ctx, method, path, body, nil)
		if ok(a, err) {
			g.rec.done(op, time.Since(start), failures, len(failures), true)
			return
		}
		failures = append(failures, failure(a, err))
		if err != nil || (a.status != http.StatusServiceUnavailable && a.status != http.StatusTooManyRequests) || attempt == readAttempts {
			g.rec.done(op, 0, failures, len(failures)-1, false)
			return
		}
		if !sleep(ctx, retryAfter(a, 100*time.Millisecond)) {
			g.rec.done(op, 0, failures, len(failures)-1, false)
			return
		}
	}
}

// retryAfter is the answer's Retry-After, at most 2 s, or def without one.
func retryAfter(a answer, def time.Duration) time.Duration {
	if ra, err := strconv.Atoi(a.header.Get("Retry-After")); err == nil && ra > 0 {
		return min(time.Duration(ra)*time.Second, 2*time.Second)
	}
	return def
}

// sleep waits d, false if ctx ended first.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// commandResult is an acknowledged command's answer.
type commandResult struct {
	tenant   tenantBody
	token    string
	replayed bool
	at       time.Time // when the answer arrived
}

// command sends a command with an Idempotency-Key and sends it again, with
// the same key, after a 5xx, a 429, a 409 concurrent-modification or a lost answer, until it is answered
// or ctx ends: the service applies a key once, so a retried command is
// never applied twice and an acknowledged one is never lost. It returns
// the failed attempts' names and whether the command was acknowledged;
// ctx ending first leaves the outcome in doubt.
func (g *gen) command(ctx context.Context, method, path, key string, body []byte) (res commandResult, failures []string, acked, doubt bool) {
	backoff := 50 * time.Millisecond
	for {
		a, err := g.send(ctx, method, path, body, map[string]string{"Idempotency-Key": key})
		if ok(a, err) {
			if jerr := json.Unmarshal(a.body, &res.tenant); jerr != nil || res.tenant.ID == "" {
				return res, append(failures, "bad answer"), false, true
			}
			res.token = a.header.Get("X-Consistency-Token")
			res.replayed = a.header.Get("Idempotent-Replayed") == "true"
			res.at = time.Now()
			return res, failures, true, false
		}
		failures = append(failures, failure(a, err))
		if err == nil && a.status < 500 && a.status != http.StatusTooManyRequests && !raced(a) {
			return res, failures, false, false // refused: sending it again changes nothing
		}
		wait := retryAfter(a, backoff+rand.N(backoff))
		backoff = min(2*backoff, time.Second)
		if !sleep(ctx, wait) {
			return res, failures, false, true
		}
	}
}

// raced reports a 409 concurrent-modification problem: other changes to
// the tenant kept winning, nothing was written, and the service asks for
// the request again.
func raced(a answer) bool {
	if a.status != http.StatusConflict {
		return false
	}
	var p struct {
		Type string `json:"type"`
	}
	return json.Unmarshal(a.body, &p) == nil && strings.HasSuffix(p.Type, "/concurrent-modification")
}

// newKey is a fresh Idempotency-Key.
func newKey() string {
	var b [12]byte
	_, _ = crand.Read(b[:])
	return "bench-" + hex.EncodeToString(b[:])
}
