-- Responses remembered by Idempotency-Key (httpapi), so a client that retries
-- a POST, PUT, PATCH or DELETE after an unknown outcome gets the first
-- response back instead of a second effect. Kept 24 hours by default.
CREATE TABLE idempotency_keys (
    scope         text        NOT NULL,   -- who sent the key (keys are per client)
    key           text        NOT NULL,
    request_hash  text        NOT NULL,   -- method, path and body of the first request
    status        integer,                -- NULL while the first request runs
    headers       jsonb,
    body          bytea,
    created_at    timestamptz NOT NULL DEFAULT now(),
    expires_at    timestamptz NOT NULL,
    PRIMARY KEY (scope, key)
);

CREATE INDEX idempotency_keys_expires_idx ON idempotency_keys (expires_at);

---- create above / drop below ----

DROP TABLE idempotency_keys;
