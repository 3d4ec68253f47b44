package esdb

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/EventStore/EventStore-Client-Go/v4/esdb"
	"github.com/google/uuid"

	"github.com/tenancyhq/tenancy/eventstore"
)

// EventStoreDB has no transaction across streams, so a Commit is three
// steps, each safe to crash after:
//
//  1. every value taken is claimed in its claim stream
//     uniqueclaim-<kind>-<value>, with the claiming stream and the id of the
//     write's first event (ClaimEventType);
//  2. the events are appended (Append, with its event id claims);
//  3. every value released gets a release event in its claim stream.
//
// A crash after 1 leaves a claim whose first event never landed. The next
// claimant reads the claim, looks its event up (Locate), and takes the value
// over when the event is not stored and the claim is older than
// OrphanedClaimAfter (until then, the claim's write may still be under way).
// A crash after 2 leaves a released value claimed: it stays taken until an
// operator releases it (the adapter logs each release it could not write).
//
// A retried Commit of the same event ids at the same place is answered by
// the server as a success (its own idempotence), unlike Postgres, which
// refuses it as a duplicate; callers recognise their retries with Locate
// before they commit.

// Claim event types.
const (
	ClaimEventType   = "ValueClaimed"
	ReleaseEventType = "ValueReleased"
)

// OrphanedClaimAfter is how old a claim whose event never landed must be
// before another stream may take its value.
const OrphanedClaimAfter = 30 * time.Second

// uniqueClaim is the data of a claim or release event.
type uniqueClaim struct {
	Holder string    `json:"holder"`
	Event  uuid.UUID `json:"event,omitzero"`
	At     time.Time `json:"at"`
}

// KeepsSecrets implements eventstore.Committer: EventStoreDB keeps no key
// material (keys must be destroyable); the caller keeps them elsewhere.
func (s *Store) KeepsSecrets() bool { return false }

// Commit implements eventstore.Committer in the three steps above.
func (s *Store) Commit(ctx context.Context, w eventstore.Write) (eventstore.AppendResult, error) {
	if len(w.Secrets) > 0 {
		return eventstore.AppendResult{}, fmt.Errorf("commit to %s: EventStoreDB keeps no secrets", w.Stream)
	}
	if len(w.Events) == 0 {
		return eventstore.AppendResult{}, fmt.Errorf("commit to %s: no events", w.Stream)
	}
	// Refuse an append the server would refuse before taking claims for it.
	if err := s.checkSize(w.Stream, w.Events); err != nil {
		return eventstore.AppendResult{}, err
	}
	for _, c := range w.Claims {
		if c.Release {
			continue
		}
		if err := s.takeClaim(ctx, w.Stream, c, w.Events[0].ID); err != nil {
			return eventstore.AppendResult{}, s.closedErr(err)
		}
	}
	res, err := s.Append(ctx, w.Stream, w.Expected, w.Events)
	if err != nil {
		return res, err
	}
	for _, c := range w.Claims {
		if !c.Release {
			continue
		}
		if err := s.releaseClaim(context.WithoutCancel(ctx), w.Stream, c); err != nil {
			s.log.ErrorContext(ctx, "release a claimed value after its write (it stays taken until released by hand)",
				"stream", w.Stream, "kind", c.Kind, "value", c.Value, "err", err)
		}
	}
	return res, nil
}

func (s *Store) claimStream(c eventstore.Claim) string {
	return s.ns + uniqueClaimPrefix + c.Kind + "-" + c.Value
}

// lastClaim reads the last event of a claim stream: its type, data and
// revision; ok is false when the stream has none.
func (s *Store) lastClaim(ctx context.Context, name string) (typ string, data uniqueClaim, revision uint64, ok bool, err error) {
	evs, err := s.readStreamEvents(ctx, name, esdb.Backwards, esdb.End{}, 1)
	if hasCode(err, esdb.ErrorCodeResourceNotFound) || err == nil && len(evs) == 0 {
		return "", uniqueClaim{}, 0, false, nil
	}
	if err != nil {
		return "", uniqueClaim{}, 0, false, fmt.Errorf("read %s: %w", name, err)
	}
	ev := evs[0].OriginalEvent()
	if err := json.Unmarshal(ev.Data, &data); err != nil {
		return "", uniqueClaim{}, 0, false, fmt.Errorf("read %s: %w", name, err)
	}
	return ev.EventType, data, ev.EventNumber, true, nil
}

func (s *Store) writeClaim(ctx context.Context, name string, revision esdb.ExpectedRevision, typ string, data uniqueClaim) error {
	body, err := json.Marshal(data)
	if err != nil {
		return err
	}
	meta, _ := encodeEnvelope(1, nil) // no metadata always encodes
	_, err = s.write(ctx, name, revision, esdb.EventData{EventID: uuid.New(), EventType: typ, ContentType: esdb.ContentTypeJson, Data: body, Metadata: meta})
	return err
}

