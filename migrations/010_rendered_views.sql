-- What a read of one tenant sends, rendered once per change by the
-- read-model projection (projections/readmodel), so that
-- GET /api/v1/tenants/{id} and .../entitlements send bytes from the row
-- instead of decoding the whole state and encoding it again per request.
--
-- view_json, entitlements_json: the JSON the API sends (aggregate.RenderView,
-- Catalog.RenderEntitlements); text, not jsonb, which would reorder the keys.
-- rendered_as: the format they were rendered in (Catalog.RenderFormat: the
-- catalog and the shape of the views). A reader sends them only when it
-- renders the same format; otherwise, and while they are NULL (rows written
-- before this migration, until their next event or a rebuild), it renders
-- the state itself.
ALTER TABLE tenants
    ADD COLUMN view_json         text,
    ADD COLUMN entitlements_json text,
    ADD COLUMN rendered_as       text;

---- create above / drop below ----

ALTER TABLE tenants
    DROP COLUMN view_json,
    DROP COLUMN entitlements_json,
    DROP COLUMN rendered_as;
