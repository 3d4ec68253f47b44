// Package readmodel is the projection that keeps the Postgres read model
// (tables tenants and tenant_events) in step with the tenant streams.
//
// The runner calls Apply with a batch of events inside a transaction and moves
// the projection's checkpoint in that same transaction, so a crash never
// applies an event twice nor skips one. Applying an event twice is also
// harmless by design: a tenant row ignores events at or below its version,
// and tenant_events ignores an event id it already has.
package readmodel

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/tenancyhq/tenancy/aggregate"
	"github.com/tenancyhq/tenancy/eventstore"
	"github.com/tenancyhq/tenancy/projections"
	"github.com/tenancyhq/tenancy/tenantlog"
)

// Name is the projection's name in projection_checkpoints.
const Name = "read-model"

// Tables names the tables a projector writes, so a rebuild can fill shadow
// tables beside the live ones.
type Tables struct {
	Tenants      string
	TenantEvents string
}

// LiveTables are the tables queries read.
var LiveTables = Tables{Tenants: "tenants", TenantEvents: "tenant_events"}

// Projector writes the read model.
type Projector struct {
	catalog *aggregate.Catalog
	tables  Tables
	name    string
	upsert  string // the tenants upsert, built once
	// format is what the rendered views are rendered as (the catalog's
	// RenderFormat), computed once.
	format string
}

// New returns the projector of the live read model.
func New(cat *aggregate.Catalog) *Projector {
	return NewInto(cat, Name, LiveTables)
}

// NewInto returns a projector writing into other tables under another
// checkpoint name (for rebuilds).
func NewInto(cat *aggregate.Catalog, name string, tables Tables) *Projector {
	p := &Projector{catalog: cat, tables: tables, name: name, format: cat.RenderFormat()}
	p.upsert = p.upsertSQL()
	return p
}

// Name implements projections.Projection.
func (p *Projector) Name() string { return p.name }

// Filter implements projections.Projection: tenant streams only.
func (p *Projector) Filter() eventstore.Filter {
	return eventstore.Filter{StreamPrefixes: []string{aggregate.StreamPrefix}}
}

type tenantRow struct {
	t        *aggregate.Tenant
	position eventstore.Position
	changed  bool
}

// Apply implements projections.Projection.
func (p *Projector) Apply(ctx context.Context, tx pgx.Tx, records []projections.Event) error {
	envs := make([]aggregate.Envelope, len(records))
	ids := make([]uuid.UUID, 0, len(records))
	seen := map[uuid.UUID]bool{}
	for i, r := range records {
		env := r.Envelope
		if env.Type == "" {
			return fmt.Errorf("read model: event %s was not decoded (set projections.Options.Decode)", r.ID)
		}
		id, err := tenantlog.TenantID(r.Stream)
		if err != nil {
			return fmt.Errorf("read model: %w", err)
		}
		envs[i] = env
		if !seen[id] {
			seen[id] = true
			ids = append(ids, id)
		}
	}
	rows, err := p.load(ctx, tx, ids)
	if err != nil {
		return err
	}

	events := newEventColumns(len(records))
	var purged []uuid.UUID
	for i, env := range envs {
		id, _ := tenantlog.TenantID(env.Stream)
		row := rows[id]
		if row == nil {
			row = &tenantRow{t: &aggregate.Tenant{}}
			rows[id] = row
		}
		if row.t.Exists() && env.Version <= row.t.Version {
			continue // applied before
		}
		row.t.Apply(env)
		row.position = records[i].Position
		row.changed = true
		if env.Type == "TenantPurged" {
			purged = append(purged, id)
		}
		if err := events.add(id, env, records[i].RecordedEvent); err != nil {
			return err
		}
	}

	batch := &pgx.Batch{}
	for _, id := range ids {
		row := rows[id]
		if !row.changed {
			continue
		}
		args, err := p.columns(row)
		if err != nil {
			return err
		}
		batch.Queue(p.upsert, args...)
	}
	if events.len() > 0 {
		batch.Queue(`INSERT INTO `+pgx.Identifier{p.tables.TenantEvents}.Sanitize()+`
			(id, tenant_id, event_type, event_version, stream_version, payload, metadata, created_at, sequence_number, position_commit)
			SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::int[], $5::bigint[], $6::jsonb[], $7::jsonb[], $8::timestamptz[], $9::bigint[], $10::bigint[])
			ON CONFLICT (id) DO NOTHING`,
			events.id, events.tenantID, events.typ, events.schema, events.version, events.payload, events.metadata, events.at, events.seq, events.commit)
	}
	if batch.Len() == 0 {
		return nil
	}
	if err := tx.SendBatch(ctx, batch).Close(); err != nil {
		return fmt.Errorf("read model: write: %w", err)
	}
	for _, id := range purged {
		if err := p.erase(ctx, tx, id); err != nil {
			return err
		}
	}
	return nil
}

