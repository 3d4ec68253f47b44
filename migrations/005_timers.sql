-- Due times of the process managers' steps (provisioning, trial expiry, automatic
-- resume, cancellation taking effect, purge after retention), kept by the
-- "scheduler" projection from the events and fired by the timer worker
-- (package process). They survive restarts; a claim makes each fire on one
-- replica at a time, and the command it issues carries a deterministic
-- idempotency key, so a redelivery cannot apply it twice.
CREATE TABLE timers (
    tenant_id      uuid        NOT NULL,
    kind           text        NOT NULL CHECK (kind IN ('provision', 'trial_expiry', 'auto_resume', 'cancellation', 'purge')),
    due_at         timestamptz NOT NULL,
    -- the event that set the timer
    set_by         uuid        NOT NULL,
    claimed_by     text,
    claimed_until  timestamptz,
    attempts       integer     NOT NULL DEFAULT 0,
    last_error     text,
    PRIMARY KEY (tenant_id, kind)
);

CREATE INDEX timers_due_idx ON timers (due_at);

---- create above / drop below ----

DROP TABLE timers;
