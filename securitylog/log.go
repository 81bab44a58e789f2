package securitylog

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/outboxkit/outbox"
	"github.com/outboxkit/outbox/internal/handle"
	"github.com/outboxkit/outbox/internal/jsontext"
	"github.com/outboxkit/outbox/internal/store"
	"github.com/outboxkit/outbox/redact"
)

// Config configures New. The zero value means defaults.
type Config struct {
	// BruteForce configures brute-force detection on failed logins.
	// Default: on, with DefaultBruteForceRules.
	BruteForce BruteForceConfig
	// Publish also enqueues every recorded event, escalations included, on
	// topic TopicPrefix + the lower-cased type, in the same transaction
	// (outbox.Outbox.Enqueue), so alerting subscribers receive it. Default
	// false.
	Publish bool
	// Redaction extends the redaction rules applied to event details and
	// user agents (passwords and tokens never reach the table). Default:
	// the built-in rules.
	Redaction redact.Rules
}

// Log records security events in security_event through the caller's
// transaction, detects brute-force logins, and serves the review workflow.
// It is safe for concurrent use.
type Log struct {
	ob    *outbox.Outbox
	core  *handle.Core
	cfg   Config
	red   *redact.Redactor
	rules []BruteForceRule
}

// New validates cfg and returns the security log of ob's schema. It sends
// no SQL. An invalid cfg is an outbox.ErrInvalidConfig error.
func New(ob *outbox.Outbox, cfg Config) (*Log, error) {
	if ob == nil {
		return nil, fmt.Errorf("%w: securitylog: the outbox handle is nil", outbox.ErrInvalidConfig)
	}
	red, err := redact.New(cfg.Redaction)
	if err != nil {
		return nil, fmt.Errorf("%w: securitylog: Redaction: %w", outbox.ErrInvalidConfig, err)
	}
	l := &Log{ob: ob, core: handle.Of(ob), cfg: cfg, red: red}
	if !cfg.BruteForce.Disabled {
		rules := cfg.BruteForce.Rules
		if rules == nil {
			rules = DefaultBruteForceRules()
		}
		seen := map[string]bool{}
		for i, r := range rules {
			bad := func(format string, args ...any) error {
				return invalidConfig(fmt.Sprintf("brute_force.rules[%d]", i), fmt.Sprintf(format, args...))
			}
			switch {
			case r.Name == "" || len(r.Name) > 100 || jsontext.HasControl(r.Name):
				return nil, bad("name must be 1 to 100 bytes without control characters")
			case seen[r.Name]:
				return nil, bad("name %q repeats", r.Name)
			case r.Scope != ScopeAccountIP && r.Scope != ScopeAccount && r.Scope != ScopeIP && r.Scope != ScopeIPAccounts:
				return nil, bad("unknown scope %q", r.Scope)
			case r.Threshold < 1:
				return nil, bad("threshold must be at least 1, got %d", r.Threshold)
			case r.Window < time.Second:
				return nil, bad("window must be at least 1s, got %s", r.Window)
			}
			seen[r.Name] = true
		}
		l.rules = slices.Clone(rules)
	}
	return l, nil
}

