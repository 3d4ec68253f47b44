package httpapi

import (
	"net/http"

	"github.com/labstack/echo/v4"

	"github.com/tenancyhq/tenancy/aggregate"
)

// route is one operation: what Echo registers and what the OpenAPI document
// says about it, from one place.
type route struct {
	method, path string
	operationID  string
	summary      string
	description  string
	tag          string
	// body is the request body's JSON Schema (nil: no body).
	body         schema
	bodyRequired bool
	query        []param
	// status is the success status; result a value of the Go type the
	// handler encodes (the document's schema is derived from it; nil: no
	// body); stream: the body is server-sent events (text/event-stream).
	status int
	result any
	stream bool
	// command routes accept If-Match and answer ETag and X-Consistency-Token;
	// consistent reads honour X-Consistency-Token.
	command, consistent bool
	handler             echo.HandlerFunc
}

// idempotent reports whether the route takes an Idempotency-Key.
func (r route) idempotent() bool {
	switch r.method {
	case http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete:
		return r.tag != "health"
	}
	return false
}

// verb is a command sent as POST /api/v1/tenants/{id}/<name>. Every command
// a tenant lists in allowed_commands (and a 409 lists as allowed) is one, so
// a client can call what it is told to; the settings commands also have
// their resource-style routes (PATCH the tenant, PUT/DELETE a policy or an
// override), which run the same commands.
type verb struct {
	name    aggregate.CommandName
	summary string
	body    schema
	decode  func(c echo.Context) (aggregate.Command, error)
}

// verbOperationIDs replace the operation id derived from a verb's name where
// the resource-style route already has that one.
var verbOperationIDs = map[aggregate.CommandName]string{
	aggregate.CmdRename: "renameTenant", aggregate.CmdUpdateProfile: "updateTenantProfile",
	aggregate.CmdSetOverride: "setOverrideCommand", aggregate.CmdClearOverride: "clearOverrideCommand",
	aggregate.CmdSetPolicy: "setPolicyCommand", aggregate.CmdRemovePolicy: "removePolicyCommand",
}

// decodeAs decodes the body into a T and converts it into a command.
func decodeAs[T any](conv func(T) aggregate.Command) func(echo.Context) (aggregate.Command, error) {
	return func(c echo.Context) (aggregate.Command, error) {
		var v T
		if err := decodeBody(c, &v); err != nil {
			return nil, err
		}
		return conv(v), nil
	}
}

