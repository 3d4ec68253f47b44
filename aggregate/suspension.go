package aggregate

import "slices"

// SuspensionReason says why a tenant was suspended.
type SuspensionReason string

// The suspension reasons.
const (
	ReasonPaymentFailed  SuspensionReason = "payment_failed"
	ReasonPaymentOverdue SuspensionReason = "payment_overdue"
	ReasonTermsViolation SuspensionReason = "terms_violation"
	ReasonSecurityThreat SuspensionReason = "security_threat"
	ReasonAbuseDetected  SuspensionReason = "abuse_detected"
	ReasonLegalRequest   SuspensionReason = "legal_request"
	ReasonAdminAction    SuspensionReason = "admin_action"
	ReasonTrialExpired   SuspensionReason = "trial_expired"
)

// Severity says how much a suspension shuts off: soft keeps reads, hard shuts
// everything, security also revokes sessions and credentials downstream.
type Severity string

// The suspension severities.
const (
	SeveritySoft     Severity = "soft"
	SeverityHard     Severity = "hard"
	SeveritySecurity Severity = "security"
)

// DefaultSeverity is the severity each reason implies when the command names none.
var defaultSeverity = map[SuspensionReason]Severity{
	ReasonPaymentFailed:  SeveritySoft,
	ReasonPaymentOverdue: SeveritySoft,
	ReasonTermsViolation: SeverityHard,
	ReasonSecurityThreat: SeveritySecurity,
	ReasonAbuseDetected:  SeverityHard,
	ReasonLegalRequest:   SeverityHard,
	ReasonAdminAction:    SeveritySoft,
	ReasonTrialExpired:   SeveritySoft,
}

// SuspensionReasons returns every reason, in a stable order.
func SuspensionReasons() []SuspensionReason {
	return []SuspensionReason{ReasonPaymentFailed, ReasonPaymentOverdue, ReasonTermsViolation, ReasonSecurityThreat, ReasonAbuseDetected, ReasonLegalRequest, ReasonAdminAction, ReasonTrialExpired}
}

// Severities returns every severity, mildest first.
func Severities() []Severity { return []Severity{SeveritySoft, SeverityHard, SeveritySecurity} }

// DefaultSeverity returns the severity reason r implies.
func (r SuspensionReason) DefaultSeverity() Severity { return defaultSeverity[r] }

// Valid reports whether r is a known reason.
func (r SuspensionReason) Valid() bool { _, ok := defaultSeverity[r]; return ok }

// Valid reports whether s is a known severity.
func (s Severity) Valid() bool { return slices.Contains(Severities(), s) }

// BillingStatus is the billing provider's view of a tenant's account; it is
// separate from the lifecycle.
type BillingStatus string

// The billing statuses.
const (
	BillingTrialing BillingStatus = "trialing"
	BillingActive   BillingStatus = "active"
	BillingPastDue  BillingStatus = "past_due"
	BillingUnpaid   BillingStatus = "unpaid"
	BillingCanceled BillingStatus = "canceled"
	BillingPaused   BillingStatus = "paused"
)

// BillingStatuses returns every billing status.
func BillingStatuses() []BillingStatus {
	return []BillingStatus{BillingTrialing, BillingActive, BillingPastDue, BillingUnpaid, BillingCanceled, BillingPaused}
}

// Valid reports whether b is a known billing status.
func (b BillingStatus) Valid() bool { return slices.Contains(BillingStatuses(), b) }
