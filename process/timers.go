package process

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/tenancyhq/tenancy/aggregate"
	"github.com/tenancyhq/tenancy/commands"
)

// Commands is what the process managers need of the write side.
type Commands interface {
	Execute(ctx context.Context, req commands.Request) (commands.Result, error)
	Load(ctx context.Context, id uuid.UUID) (*aggregate.Tenant, []aggregate.Envelope, error)
}

// Provisioner makes a new tenant's resources exist (databases, DNS, …). It
// must be idempotent: after a crash it may run again for the same tenant.
type Provisioner interface {
	Provision(ctx context.Context, tenant *aggregate.Tenant) (steps []string, err error)
}

// RecordOnly is the default Provisioner: it does nothing and reports success.
type RecordOnly struct{}

// Provision implements Provisioner.
func (RecordOnly) Provision(context.Context, *aggregate.Tenant) ([]string, error) {
	return []string{"recorded"}, nil
}

// TimerOptions configure the timer worker.
type TimerOptions struct {
	// Now is the clock deciding what is due (default time.Now). It must be
	// the command handler's clock too, since the aggregate checks due times.
	Now func() time.Time
	// Interval between looks for due timers (default 1 s).
	Interval time.Duration
	// Claim is how long a replica holds a timer it is firing; a replica that
	// dies mid-fire loses it after this (default 30 s).
	Claim time.Duration
	// Batch is the most timers claimed at once (default 50).
	Batch  int
	Holder string
	Logger *slog.Logger
	// Provisioner runs the provisioning steps (default RecordOnly).
	Provisioner Provisioner
}

// Timers fires due timers by issuing their commands.
type Timers struct {
	pool *pgxpool.Pool
	cmds Commands
	opts TimerOptions
}

