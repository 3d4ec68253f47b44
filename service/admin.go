package service

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/tenancyhq/tenancy/aggregate"
	"github.com/tenancyhq/tenancy/httpapi"
	"github.com/tenancyhq/tenancy/projections"
	"github.com/tenancyhq/tenancy/projections/readmodel"
)

// Admin jobs are kept in Postgres (table admin_jobs, migration 009), so that
// any replica reports a job another one runs; finished jobs are pruned after
// jobRetention.
const (
	jobRetention = 24 * time.Hour
	// jobHeartbeat is how often the replica running a job touches its row;
	// a running job untouched for jobStale belongs to a replica that died.
	jobHeartbeat = 10 * time.Second
	jobStale     = time.Minute
)

// admin implements httpapi.Admin: projection status, and rebuilds run as
// jobs by the replica that was asked, recorded where every replica sees them.
type admin struct {
	app *App
	// ctx bounds the jobs: it ends when the service shuts down.
	ctx context.Context
	wg  sync.WaitGroup
}

func newAdmin(a *App) *admin {
	return &admin{app: a, ctx: context.Background()}
}

func (ad *admin) Projections(ctx context.Context) ([]httpapi.ProjectionHealth, error) {
	return ad.app.projectionHealth(ctx)
}

func (ad *admin) StartRebuild(ctx context.Context, projection string) (httpapi.Job, error) {
	if err := ad.app.checkRebuildable(projection); err != nil {
		return httpapi.Job{}, &aggregate.Error{Code: aggregate.CodeNotFound, Field: "name", Rule: "rebuildable_projection", Message: err.Error()}
	}
	pool := ad.app.pool
	if err := ad.tidy(ctx); err != nil {
		return httpapi.Job{}, err
	}
	now := time.Now().UTC()
	job := httpapi.Job{ID: uuid.NewString(), Kind: "rebuild", Projection: projection, State: "running", Phase: "starting", StartedAt: now}
	_, err := pool.Exec(ctx, `INSERT INTO admin_jobs (id, kind, projection, state, phase, holder, started_at, updated_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $7)`, job.ID, job.Kind, job.Projection, job.State, job.Phase, ad.app.cfg.Holder, now)
	var pe *pgconn.PgError
	if errors.As(err, &pe) && pe.Code == "23505" { // admin_jobs_running_idx
		var running string
		_ = pool.QueryRow(ctx, `SELECT id FROM admin_jobs WHERE projection = $1 AND state = 'running'`, projection).Scan(&running)
		return httpapi.Job{}, &aggregate.Error{Code: aggregate.CodeConflict, Field: "name", Rule: "one_rebuild_at_a_time",
			Message: "a rebuild of " + projection + " is already running: job " + running}
	}
	if err != nil {
		return httpapi.Job{}, fmt.Errorf("start job: %w", err)
	}
	ad.wg.Add(1)
	go func() {
		defer ad.wg.Done()
		ad.run(job)
	}()
	return job, nil
}

// tidy prunes jobs finished more than a day ago and fails running jobs whose
// replica stopped touching them (it died: the rebuild resumes when started again).
func (ad *admin) tidy(ctx context.Context) error {
	if _, err := ad.app.pool.Exec(ctx, `DELETE FROM admin_jobs WHERE finished_at < now() - $1::interval`, jobRetention.String()); err != nil {
		return fmt.Errorf("prune jobs: %w", err)
	}
	if _, err := ad.app.pool.Exec(ctx, `UPDATE admin_jobs SET state = 'failed', finished_at = now(), updated_at = now(),
		error = 'the replica running it (' || holder || ') stopped; start the rebuild again to resume it'
		WHERE state = 'running' AND updated_at < now() - $1::interval`, jobStale.String()); err != nil {
		return fmt.Errorf("fail abandoned jobs: %w", err)
	}
	return nil
}

