-- Which event store the read model and the checkpoints were built from.
--
-- event_store_identity: the identity of the Postgres event store in this
-- database (the events table), minted once. A copy of the database (a
-- restore, a promoted standby) keeps it: it holds the same history.
CREATE TABLE event_store_identity (
    singleton  boolean     PRIMARY KEY DEFAULT true CHECK (singleton),
    id         uuid        NOT NULL DEFAULT gen_random_uuid(),
    created_at timestamptz NOT NULL DEFAULT now()
);
INSERT INTO event_store_identity DEFAULT VALUES;

-- read_model_source: the store (Postgres here, or an EventStoreDB cluster)
-- whose events this database's read model, timers and checkpoints hold.
-- Recorded on first use; operator commands and serve refuse another store
-- unless told --force (a deliberate move), which records the new one.
CREATE TABLE read_model_source (
    singleton  boolean     PRIMARY KEY DEFAULT true CHECK (singleton),
    store_kind text        NOT NULL,
    store_id   text        NOT NULL,
    -- where the store was reached (password redacted), for messages only
    store_url  text        NOT NULL,
    bound_at   timestamptz NOT NULL DEFAULT now()
);