func (s *Server) verbs() []verb {
	reasonBody := obj(props{"reason": str("Why, for the audit trail.", 500)})
	return []verb{
		{aggregate.CmdCompleteProvisioning, "Complete provisioning: TRIAL if created with a trial, else ACTIVE",
			obj(props{"steps": arr(str("A provisioning step that ran.", 200))}),
			decodeAs(func(r completeProvisioningRequest) aggregate.Command {
				return aggregate.CompleteProvisioning{Steps: r.Steps}
			})},
		{aggregate.CmdFailProvisioning, "Fail provisioning: the tenant is terminated", reasonBody,
			decodeAs(func(r reasonRequest) aggregate.Command { return aggregate.FailProvisioning{Reason: r.Reason} })},
		{aggregate.CmdActivate, "Activate a trial tenant (paid)", obj(props{}),
			decodeAs(func(emptyRequest) aggregate.Command { return aggregate.Activate{} })},
		{aggregate.CmdSuspend, "Suspend the tenant", obj(props{
			"reason":         enumOf("Why the tenant is suspended.", aggregate.SuspensionReasons()),
			"severity":       enumOf("soft keeps reads, hard shuts everything, security also revokes access; defaulted from the reason.", aggregate.Severities()),
			"note":           str("A note for the audit trail.", 1000),
			"auto_resume_at": dateTime("When the suspension ends by itself (in the future)."),
		}, "reason"),
			decodeAs(func(r suspendRequest) aggregate.Command {
				return aggregate.Suspend{Reason: r.Reason, Severity: r.Severity, Note: r.Note, AutoResumeAt: r.AutoResumeAt}
			})},
		{aggregate.CmdResume, "Resume a suspended tenant: back to the status it was suspended from (TRIAL with its trial end, ACTIVE, or PENDING_CANCELLATION with its date; a cancellation that came due meanwhile takes effect: TERMINATED). A trial that ended meanwhile is refused (409, rule trial_ended): extend-trial or convert-trial first", obj(props{"note": str("A note for the audit trail.", 1000)}),
			decodeAs(func(r noteRequest) aggregate.Command { return aggregate.Resume{Note: r.Note} })},
		{aggregate.CmdExtendTrial, "Extend the trial (also while suspended from it)", obj(props{"days": intRange("Days to add.", 1, aggregate.MaxTrialDays)}, "days"),
			decodeAs(func(r extendTrialRequest) aggregate.Command { return aggregate.ExtendTrial{Days: r.Days} })},
		{aggregate.CmdConvertTrial, "Convert the trial into a paid subscription (also ends a suspension for the trial's expiry)", obj(props{}),
			decodeAs(func(emptyRequest) aggregate.Command { return aggregate.ConvertTrial{} })},
		{aggregate.CmdCancel, "Start a cancellation", obj(props{
			"effective_at": dateTime("When the cancellation takes effect (default: in 30 days)."),
			"reason":       str("Why, for the audit trail.", 500),
		}),
			decodeAs(func(r cancelRequest) aggregate.Command {
				return aggregate.Cancel{EffectiveAt: r.EffectiveAt, Reason: r.Reason}
			})},
		{aggregate.CmdRevertCancellation, "Withdraw a pending cancellation: back to TRIAL or ACTIVE, where it was requested from (a trial that ended meanwhile: SUSPENDED, trial_expired)", obj(props{}),
			decodeAs(func(emptyRequest) aggregate.Command { return aggregate.RevertCancellation{} })},
		{aggregate.CmdMigrateRegion, "Start migrating the tenant to another region",
			obj(props{"target_region": enumOf("The region to move to.", aggregate.Regions())}, "target_region"),
			decodeAs(func(r migrateRequest) aggregate.Command { return aggregate.MigrateRegion{To: r.TargetRegion} })},
		{aggregate.CmdCompleteMigration, "Complete the region migration", obj(props{}),
			decodeAs(func(emptyRequest) aggregate.Command { return aggregate.CompleteMigration{} })},
		{aggregate.CmdFailMigration, "Record a failed region migration (the tenant is suspended)", reasonBody,
			decodeAs(func(r reasonRequest) aggregate.Command { return aggregate.FailMigration{Reason: r.Reason} })},
		{aggregate.CmdRollbackMigration, "Roll back the region migration", reasonBody,
			decodeAs(func(r reasonRequest) aggregate.Command { return aggregate.RollbackMigration{Reason: r.Reason} })},
		{aggregate.CmdTerminate, "Terminate the tenant; its data is kept until data_retention_until", obj(props{
			"reason":         str("Why, for the audit trail.", 500),
			"retention_days": intRange("Days to keep the data (default by edition).", aggregate.MinRetentionDays, aggregate.MaxRetentionDays),
		}),
			decodeAs(func(r terminateRequest) aggregate.Command {
				return aggregate.Terminate{Reason: r.Reason, RetentionDays: r.RetentionDays}
			})},
		{aggregate.CmdRestore, "Restore a terminated tenant before its retention date", obj(props{}),
			decodeAs(func(emptyRequest) aggregate.Command { return aggregate.Restore{} })},
		{aggregate.CmdPurge, "Erase a terminated tenant's personal data and release its name", obj(props{}),
			decodeAs(func(emptyRequest) aggregate.Command { return aggregate.Purge{} })},
		{aggregate.CmdChangeEdition, "Change the edition (upgrade or downgrade)",
			obj(props{"edition": enumOf("The new edition.", aggregate.Editions())}, "edition"),
			decodeAs(func(r changeEditionRequest) aggregate.Command { return aggregate.ChangeEdition{Edition: r.Edition} })},
		{aggregate.CmdExpireTrial, "Expire the trial once it has ended (the trial timer sends this; refused before trial_ends_at)", obj(props{}),
			decodeAs(func(emptyRequest) aggregate.Command { return aggregate.ExpireTrial{} })},
		{aggregate.CmdCompleteCancellation, "Make a due cancellation take effect (the cancellation timer sends this; refused before effective_at)", obj(props{}),
			decodeAs(func(emptyRequest) aggregate.Command { return aggregate.CompleteCancellation{} })},
		{name: aggregate.CmdRename, summary: "Rename the tenant (as PATCH with name)", body: obj(props{"name": nameSchema("The new name (unique).")}, "name"),
			decode: decodeAs(func(r renameRequest) aggregate.Command { return aggregate.Rename{Name: r.Name} })},
		{name: aggregate.CmdUpdateProfile, summary: "Replace parts of the tenant's profile (as PATCH without name)", body: obj(profileProps()),
			decode: decodeProfile},
		{name: aggregate.CmdSetOverride, summary: "Override a feature (enabled) or a limit (value) of the edition (as PUT …/overrides/{key})",
			body: withKey(overrideSchema(), "key", str("The feature or limit.", 100)),
			decode: decodeAs(func(r keyedOverrideRequest) aggregate.Command {
				return aggregate.SetOverride{Key: r.Key, Enabled: r.Enabled, Value: r.Value}
			})},
		{name: aggregate.CmdClearOverride, summary: "Return a feature or limit to the edition's value (as DELETE …/overrides/{key})",
			body:   obj(props{"key": str("The feature or limit.", 100)}, "key"),
			decode: decodeAs(func(r keyRequest) aggregate.Command { return aggregate.ClearOverride{Key: r.Key} })},
		{name: aggregate.CmdSetPolicy, summary: "Set a policy (as PUT …/policies/{type})",
			body: withKey(policySchema(), "type", str("The policy type.", 100)),
			decode: decodeAs(func(r typedPolicyRequest) aggregate.Command {
				return aggregate.SetPolicy{Policy: aggregate.PolicySetting{Type: r.Type, Enforced: r.Enforced == nil || *r.Enforced, Settings: r.Settings}}
			})},
		{name: aggregate.CmdRemovePolicy, summary: "Remove a policy (as DELETE …/policies/{type})",
			body:   obj(props{"type": str("The policy type.", 100)}, "type"),
			decode: decodeAs(func(r typeRequest) aggregate.Command { return aggregate.RemovePolicy{Type: r.Type} })},
		{aggregate.CmdRecordBillingStatus, "Record the billing provider's status (de-duplicated by provider_event_id)", obj(props{
			"status":            enumOf("The account's billing status.", aggregate.BillingStatuses()),
			"provider":          str("The billing provider.", 100),
			"provider_event_id": str("The provider's event id; redeliveries are ignored.", 255),
			"occurred_at":       dateTime("When the provider's event happened; older events arriving late are ignored."),
		}, "status", "provider_event_id"),
			decodeAs(func(r billingStatusRequest) aggregate.Command {
				return aggregate.RecordBillingStatus{Status: r.Status, Provider: r.Provider, ProviderEventID: r.ProviderEventID, ProviderOccurredAt: r.OccurredAt}
			})},
	}
}

