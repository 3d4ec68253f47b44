-- What operators' tools need to be visible from every replica.
--
-- moved_by: an operator's move of a projection's checkpoint (a rebuild's
-- switch-over) says so, so the runner it fences logs it as such rather than
-- as a lost lead; the next leader's claim clears it.
ALTER TABLE projection_checkpoints ADD COLUMN moved_by text;

-- Admin jobs (POST /api/v1/admin/projections/{name}/rebuild): kept here so
-- that any replica can report a job another replica runs. The replica that
-- runs a job updates its row as it goes; finished jobs are pruned after a day.
CREATE TABLE admin_jobs (
    id              uuid        PRIMARY KEY,
    kind            text        NOT NULL,
    projection      text        NOT NULL,
    state           text        NOT NULL CHECK (state IN ('running', 'succeeded', 'failed')),
    phase           text        NOT NULL DEFAULT '',
    processed       bigint      NOT NULL DEFAULT 0,
    total           bigint      NOT NULL DEFAULT 0,
    percent         double precision NOT NULL DEFAULT 0,
    events_per_second double precision NOT NULL DEFAULT 0,
    eta_seconds     double precision NOT NULL DEFAULT 0,
    resumed         boolean     NOT NULL DEFAULT false,
    error           text        NOT NULL DEFAULT '',
    -- the replica running the job
    holder          text        NOT NULL,
    started_at      timestamptz NOT NULL,
    updated_at      timestamptz NOT NULL,
    finished_at     timestamptz
);

-- One running rebuild per projection, whichever replica started it.
CREATE UNIQUE INDEX admin_jobs_running_idx ON admin_jobs (projection) WHERE state = 'running';
CREATE INDEX admin_jobs_finished_idx ON admin_jobs (finished_at);

---- create above / drop below ----

DROP TABLE admin_jobs;
ALTER TABLE projection_checkpoints DROP COLUMN moved_by;