// erase carries out a purge in the read model: the personal fields of the
// tenant's recorded events are redacted (its row's contacts already are, by
// the fold) and its data key is destroyed — in the projection's transaction,
// so a purge whose key destruction was lost on the command side (a crash
// right after the append) is still completed.
func (p *Projector) erase(ctx context.Context, tx pgx.Tx, tenant uuid.UUID) error {
	rows, err := tx.Query(ctx, `SELECT id, event_type, event_version, payload FROM `+pgx.Identifier{p.tables.TenantEvents}.Sanitize()+` WHERE tenant_id = $1`, tenant)
	if err != nil {
		return fmt.Errorf("read model: erase %s: %w", tenant, err)
	}
	type update struct {
		id      uuid.UUID
		payload string
	}
	var updates []update
	for rows.Next() {
		var id uuid.UUID
		var typ string
		var version int
		var payload []byte
		if err := rows.Scan(&id, &typ, &version, &payload); err != nil {
			rows.Close()
			return fmt.Errorf("read model: erase %s: %w", tenant, err)
		}
		if len(aggregate.PersonalFields(typ)) == 0 {
			continue
		}
		e, err := aggregate.DecodeEvent(typ, version, payload)
		if err != nil {
			rows.Close()
			return fmt.Errorf("read model: erase %s: %w", tenant, err)
		}
		data, _, err := aggregate.EncodeEvent(aggregate.RedactPersonal(e))
		if err != nil {
			rows.Close()
			return fmt.Errorf("read model: erase %s: %w", tenant, err)
		}
		updates = append(updates, update{id, string(data)})
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return fmt.Errorf("read model: erase %s: %w", tenant, err)
	}
	batch := &pgx.Batch{}
	for _, u := range updates {
		batch.Queue(`UPDATE `+pgx.Identifier{p.tables.TenantEvents}.Sanitize()+` SET payload = $2 WHERE id = $1`, u.id, u.payload)
	}
	batch.Queue(`DELETE FROM tenant_keys WHERE tenant_id = $1`, tenant)
	if err := tx.SendBatch(ctx, batch).Close(); err != nil {
		return fmt.Errorf("read model: erase %s: %w", tenant, err)
	}
	return nil
}

