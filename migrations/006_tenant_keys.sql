-- Per-tenant data keys for crypto-shredding (internal/shred). Personal
-- fields inside events are encrypted with their tenant's key, which is kept
-- here, outside the event store, wrapped by the master key
-- (TENANCY_MASTER_KEY). Purging a tenant deletes its row: from then on the
-- personal fields of its events cannot be decrypted by anyone, in any copy
-- or backup of the events.
CREATE TABLE tenant_keys (
    tenant_id    uuid        PRIMARY KEY,
    wrapped_key  bytea       NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now()
);

---- create above / drop below ----

DROP TABLE tenant_keys;
