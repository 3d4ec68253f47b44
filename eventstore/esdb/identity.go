package esdb

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/EventStore/EventStore-Client-Go/v4/esdb"
	"github.com/google/uuid"

	"github.com/tenancyhq/tenancy/eventstore"
)

// identityStream holds the store's identity: one event, written by the
// first caller that finds the stream empty (expected: no stream), so
// replicas starting together agree on it. It is not in the feed.
const identityStream = "tenancy-store-identity"

// storeIdentity is the data of the identity event.
type storeIdentity struct {
	ID uuid.UUID `json:"id"`
}

// Identity implements eventstore.Identifier: the id minted in the
// namespace's identity stream, so another cluster, or another namespace on
// the same cluster, is another store.
func (s *Store) Identity(ctx context.Context) (eventstore.Identity, error) {
	ctx, cancel := s.opContext(ctx)
	defer cancel()
	name := s.ns + identityStream
	for range 2 {
		evs, err := s.readStreamEvents(ctx, name, esdb.Forwards, esdb.Start{}, 1)
		if err != nil && !hasCode(err, esdb.ErrorCodeResourceNotFound) {
			return eventstore.Identity{}, s.closedErr(fmt.Errorf("event store identity: %w", err))
		}
		if err == nil && len(evs) > 0 {
			var id storeIdentity
			if err := json.Unmarshal(evs[0].OriginalEvent().Data, &id); err != nil || id.ID == uuid.Nil {
				return eventstore.Identity{}, fmt.Errorf("event store identity: %s holds no id", name)
			}
			return eventstore.Identity{Kind: "eventstoredb", ID: id.ID.String()}, nil
		}
		body, _ := json.Marshal(storeIdentity{ID: uuid.New()}) // a uuid always encodes
		meta, _ := encodeEnvelope(1, nil)
		_, err = s.write(ctx, name, esdb.NoStream{}, esdb.EventData{EventID: uuid.New(), EventType: "StoreIdentityMinted",
			ContentType: esdb.ContentTypeJson, Data: body, Metadata: meta})
		if err != nil && !hasCode(err, esdb.ErrorCodeWrongExpectedVersion) {
			return eventstore.Identity{}, s.closedErr(fmt.Errorf("event store identity: %w", err))
		}
		// Written, or another replica wrote it first: read what is there.
	}
	return eventstore.Identity{}, fmt.Errorf("event store identity: %s could not be read back", name)
}