// NewTimers returns a timer worker.
func NewTimers(pool *pgxpool.Pool, cmds Commands, opts TimerOptions) *Timers {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Interval <= 0 {
		opts.Interval = time.Second
	}
	if opts.Claim <= 0 {
		opts.Claim = 30 * time.Second
	}
	if opts.Batch <= 0 {
		opts.Batch = 50
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Provisioner == nil {
		opts.Provisioner = RecordOnly{}
	}
	return &Timers{pool: pool, cmds: cmds, opts: opts}
}

// Run fires due timers every Interval until ctx ends.
func (w *Timers) Run(ctx context.Context) error {
	t := time.NewTicker(w.opts.Interval)
	defer t.Stop()
	for {
		if _, err := w.FireDue(ctx); err != nil && ctx.Err() == nil {
			w.opts.Logger.WarnContext(ctx, "fire timers", "err", err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// FireDue claims the timers due now and issues their commands. It returns
// how many it fired. Each timer's command carries an idempotency key made of
// the tenant, the kind and the due time, so firing the same timer twice (a
// replica that died after the command but before the delete) appends nothing
// the second time. A command the tenant refuses (it moved on: converted,
// restored, resumed by hand) means the timer is moot; it is dropped.
func (w *Timers) FireDue(ctx context.Context) (int, error) {
	now := w.opts.Now().UTC()
	rows, err := w.pool.Query(ctx, `
		UPDATE timers SET claimed_by = $1, claimed_until = $2::timestamptz + $3::interval, attempts = attempts + 1
		WHERE (tenant_id, kind) IN (
			SELECT tenant_id, kind FROM timers
			WHERE due_at <= $2 AND (claimed_until IS NULL OR claimed_until < $2)
			ORDER BY due_at LIMIT $4 FOR UPDATE SKIP LOCKED)
		RETURNING tenant_id, kind, due_at`, w.opts.Holder, now, w.opts.Claim.String(), w.opts.Batch)
	if err != nil {
		return 0, fmt.Errorf("claim timers: %w", err)
	}
	var due []Timer
	for rows.Next() {
		var t Timer
		var kind string
		if err := rows.Scan(&t.TenantID, &kind, &t.DueAt); err != nil {
			rows.Close()
			return 0, fmt.Errorf("claim timers: %w", err)
		}
		t.Kind = TimerKind(kind)
		due = append(due, t)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return 0, fmt.Errorf("claim timers: %w", err)
	}
	fired := 0
	for _, t := range due {
		if err := w.fire(ctx, t); err != nil {
			w.opts.Logger.WarnContext(ctx, "timer not fired; will retry", "tenant", t.TenantID, "kind", t.Kind, "err", err)
			if _, uerr := w.pool.Exec(ctx, `UPDATE timers SET last_error = $4 WHERE tenant_id = $1 AND kind = $2 AND due_at = $3`,
				t.TenantID, string(t.Kind), t.DueAt, err.Error()); uerr != nil {
				return fired, fmt.Errorf("record timer error: %w", uerr)
			}
			continue
		}
		fired++
		// Delete it unless the scheduler moved it meanwhile (a new due time).
		if _, err := w.pool.Exec(ctx, `DELETE FROM timers WHERE tenant_id = $1 AND kind = $2 AND due_at = $3`, t.TenantID, string(t.Kind), t.DueAt); err != nil {
			return fired, fmt.Errorf("delete fired timer: %w", err)
		}
	}
	return fired, nil
}

// fire issues a timer's command. A refusal by the aggregate is not an error:
// the timer is moot.
func (w *Timers) fire(ctx context.Context, t Timer) error {
	cmd, ok := t.Kind.command()
	if t.Kind == TimerProvision {
		var err error
		if cmd, err = w.provision(ctx, t); err != nil || cmd == nil {
			return err
		}
		ok = true
	}
	if !ok {
		return nil
	}
	_, err := w.cmds.Execute(ctx, commands.Request{
		TenantID: t.TenantID,
		Command:  cmd,
		Identity: TimerIdentity(t),
		Metadata: aggregate.Metadata{Actor: "system:timer", CorrelationID: "timer/" + string(t.Kind) + "/" + t.TenantID.String()},
	})
	var de *aggregate.Error
	if errors.As(err, &de) {
		w.opts.Logger.InfoContext(ctx, "timer moot; dropped", "tenant", t.TenantID, "kind", t.Kind, "reason", de.Message)
		return nil
	}
	if err != nil {
		return err
	}
	w.opts.Logger.InfoContext(ctx, "timer fired", "tenant", t.TenantID, "kind", t.Kind, "due_at", t.DueAt)
	return nil
}

// provision runs the provisioning steps and returns the command that records
// their outcome (nil when the tenant is no longer provisioning).
func (w *Timers) provision(ctx context.Context, t Timer) (aggregate.Command, error) {
	tenant, _, err := w.cmds.Load(ctx, t.TenantID)
	if err != nil {
		if aggregate.HasCode(err, aggregate.CodeNotFound) {
			return nil, nil
		}
		return nil, err
	}
	if tenant.Status != aggregate.StatusProvisioning {
		return nil, nil
	}
	steps, err := w.opts.Provisioner.Provision(ctx, tenant)
	if err != nil {
		w.opts.Logger.WarnContext(ctx, "provisioning failed", "tenant", t.TenantID, "err", err)
		return aggregate.FailProvisioning{Reason: err.Error()}, nil
	}
	return aggregate.CompleteProvisioning{Steps: steps}, nil
}

// TimerKey is the idempotency key of a timer's command: the timer's own
// identity. Anyone can compute it, a tenant included; what no API client
// can do is send it in the timers' scope (see TimerIdentity).
func TimerKey(t Timer) string {
	return "timer/" + string(t.Kind) + "/" + t.TenantID.String() + "/" + strconv.FormatInt(t.DueAt.UnixMicro(), 10)
}

// TimerIdentity is the identity of a timer's command, in the timers' scope:
// firing the same timer twice applies its command once, and no client key
// can be taken for it.
func TimerIdentity(t Timer) *commands.Identity {
	return &commands.Identity{Scope: commands.SystemScope("timers"), Key: TimerKey(t)}
}

// Pending lists the timers not yet fired, soonest first (for operators and tests).
func Pending(ctx context.Context, pool *pgxpool.Pool, tenant uuid.UUID) ([]Timer, error) {
	rows, err := pool.Query(ctx, `SELECT tenant_id, kind, due_at FROM timers WHERE tenant_id = $1 ORDER BY due_at`, tenant)
	if err != nil {
		return nil, fmt.Errorf("pending timers: %w", err)
	}
	defer rows.Close()
	var out []Timer
	for rows.Next() {
		var t Timer
		var kind string
		if err := rows.Scan(&t.TenantID, &kind, &t.DueAt); err != nil {
			return nil, err
		}
		t.Kind = TimerKind(kind)
		out = append(out, t)
	}
	return out, rows.Err()
}