// takeClaim makes stream the holder of c's value, or says who holds it.
func (s *Store) takeClaim(ctx context.Context, stream string, c eventstore.Claim, first uuid.UUID) error {
	ctx, cancel := s.opContext(ctx)
	defer cancel()
	name := s.claimStream(c)
	for attempt := 0; attempt < 5; attempt++ {
		typ, held, rev, exists, err := s.lastClaim(ctx, name)
		if err != nil {
			return fmt.Errorf("claim %s %q: %w", c.Kind, c.Value, err)
		}
		var expected esdb.ExpectedRevision = esdb.NoStream{}
		if exists {
			expected = esdb.Revision(rev)
			if typ == ClaimEventType && held.Holder == stream {
				return nil
			}
			if typ == ClaimEventType {
				orphaned, err := s.orphaned(ctx, held)
				if err != nil {
					return fmt.Errorf("claim %s %q: %w", c.Kind, c.Value, err)
				}
				if !orphaned {
					return &eventstore.ClaimTakenError{Kind: c.Kind, Value: c.Value, Holder: held.Holder}
				}
				s.log.InfoContext(ctx, "taking over an orphaned claim", "kind", c.Kind, "stream", stream, "orphaned_by", held.Holder)
			}
		}
		err = s.writeClaim(ctx, name, expected, ClaimEventType, uniqueClaim{Holder: stream, Event: first, At: time.Now().UTC()})
		if hasCode(err, esdb.ErrorCodeWrongExpectedVersion) {
			continue // another claimant wrote first: look again
		}
		if err != nil {
			return fmt.Errorf("claim %s %q: %w", c.Kind, c.Value, err)
		}
		return nil
	}
	return &eventstore.ClaimTakenError{Kind: c.Kind, Value: c.Value}
}

// orphaned reports whether a claim's write never landed: its first event is
// not stored, and the claim is old enough that the write is not under way.
func (s *Store) orphaned(ctx context.Context, held uniqueClaim) (bool, error) {
	if held.Event == uuid.Nil || time.Since(held.At) < OrphanedClaimAfter {
		return false, nil
	}
	_, _, err := s.Locate(ctx, held.Event)
	if errors.Is(err, eventstore.ErrNotFound) {
		return true, nil
	}
	return false, err
}

// releaseClaim gives c's value back if stream holds it.
func (s *Store) releaseClaim(ctx context.Context, stream string, c eventstore.Claim) error {
	ctx, cancel := s.opContext(ctx)
	defer cancel()
	name := s.claimStream(c)
	typ, held, rev, exists, err := s.lastClaim(ctx, name)
	if err != nil || !exists || typ != ClaimEventType || held.Holder != stream {
		return err
	}
	return s.writeClaim(ctx, name, esdb.Revision(rev), ReleaseEventType, uniqueClaim{Holder: stream, At: time.Now().UTC()})
}

// ClaimHolder implements eventstore.ClaimReader.
func (s *Store) ClaimHolder(ctx context.Context, kind, value string) (string, error) {
	ctx, cancel := s.opContext(ctx)
	defer cancel()
	typ, held, _, exists, err := s.lastClaim(ctx, s.claimStream(eventstore.Claim{Kind: kind, Value: value}))
	if err != nil {
		return "", s.closedErr(fmt.Errorf("claim %s %q: %w", kind, value, err))
	}
	if !exists || typ != ClaimEventType {
		return "", fmt.Errorf("claim %s %q: %w", kind, value, eventstore.ErrNotFound)
	}
	return held.Holder, nil
}

// Locate implements eventstore.Locator: the event id's claim names its
// stream (see the package documentation), which is then searched for the
// id. A claim left by an append that was refused finds nothing.
func (s *Store) Locate(ctx context.Context, id uuid.UUID) (string, uint64, error) {
	ctx, cancel := s.opContext(ctx)
	defer cancel()
	evs, err := s.readStreamEvents(ctx, s.ns+claimStreamPrefix+id.String(), esdb.Forwards, esdb.Start{}, 1)
	if hasCode(err, esdb.ErrorCodeResourceNotFound) || err == nil && len(evs) == 0 {
		// Not claimed, so not stored (with Options.NoEventIDClaims ids are
		// not claimed and Locate cannot find them).
		return "", 0, fmt.Errorf("event %s: %w", id, eventstore.ErrNotFound)
	}
	if err != nil {
		return "", 0, s.closedErr(fmt.Errorf("locate event %s: %w", id, err))
	}
	var held claim
	if err := json.Unmarshal(evs[0].OriginalEvent().Data, &held); err != nil {
		return "", 0, fmt.Errorf("locate event %s: %w", id, err)
	}
	recs, err := s.ReadStream(ctx, held.Stream, eventstore.Forward, 0, 0)
	if errors.Is(err, eventstore.ErrStreamNotFound) {
		return "", 0, fmt.Errorf("event %s: %w", id, eventstore.ErrNotFound)
	}
	if err != nil {
		return "", 0, err
	}
	for _, r := range recs {
		if r.ID == id {
			return r.Stream, r.Version, nil
		}
	}
	return "", 0, fmt.Errorf("event %s: %w", id, eventstore.ErrNotFound)
}
