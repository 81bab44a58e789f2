package securitylog

import (
	"encoding/json"
	"time"

	"github.com/google/uuid"
)

// EventType is the kind of a security event (the security_event_type enum).
type EventType string

// The security event types.
const (
	EventFailedLogin        EventType = "FAILED_LOGIN"
	EventSuspiciousActivity EventType = "SUSPICIOUS_ACTIVITY"
	EventPermissionDenied   EventType = "PERMISSION_DENIED"
)

// Severity ranks security events (the security_severity enum), from LOW to
// CRITICAL.
type Severity string

// The severities, in increasing order.
const (
	SeverityLow      Severity = "LOW"
	SeverityMedium   Severity = "MEDIUM"
	SeverityHigh     Severity = "HIGH"
	SeverityCritical Severity = "CRITICAL"
)

// TopicPrefix starts the topic of published events (Config.Publish):
// security.failed_login, security.suspicious_activity,
// security.permission_denied. Subscribe to TopicPrefix + "#" for all.
const TopicPrefix = "security."

// Limits of stored text.
const (
	maxUserAgentChars = 500 // user_agent is VARCHAR(500)
	maxUsernameChars  = 255
)

// Event is one row of security_event.
type Event struct {
	ID     uuid.UUID
	Type   EventType
	UserID uuid.UUID // uuid.Nil for none
	// IP is the canonical IP address (see ParseIP). Events recorded
	// without one before schema version 9 read "::" (the unspecified
	// address, which no new event may have).
	IP             string
	UserAgent      string          // "" for none
	Details        json.RawMessage // the type's details object; {} when it has none
	Severity       Severity
	RequiresReview bool
	ReviewedBy     uuid.UUID // uuid.Nil until reviewed
	ReviewedAt     time.Time // zero until reviewed
	OccurredAt     time.Time
}

// Input is the generic form of a security event, for Log.Record. The typed
// forms (FailedLogin, PermissionDenied, SuspiciousActivity) fill Details
// with their own fields.
type Input struct {
	Type   EventType
	UserID uuid.UUID // uuid.Nil for none
	// IP is required (ip_address is NOT NULL) and must parse as an IP
	// address (ParseIP) other than the unspecified :: or 0.0.0.0; a
	// missing or invalid one is an ErrInvalidEvent *outbox.ValidationError
	// on ip_address.
	IP string
	// UserAgent is sanitised on purpose, not refused: invalid UTF-8 becomes
	// U+FFFD, tabs and line breaks become spaces, other control characters
	// are removed, and the result is cut at 500 characters (on a character
	// boundary). A user agent is client-controlled text that ends up in
	// logs and dashboards; the event must be recorded whatever the client
	// sent.
	UserAgent string
	// Details is marshalled to JSON (an object for FAILED_LOGIN) and
	// redacted, and its strings and object keys are sanitised on purpose,
	// not refused: invalid UTF-8 becomes U+FFFD, tabs and line breaks
	// become spaces, other control characters are removed (details carry
	// client-controlled text into logs). nil stores the empty object.
	Details any
	// Severity defaults per type: FAILED_LOGIN MEDIUM, PERMISSION_DENIED
	// HIGH, SUSPICIOUS_ACTIVITY HIGH.
	Severity Severity
	// RequiresReview defaults to true for HIGH and CRITICAL.
	RequiresReview *bool
	// OccurredAt defaults to now (the handle's clock, or the database's).
	OccurredAt time.Time
}

// FailedLogin is a failed authentication attempt.
type FailedLogin struct {
	UserID uuid.UUID // the account, when it exists
	// Username is the login name tried, the account key when UserID is
	// nil; stored on one line, cut at 255 characters.
	Username  string
	IP        string // required, see Input.IP
	UserAgent string
	Reason    string // such as "bad_password", "unknown_user", "mfa_failed"
	Method    string // such as "password", "totp", "oauth"
	// Severity defaults to MEDIUM; RequiresReview to true for HIGH and
	// CRITICAL; OccurredAt to now.
	Severity       Severity
	RequiresReview *bool
	OccurredAt     time.Time
}

// PermissionDenied is an authorisation failure.
type PermissionDenied struct {
	UserID     uuid.UUID
	IP         string // required, see Input.IP
	UserAgent  string
	Resource   string // what was accessed, such as "invoice:42"
	Action     string // such as "read", "delete"
	Permission string // the permission that was missing
	Reason     string
	// Severity defaults to HIGH; RequiresReview to true for HIGH and
	// CRITICAL; OccurredAt to now.
	Severity       Severity
	RequiresReview *bool
	OccurredAt     time.Time
}

// SuspiciousActivity is anything an application's detectors flag.
type SuspiciousActivity struct {
	UserID      uuid.UUID
	IP          string // required, see Input.IP
	UserAgent   string
	Kind        string // such as "impossible_travel", "token_reuse"
	Description string
	Data        any // extra evidence, marshalled to JSON
	// Severity defaults to HIGH; RequiresReview to true for HIGH and
	// CRITICAL; OccurredAt to now.
	Severity       Severity
	RequiresReview *bool
	OccurredAt     time.Time
}

// FailedLoginResult is what Log.RecordFailedLogin recorded.
type FailedLoginResult struct {
	Event Event
	// Escalations are the SUSPICIOUS_ACTIVITY events (HIGH, requiring
	// review) this failure triggered: at most one per rule and key per
	// window.
	Escalations []Event
}

func (t EventType) valid() bool {
	switch t {
	case EventFailedLogin, EventSuspiciousActivity, EventPermissionDenied:
		return true
	}
	return false
}

func (s Severity) valid() bool {
	switch s {
	case SeverityLow, SeverityMedium, SeverityHigh, SeverityCritical:
		return true
	}
	return false
}
