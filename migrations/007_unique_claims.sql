-- Values that only one stream may hold at a time (a tenant's name, its
-- external id), written by the Postgres event store in the same transaction
-- as the events that take or give them back (eventstore.Write.Claims). So a
-- claim can never outlive or precede the event that explains it: there is
-- no reservation to orphan, no grace period, no compensation.
CREATE TABLE unique_claims (
    kind    text NOT NULL CHECK (kind <> ''),
    value   text NOT NULL,
    -- the stream that holds it
    holder  text NOT NULL CHECK (holder <> ''),
    PRIMARY KEY (kind, value)
);

CREATE INDEX unique_claims_holder_idx ON unique_claims (holder);

-- Before this migration, names and external ids were reserved in streams of
-- their own (tenantname-<normalized name>, tenantexternalid-<id>). Carry
-- the standing reservations over: a name whose last event reserves it, and
-- every external id.
INSERT INTO unique_claims (kind, value, holder)
SELECT 'tenant_name', last.data->>'value', 'tenant-' || (last.data->>'tenant_id')
FROM (SELECT DISTINCT ON (stream) stream, event_type, data
      FROM events WHERE stream LIKE 'tenantname-%'
      ORDER BY stream, version DESC) last
WHERE last.event_type = 'TenantNameReserved'
ON CONFLICT DO NOTHING;

INSERT INTO unique_claims (kind, value, holder)
SELECT 'external_id', data->>'value', 'tenant-' || (data->>'tenant_id')
FROM events WHERE stream LIKE 'tenantexternalid-%' AND version = 0
ON CONFLICT DO NOTHING;

-- events_require_version raises TN409 unless the stream's last event is at
-- version p_expected (-1: the stream has no events). A Commit runs it before
-- inserting its events at explicit versions: the unique (stream, version)
-- key refuses a stream that moved on, this refuses one that is behind.
CREATE FUNCTION events_require_version(p_stream text, p_expected bigint) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    cur bigint := coalesce((SELECT max(version) FROM events WHERE stream = p_stream), -1);
BEGIN
    IF cur <> p_expected THEN
        RAISE EXCEPTION 'stream % is at version %, not %', p_stream, cur, p_expected
            USING ERRCODE = 'TN409', DETAIL = cur::text;
    END IF;
END $$;

-- claims_apply takes (p_release false) or gives back the values for
-- p_holder, in order. A value held by another stream raises TN423 with the
-- holder as DETAIL, the kind as COLUMN and the value as HINT; the
-- transaction, and with it the whole write, is then void.
CREATE FUNCTION claims_apply(p_holder text, p_kinds text[], p_values text[], p_release boolean[]) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    i int;
    held text;
BEGIN
    FOR i IN 1 .. coalesce(array_length(p_kinds, 1), 0) LOOP
        IF p_release[i] THEN
            DELETE FROM unique_claims WHERE kind = p_kinds[i] AND value = p_values[i] AND holder = p_holder;
            CONTINUE;
        END IF;
        INSERT INTO unique_claims (kind, value, holder) VALUES (p_kinds[i], p_values[i], p_holder)
        ON CONFLICT (kind, value) DO NOTHING;
        IF NOT FOUND THEN
            SELECT holder INTO held FROM unique_claims WHERE kind = p_kinds[i] AND value = p_values[i];
            IF held IS DISTINCT FROM p_holder THEN
                RAISE EXCEPTION '% % is claimed by %', p_kinds[i], p_values[i], held
                    USING ERRCODE = 'TN423', DETAIL = coalesce(held, ''), COLUMN = p_kinds[i], HINT = p_values[i];
            END IF;
        END IF;
    END LOOP;
END $$;

-- Idempotency-Keys are remembered by the commands' own events now (their
-- ids are derived from the caller and the key, in the command's one
-- transaction): the responses remembered beside them go, and with them the
-- copies of personal data they held.
DROP TABLE idempotency_keys;

---- create above / drop below ----

CREATE TABLE idempotency_keys (
    scope         text        NOT NULL,
    key           text        NOT NULL,
    request_hash  text        NOT NULL,
    status        integer,
    headers       jsonb,
    body          bytea,
    created_at    timestamptz NOT NULL DEFAULT now(),
    expires_at    timestamptz NOT NULL,
    PRIMARY KEY (scope, key)
);
CREATE INDEX idempotency_keys_expires_idx ON idempotency_keys (expires_at);

DROP FUNCTION claims_apply(text, text[], text[], boolean[]);
DROP FUNCTION events_require_version(text, bigint);
DROP TABLE unique_claims;
