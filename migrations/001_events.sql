-- The event store (used when EVENTSTORE_URL is empty): every event of every
-- stream, in one table.
--
-- The global feed is ordered by (transaction_id, position) and read only below
-- pg_snapshot_xmin(pg_current_snapshot()): a position taken by a transaction
-- that commits late can then never be skipped by a reader that already moved on.
CREATE TABLE events (
    position        bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    transaction_id  xid8        NOT NULL DEFAULT pg_current_xact_id(),
    stream          text        NOT NULL,
    version         bigint      NOT NULL CHECK (version >= 0),
    event_id        uuid        NOT NULL,
    event_type      text        NOT NULL,
    schema_version  integer     NOT NULL DEFAULT 1,
    data            jsonb       NOT NULL,
    metadata        jsonb       NOT NULL DEFAULT '{}'::jsonb,
    recorded_at     timestamptz NOT NULL DEFAULT clock_timestamp(),
    CONSTRAINT events_stream_version_key UNIQUE (stream, version),
    CONSTRAINT events_event_id_key UNIQUE (event_id)
);

CREATE INDEX events_feed_idx ON events (transaction_id, position);

---- create above / drop below ----

DROP TABLE events;
