-- Projection bookkeeping, shared by every projection the runner drives
-- (package projections): where each one stands in the global feed, who leads
-- it, and the events it could not apply.
--
-- A projection's checkpoint row is updated in the same transaction as the
-- effect of the events it covers, so a crash never applies an event twice or
-- skips one. Positions are the two halves of eventstore.Position.

CREATE TABLE projection_checkpoints (
    name              text        PRIMARY KEY,
    position_commit   bigint      NOT NULL DEFAULT 0 CHECK (position_commit >= 0),
    position_prepare  bigint      NOT NULL DEFAULT 0 CHECK (position_prepare >= 0),
    -- events applied since the checkpoint was created or last reset
    events_processed  bigint      NOT NULL DEFAULT 0,
    -- recorded_at of the last applied event
    last_event_at     timestamptz,
    -- replica id of the runner that leads (or last led) the projection
    holder            text,
    state             text        NOT NULL DEFAULT 'idle'
                                  CHECK (state IN ('idle', 'running', 'halted')),
    last_error        text,
    -- fencing token: raised each time a runner takes the lead (and by a reset
    -- or skip), so a runner that lost the lead can never write again
    leader_epoch      bigint      NOT NULL DEFAULT 0,
    -- the projection's stream-prefix filter, so status can count its lag
    stream_prefixes   text[]      NOT NULL DEFAULT '{}',
    updated_at        timestamptz NOT NULL DEFAULT now()
);

-- Events a projection failed to apply after its retries. status: halted (the
-- projection stopped in front of it), skipped (moved past it, by policy or by an
-- operator), retry (an operator asked for another try), resolved (a later try
-- succeeded).
CREATE TABLE projection_failures (
    projection        text        NOT NULL,
    event_id          uuid        NOT NULL,
    position_commit   bigint      NOT NULL,
    position_prepare  bigint      NOT NULL,
    -- the checkpoint just before the event when it failed: skipping it moves
    -- the checkpoint from here to the event's position
    prior_commit      bigint      NOT NULL,
    prior_prepare     bigint      NOT NULL,
    stream            text        NOT NULL,
    event_type        text        NOT NULL,
    error             text        NOT NULL,
    attempts          integer     NOT NULL CHECK (attempts > 0),
    first_failed_at   timestamptz NOT NULL,
    last_failed_at    timestamptz NOT NULL,
    status            text        NOT NULL
                                  CHECK (status IN ('halted', 'skipped', 'retry', 'resolved')),
    PRIMARY KEY (projection, event_id)
);

CREATE INDEX projection_failures_status_idx ON projection_failures (projection, status);

---- create above / drop below ----

DROP TABLE projection_failures;
DROP TABLE projection_checkpoints;