// load reads the current state of the given tenants.
func (p *Projector) load(ctx context.Context, tx pgx.Tx, ids []uuid.UUID) (map[uuid.UUID]*tenantRow, error) {
	out := make(map[uuid.UUID]*tenantRow, len(ids))
	raw := make([][16]byte, len(ids))
	for i, id := range ids {
		raw[i] = id
	}
	rows, err := tx.Query(ctx, `SELECT id, state FROM `+pgx.Identifier{p.tables.Tenants}.Sanitize()+` WHERE id = ANY($1)`, raw)
	if err != nil {
		return nil, fmt.Errorf("read model: load tenants: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var id uuid.UUID
		var state []byte
		if err := rows.Scan(&id, &state); err != nil {
			return nil, fmt.Errorf("read model: load tenants: %w", err)
		}
		t, err := aggregate.UnmarshalSnapshot(state)
		if err != nil {
			return nil, fmt.Errorf("read model: tenant %s: %w", id, err)
		}
		out[id] = &tenantRow{t: t}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read model: load tenants: %w", err)
	}
	return out, nil
}

// Columns of the tenants table the projector writes, in order.
var tenantColumns = []string{
	"id", "name", "normalized_name", "external_id", "status", "plan_tier", "region",
	"compliance_requirements", "plan_limits", "metadata", "suspended_reason", "suspended_at",
	"created_at", "updated_at", "version",
	"billing_status", "suspension_severity", "suspension_note", "suspended_by", "auto_resume_at",
	"trial_ends_at", "cancellation_effective_at", "migration_target_region", "terminated_at",
	"data_retention_until", "purged_at", "labels", "contacts", "features", "overrides", "policies",
	"position_commit", "position_prepare", "state",
	"view_json", "entitlements_json", "rendered_as",
}

func (p *Projector) upsertSQL() string {
	cols, params, sets := "", "", ""
	for i, c := range tenantColumns {
		if i > 0 {
			cols += ", "
			params += ", "
		}
		cols += c
		params += fmt.Sprintf("$%d", i+1)
		if c != "id" {
			if sets != "" {
				sets += ", "
			}
			sets += c + " = EXCLUDED." + c
		}
	}
	table := pgx.Identifier{p.tables.Tenants}.Sanitize()
	// The WHERE keeps a row from ever moving backwards.
	return `INSERT INTO ` + table + ` (` + cols + `) VALUES (` + params + `)
		ON CONFLICT (id) DO UPDATE SET ` + sets + ` WHERE ` + table + `.version < EXCLUDED.version`
}

// columns lays a tenant out as the tenants table's columns.
func (p *Projector) columns(row *tenantRow) ([]any, error) {
	t := row.t
	ent := t.Entitlements(p.catalog)
	state, err := aggregate.MarshalSnapshot(t)
	if err != nil {
		return nil, err
	}
	// What the API sends for this tenant, rendered once here rather than
	// per read (migration 010).
	view, err := aggregate.RenderView(t)
	if err != nil {
		return nil, err
	}
	entitlements, err := p.catalog.RenderEntitlements(t)
	if err != nil {
		return nil, err
	}
	var suspendedReason, severity, note, by *string
	var suspendedAt, autoResume, cancelAt, terminatedAt, retention *time.Time
	var migrationTarget *string
	if s := t.Suspension; s != nil {
		suspendedReason, severity, note, by = ptr(string(s.Reason)), ptr(string(s.Severity)), nilIfEmpty(s.Note), nilIfEmpty(s.By)
		suspendedAt, autoResume = ptr(s.At), s.AutoResumeAt
	}
	if c := t.Cancellation; c != nil {
		cancelAt = ptr(c.EffectiveAt)
	}
	if m := t.Migration; m != nil {
		migrationTarget = ptr(string(m.To))
	}
	if x := t.Termination; x != nil {
		terminatedAt, retention = ptr(x.At), ptr(x.DataRetentionUntil)
	}
	return []any{
		[16]byte(t.ID), t.Name, t.NormalizedName, t.ExternalID, string(t.Status), string(t.Edition), string(t.Region),
		jsonb(t.ComplianceStandards, "[]"), jsonb(ent.Limits, "{}"), jsonb(t.Metadata, "{}"), suspendedReason, suspendedAt,
		t.CreatedAt, t.UpdatedAt, int64(t.Version),
		string(t.BillingStatus), severity, note, by, autoResume,
		t.TrialEndsAt, cancelAt, migrationTarget, terminatedAt,
		retention, t.PurgedAt, jsonb(t.Labels, "{}"), jsonb(t.Contacts, "[]"), jsonb(ent.Features, "{}"), jsonb(t.Overrides, "{}"), jsonb(t.Policies, "{}"),
		int64(row.position.Commit), int64(row.position.Prepare), string(state),
		string(view), string(entitlements), p.format,
	}, nil
}

// eventColumns gathers tenant_events rows as column arrays for one unnest insert.
// Ids go to pgx as [16]byte, which it encodes natively; a uuid.UUID goes
// through driver.Valuer, and in arrays pgx first tries (and fails, building
// an error) a binary plan: that cost a tenth of a rebuild.
type eventColumns struct {
	id, tenantID      [][16]byte
	typ               []string
	schema            []int32
	version, seq      []int64
	commit            []int64
	payload, metadata []string
	at                []time.Time
}

func newEventColumns(n int) *eventColumns {
	return &eventColumns{
		id: make([][16]byte, 0, n), tenantID: make([][16]byte, 0, n), typ: make([]string, 0, n),
		schema: make([]int32, 0, n), version: make([]int64, 0, n), seq: make([]int64, 0, n), commit: make([]int64, 0, n),
		payload: make([]string, 0, n), metadata: make([]string, 0, n), at: make([]time.Time, 0, n),
	}
}

func (c *eventColumns) len() int { return len(c.id) }

func (c *eventColumns) add(tenant uuid.UUID, env aggregate.Envelope, r eventstore.RecordedEvent) error {
	// The payload is stored in the current schema (upcast if need be), so the
	// audit trail reads alike; a payload already current is stored as read.
	data := r.Data
	if r.SchemaVersion != env.SchemaVersion {
		var err error
		if data, _, err = aggregate.EncodeEvent(env.Data); err != nil {
			return err
		}
	}
	meta, err := json.Marshal(env.Metadata)
	if err != nil {
		return fmt.Errorf("read model: metadata of %s: %w", env.EventID, err)
	}
	c.id = append(c.id, [16]byte(env.EventID))
	c.tenantID = append(c.tenantID, [16]byte(tenant))
	c.typ = append(c.typ, env.Type)
	c.schema = append(c.schema, int32(env.SchemaVersion))
	c.version = append(c.version, int64(env.Version))
	c.seq = append(c.seq, int64(r.Position.Prepare))
	c.commit = append(c.commit, int64(r.Position.Commit))
	c.payload = append(c.payload, string(data))
	c.metadata = append(c.metadata, string(meta))
	c.at = append(c.at, env.OccurredAt)
	return nil
}

// jsonb encodes v for a jsonb column; nil maps and slices become empty.
func jsonb(v any, empty string) string {
	b, err := json.Marshal(v)
	if err != nil || string(b) == "null" {
		return empty
	}
	return string(b)
}

func ptr[T any](v T) *T { return &v }

func nilIfEmpty(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}