// Record validates and inserts a security event through q and returns it as
// stored. A FAILED_LOGIN runs brute-force detection, with UserID as the
// account. An invalid input is an ErrInvalidEvent (or
// outbox.ErrInvalidPayload, outbox.ErrPayloadTooLarge)
// *outbox.ValidationError returned before any SQL is sent, so q's
// transaction stays usable.
func (l *Log) Record(ctx context.Context, q outbox.Querier, in Input) (Event, error) {
	p, err := l.prepare(in, nil)
	if err != nil {
		return Event{}, err
	}
	if in.Type == EventFailedLogin {
		res, err := l.recordFailedLogin(ctx, q, p)
		return res.Event, err
	}
	return l.insert(ctx, q, p)
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
func (l *Log) RecordFailedLogin(ctx context.Context, q outbox.Querier, f FailedLogin) (FailedLoginResult, error) {
	username := jsontext.CutRunes(jsontext.CleanLine(f.Username), maxUsernameChars)
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
	p, err := l.prepare(Input{Type: EventFailedLogin, UserID: f.UserID, IP: f.IP, UserAgent: f.UserAgent,
		Details: details, Severity: f.Severity, RequiresReview: f.RequiresReview, OccurredAt: f.OccurredAt}, &account)
	if err != nil {
		return FailedLoginResult{}, err
	}
	return l.recordFailedLogin(ctx, q, p)
}

// RecordPermissionDenied records a PERMISSION_DENIED (severity HIGH, so
// requiring review, by default).
func (l *Log) RecordPermissionDenied(ctx context.Context, q outbox.Querier, d PermissionDenied) (Event, error) {
	details := map[string]any{}
	for k, v := range map[string]string{"resource": d.Resource, "action": d.Action, "permission": d.Permission, "reason": d.Reason} {
		if v != "" {
			details[k] = v
		}
	}
	return l.Record(ctx, q, Input{Type: EventPermissionDenied, UserID: d.UserID, IP: d.IP, UserAgent: d.UserAgent,
		Details: details, Severity: d.Severity, RequiresReview: d.RequiresReview, OccurredAt: d.OccurredAt})
}

// RecordSuspiciousActivity records a SUSPICIOUS_ACTIVITY (severity HIGH,
// so requiring review, unless the caller says otherwise).
func (l *Log) RecordSuspiciousActivity(ctx context.Context, q outbox.Querier, a SuspiciousActivity) (Event, error) {
	details := map[string]any{}
	for k, v := range map[string]string{"kind": a.Kind, "description": a.Description} {
		if v != "" {
			details[k] = v
		}
	}
	if a.Data != nil {
		details["data"] = a.Data
	}
	return l.Record(ctx, q, Input{Type: EventSuspiciousActivity, UserID: a.UserID, IP: a.IP, UserAgent: a.UserAgent,
		Details: details, Severity: a.Severity, RequiresReview: a.RequiresReview, OccurredAt: a.OccurredAt})
}

// prepared is a validated event ready for SQL.
type prepared struct {
	ev      Event
	userID  any // nil or the UUID
	details []byte
	at      any // nil or time.Time
	account string
}

func (l *Log) prepare(in Input, account *string) (prepared, error) {
	f := func(field, format string, args ...any) error {
		return invalidEvent(field, fmt.Sprintf(format, args...))
	}
	if !in.Type.valid() {
		return prepared{}, f("event_type", "unknown type %q", in.Type)
	}
	sev := in.Severity
	if sev == "" {
		sev = SeverityHigh
		if in.Type == EventFailedLogin {
			sev = SeverityMedium
		}
	}
	if !sev.valid() {
		return prepared{}, f("severity", "unknown severity %q", sev)
	}
	review := sev == SeverityHigh || sev == SeverityCritical
	if in.RequiresReview != nil {
		review = *in.RequiresReview
	}
	p := prepared{ev: Event{Type: in.Type, UserID: in.UserID, Severity: sev, RequiresReview: review}}
	// ip_address is NOT NULL (the seed); '::' marks the rows recorded
	// without one before schema version 9, so no new event may use it.
	if in.IP == "" {
		return prepared{}, f("ip_address", "is required")
	}
	ip, err := ParseIP(in.IP)
	if err != nil {
		return prepared{}, err
	}
	if netip.MustParseAddr(ip).IsUnspecified() {
		return prepared{}, f("ip_address", "is the unspecified address %s, not a client's", ip)
	}
	p.ev.IP = ip
	p.ev.UserAgent = jsontext.CutRunes(jsontext.CleanLine(l.red.String(in.UserAgent)), maxUserAgentChars)
	if in.UserID != uuid.Nil {
		p.userID = in.UserID
	}
	if !in.OccurredAt.IsZero() {
		p.at = in.OccurredAt.UTC()
	}
	if in.Details != nil {
		b, err := l.details(in.Details, in.Type == EventFailedLogin)
		if err != nil {
			return prepared{}, err
		}
		p.details, p.ev.Details = b, b
	}
	p.withAccount(account, in)
	if p.ev.ID, err = uuid.NewV7(); err != nil {
		return prepared{}, fmt.Errorf("securitylog: event id: %w", err)
	}
	if l.cfg.Publish {
		// Check the published payload's size now: no SQL may fail on it.
		b, err := json.Marshal(publishedEvent(p.ev, time.Date(9999, 12, 31, 23, 59, 59, 999999999, time.FixedZone("", -12*3600))))
		if err != nil {
			return prepared{}, fmt.Errorf("securitylog: event payload: %w", err)
		}
		if limit := l.core.MaxPayloadBytes; len(b) > limit {
			return prepared{}, &outbox.ValidationError{Field: "event_details",
				Reason: fmt.Sprintf("makes a published event of %d bytes, over the limit of %d", len(b), limit), Err: outbox.ErrPayloadTooLarge}
		}
	}
	return p, nil
}

// withAccount sets the account a failed login counts against: the one in
// its details as stored (after redaction, so that counting matches), or
// "user:<id>" when it names a user and no account, which then goes into
// its details too. Details are never NULL (the seed): none is {}.
func (p *prepared) withAccount(account *string, in Input) {
	if account != nil && p.details != nil {
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
		p.details = []byte(`{}`)
		p.ev.Details = p.details
	}
}

// details encodes, redacts and cleans event details.
func (l *Log) details(v any, object bool) ([]byte, error) {
	f := func(format string, args ...any) error {
		return invalidEvent("event_details", fmt.Sprintf(format, args...))
	}
	b, err := l.red.Value(v)
	if err != nil {
		return nil, f("%v", err)
	}
	dv, err := jsontext.Decode(b)
	if err != nil {
		return nil, f("%v", err)
	}
	if _, ok := dv.(map[string]any); object && !ok {
		return nil, f("must be a JSON object for %s", EventFailedLogin)
	}
	if b, err = jsontext.Marshal(mapStrings(dv, jsontext.CleanLine)); err != nil {
		return nil, f("%v", err)
	}
	if len(b) > l.red.MaxBodyBytes() {
		return nil, &outbox.ValidationError{Field: "event_details",
			Reason: fmt.Sprintf("is %d bytes, over the limit of %d", len(b), l.red.MaxBodyBytes()), Err: outbox.ErrPayloadTooLarge}
	}
	// What jsonb refuses (a number out of numeric's range, say) fails here,
	// before any SQL is sent.
	if err := jsontext.Check(b); err != nil {
		return nil, &outbox.ValidationError{Field: "event_details", Reason: err.Error(), Err: outbox.ErrInvalidPayload}
	}
	return b, nil
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
func (l *Log) insert(ctx context.Context, q outbox.Querier, p prepared) (Event, error) {
	var details any
	if p.details != nil {
		details = string(p.details)
	}
	err := q.QueryRowContext(ctx, l.core.Store.Security.Insert, p.ev.ID, string(p.ev.Type), p.userID, p.ev.IP, p.ev.UserAgent, details,
		string(p.ev.Severity), p.ev.RequiresReview, p.at, l.core.Store.NowArg()).Scan(&p.ev.OccurredAt)
	if err != nil {
		return Event{}, fmt.Errorf("securitylog: record event: %w", err)
	}
	if err := l.publish(ctx, q, p.ev); err != nil {
		return Event{}, err
	}
	return p.ev, nil
}

// publish enqueues ev on the bus when configured.
func (l *Log) publish(ctx context.Context, q outbox.Querier, ev Event) error {
	if !l.cfg.Publish {
		return nil
	}
	topic := TopicPrefix + strings.ToLower(string(ev.Type))
	if _, err := l.ob.Enqueue(ctx, q, topic, publishedEvent(ev, ev.OccurredAt), nil); err != nil {
		return fmt.Errorf("securitylog: publish event: %w", err)
	}
	return nil
}

// publishedEvent is the payload of a published security event.
func publishedEvent(ev Event, at time.Time) map[string]any {
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

func scanEvent(row store.Scanner) (Event, error) {
	var ev Event
	var user, reviewer uuid.NullUUID
	var reviewedAt sql.NullTime
	var details string
	if err := row.Scan(&ev.ID, &ev.Type, &user, &ev.IP, &ev.UserAgent, &details, &ev.Severity, &ev.RequiresReview,
		&reviewer, &reviewedAt, &ev.OccurredAt); err != nil {
		return Event{}, err
	}
	ev.UserID, ev.ReviewedBy, ev.ReviewedAt = user.UUID, reviewer.UUID, reviewedAt.Time
	if details != "" {
		ev.Details = json.RawMessage(details)
	}
	return ev, nil
}
