-- The read model: what queries serve, built from the events by the
-- read-model projection (projections/readmodel). Every timestamp comes from an
-- event, never from now() or a trigger, so a rebuild reproduces it exactly.

-- DESIGN.md's vocabularies, exactly.
CREATE TYPE tenant_status AS ENUM (
    'PROVISIONING', 'TRIAL', 'ACTIVE', 'SUSPENDED',
    'PENDING_CANCELLATION', 'MIGRATING', 'TERMINATED', 'PURGED'
);
CREATE TYPE plan_tier AS ENUM ('free', 'essentials', 'professional', 'enterprise', 'unlimited');

CREATE TABLE tenants (
    -- The original service's 15 columns.
    id                        uuid          PRIMARY KEY,
    name                      text          NOT NULL,
    normalized_name           text          NOT NULL,
    external_id               text          NOT NULL,
    status                    tenant_status NOT NULL,
    plan_tier                 plan_tier     NOT NULL,
    region                    text          NOT NULL,
    compliance_requirements   jsonb         NOT NULL DEFAULT '[]'::jsonb,
    -- effective limits: the edition's, with the tenant's overrides on top (0 = unlimited)
    plan_limits               jsonb         NOT NULL DEFAULT '{}'::jsonb,
    metadata                  jsonb         NOT NULL DEFAULT '{}'::jsonb,
    suspended_reason          text,
    suspended_at              timestamptz,
    created_at                timestamptz   NOT NULL,
    updated_at                timestamptz   NOT NULL,
    -- stream version of the last event applied, from 0 (the API's ETag)
    version                   bigint        NOT NULL,

    -- What the lifecycle adds.
    billing_status            text          NOT NULL,
    suspension_severity       text,
    suspension_note           text,
    suspended_by              text,
    auto_resume_at            timestamptz,
    trial_ends_at             timestamptz,
    cancellation_effective_at timestamptz,
    migration_target_region   text,
    terminated_at             timestamptz,
    data_retention_until      timestamptz,
    purged_at                 timestamptz,
    labels                    jsonb         NOT NULL DEFAULT '{}'::jsonb,
    -- personal data: blanked on purge
    contacts                  jsonb         NOT NULL DEFAULT '[]'::jsonb,
    -- effective features, the tenant's overrides and policies
    features                  jsonb         NOT NULL DEFAULT '{}'::jsonb,
    overrides                 jsonb         NOT NULL DEFAULT '{}'::jsonb,
    policies                  jsonb         NOT NULL DEFAULT '{}'::jsonb,
    -- global position of the last event applied
    position_commit           bigint        NOT NULL,
    position_prepare          bigint        NOT NULL,
    -- the aggregate's whole state, which the projector folds the next event into
    state                     jsonb         NOT NULL
);

-- One index per filter and sort the API offers; list pages sort by a key and
-- break ties by id, so every sort index ends with id (keyset pagination).
CREATE UNIQUE INDEX tenants_external_id_idx ON tenants (external_id);
CREATE INDEX tenants_created_idx        ON tenants (created_at, id);
CREATE INDEX tenants_updated_idx        ON tenants (updated_at, id);
CREATE INDEX tenants_name_idx           ON tenants (normalized_name text_pattern_ops, id);
CREATE INDEX tenants_status_idx         ON tenants (status, created_at, id);
CREATE INDEX tenants_plan_tier_idx      ON tenants (plan_tier, created_at, id);
CREATE INDEX tenants_region_idx         ON tenants (region, created_at, id);
CREATE INDEX tenants_billing_status_idx ON tenants (billing_status, created_at, id);
CREATE INDEX tenants_labels_idx         ON tenants USING gin (labels);  -- jsonb_ops: both @> and ?
-- the timers' due dates
CREATE INDEX tenants_trial_ends_idx     ON tenants (trial_ends_at) WHERE status = 'TRIAL';
CREATE INDEX tenants_retention_idx      ON tenants (data_retention_until) WHERE status = 'TERMINATED';

-- One row per event: the audit trail. No foreign key to tenants and no
-- cascade: the trail outlives whatever happens to the tenant row.
CREATE TABLE tenant_events (
    id                uuid        PRIMARY KEY,            -- the event id
    tenant_id         uuid        NOT NULL,
    event_type        text        NOT NULL,
    event_version     integer     NOT NULL,               -- schema version
    stream_version    bigint      NOT NULL,
    payload           jsonb       NOT NULL,
    metadata          jsonb       NOT NULL,
    created_at        timestamptz NOT NULL,               -- when it occurred
    sequence_number   bigint      NOT NULL,               -- global position (prepare half)
    position_commit   bigint      NOT NULL,
    CONSTRAINT tenant_events_stream_version_key UNIQUE (tenant_id, stream_version)
);

-- A tenant's events are read by (tenant_id, stream_version), the unique key;
-- type and time filters are applied within one tenant's rows, which that
-- index already narrows to a handful. Fewer indexes: faster projection.

---- create above / drop below ----

DROP TABLE tenant_events;
DROP TABLE tenants;
DROP TYPE plan_tier;
DROP TYPE tenant_status;
