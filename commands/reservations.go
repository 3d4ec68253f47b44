package commands

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"

	"github.com/tenancyhq/tenancy/aggregate"
	"github.com/tenancyhq/tenancy/eventstore"
)

// Reservation streams make a value unique across tenants without a read
// model: the first append to "tenantname-<normalized name>" wins. They are
// not tenant streams, so projections (filtering on "tenant-") never see them.
const (
	NameStreamPrefix       = "tenantname-"
	ExternalIDStreamPrefix = "tenantexternalid-"
)

// Reservation event types.
const (
	eventNameReserved       = "TenantNameReserved"
	eventNameReleased       = "TenantNameReleased"
	eventExternalIDReserved = "TenantExternalIDReserved"
)

type reservation struct {
	TenantID   uuid.UUID `json:"tenant_id"`
	Value      string    `json:"value"`
	ReservedAt time.Time `json:"at"`
	Reason     string    `json:"reason,omitempty"`
}

func reservationEvent(typ string, r reservation) eventstore.EventData {
	data, _ := json.Marshal(r) // a struct of strings and a time always marshals
	return eventstore.EventData{ID: uuid.New(), Type: typ, SchemaVersion: 1, Data: data}
}

// reserveName makes normalized the name of tenant id. It succeeds if the name
// is free, released, already reserved by this tenant, or held by an orphaned
// reservation; it fails with a conflict if another tenant holds it.
func (h *Handler) reserveName(ctx context.Context, normalized string, id uuid.UUID, now time.Time) error {
	stream := NameStreamPrefix + normalized
	for attempt := 0; attempt < h.maxAttempts; attempt++ {
		last, err := h.store.ReadStream(ctx, stream, eventstore.Backward, -1, 1)
		if errors.Is(err, eventstore.ErrStreamNotFound) {
			_, err = h.store.Append(ctx, stream, eventstore.NoStream, []eventstore.EventData{
				reservationEvent(eventNameReserved, reservation{TenantID: id, Value: normalized, ReservedAt: now})})
			if errors.Is(err, eventstore.ErrWrongExpectedVersion) {
				continue
			}
			if err != nil {
				return fmt.Errorf("reserve name %q: %w", normalized, err)
			}
			return nil
		}
		if err != nil {
			return fmt.Errorf("reserve name %q: %w", normalized, err)
		}
		var r reservation
		if err := json.Unmarshal(last[0].Data, &r); err != nil {
			return fmt.Errorf("reserve name %q: read reservation: %w", normalized, err)
		}
		var events []eventstore.EventData
		switch {
		case last[0].Type == eventNameReserved && r.TenantID == id:
			return nil
		case last[0].Type == eventNameReserved:
			held, err := h.nameHeld(ctx, r, normalized, now)
			if err != nil {
				return err
			}
			if held {
				return &aggregate.Error{Code: aggregate.CodeConflict, Field: "name", Rule: "unique",
					Message: "another tenant already has this name", Conflicts: []string{"name"}}
			}
			h.logger.InfoContext(ctx, "taking over an orphaned name reservation", "tenant", id, "orphaned_by", r.TenantID)
			events = append(events, reservationEvent(eventNameReleased, reservation{TenantID: r.TenantID, Value: normalized, ReservedAt: now, Reason: "orphaned"}))
		}
		events = append(events, reservationEvent(eventNameReserved, reservation{TenantID: id, Value: normalized, ReservedAt: now}))
		_, err = h.store.Append(ctx, stream, eventstore.Exact(last[0].Version), events)
		if errors.Is(err, eventstore.ErrWrongExpectedVersion) {
			continue
		}
		if err != nil {
			return fmt.Errorf("reserve name %q: %w", normalized, err)
		}
		return nil
	}
	return fmt.Errorf("reserve name %q: %w", normalized, ErrTooManyConflicts)
}

// nameHeld reports whether a reservation still stands: its tenant exists,
// is not purged and carries the name, or the reservation is recent enough
// that its create or rename may still be under way.
func (h *Handler) nameHeld(ctx context.Context, r reservation, normalized string, now time.Time) (bool, error) {
	t, _, err := h.Load(ctx, r.TenantID)
	if aggregate.HasCode(err, aggregate.CodeNotFound) {
		return now.Sub(r.ReservedAt) < h.grace, nil
	}
	if err != nil {
		return false, err
	}
	if t.Status != aggregate.StatusPurged && t.NormalizedName == normalized {
		return true, nil
	}
	return now.Sub(r.ReservedAt) < h.grace, nil
}

// releaseName frees a name reserved by tenant id. It is best effort: a
// reservation left behind is orphaned and taken over by the next claimant
// (see nameHeld), so a failure here only logs.
func (h *Handler) releaseName(ctx context.Context, normalized string, id uuid.UUID, now time.Time) {
	stream := NameStreamPrefix + normalized
	last, err := h.store.ReadStream(ctx, stream, eventstore.Backward, -1, 1)
	if err != nil {
		h.logger.WarnContext(ctx, "release name: read reservation", "tenant", id, "err", err)
		return
	}
	var r reservation
	if json.Unmarshal(last[0].Data, &r) != nil || last[0].Type != eventNameReserved || r.TenantID != id {
		return
	}
	_, err = h.store.Append(ctx, stream, eventstore.Exact(last[0].Version), []eventstore.EventData{
		reservationEvent(eventNameReleased, reservation{TenantID: id, Value: normalized, ReservedAt: now})})
	if err != nil {
		h.logger.WarnContext(ctx, "release name", "tenant", id, "err", err)
	}
}

// reserveExternalID claims an unused external id for tenant id: first the one
// derived from the id (so a retried create gets the same), then random ones.
func (h *Handler) reserveExternalID(ctx context.Context, id uuid.UUID, now time.Time) (string, error) {
	candidate := externalIDFor(id)
	for attempt := 0; attempt < 8; attempt++ {
		stream := ExternalIDStreamPrefix + candidate
		_, err := h.store.Append(ctx, stream, eventstore.NoStream, []eventstore.EventData{
			reservationEvent(eventExternalIDReserved, reservation{TenantID: id, Value: candidate, ReservedAt: now})})
		if err == nil {
			return candidate, nil
		}
		if !errors.Is(err, eventstore.ErrWrongExpectedVersion) {
			return "", fmt.Errorf("reserve external id: %w", err)
		}
		last, rerr := h.store.ReadStream(ctx, stream, eventstore.Forward, 0, 1)
		if rerr == nil {
			var r reservation
			if json.Unmarshal(last[0].Data, &r) == nil && r.TenantID == id {
				return candidate, nil
			}
		}
		candidate = externalIDFor(uuid.New())
	}
	return "", fmt.Errorf("reserve external id: no free id after 8 tries")
}
