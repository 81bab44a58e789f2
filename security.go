package outbox

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/outboxkit/outbox/internal/jsontext"
	"github.com/outboxkit/outbox/internal/page"
	"github.com/outboxkit/outbox/internal/store"
	"github.com/outboxkit/outbox/redact"
)

// SecurityEventType is the kind of a security event (the
// security_event_type enum).
type SecurityEventType string

// The security event types.
const (
	EventFailedLogin        SecurityEventType = "FAILED_LOGIN"
	EventSuspiciousActivity SecurityEventType = "SUSPICIOUS_ACTIVITY"
	EventPermissionDenied   SecurityEventType = "PERMISSION_DENIED"
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

// Limits of security events.
const (
	// MaxUserAgentChars is where a stored user agent is cut (on a
	// character boundary).
	MaxUserAgentChars = 500
	// MaxUsernameChars is where a failed login's username is cut.
	MaxUsernameChars = 255
	// SecurityTopicPrefix starts the topic of published security events:
	// security.failed_login, security.suspicious_activity,
	// security.permission_denied.
	SecurityTopicPrefix = "security."
)

// SecurityEvent is one row of security_event.
type SecurityEvent struct {
	ID     uuid.UUID
	Type   SecurityEventType
	UserID uuid.UUID // uuid.Nil for none
	// IP is the canonical IP address. Events recorded without one before
	// schema version 9 read "::" (the unspecified address, which no new
	// event may have).
	IP             string
	UserAgent      string          // "" for none
	Details        json.RawMessage // the type's details object; {} when it has none
	Severity       Severity
	RequiresReview bool
	ReviewedBy     uuid.UUID // uuid.Nil until reviewed
	ReviewedAt     time.Time // zero until reviewed
	OccurredAt     time.Time
}

// SecurityEventInput is the generic form of a security event, for
// Record. The typed forms (FailedLogin, PermissionDenied,
// SuspiciousActivity) fill Details with their own fields.
type SecurityEventInput struct {
	Type   SecurityEventType
	UserID uuid.UUID // uuid.Nil for none
	// IP is required (ip_address is NOT NULL) and must parse as an IP
	// address other than the unspecified :: or 0.0.0.0; a missing or
	// invalid one is an ErrInvalidRecord *ValidationError on ip_address.
	IP string
	// UserAgent is sanitised on purpose, not refused: invalid UTF-8 becomes
	// U+FFFD, tabs and line breaks become spaces, other control characters
	// are removed, and the result is cut at MaxUserAgentChars. A user agent
	// is client-controlled text that ends up in logs and dashboards; the
	// event must be recorded whatever the client sent.
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
	UserID    uuid.UUID // the account, when it exists
	Username  string    // the login name tried; the account key when UserID is nil
	IP        string    // required, see SecurityEventInput.IP
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
	IP         string // required, see SecurityEventInput.IP
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
	IP          string // required, see SecurityEventInput.IP
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

// FailedLoginResult is what RecordFailedLogin recorded.
type FailedLoginResult struct {
	Event SecurityEvent
	// Escalations are the SUSPICIOUS_ACTIVITY events (HIGH, requiring
	// review) this failure triggered: at most one per rule and key per
	// window.
	Escalations []SecurityEvent
}

// SecurityLogConfig configures NewSecurityLog. The zero value means
// defaults.
type SecurityLogConfig struct {
	// BruteForce configures brute-force detection on failed logins.
	BruteForce BruteForceConfig
	// Publish also enqueues every recorded event, escalations included, on
	// topic SecurityTopicPrefix + the lower-cased type, in the same
	// transaction, so alerting subscribers receive it.
	Publish bool
	// Redaction extends the redaction rules applied to event details
	// (passwords and tokens never reach the table).
	Redaction redact.Rules
}

// SecurityLog records security events in security_event through the
// caller's transaction, detects brute-force logins, and serves the review
// workflow. It is safe for concurrent use.
type SecurityLog struct {
	o     *Outbox
	cfg   SecurityLogConfig
	red   *redact.Redactor
	rules []BruteForceRule
	sql   *store.SecurityStatements
}

// SecurityFilter selects events for SecurityLog.List. Zero fields do not
// filter.
type SecurityFilter struct {
	AwaitingReview bool              // only events that require review and have none
	Type           SecurityEventType // only this type
	MinSeverity    Severity          // only this severity and above
	UserID         uuid.UUID         // only this user
	IP             string            // only this IP (any form ParseIP accepts)
	Since          time.Time         // occurred at or after
	Until          time.Time         // occurred before
	Limit          int               // page size: default ListLimitDefault, at most ListLimitMax
	Cursor         string            // SecurityPage.Next of the previous page
}

// SecurityPage is one page of events, newest first.
type SecurityPage struct {
	Events []SecurityEvent
	// Next is the cursor of the following page, "" when this page is the
	// last one.
	Next string
}

// AlreadyReviewedError is the error of a second MarkReviewed: it carries
// the first review and matches ErrAlreadyReviewed.
type AlreadyReviewedError struct {
	ID         uuid.UUID
	ReviewedBy uuid.UUID
	ReviewedAt time.Time
}

// NewSecurityLog validates cfg and returns the security recorder of o.
func (o *Outbox) NewSecurityLog(cfg SecurityLogConfig) (*SecurityLog, error) {
	red, err := redact.New(cfg.Redaction)
	if err != nil {
		return nil, err
	}
	s := &SecurityLog{o: o, cfg: cfg, red: red, sql: &o.st.Security}
	if !cfg.BruteForce.Disabled {
		rules := cfg.BruteForce.Rules
		if rules == nil {
			rules = DefaultBruteForceRules()
		}
		seen := map[string]bool{}
		for i, r := range rules {
			field := fmt.Sprintf("brute_force.rules[%d]", i)
			switch {
			case r.Name == "" || len(r.Name) > 100 || jsontext.HasControl(r.Name):
				return nil, invalid(ErrInvalidConfig, field, "name must be 1 to 100 bytes without control characters")
			case seen[r.Name]:
				return nil, invalid(ErrInvalidConfig, field, "name %q repeats", r.Name)
			case r.Scope != ScopeAccountIP && r.Scope != ScopeAccount && r.Scope != ScopeIP && r.Scope != ScopeIPAccounts:
				return nil, invalid(ErrInvalidConfig, field, "unknown scope %q", r.Scope)
			case r.Threshold < 1:
				return nil, invalid(ErrInvalidConfig, field, "threshold must be at least 1, got %d", r.Threshold)
			case r.Window < time.Second:
				return nil, invalid(ErrInvalidConfig, field, "window must be at least 1s, got %s", r.Window)
			}
			seen[r.Name] = true
		}
		s.rules = slices.Clone(rules)
	}
	return s, nil
}

// Record validates and inserts a security event through q and returns it as
// stored. A FAILED_LOGIN runs brute-force detection, with UserID as the
// account. An invalid input is an ErrInvalidRecord (or ErrInvalidPayload,
// ErrPayloadTooLarge) *ValidationError returned before any SQL is sent, so
// q's transaction stays usable.
func (s *SecurityLog) Record(ctx context.Context, q Querier, in SecurityEventInput) (SecurityEvent, error) {
	p, err := s.prepare(in, nil)
	if err != nil {
		return SecurityEvent{}, err
	}
	if in.Type == EventFailedLogin {
		res, err := s.recordFailedLogin(ctx, q, p)
		return res.Event, err
	}
	return s.insert(ctx, q, p)
}

// RecordFailedLogin records a FAILED_LOGIN (severity MEDIUM by default)
// and runs brute-force detection in the same transaction: for each rule
// whose threshold the failures of this login's key reach within the
// window, it records one SUSPICIOUS_ACTIVITY, unless one was recorded for
// the same rule and key within the window.
//
// Detection is exact under concurrent logins in READ COMMITTED (PostgreSQL's
// default): each call takes transaction-scoped advisory locks on its
// account and IP, so logins of the same account or IP queue until the
// previous transaction ends. Record one failed login per transaction (or
// several for the same account and IP), so that two transactions never wait
// on each other's locks in opposite orders.
func (s *SecurityLog) RecordFailedLogin(ctx context.Context, q Querier, f FailedLogin) (FailedLoginResult, error) {
	username := jsontext.CutRunes(jsontext.CleanLine(f.Username), MaxUsernameChars)
	details := map[string]any{}
	for k, v := range map[string]string{"username": username, "reason": f.Reason, "method": f.Method} {
		if v != "" {
			details[k] = v
		}
	}
	account := ""
	switch {
	case f.UserID != uuid.Nil:
		account = "user:" + f.UserID.String()
	case username != "":
		account = "username:" + strings.ToLower(username)
	}
	if account != "" {
		details["account"] = account
	}
	p, err := s.prepare(SecurityEventInput{Type: EventFailedLogin, UserID: f.UserID, IP: f.IP, UserAgent: f.UserAgent,
		Details: details, Severity: f.Severity, RequiresReview: f.RequiresReview, OccurredAt: f.OccurredAt}, &account)
	if err != nil {
		return FailedLoginResult{}, err
	}
	return s.recordFailedLogin(ctx, q, p)
}

// RecordPermissionDenied records a PERMISSION_DENIED (severity HIGH, so
// requiring review, by default).
func (s *SecurityLog) RecordPermissionDenied(ctx context.Context, q Querier, d PermissionDenied) (SecurityEvent, error) {
	details := map[string]any{}
	for k, v := range map[string]string{"resource": d.Resource, "action": d.Action, "permission": d.Permission, "reason": d.Reason} {
		if v != "" {
			details[k] = v
		}
	}
	return s.Record(ctx, q, SecurityEventInput{Type: EventPermissionDenied, UserID: d.UserID, IP: d.IP, UserAgent: d.UserAgent,
		Details: details, Severity: d.Severity, RequiresReview: d.RequiresReview, OccurredAt: d.OccurredAt})
}

// RecordSuspiciousActivity records a SUSPICIOUS_ACTIVITY (severity HIGH,
// so requiring review, unless the caller says otherwise).
func (s *SecurityLog) RecordSuspiciousActivity(ctx context.Context, q Querier, a SuspiciousActivity) (SecurityEvent, error) {
	details := map[string]any{}
	for k, v := range map[string]string{"kind": a.Kind, "description": a.Description} {
		if v != "" {
			details[k] = v
		}
	}
	if a.Data != nil {
		details["data"] = a.Data
	}
	return s.Record(ctx, q, SecurityEventInput{Type: EventSuspiciousActivity, UserID: a.UserID, IP: a.IP, UserAgent: a.UserAgent,
		Details: details, Severity: a.Severity, RequiresReview: a.RequiresReview, OccurredAt: a.OccurredAt})
}

// MarkReviewed records, through q, that reviewer reviewed event id, and
// returns the event. reviewed_by and reviewed_at are set together, once: a
// second review (even a concurrent one) returns an *AlreadyReviewedError
// and changes nothing; an unknown id returns ErrNotFound. Neither error
// aborts q's transaction.
func (s *SecurityLog) MarkReviewed(ctx context.Context, q Querier, id, reviewer uuid.UUID) (SecurityEvent, error) {
	if id == uuid.Nil {
		return SecurityEvent{}, invalid(ErrInvalidRecord, "id", "is the nil UUID")
	}
	if reviewer == uuid.Nil {
		return SecurityEvent{}, invalid(ErrInvalidRecord, "reviewed_by", "is the nil UUID")
	}
	ev, err := scanSecurityEvent(q.QueryRowContext(ctx, s.sql.Review, id, reviewer, s.o.nowArg()))
	if err == nil {
		return ev, nil
	}
	if !errors.Is(err, sql.ErrNoRows) {
		return SecurityEvent{}, fmt.Errorf("outbox: mark reviewed: %w", err)
	}
	cur, err := scanSecurityEvent(q.QueryRowContext(ctx, s.sql.Get, id))
	if errors.Is(err, sql.ErrNoRows) {
		return SecurityEvent{}, fmt.Errorf("%w: security event %s", ErrNotFound, id)
	}
	if err != nil {
		return SecurityEvent{}, fmt.Errorf("outbox: mark reviewed: %w", err)
	}
	return SecurityEvent{}, &AlreadyReviewedError{ID: id, ReviewedBy: cur.ReviewedBy, ReviewedAt: cur.ReviewedAt}
}

// Get returns one event, or ErrNotFound.
func (s *SecurityLog) Get(ctx context.Context, id uuid.UUID) (SecurityEvent, error) {
	ev, err := scanSecurityEvent(s.o.db.QueryRowContext(ctx, s.sql.Get, id))
	if errors.Is(err, sql.ErrNoRows) {
		return SecurityEvent{}, fmt.Errorf("%w: security event %s", ErrNotFound, id)
	}
	if err != nil {
		return SecurityEvent{}, fmt.Errorf("outbox: get security event: %w", err)
	}
	return ev, nil
}

// List returns events matching f, newest first, one page at a time (keyset
// pagination: stable while new events arrive).
func (s *SecurityLog) List(ctx context.Context, f SecurityFilter) (SecurityPage, error) {
	limit, err := page.Limit(f.Limit, ListLimitDefault, ListLimitMax)
	if err != nil {
		return SecurityPage{}, filterError(err)
	}
	if f.Type != "" && !f.Type.valid() {
		return SecurityPage{}, invalid(ErrInvalidFilter, "event_type", "unknown type %q", f.Type)
	}
	if f.MinSeverity != "" && !f.MinSeverity.valid() {
		return SecurityPage{}, invalid(ErrInvalidFilter, "severity", "unknown severity %q", f.MinSeverity)
	}
	ip := ""
	if f.IP != "" {
		if ip, err = ParseIP(f.IP); err != nil {
			return SecurityPage{}, invalid(ErrInvalidFilter, "ip_address", "is not an IP address")
		}
	}
	curAt, curID, err := page.DecodeCursor(f.Cursor)
	if err != nil {
		return SecurityPage{}, filterError(err)
	}
	var user any
	if f.UserID != uuid.Nil {
		user = f.UserID
	}
	rows, err := s.o.db.QueryContext(ctx, s.sql.List, f.AwaitingReview, string(f.Type), string(f.MinSeverity), user, ip,
		page.TimeArg(f.Since), page.TimeArg(f.Until), curAt, curID, limit+1)
	var out SecurityPage
	out.Events, out.Next, err = page.Read(rows, err, limit,
		func(rows *sql.Rows) (SecurityEvent, error) { return scanSecurityEvent(rows) },
		func(ev SecurityEvent) (time.Time, uuid.UUID) { return ev.OccurredAt, ev.ID })
	if err != nil {
		return SecurityPage{}, fmt.Errorf("outbox: list security events: %w", err)
	}
	return out, nil
}

// AwaitingReview lists the events that require review and have none yet:
// List with f.AwaitingReview set.
func (s *SecurityLog) AwaitingReview(ctx context.Context, f SecurityFilter) (SecurityPage, error) {
	f.AwaitingReview = true
	return s.List(ctx, f)
}

// Error names the event and its earlier review.
func (e *AlreadyReviewedError) Error() string {
	return fmt.Sprintf("%v: %s by %s at %s", ErrAlreadyReviewed, e.ID, e.ReviewedBy, e.ReviewedAt.Format(time.RFC3339))
}

// Unwrap returns ErrAlreadyReviewed.
func (e *AlreadyReviewedError) Unwrap() error { return ErrAlreadyReviewed }

// preparedSecurity is a validated event ready for SQL.
type preparedSecurity struct {
	ev      SecurityEvent
	userID  any // nil or the UUID
	details []byte
	at      any // nil or time.Time
	account string
}

func (s *SecurityLog) prepare(in SecurityEventInput, account *string) (preparedSecurity, error) {
	f := func(field, format string, args ...any) error {
		return invalid(ErrInvalidRecord, field, format, args...)
	}
	if !in.Type.valid() {
		return preparedSecurity{}, f("event_type", "unknown type %q", in.Type)
	}
	sev := in.Severity
	if sev == "" {
		sev = SeverityHigh
		if in.Type == EventFailedLogin {
			sev = SeverityMedium
		}
	}
	if !sev.valid() {
		return preparedSecurity{}, f("severity", "unknown severity %q", sev)
	}
	review := sev == SeverityHigh || sev == SeverityCritical
	if in.RequiresReview != nil {
		review = *in.RequiresReview
	}
	p := preparedSecurity{ev: SecurityEvent{Type: in.Type, UserID: in.UserID, Severity: sev, RequiresReview: review}}
	// ip_address is NOT NULL (the seed); '::' marks the rows recorded
	// without one before schema version 9, so no new event may use it.
	if in.IP == "" {
		return preparedSecurity{}, f("ip_address", "is required")
	}
	ip, err := ParseIP(in.IP)
	if err != nil {
		return preparedSecurity{}, err
	}
	if netip.MustParseAddr(ip).IsUnspecified() {
		return preparedSecurity{}, f("ip_address", "is the unspecified address %s, not a client's", ip)
	}
	p.ev.IP = ip
	p.ev.UserAgent = jsontext.CutRunes(jsontext.CleanLine(s.red.String(in.UserAgent)), MaxUserAgentChars)
	if in.UserID != uuid.Nil {
		p.userID = in.UserID
	}
	if !in.OccurredAt.IsZero() {
		p.at = in.OccurredAt.UTC()
	}
	if in.Details != nil {
		b, err := s.details(in.Details, in.Type == EventFailedLogin)
		if err != nil {
			return preparedSecurity{}, err
		}
		p.details, p.ev.Details = b, b
	}
	if account != nil && p.details != nil {
		// The key as stored (after redaction), so that counting matches.
		var m struct {
			Account string `json:"account"`
		}
		_ = json.Unmarshal(p.details, &m)
		p.account = m.Account
	} else if account == nil && in.Type == EventFailedLogin && in.UserID != uuid.Nil {
		p.account = "user:" + in.UserID.String()
		if p.details == nil {
			p.details = []byte(`{}`)
		}
		var m map[string]json.RawMessage
		_ = json.Unmarshal(p.details, &m)
		m["account"], _ = json.Marshal(p.account)
		p.details, _ = jsontext.Marshal(m)
		p.ev.Details = p.details
	}
	if p.details == nil {
		// event_details is NOT NULL (the seed): no details is the empty object.
		p.details = []byte(`{}`)
		p.ev.Details = p.details
	}
	if p.ev.ID, err = uuid.NewV7(); err != nil {
		return preparedSecurity{}, fmt.Errorf("outbox: event id: %w", err)
	}
	if s.cfg.Publish {
		// Check the published payload's size now: no SQL may fail on it.
		b, err := json.Marshal(publishedEvent(p.ev, time.Date(9999, 12, 31, 23, 59, 59, 999999999, time.FixedZone("", -12*3600))))
		if err != nil {
			return preparedSecurity{}, fmt.Errorf("outbox: security event payload: %w", err)
		}
		if len(b) > s.o.cfg.MaxPayloadBytes {
			return preparedSecurity{}, &ValidationError{Field: "event_details",
				Reason: fmt.Sprintf("makes a published event of %d bytes, over the limit of %d", len(b), s.o.cfg.MaxPayloadBytes), Err: ErrPayloadTooLarge}
		}
	}
	return p, nil
}

// details encodes, redacts and cleans event details.
func (s *SecurityLog) details(v any, object bool) ([]byte, error) {
	b, err := s.red.Value(v)
	if err != nil {
		return nil, invalid(ErrInvalidRecord, "event_details", "%v", err)
	}
	dv, err := jsontext.Decode(b)
	if err != nil {
		return nil, invalid(ErrInvalidRecord, "event_details", "%v", err)
	}
	if _, ok := dv.(map[string]any); object && !ok {
		return nil, invalid(ErrInvalidRecord, "event_details", "must be a JSON object for %s", EventFailedLogin)
	}
	if b, err = jsontext.Marshal(mapStrings(dv, jsontext.CleanLine)); err != nil {
		return nil, invalid(ErrInvalidRecord, "event_details", "%v", err)
	}
	if len(b) > s.red.MaxBodyBytes() {
		return nil, &ValidationError{Field: "event_details",
			Reason: fmt.Sprintf("is %d bytes, over the limit of %d", len(b), s.red.MaxBodyBytes()), Err: ErrPayloadTooLarge}
	}
	return encodeJSON(json.RawMessage(b), "event_details", 0)
}

// mapStrings applies f to every string and object key in a decoded JSON
// value.
func mapStrings(v any, f func(string) string) any {
	switch x := v.(type) {
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, e := range x {
			out[f(k)] = mapStrings(e, f)
		}
		return out
	case []any:
		for i, e := range x {
			x[i] = mapStrings(e, f)
		}
		return x
	case string:
		return f(x)
	}
	return v
}

// insert writes one event (and publishes it when configured).
func (s *SecurityLog) insert(ctx context.Context, q Querier, p preparedSecurity) (SecurityEvent, error) {
	var details any
	if p.details != nil {
		details = string(p.details)
	}
	err := q.QueryRowContext(ctx, s.sql.Insert, p.ev.ID, string(p.ev.Type), p.userID, p.ev.IP, p.ev.UserAgent, details,
		string(p.ev.Severity), p.ev.RequiresReview, p.at, s.o.nowArg()).Scan(&p.ev.OccurredAt)
	if err != nil {
		return SecurityEvent{}, fmt.Errorf("outbox: record security event: %w", err)
	}
	if err := s.publish(ctx, q, p.ev); err != nil {
		return SecurityEvent{}, err
	}
	return p.ev, nil
}

// publish enqueues ev on the bus when configured.
func (s *SecurityLog) publish(ctx context.Context, q Querier, ev SecurityEvent) error {
	if !s.cfg.Publish {
		return nil
	}
	topic := SecurityTopicPrefix + strings.ToLower(string(ev.Type))
	if _, err := s.o.Enqueue(ctx, q, topic, publishedEvent(ev, ev.OccurredAt), nil); err != nil {
		return fmt.Errorf("outbox: publish security event: %w", err)
	}
	return nil
}

// publishedEvent is the payload of a published security event.
func publishedEvent(ev SecurityEvent, at time.Time) map[string]any {
	m := map[string]any{
		"id": ev.ID, "event_type": ev.Type, "severity": ev.Severity, "requires_review": ev.RequiresReview,
		"occurred_at": at.Format(time.RFC3339Nano),
	}
	if ev.UserID != uuid.Nil {
		m["user_id"] = ev.UserID
	}
	if ev.IP != "" {
		m["ip_address"] = ev.IP
	}
	if ev.UserAgent != "" {
		m["user_agent"] = ev.UserAgent
	}
	if ev.Details != nil {
		m["event_details"] = ev.Details
	}
	return m
}

func scanSecurityEvent(row store.Scanner) (SecurityEvent, error) {
	var ev SecurityEvent
	var user, reviewer uuid.NullUUID
	var reviewedAt sql.NullTime
	var details string
	if err := row.Scan(&ev.ID, &ev.Type, &user, &ev.IP, &ev.UserAgent, &details, &ev.Severity, &ev.RequiresReview,
		&reviewer, &reviewedAt, &ev.OccurredAt); err != nil {
		return SecurityEvent{}, err
	}
	ev.UserID, ev.ReviewedBy, ev.ReviewedAt = user.UUID, reviewer.UUID, reviewedAt.Time
	if details != "" {
		ev.Details = json.RawMessage(details)
	}
	return ev, nil
}

func (t SecurityEventType) valid() bool {
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