// run carries out a job, recording its progress in its row.
func (ad *admin) run(job httpapi.Job) {
	pool, log := ad.app.pool, ad.app.log
	// Recording must outlive a cancelled job, so that its end is written.
	rec := context.WithoutCancel(ad.ctx)
	update := func(sql string, args ...any) {
		ctx, cancel := context.WithTimeout(rec, 5*time.Second)
		defer cancel()
		if _, err := pool.Exec(ctx, sql, append([]any{job.ID}, args...)...); err != nil {
			log.Warn("record job progress", "job", job.ID, "err", err)
		}
	}
	beat, stop := context.WithCancel(ad.ctx)
	defer stop()
	go func() {
		t := time.NewTicker(jobHeartbeat)
		defer t.Stop()
		for {
			select {
			case <-beat.Done():
				return
			case <-t.C:
				update(`UPDATE admin_jobs SET updated_at = now() WHERE id = $1 AND state = 'running'`)
			}
		}
	}()
	err := ad.app.Rebuild(ad.ctx, job.Projection, func(p readmodel.Progress) {
		update(`UPDATE admin_jobs SET phase = $2, processed = $3, total = $4, percent = $5, events_per_second = $6,
			eta_seconds = $7, resumed = $8, updated_at = now() WHERE id = $1`,
			p.Phase, p.Processed, p.Total, p.Percent(), p.Rate, p.ETA.Seconds(), p.Resumed)
	})
	stop()
	if err != nil {
		msg := err.Error()
		if ad.ctx.Err() != nil {
			msg = "interrupted: the replica shut down (" + msg + "); start the rebuild again to resume it"
		}
		log.Error("rebuild job failed", "job", job.ID, "projection", job.Projection, "err", err)
		update(`UPDATE admin_jobs SET state = 'failed', error = $2, finished_at = now(), updated_at = now() WHERE id = $1`, msg)
		return
	}
	update(`UPDATE admin_jobs SET state = 'succeeded', phase = 'done', percent = 100, finished_at = now(), updated_at = now() WHERE id = $1`)
}

func (ad *admin) Job(ctx context.Context, id string) (httpapi.Job, bool, error) {
	if _, err := uuid.Parse(id); err != nil {
		return httpapi.Job{}, false, nil
	}
	var j httpapi.Job
	err := ad.app.pool.QueryRow(ctx, `SELECT id::text, kind, projection, state, phase, processed, total, percent,
		events_per_second, eta_seconds, resumed, error, started_at, finished_at FROM admin_jobs WHERE id = $1`, id).Scan(
		&j.ID, &j.Kind, &j.Projection, &j.State, &j.Phase, &j.Processed, &j.Total, &j.Percent,
		&j.EventsPerS, &j.ETASeconds, &j.ResumedFrom, &j.Error, &j.StartedAt, &j.FinishedAt)
	if errors.Is(err, pgx.ErrNoRows) {
		return httpapi.Job{}, false, nil
	}
	if err != nil {
		return httpapi.Job{}, false, fmt.Errorf("job %s: %w", id, err)
	}
	j.StartedAt = j.StartedAt.UTC()
	if j.FinishedAt != nil {
		f := j.FinishedAt.UTC()
		j.FinishedAt = &f
	}
	return j, true, nil
}

// checkRebuildable returns an *UnknownProjectionError unless Rebuild can
// rebuild projection name.
func (a *App) checkRebuildable(name string) error {
	for _, n := range RebuildableNames() {
		if n == name {
			return nil
		}
	}
	hint := ""
	if CheckProjectionName(name) == nil {
		hint = "it cannot be rebuilt: tenancy projections reset " + name + " replays it"
	}
	return &UnknownProjectionError{Name: name, Known: RebuildableNames(), Hint: strings.TrimSpace(hint)}
}

// knownProjection refuses a name no projection of this service has.
func knownProjection(name string) error {
	if !slices.Contains(ProjectionNames(), name) {
		return &aggregate.Error{Code: aggregate.CodeNotFound, Field: "name", Rule: "projection",
			Message: fmt.Sprintf("no projection %q (projections: %v)", name, ProjectionNames())}
	}
	return nil
}

func (ad *admin) Failures(ctx context.Context, projection string) ([]httpapi.ProjectionFailure, error) {
	if err := knownProjection(projection); err != nil {
		return nil, err
	}
	fs, err := projections.ListFailures(ctx, ad.app.pool, projection)
	if err != nil {
		return nil, err
	}
	out := make([]httpapi.ProjectionFailure, len(fs))
	for i, f := range fs {
		out[i] = httpapi.ProjectionFailure{EventID: f.EventID, Position: f.Position.String(), Stream: f.Stream, EventType: f.EventType,
			Error: f.Error, Attempts: f.Attempts, FirstFailedAt: f.FirstFailedAt, LastFailedAt: f.LastFailedAt, Status: string(f.Status)}
	}
	return out, nil
}

func (ad *admin) SkipFailure(ctx context.Context, projection string, eventID uuid.UUID) error {
	if err := knownProjection(projection); err != nil {
		return err
	}
	err := projections.SkipFailure(ctx, ad.app.pool, projection, eventID)
	if errors.Is(err, projections.ErrFailureNotFound) {
		return &aggregate.Error{Code: aggregate.CodeNotFound, Field: "event", Rule: "recorded_failure",
			Message: fmt.Sprintf("no failure of event %s is recorded for %s", eventID, projection)}
	}
	if err == nil {
		ad.app.log.Warn("projection failure skipped by an operator", "projection", projection, "event_id", eventID)
	}
	return err
}

func (ad *admin) RetryFailures(ctx context.Context, projection string) (int64, error) {
	if err := knownProjection(projection); err != nil {
		return 0, err
	}
	return projections.RetryFailures(ctx, ad.app.pool, projection)
}
