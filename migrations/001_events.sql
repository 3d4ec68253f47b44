-- The event store (used when EVENTSTORE_URL is empty): every event of every
-- stream, in one table. eventstore/postgres reads and writes it.
--
-- A stream is ordered by version, kept gap-free by the unique (stream,
-- version) key: of two appends that take the same version, the second fails.
--
-- The global feed is ordered by (transaction_id, position) and read only below
-- pg_snapshot_xmin(pg_current_snapshot()): a position taken by a transaction
-- that commits late can then never be skipped by a reader that already moved
-- on. position alone is not a safe order: identities are handed out at insert,
-- not at commit.
CREATE TABLE events (
    position        bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    -- The appending transaction's (top-level) id: the feed's first sort key.
    transaction_id  xid8        NOT NULL DEFAULT pg_current_xact_id(),
    stream          text        NOT NULL CHECK (stream <> ''),
    version         bigint      NOT NULL CHECK (version >= 0),
    -- Chosen by the writer and stable for ever; also recognises a retried append.
    event_id        uuid        NOT NULL,
    event_type      text        NOT NULL CHECK (event_type <> ''),
    schema_version  integer     NOT NULL DEFAULT 1,
    data            jsonb       NOT NULL,
    -- An event appended without metadata gets {}.
    metadata        jsonb       NOT NULL DEFAULT '{}'::jsonb,
    recorded_at     timestamptz NOT NULL DEFAULT clock_timestamp(),
    CONSTRAINT events_stream_version_key UNIQUE (stream, version),
    CONSTRAINT events_event_id_key UNIQUE (event_id)
);

-- The global feed: ReadAll, Head, subscriptions and their lag.
CREATE INDEX events_feed_idx ON events (transaction_id, position);

---- create above / drop below ----

DROP TABLE events;
