package app

import (
	"context"
	"log/slog"

	"github.com/tenancyhq/tenancy/aggregate"
	"github.com/tenancyhq/tenancy/commands"
	"github.com/tenancyhq/tenancy/internal/idempotency"
)

// erasingCommands is the command handler as the API and the timers use it:
// once a purge is accepted it also forgets the responses remembered by
// Idempotency-Key that mention the tenant, which hold its personal data in
// clear for up to their TTL (24 h). The event store's copies are
// crypto-shredded and the read model's are blanked by the purge itself.
//
// Should the process die between the purge and this, the responses expire
// with their TTL.
type erasingCommands struct {
	*commands.Handler
	idem *idempotency.Store
	log  *slog.Logger
}

// erasing is the command handler with erasure of remembered responses.
func (a *App) erasing() erasingCommands {
	return erasingCommands{Handler: a.Commands, idem: a.idem, log: a.log}
}

// Execute implements the command handler's Execute.
func (e erasingCommands) Execute(ctx context.Context, req commands.Request) (commands.Result, error) {
	res, err := e.Handler.Execute(ctx, req)
	if _, purge := req.Command.(aggregate.Purge); err == nil && purge {
		n, ferr := e.idem.ForgetTenant(context.WithoutCancel(ctx), req.TenantID)
		if ferr != nil {
			e.log.ErrorContext(ctx, "purge: forget the remembered responses (they expire with their TTL)", "tenant", req.TenantID, "err", ferr)
		} else if n > 0 {
			e.log.InfoContext(ctx, "purge: forgot remembered responses", "tenant", req.TenantID, "responses", n)
		}
	}
	return res, err
}
