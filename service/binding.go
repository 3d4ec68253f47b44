package service

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/tenancyhq/tenancy/eventstore"
	"github.com/tenancyhq/tenancy/eventstore/esdb"
	"github.com/tenancyhq/tenancy/eventstore/postgres"
)

// StoreMismatchError: the configured event store is not the one this
// database's read model, timers and checkpoints were built from. Serving or
// operating on it would mix two histories (a checkpoint is a position in
// one store's feed, meaningless in another's), so Open refuses.
type StoreMismatchError struct {
	Bound, Configured       eventstore.Identity
	BoundURL, ConfiguredURL string
}

func (e *StoreMismatchError) Error() string {
	return fmt.Sprintf("the read model, timers and checkpoints in this database were built from event store %s at %s, "+
		"but the configured event store is %s at %s; set EVENTSTORE_URL (empty for the Postgres store in DATABASE_URL) "+
		"to the store they were built from, or, to move them to the configured store on purpose, run again with --force "+
		"and then rebuild the projections", e.Bound, e.BoundURL, e.Configured, e.ConfiguredURL)
}

// storeURL names the configured event store for messages (no password).
func (a *App) storeURL() string {
	if a.cfg.EventStoreURL != "" {
		return esdb.RedactURL(a.cfg.EventStoreURL)
	}
	return "DATABASE_URL " + redactURL(a.cfg.DatabaseURL)
}

// storeIdentity asks the adapter itself (not its decorators) who it is.
func (a *App) storeIdentity(ctx context.Context) (eventstore.Identity, error) {
	if a.esdb != nil {
		return a.esdb.Identity(ctx)
	}
	return postgres.New(a.pool).Identity(ctx)
}

// checkStoreBinding records, on first use, which event store this
// database's projections are built from, and refuses another one unless
// Config.ForceStore, which records the configured store instead. A
// database without the migration that keeps the record is left to the
// schema check.
func (a *App) checkStoreBinding(ctx context.Context) error {
	var ready bool
	if err := a.pool.QueryRow(ctx, `SELECT to_regclass('read_model_source') IS NOT NULL`).Scan(&ready); err != nil {
		return fmt.Errorf("event store binding: %w", err)
	}
	if !ready {
		return nil
	}
	id, err := a.storeIdentityWithRetry(ctx)
	if err != nil {
		return fmt.Errorf("event store at %s: %w", a.storeURL(), err)
	}
	// The first replica to start records its store; every one then
	// compares with what is recorded.
	if _, err := a.pool.Exec(ctx, `INSERT INTO read_model_source (store_kind, store_id, store_url) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING`,
		id.Kind, id.ID, a.storeURL()); err != nil {
		return fmt.Errorf("event store binding: %w", err)
	}
	var bound eventstore.Identity
	var boundURL string
	if err := a.pool.QueryRow(ctx, `SELECT store_kind, store_id, store_url FROM read_model_source`).Scan(&bound.Kind, &bound.ID, &boundURL); err != nil {
		return fmt.Errorf("event store binding: %w", err)
	}
	if bound == id {
		return nil
	}
	if !a.cfg.ForceStore {
		return &StoreMismatchError{Bound: bound, Configured: id, BoundURL: boundURL, ConfiguredURL: a.storeURL()}
	}
	if _, err := a.pool.Exec(ctx, `UPDATE read_model_source SET store_kind = $1, store_id = $2, store_url = $3, bound_at = now()`,
		id.Kind, id.ID, a.storeURL()); err != nil {
		return fmt.Errorf("event store binding: %w", err)
	}
	a.log.WarnContext(ctx, "--force: this database's read model, timers and checkpoints now belong to the configured event store; rebuild the projections (tenancy projections rebuild read-model --force, rebuild scheduler)",
		"was", bound.String(), "was_url", boundURL, "now", id.String(), "now_url", a.storeURL())
	return nil
}

// storeIdentityWithRetry gives a store that is still starting (EventStoreDB
// behind its container's health check) a few seconds.
func (a *App) storeIdentityWithRetry(ctx context.Context) (eventstore.Identity, error) {
	deadline := time.Now().Add(10 * time.Second)
	for wait := 200 * time.Millisecond; ; wait = min(2*wait, 2*time.Second) {
		id, err := a.storeIdentity(ctx)
		if err == nil || time.Now().After(deadline) || ctx.Err() != nil {
			return id, err
		}
		a.log.WarnContext(ctx, "event store not reachable yet; retrying", "store", a.storeURL(), "err", err)
		select {
		case <-ctx.Done():
			return id, errors.Join(err, ctx.Err())
		case <-time.After(wait):
		}
	}
}

// checkRebuildSource refuses, without Config.ForceStore, a rebuild that
// would replace a read model holding tenants with one built from a store
// holding no events: most likely the wrong store, and the switch-over
// would empty the read model.
func (a *App) checkRebuildSource(ctx context.Context) error {
	if a.cfg.ForceStore {
		return nil
	}
	head, err := a.feed.Head(ctx)
	if err != nil || head != eventstore.Start {
		return err
	}
	var tenants int64
	if err := a.pool.QueryRow(ctx, `SELECT count(*) FROM tenants`).Scan(&tenants); err != nil {
		return fmt.Errorf("count the read model's tenants: %w", err)
	}
	if tenants == 0 {
		return nil
	}
	return fmt.Errorf("the event store at %s holds no events, but the read model holds %d tenants: a rebuild would empty it; "+
		"check EVENTSTORE_URL and DATABASE_URL, or run again with --force to rebuild from the empty store", a.storeURL(), tenants)
}
