package aggregate

import (
	"slices"
	"time"
)

// Status is a tenant's place in its lifecycle (the tenant_status enum).
type Status string

// The lifecycle statuses, in the order of DESIGN.md's table.
const (
	StatusProvisioning        Status = "PROVISIONING"
	StatusTrial               Status = "TRIAL"
	StatusActive              Status = "ACTIVE"
	StatusSuspended           Status = "SUSPENDED"
	StatusPendingCancellation Status = "PENDING_CANCELLATION"
	StatusMigrating           Status = "MIGRATING"
	StatusTerminated          Status = "TERMINATED"
	StatusPurged              Status = "PURGED"
)

var statuses = []Status{
	StatusProvisioning, StatusTrial, StatusActive, StatusSuspended,
	StatusPendingCancellation, StatusMigrating, StatusTerminated, StatusPurged,
}

// Statuses returns every status in lifecycle order.
func Statuses() []Status { return slices.Clone(statuses) }

// Valid reports whether s is a known status.
func (s Status) Valid() bool { return slices.Contains(statuses, s) }

// CommandName names a command. The names are the verbs of the REST API
// (POST /api/v1/tenants/{id}/<name>), so a refused transition lists exactly
// what a client may call instead.
type CommandName string

// Every command a tenant accepts.
const (
	CmdCreate               CommandName = "create"
	CmdCompleteProvisioning CommandName = "complete-provisioning"
	CmdFailProvisioning     CommandName = "fail-provisioning"
	CmdExtendTrial          CommandName = "extend-trial"
	CmdConvertTrial         CommandName = "convert-trial"
	CmdExpireTrial          CommandName = "expire-trial"
	CmdActivate             CommandName = "activate"
	CmdSuspend              CommandName = "suspend"
	CmdResume               CommandName = "resume"
	CmdCancel               CommandName = "cancel"
	CmdRevertCancellation   CommandName = "revert-cancellation"
	CmdCompleteCancellation CommandName = "complete-cancellation"
	CmdMigrateRegion        CommandName = "migrate-region"
	CmdCompleteMigration    CommandName = "complete-migration"
	CmdFailMigration        CommandName = "fail-migration"
	CmdRollbackMigration    CommandName = "rollback-migration"
	CmdTerminate            CommandName = "terminate"
	CmdRestore              CommandName = "restore"
	CmdPurge                CommandName = "purge"
	CmdChangeEdition        CommandName = "change-edition"
	CmdRename               CommandName = "rename"
	CmdUpdateProfile        CommandName = "update-profile"
	CmdSetOverride          CommandName = "set-override"
	CmdClearOverride        CommandName = "clear-override"
	CmdSetPolicy            CommandName = "set-policy"
	CmdRemovePolicy         CommandName = "remove-policy"
	CmdRecordBillingStatus  CommandName = "billing-status"
)

// Transition is one edge of the lifecycle: Command moves a tenant From one
// status To another.
type Transition struct {
	From    Status
	To      Status
	Command CommandName
}

// transitions is DESIGN.md's lifecycle table, the single source of truth for
// status changes. Tests, the OpenAPI document and the transitions endpoint read it.
var transitions = []Transition{
	{StatusProvisioning, StatusTrial, CmdCompleteProvisioning},
	{StatusProvisioning, StatusActive, CmdCompleteProvisioning},
	{StatusProvisioning, StatusTerminated, CmdFailProvisioning},

	{StatusTrial, StatusActive, CmdConvertTrial},
	{StatusTrial, StatusActive, CmdActivate},
	{StatusTrial, StatusSuspended, CmdSuspend},
	{StatusTrial, StatusSuspended, CmdExpireTrial},
	{StatusTrial, StatusPendingCancellation, CmdCancel},
	{StatusTrial, StatusTerminated, CmdTerminate},

	{StatusActive, StatusSuspended, CmdSuspend},
	{StatusActive, StatusPendingCancellation, CmdCancel},
	{StatusActive, StatusMigrating, CmdMigrateRegion},
	{StatusActive, StatusTerminated, CmdTerminate},

	// resume returns to the status the tenant was suspended from; a due
	// cancellation then takes effect at once (TERMINATED).
	{StatusSuspended, StatusTrial, CmdResume},
	{StatusSuspended, StatusActive, CmdResume},
	{StatusSuspended, StatusPendingCancellation, CmdResume},
	{StatusSuspended, StatusTerminated, CmdResume},
	// convert-trial ends a suspension for the trial's expiry: the tenant pays.
	{StatusSuspended, StatusActive, CmdConvertTrial},
	{StatusSuspended, StatusPendingCancellation, CmdCancel},
	{StatusSuspended, StatusTerminated, CmdTerminate},

	// revert-cancellation returns to the status the cancellation was
	// requested from; a trial that ended meanwhile has expired (SUSPENDED).
	{StatusPendingCancellation, StatusTrial, CmdRevertCancellation},
	{StatusPendingCancellation, StatusActive, CmdRevertCancellation},
	{StatusPendingCancellation, StatusSuspended, CmdRevertCancellation},
	{StatusPendingCancellation, StatusSuspended, CmdSuspend},
	{StatusPendingCancellation, StatusTerminated, CmdCompleteCancellation},
	{StatusPendingCancellation, StatusTerminated, CmdTerminate},

	{StatusMigrating, StatusActive, CmdCompleteMigration},
	{StatusMigrating, StatusActive, CmdRollbackMigration},
	{StatusMigrating, StatusSuspended, CmdFailMigration},
	{StatusMigrating, StatusTerminated, CmdTerminate},

	{StatusTerminated, StatusActive, CmdRestore},
	{StatusTerminated, StatusPurged, CmdPurge},
}