// decodeProfile decodes an update-profile body: at least one field.
func decodeProfile(c echo.Context) (aggregate.Command, error) {
	var r patchRequest
	if err := decodeBody(c, &r); err != nil {
		return nil, err
	}
	if r.Name != nil {
		return nil, invalidField("name", "not_here", "update-profile does not rename; use rename (or PATCH the tenant).")
	}
	return aggregate.UpdateProfile{Contacts: r.Contacts, Metadata: r.Metadata, Labels: r.Labels, ComplianceStandards: r.ComplianceStandards}, nil
}

// withKey adds a required string property to an object schema.
func withKey(s schema, name string, prop schema) schema {
	out := schema{}
	for k, v := range s {
		out[k] = v
	}
	ps := props{}
	if old, ok := s["properties"].(props); ok {
		for k, v := range old {
			ps[k] = v
		}
	}
	ps[name] = prop
	out["properties"] = ps
	req, _ := s["required"].([]string)
	out["required"] = append(append([]string{}, req...), name)
	return out
}

// routes is the whole API.
func (s *Server) routes() []route {
	const tenants = "/api/v1/tenants"
	const tenant = tenants + "/{id}"
	rs := []route{
		{method: http.MethodPost, path: tenants, operationID: "createTenant", tag: "tenants",
			summary: "Create a tenant (PROVISIONING)", body: createSchema(), bodyRequired: true,
			status: http.StatusCreated, result: tenantView{}, command: true, handler: s.createTenant},
		{method: http.MethodGet, path: tenants, operationID: "listTenants", tag: "tenants",
			summary: "List tenants with filters, sorting and cursor pagination", query: listParams(),
			status: http.StatusOK, result: tenantPage{}, consistent: true, handler: s.listTenants},
		{method: http.MethodGet, path: tenants + "/stats", operationID: "countTenants", tag: "tenants",
			summary: "How many tenants are in each status and edition (a tenant-bound token counts its own tenant only)",
			status:  http.StatusOK, result: tenantCounts{}, consistent: true, handler: s.countTenants},
		{method: http.MethodGet, path: tenant, operationID: "getTenant", tag: "tenants",
			summary: "Get a tenant by id or external id (with as_of or version: its state then, folded from its event stream)",
			query: []param{
				timeParamOf("as_of", "The state at that moment, from the event stream (404 before creation)"),
				{name: "version", description: "Stream version: the state after that event, from the event stream.", schema: withRule(schema{"type": "integer", "minimum": 0}, "integer")},
				consistentParam,
			},
			status: http.StatusOK, result: tenantView{}, consistent: true, handler: s.getTenant},
		{method: http.MethodPatch, path: tenant, operationID: "updateTenant", tag: "tenants",
			summary: "Rename the tenant or replace parts of its profile", body: patchSchema(), bodyRequired: true,
			status: http.StatusOK, result: tenantView{}, command: true, handler: s.patchTenant},
	}
	for _, v := range s.verbs() {
		op := verbOperationIDs[v.name]
		if op == "" {
			op = operationID(v.name)
		}
		rs = append(rs, route{method: http.MethodPost, path: tenant + "/" + string(v.name), operationID: op, tag: "lifecycle",
			summary: v.summary, body: v.body, status: http.StatusOK, result: tenantView{}, command: true, handler: s.runVerb(v)})
	}
	rs = append(rs,
		route{method: http.MethodPut, path: tenant + "/policies/{type}", operationID: "setPolicy", tag: "policies",
			summary: "Set a policy", body: policySchema(), bodyRequired: true, status: http.StatusOK, result: tenantView{}, command: true, handler: s.setPolicy},
		route{method: http.MethodDelete, path: tenant + "/policies/{type}", operationID: "removePolicy", tag: "policies",
			summary: "Remove a policy", status: http.StatusOK, result: tenantView{}, command: true, handler: s.removePolicy},
		route{method: http.MethodPut, path: tenant + "/overrides/{key}", operationID: "setOverride", tag: "entitlements",
			summary: "Override a feature (enabled) or a limit (value) of the edition", body: overrideSchema(), bodyRequired: true,
			status: http.StatusOK, result: tenantView{}, command: true, handler: s.setOverride},
		route{method: http.MethodDelete, path: tenant + "/overrides/{key}", operationID: "clearOverride", tag: "entitlements",
			summary: "Return a feature or limit to the edition's value", status: http.StatusOK, result: tenantView{}, command: true, handler: s.clearOverride},
		route{method: http.MethodGet, path: tenant + "/events", operationID: "listTenantEvents", tag: "tenants",
			summary: "The tenant's events, oldest first", query: eventParams(), status: http.StatusOK, result: eventPage{}, consistent: true, handler: s.listEvents},
		route{method: http.MethodGet, path: tenant + "/history", operationID: "getTenantHistory", tag: "audit",
			summary: "The tenant's timeline from its event stream: each event with who, why and what changed (redacted after purge)",
			query:   []param{limitParamOf(500, 100), cursorParam},
			status:  http.StatusOK, result: historyPage{}, handler: s.getHistory},
		route{method: http.MethodGet, path: tenant + "/export", operationID: "exportTenant", tag: "audit",
			summary: "Everything held about the tenant (GDPR access request): its state and every event",
			status:  http.StatusOK, result: exportView{}, handler: s.exportTenant},
		route{method: http.MethodGet, path: tenant + "/entitlements", operationID: "getEntitlements", tag: "entitlements",
			summary: "Effective features and limits (edition with overrides)", status: http.StatusOK, result: entitlementsView{}, consistent: true, handler: s.getEntitlements},
		route{method: http.MethodGet, path: tenant + "/transitions", operationID: "getTransitions", tag: "lifecycle",
			summary: "The commands the tenant accepts now, and the status each leads this tenant to (narrowed by its state: where a resume or a revert returns to, a deadline that passed)", status: http.StatusOK, result: transitionsView{}, consistent: true, handler: s.getTransitions},
		route{method: http.MethodPost, path: tenant + "/policy/evaluate", operationID: "evaluatePolicy", tag: "policies",
			summary: "May this tenant do this now? (allow, deny or warn, with every rule checked)", body: evaluateSchema(), bodyRequired: true,
			status: http.StatusOK, result: aggregate.Decision{}, consistent: true, handler: s.evaluatePolicy},
		route{method: http.MethodGet, path: "/api/v1/editions", operationID: "listEditions", tag: "entitlements",
			summary: "The edition catalog", status: http.StatusOK, result: catalogView{}, handler: s.listEditions},

		// The original service's routes, kept working on the same handlers.
		route{method: http.MethodPost, path: "/organizations", operationID: "legacyCreateOrganization", tag: "legacy",
			summary: "Create an organization (original API)", body: legacyCreateSchema(), bodyRequired: true,
			status: http.StatusCreated, result: tenantView{}, command: true, handler: s.legacyCreate},
		route{method: http.MethodGet, path: "/organizations/{id}", operationID: "legacyGetOrganization", tag: "legacy",
			summary: "Get an organization (original API)", status: http.StatusOK, result: tenantView{}, consistent: true, handler: s.getTenant},
		route{method: http.MethodPut, path: "/organizations/{id}/suspend", operationID: "legacySuspendOrganization", tag: "legacy",
			summary: "Suspend an organization (original API; reason defaults to admin_action)", body: legacySuspendSchema(),
			status: http.StatusOK, result: tenantView{}, command: true, handler: s.legacySuspend},
		route{method: http.MethodPut, path: "/organizations/{id}/activate", operationID: "legacyActivateOrganization", tag: "legacy",
			summary: "Activate an organization (original API): completes provisioning, converts a trial or resumes (to where it was suspended from: a suspended trial stays a trial), as its status needs",
			status:  http.StatusOK, result: tenantView{}, command: true, handler: s.legacyActivate},
		route{method: http.MethodPost, path: "/organizations/{id}/policies", operationID: "legacyEvaluatePolicy", tag: "legacy",
			summary: "Evaluate a policy request (original API): any action name (one the catalog does not know needs no feature; status, quota, region, network and time rules apply), with the original's allowed and required_upgrade",
			body:    legacyEvaluateSchema(), bodyRequired: true,
			status: http.StatusOK, result: legacyDecision{}, consistent: true, handler: s.legacyEvaluatePolicy},
	)
	rs = append(rs, s.adminRoutes()...)
	rs = append(rs, s.healthRoutes()...)
	return rs
}

// operationID turns "complete-provisioning" into "completeProvisioning".
func operationID(name aggregate.CommandName) string {
	out := make([]byte, 0, len(name))
	upper := false
	for i := 0; i < len(name); i++ {
		ch := name[i]
		if ch == '-' {
			upper = true
			continue
		}
		if upper && ch >= 'a' && ch <= 'z' {
			ch -= 'a' - 'A'
		}
		upper = false
		out = append(out, ch)
	}
	if string(out) == "billingStatus" {
		return "recordBillingStatus"
	}
	return string(out)
}
