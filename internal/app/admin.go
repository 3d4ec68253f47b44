package app

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/google/uuid"

	"github.com/tenancyhq/tenancy/aggregate"
	"github.com/tenancyhq/tenancy/httpapi"
	"github.com/tenancyhq/tenancy/process"
	"github.com/tenancyhq/tenancy/projections"
	"github.com/tenancyhq/tenancy/projections/readmodel"
)

// admin implements httpapi.Admin: projection status, and rebuilds run as
// jobs in this process (a job is visible on the replica that runs it).
type admin struct {
	app *App
	// ctx bounds the jobs: it ends when the service shuts down.
	ctx  context.Context
	wg   sync.WaitGroup
	mu   sync.Mutex
	jobs map[string]*httpapi.Job
}

func newAdmin(a *App) *admin {
	return &admin{app: a, ctx: context.Background(), jobs: map[string]*httpapi.Job{}}
}

func (ad *admin) Projections(ctx context.Context) ([]httpapi.ProjectionHealth, error) {
	return ad.app.projectionHealth(ctx)
}

func (ad *admin) StartRebuild(_ context.Context, projection string) (httpapi.Job, error) {
	if projection != readmodel.Name && projection != process.SchedulerName {
		return httpapi.Job{}, &aggregate.Error{Code: aggregate.CodeNotFound, Field: "name", Rule: "rebuildable_projection",
			Message: fmt.Sprintf("no rebuildable projection %q (rebuildable: %s, %s; nats-publisher re-publishes with tenancy projections reset)",
				projection, readmodel.Name, process.SchedulerName)}
	}
	ad.mu.Lock()
	for _, j := range ad.jobs {
		if j.Projection == projection && j.State == "running" {
			ad.mu.Unlock()
			return httpapi.Job{}, &aggregate.Error{Code: aggregate.CodeConflict, Field: "name", Rule: "one_rebuild_at_a_time",
				Message: "a rebuild of " + projection + " is already running: job " + j.ID}
		}
	}
	job := &httpapi.Job{ID: uuid.NewString(), Kind: "rebuild", Projection: projection, State: "running", Phase: "starting", StartedAt: time.Now().UTC()}
	ad.jobs[job.ID] = job
	snapshot := *job
	ad.mu.Unlock()
	ad.wg.Add(1)
	go func() {
		defer ad.wg.Done()
		err := ad.app.Rebuild(ad.ctx, projection, func(p readmodel.Progress) {
			ad.mu.Lock()
			defer ad.mu.Unlock()
			job.Phase, job.Processed, job.Total, job.Percent = p.Phase, p.Processed, p.Total, p.Percent()
			job.EventsPerS, job.ETASeconds, job.ResumedFrom = p.Rate, p.ETA.Seconds(), p.Resumed
		})
		ad.mu.Lock()
		defer ad.mu.Unlock()
		now := time.Now().UTC()
		job.FinishedAt = &now
		if err != nil {
			job.State, job.Error = "failed", err.Error()
			ad.app.log.Error("rebuild job failed", "job", job.ID, "projection", projection, "err", err)
			return
		}
		job.State, job.Phase, job.Percent = "succeeded", "done", 100
	}()
	return snapshot, nil
}

func (ad *admin) Job(id string) (httpapi.Job, bool) {
	ad.mu.Lock()
	defer ad.mu.Unlock()
	j, ok := ad.jobs[id]
	if !ok {
		return httpapi.Job{}, false
	}
	return *j, true
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