// settingsStatuses are where profile, settings, edition, override and policy
// changes are allowed.
var settingsStatuses = []Status{StatusTrial, StatusActive, StatusSuspended, StatusPendingCancellation}

// inPlace lists the commands that keep the status, with the statuses that accept them.
var inPlace = map[CommandName][]Status{
	// extend-trial also while suspended from the trial (before resuming
	// into it, say, once it has ended).
	CmdExtendTrial:         {StatusTrial, StatusSuspended},
	CmdChangeEdition:       settingsStatuses,
	CmdRename:              settingsStatuses,
	CmdUpdateProfile:       settingsStatuses,
	CmdSetOverride:         settingsStatuses,
	CmdClearOverride:       settingsStatuses,
	CmdSetPolicy:           settingsStatuses,
	CmdRemovePolicy:        settingsStatuses,
	CmdRecordBillingStatus: {StatusProvisioning, StatusTrial, StatusActive, StatusSuspended, StatusPendingCancellation, StatusMigrating, StatusTerminated},
}

// Transitions returns the lifecycle table.
func Transitions() []Transition { return slices.Clone(transitions) }

// Commands returns every command name but create, in a stable order.
func Commands() []CommandName {
	var out []CommandName
	for _, t := range transitions {
		if !slices.Contains(out, t.Command) {
			out = append(out, t.Command)
		}
	}
	for _, c := range []CommandName{CmdExtendTrial, CmdChangeEdition, CmdRename, CmdUpdateProfile, CmdSetOverride, CmdClearOverride, CmdSetPolicy, CmdRemovePolicy, CmdRecordBillingStatus} {
		out = append(out, c)
	}
	return out
}

// AllowedCommands returns the commands a tenant in status s accepts, in the
// order of Commands.
func AllowedCommands(s Status) []CommandName {
	var out []CommandName
	for _, c := range Commands() {
		if Accepts(s, c) {
			out = append(out, c)
		}
	}
	return out
}

// Accepts reports whether a tenant in status s accepts command c.
func Accepts(s Status, c CommandName) bool {
	if sts, ok := inPlace[c]; ok {
		return slices.Contains(sts, s)
	}
	for _, t := range transitions {
		if t.From == s && t.Command == c {
			return true
		}
	}
	return false
}

// TargetsOf returns the statuses command c may move a tenant in status s to.
func TargetsOf(s Status, c CommandName) []Status {
	var out []Status
	for _, t := range transitions {
		if t.From == s && t.Command == c {
			out = append(out, t.To)
		}
	}
	return out
}

// TransitionsOf returns the edges of the lifecycle table that tenant t can
// take at time now: those from its status, narrowed where its state decides
// the target (a trial or not, where a suspension or a cancellation returns
// to, a deadline that passed). A command whose every edge its state refuses
// (resume into a trial that ended) is left out.
func (t *Tenant) TransitionsOf(now time.Time) []Transition {
	var out []Transition
	for _, tr := range transitions {
		if tr.From == t.Status && t.canTake(tr, now) {
			out = append(out, tr)
		}
	}
	return out
}

// canTake reports whether t's state leads command tr.Command to tr.To.
func (t *Tenant) canTake(tr Transition, now time.Time) bool {
	switch tr.Command {
	case CmdCompleteProvisioning:
		return (tr.To == StatusTrial) == (t.TrialDays > 0)
	case CmdResume:
		if t.Suspension == nil {
			return tr.To == StatusActive
		}
		switch to := t.Suspension.ResumesTo(); {
		case to == StatusTrial && t.trialEnded(now):
			return false
		case to == StatusPendingCancellation && t.Cancellation != nil && !now.Before(t.Cancellation.EffectiveAt):
			return tr.To == StatusTerminated
		default:
			return tr.To == to
		}
	case CmdConvertTrial:
		if t.Status == StatusSuspended {
			return t.Suspension != nil && t.Suspension.ResumesTo() == StatusTrial && t.Suspension.Reason == ReasonTrialExpired
		}
	case CmdRevertCancellation:
		if t.Cancellation == nil {
			return tr.To == StatusActive
		}
		to := t.Cancellation.RevertsTo()
		if to == StatusTrial && t.trialEnded(now) {
			return tr.To == StatusSuspended
		}
		return tr.To == to
	}
	return true
}

// CanTransition reports whether the table has an edge from one status to another.
func CanTransition(from, to Status) bool {
	for _, t := range transitions {
		if t.From == from && t.To == to {
			return true
		}
	}
	return false
}

// refuse builds the error for command c refused in status s.
func refuse(s Status, c CommandName) *Error {
	return &Error{
		Code:    CodeTransition,
		Message: "command " + string(c) + " is not allowed when the tenant is " + string(s),
		Status:  s,
		Command: c,
		Allowed: AllowedCommands(s),
	}
}
