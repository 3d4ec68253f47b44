package httpapi

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/tenancyhq/tenancy/eventstore"
	"github.com/tenancyhq/tenancy/queries"
)

// Session consistency: a caller's reads see its own writes without any
// header, as with Cosmos DB's default. The position of each caller's last
// accepted command is remembered here, per principal (token subject and
// tenant binding), and also handed back in a cookie, which clients with a
// cookie jar send to whichever replica serves their next read. A read then
// waits, bounded like a consistency token, until the read model has reached
// that position. An explicit token replaces it; "Consistency: eventual"
// opts out.

// sessionCookie carries the caller's last write position between replicas.
const sessionCookie = "tenancy_last_write"

// sessionTTL is how long a write is remembered: by then the read model has
// long passed it, and a read need not look.
const sessionTTL = time.Minute

// maxSessions bounds the principals remembered at once.
const maxSessions = 100_000

type sessions struct {
	mu   sync.Mutex
	last map[string]session
	// reached is a position the read model is known to have reached, so
	// reads of sessions at or before it need not ask.
	reached eventstore.Position
}

type session struct {
	pos eventstore.Position
	at  time.Time
}

func newSessions() *sessions { return &sessions{last: make(map[string]session)} }

// sessionKey is the principal a session belongs to.
func sessionKey(c echo.Context) string {
	p := principal(c)
	key := p.Subject
	if p.TenantID != nil {
		key += "\x00" + p.TenantID.String()
	}
	return key
}

// wrote records a caller's accepted command.
func (ss *sessions) wrote(key string, pos eventstore.Position, now time.Time) {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if len(ss.last) >= maxSessions {
		for k, s := range ss.last {
			if now.Sub(s.at) > sessionTTL {
				delete(ss.last, k)
			}
		}
		if len(ss.last) >= maxSessions {
			return // full of live sessions: this one has its cookie
		}
	}
	if cur, ok := ss.last[key]; !ok || cur.pos.Compare(pos) < 0 {
		ss.last[key] = session{pos: pos, at: now}
	}
}

// pending is the position a caller's read must wait for, if any.
func (ss *sessions) pending(key string, cookie eventstore.Position, now time.Time) (eventstore.Position, bool) {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	pos := cookie
	if s, ok := ss.last[key]; ok {
		if now.Sub(s.at) > sessionTTL {
			delete(ss.last, key)
		} else if s.pos.Compare(pos) > 0 {
			pos = s.pos
		}
	}
	if pos.IsZero() || pos.Compare(ss.reached) <= 0 {
		return eventstore.Position{}, false
	}
	return pos, true
}

// reach records that the read model holds pos.
func (ss *sessions) reach(pos eventstore.Position) {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if pos.Compare(ss.reached) > 0 {
		ss.reached = pos
	}
}

// rememberWrite records the caller's accepted command at pos, here and in
// its cookie.
func (s *Server) rememberWrite(c echo.Context, pos eventstore.Position) {
	if pos.IsZero() {
		return
	}
	s.sessions.wrote(sessionKey(c), pos, time.Now())
	c.SetCookie(&http.Cookie{Name: sessionCookie, Value: pos.String(), Path: "/", MaxAge: int(sessionTTL / time.Second),
		HttpOnly: true, SameSite: http.SameSiteStrictMode, Secure: c.Request().TLS != nil})
}

// eventual reports whether the caller opted out of waiting for its writes.
func eventual(c echo.Context) bool {
	return strings.EqualFold(c.Request().Header.Get("Consistency"), "eventual")
}

// waitSession makes a read wait for the caller's own last write (see the
// top of the file). A cookie that does not hold a position, or holds one
// beyond the store's head, is ignored: it only ever speeds a read up.
func (s *Server) waitSession(c echo.Context) error {
	if eventual(c) {
		return nil
	}
	var cookie eventstore.Position
	if ck, err := c.Cookie(sessionCookie); err == nil {
		if p, err := eventstore.ParsePosition(ck.Value); err == nil {
			cookie = p
		}
	}
	pos, ok := s.sessions.pending(sessionKey(c), cookie, time.Now())
	if !ok {
		return nil
	}
	ctx := c.Request().Context()
	err := s.deps.Queries.WaitFor(ctx, pos, 0)
	if errors.Is(err, queries.ErrNotCaughtUp) {
		if s.beyondHead(ctx, pos) {
			return nil
		}
		err = s.deps.Queries.WaitFor(ctx, pos, s.opts.ConsistencyWait)
	}
	if err == nil {
		s.sessions.reach(pos)
	}
	return err
}

// beyondHead reports whether pos is past the last event the store holds
// (a position this API never handed out).
func (s *Server) beyondHead(ctx context.Context, pos eventstore.Position) bool {
	if s.deps.Head == nil {
		return false
	}
	head, err := s.deps.Head.Head(ctx)
	return err == nil && pos.Compare(head) > 0
}
