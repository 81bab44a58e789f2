package outbox

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"
	"github.com/lib/pq"

	"github.com/outboxkit/outbox/internal/store"
)

// Subscription says who receives the events whose topic matches TopicPattern: a
// Go handler registered under CallbackMethod, or an HTTP endpoint at
// WebhookURL. Exactly one of the two is set.
type Subscription struct {
	ID             uuid.UUID
	Name           string // subscriber_name: unique, 1-100 characters
	TopicPattern   string // topic_pattern, see ValidPattern
	WebhookURL     string // http or https, at most 500 characters
	CallbackMethod string // the name a Dispatcher registered a handler under
	Active         bool   // is_active: paused subscriptions get no new rows and their rows wait
	Config         SubscriptionConfig
	CreatedAt      time.Time
	UpdatedAt      time.Time
}

// SubscriptionConfig holds per-subscription delivery settings, stored as
// JSON in subscription_config. Zero fields mean the dispatcher's defaults.
// Unknown keys are rejected.
type SubscriptionConfig struct {
	// MaxRetries is the number of retries after the first attempt given to
	// new rows (default 3 for handlers, 9 for webhooks).
	MaxRetries *int `json:"max_retries,omitempty"`
	// BackoffInitial, BackoffMax and BackoffMultiplier shape the exponential
	// backoff between attempts (defaults in DispatcherConfig).
	BackoffInitial    Duration `json:"backoff_initial,omitempty"`
	BackoffMax        Duration `json:"backoff_max,omitempty"`
	BackoffMultiplier float64  `json:"backoff_multiplier,omitempty"`
	// RetrySchedule, when set, replaces exponential backoff: the delay before
	// retry n is RetrySchedule[n-1] (the last entry repeats), with ±20 % jitter.
	RetrySchedule []Duration `json:"retry_schedule,omitempty"`
	// Timeout bounds one attempt (a handler call or an HTTP request).
	Timeout Duration `json:"timeout,omitempty"`
	// Secrets sign webhook deliveries (Standard Webhooks, "whsec_" + base64).
	// Several secrets produce several signatures, for rotation.
	Secrets []string `json:"secrets,omitempty"`
	// Headers are extra HTTP headers sent with every webhook delivery.
	Headers map[string]string `json:"headers,omitempty"`
	// SkipFailed lets rows with an ordering key move on past a FAILED row of
	// the same key (by default a FAILED row blocks its key).
	SkipFailed bool `json:"skip_failed,omitempty"`
}

// LogValue keeps secrets out of logs.
func (c SubscriptionConfig) LogValue() slog.Value {
	attrs := []slog.Attr{}
	if c.MaxRetries != nil {
		attrs = append(attrs, slog.Int("max_retries", *c.MaxRetries))
	}
	if c.Timeout > 0 {
		attrs = append(attrs, slog.Duration("timeout", time.Duration(c.Timeout)))
	}
	attrs = append(attrs, slog.Int("secrets", len(c.Secrets)), slog.Int("headers", len(c.Headers)))
	return slog.GroupValue(attrs...)
}

// Duration is a time.Duration that reads and writes JSON as a Go duration
// string ("1.5s", "10m"); a JSON number is taken as nanoseconds.
type Duration time.Duration

// MarshalJSON writes the duration as a string such as "1m30s".
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(time.Duration(d).String()) }

// UnmarshalJSON reads a duration string or a number of nanoseconds.
func (d *Duration) UnmarshalJSON(b []byte) error {
	if len(b) > 0 && b[0] == '"' {
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
		v, err := time.ParseDuration(s)
		if err != nil {
			return err
		}
		*d = Duration(v)
		return nil
	}
	var n int64
	if err := json.Unmarshal(b, &n); err != nil {
		return fmt.Errorf("duration must be a string such as \"5s\": %w", err)
	}
	*d = Duration(n)
	return nil
}

// ParseSubscriptionConfig decodes subscription_config JSON strictly: an
// unknown key or a value out of range is a *ValidationError naming it.
func ParseSubscriptionConfig(data []byte) (SubscriptionConfig, error) {
	var c SubscriptionConfig
	if len(bytes.TrimSpace(data)) == 0 || string(bytes.TrimSpace(data)) == "null" {
		return c, nil
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&c); err != nil {
		return SubscriptionConfig{}, invalid(ErrInvalidSubscription, "subscription_config", "%v", err)
	}
	if dec.More() {
		return SubscriptionConfig{}, invalid(ErrInvalidSubscription, "subscription_config", "trailing data after the JSON object")
	}
	return c, c.validate()
}

func (c SubscriptionConfig) validate() error {
	field := func(name, format string, args ...any) error {
		return invalid(ErrInvalidSubscription, "subscription_config."+name, format, args...)
	}
	if c.MaxRetries != nil && (*c.MaxRetries < 0 || *c.MaxRetries > MaxRetriesLimit) {
		return field("max_retries", "must be between 0 and %d, got %d", MaxRetriesLimit, *c.MaxRetries)
	}
	if c.BackoffInitial < 0 || c.BackoffMax < 0 || c.Timeout < 0 {
		return field("backoff_initial", "durations must not be negative")
	}
	if c.BackoffMax > 0 && c.BackoffInitial > c.BackoffMax {
		return field("backoff_max", "must not be below backoff_initial")
	}
	if c.BackoffMultiplier != 0 && (c.BackoffMultiplier < 1 || c.BackoffMultiplier > 100) {
		return field("backoff_multiplier", "must be between 1 and 100, got %g", c.BackoffMultiplier)
	}
	if len(c.RetrySchedule) > 100 {
		return field("retry_schedule", "has more than 100 entries")
	}
	for _, d := range c.RetrySchedule {
		if d < 0 {
			return field("retry_schedule", "durations must not be negative")
		}
	}
	for _, s := range c.Secrets {
		if _, err := decodeSecret(s); err != nil {
			return field("secrets", "%v", err)
		}
	}
	for k, v := range c.Headers {
		if !validHeaderName(k) {
			return field("headers", "%q is not a valid header name", k)
		}
		if !validHeaderValue(v) {
			return field("headers", "value of %q holds control characters", k)
		}
	}
	return nil
}

// Subscribe creates the subscription, or updates the one with the same Name
// (pattern, target and config; its active state stays as it is). New
// subscriptions start active. It returns the stored subscription.
func (o *Outbox) Subscribe(ctx context.Context, s Subscription) (Subscription, error) {
	if err := s.validate(); err != nil {
		return Subscription{}, err
	}
	if s.WebhookURL != "" {
		if err := checkWebhookTarget(ctx, s.WebhookURL, o.cfg.WebhookAllowedNetworks); err != nil {
			return Subscription{}, err
		}
	}
	cfg, err := json.Marshal(s.Config)
	if err != nil {
		return Subscription{}, fmt.Errorf("outbox: subscribe: %w", err)
	}
	row := o.db.QueryRowContext(ctx, o.sub.upsert, s.Name, s.TopicPattern, s.WebhookURL, s.CallbackMethod, string(cfg), o.nowArg())
	return o.scanSubscription(row, "subscribe")
}

// Subscription returns the subscription called name, or ErrSubscriptionNotFound.
func (o *Outbox) Subscription(ctx context.Context, name string) (Subscription, error) {
	return o.scanSubscription(o.db.QueryRowContext(ctx, o.sub.get, name), "get subscription "+name)
}

// Subscriptions lists every subscription, by name.
func (o *Outbox) Subscriptions(ctx context.Context) ([]Subscription, error) {
	rows, err := o.db.QueryContext(ctx, o.sub.list)
	if err != nil {
		return nil, fmt.Errorf("outbox: list subscriptions: %w", err)
	}
	defer rows.Close()
	var out []Subscription
	for rows.Next() {
		s, err := o.scanSubscription(rows, "list subscriptions")
		if err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("outbox: list subscriptions: %w", err)
	}
	return out, nil
}

// Pause stops a subscription: new events no longer fan out to it and its
// PENDING rows wait (no dispatcher claims them) until Resume.
func (o *Outbox) Pause(ctx context.Context, name string) (Subscription, error) {
	return o.setActive(ctx, name, false)
}

// Resume re-activates a paused subscription; its waiting rows flow again.
func (o *Outbox) Resume(ctx context.Context, name string) (Subscription, error) {
	return o.setActive(ctx, name, true)
}

func (o *Outbox) setActive(ctx context.Context, name string, active bool) (Subscription, error) {
	return o.scanSubscription(o.db.QueryRowContext(ctx, o.sub.setActive, name, active, o.nowArg()), "set active "+name)
}

// UpdateConfig replaces the subscription's config. It applies to rows
// claimed from then on (max_retries only to rows enqueued from then on).
func (o *Outbox) UpdateConfig(ctx context.Context, name string, cfg SubscriptionConfig) (Subscription, error) {
	if err := cfg.validate(); err != nil {
		return Subscription{}, err
	}
	b, err := json.Marshal(cfg)
	if err != nil {
		return Subscription{}, fmt.Errorf("outbox: update config: %w", err)
	}
	return o.scanSubscription(o.db.QueryRowContext(ctx, o.sub.setConfig, name, string(b), o.nowArg()), "update config "+name)
}

// DeleteOptions tune Delete.
type DeleteOptions struct {
	// DiscardUndelivered lets Delete go ahead when the subscription still
	// has PENDING or PROCESSING rows: those rows become FAILED with a reason
	// (they are kept, not deleted).
	DiscardUndelivered bool
}

// Delete removes the subscription. It is refused with ErrSubscriptionBusy
// while the subscription has PENDING or PROCESSING rows, unless
// opts.DiscardUndelivered is set. opts may be nil. Rows of a deleted
// subscription keep their history with subscription_id set to NULL.
//
// Delete first pauses the subscription, then waits (at most 30 seconds, or
// until ctx ends) for the transactions that may have fanned an event out to
// it before the pause to end, so that their rows are counted too rather than
// left behind for a subscription that no longer exists. A refused or
// timed-out Delete leaves the subscription paused.
func (o *Outbox) Delete(ctx context.Context, name string, opts *DeleteOptions) (err error) {
	if opts == nil {
		opts = &DeleteOptions{}
	}
	// Pause first, in its own transaction, so no new rows fan out to the
	// subscription while its rows are counted and failed.
	if _, err := o.setActive(ctx, name, false); err != nil {
		return err
	}
	if err := o.waitForSubscriptionReaders(ctx, name); err != nil {
		return err
	}
	tx, err := o.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("outbox: delete subscription: %w", err)
	}
	defer func() {
		if err != nil {
			if rbErr := tx.Rollback(); rbErr != nil && !errors.Is(rbErr, sql.ErrTxDone) {
				err = errors.Join(err, rbErr)
			}
		}
	}()
	var id uuid.UUID
	var undelivered int64
	if err := tx.QueryRowContext(ctx, o.sub.lockForDelete, name).Scan(&id, &undelivered); err != nil {
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("%w: %s", ErrSubscriptionNotFound, name)
		}
		return fmt.Errorf("outbox: delete subscription: %w", err)
	}
	if undelivered > 0 {
		if !opts.DiscardUndelivered {
			return fmt.Errorf("%w: %s has %d PENDING or PROCESSING rows (pass DiscardUndelivered to fail them)", ErrSubscriptionBusy, name, undelivered)
		}
		if _, err := tx.ExecContext(ctx, o.sub.failUndelivered, id, "subscription "+name+" deleted", o.nowArg()); err != nil {
			return fmt.Errorf("outbox: delete subscription: %w", err)
		}
	}
	if _, err := tx.ExecContext(ctx, o.sub.detachRows, id); err != nil {
		return fmt.Errorf("outbox: delete subscription: %w", err)
	}
	if _, err := tx.ExecContext(ctx, o.sub.delete, id); err != nil {
		return fmt.Errorf("outbox: delete subscription: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("outbox: delete subscription: %w", err)
	}
	return nil
}

type rowScanner interface{ Scan(dest ...any) error }

func (o *Outbox) scanSubscription(row rowScanner, op string) (Subscription, error) {
	var s Subscription
	var cfg string
	err := row.Scan(&s.ID, &s.Name, &s.TopicPattern, &s.WebhookURL, &s.CallbackMethod, &s.Active, &cfg, &s.CreatedAt, &s.UpdatedAt)
	if errors.Is(err, sql.ErrNoRows) {
		return Subscription{}, fmt.Errorf("%w: %s", ErrSubscriptionNotFound, op)
	}
	if err != nil {
		return Subscription{}, fmt.Errorf("outbox: %s: %w", op, err)
	}
	if cfg != "" {
		// Stored configs are read leniently: a key written by a newer
		// version must not make the subscription unreadable.
		if err := json.Unmarshal([]byte(cfg), &s.Config); err != nil {
			o.log.Warn("unreadable subscription_config", slog.String("subscription", s.Name), slog.Any("error", err))
		}
	}
	return s, nil
}

func (s Subscription) validate() error {
	f := func(field, format string, args ...any) error {
		return invalid(ErrInvalidSubscription, field, format, args...)
	}
	if s.Name == "" || utf8.RuneCountInString(s.Name) > 100 {
		return f("subscriber_name", "must be 1 to 100 characters")
	}
	if !utf8.ValidString(s.Name) || hasControl(s.Name) {
		return f("subscriber_name", "must be valid UTF-8 without control characters")
	}
	if why := checkTopic(s.TopicPattern, true); why != "" {
		return &ValidationError{Field: "topic_pattern", Reason: why, Err: ErrInvalidPattern}
	}
	if (s.WebhookURL == "") == (s.CallbackMethod == "") {
		return f("webhook_url", "exactly one of webhook_url and callback_method must be set")
	}
	if s.CallbackMethod != "" {
		if utf8.RuneCountInString(s.CallbackMethod) > 100 || !utf8.ValidString(s.CallbackMethod) || hasControl(s.CallbackMethod) {
			return f("callback_method", "must be 1 to 100 characters without control characters")
		}
	}
	if s.WebhookURL != "" {
		if err := checkWebhookURL(s.WebhookURL); err != nil {
			return err
		}
	}
	return s.Config.validate()
}

// checkWebhookURL validates a webhook URL's form, and refuses literal IP
// hosts no receiver can have (see checkWebhookLiteralAddr).
func checkWebhookURL(raw string) error {
	f := func(format string, args ...any) error {
		return invalid(ErrInvalidSubscription, "webhook_url", format, args...)
	}
	if len(raw) > 500 {
		return f("is longer than 500 characters")
	}
	u, err := url.Parse(raw)
	if err != nil {
		return f("does not parse: %v", err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return f("scheme must be http or https, got %q", u.Scheme)
	}
	if u.Hostname() == "" {
		return f("has no host")
	}
	if why := checkWebhookLiteralAddr(u.Hostname()); why != "" {
		return f("host %s %s: no webhook can be delivered there", u.Hostname(), why)
	}
	if u.User != nil {
		return f("must not carry credentials; use config headers")
	}
	if u.Fragment != "" {
		return f("must not have a fragment")
	}
	return nil
}

func hasControl(s string) bool {
	for _, r := range s {
		if r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) {
			return true
		}
	}
	return false
}

func validHeaderName(k string) bool {
	if k == "" {
		return false
	}
	for i := 0; i < len(k); i++ {
		c := k[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || bytes.IndexByte([]byte("!#$%&'*+-.^_`|~"), c) >= 0) {
			return false
		}
	}
	return true
}

func validHeaderValue(v string) bool {
	for i := 0; i < len(v); i++ {
		if c := v[i]; (c < 0x20 && c != '\t') || c == 0x7f {
			return false
		}
	}
	return true
}

// deleteWaitLimit bounds how long Delete waits for transactions that read
// the subscriptions before its pause (an Enqueue not yet committed) to end.
const deleteWaitLimit = 30 * time.Second

// waitForSubscriptionReaders waits until every other transaction that held
// a lock on event_subscription when it was called has ended: an Enqueue that
// read the subscription as active before Delete paused it commits its rows
// (or rolls back) first.
func (o *Outbox) waitForSubscriptionReaders(ctx context.Context, name string) error {
	var open pq.StringArray
	if err := o.db.QueryRowContext(ctx, o.sub.readers).Scan(&open); err != nil {
		return fmt.Errorf("outbox: delete subscription: %w", err)
	}
	deadline := time.Now().Add(deleteWaitLimit)
	for wait := time.Millisecond; len(open) > 0; wait = min(2*wait, 100*time.Millisecond) {
		var n int
		if err := o.db.QueryRowContext(ctx, o.sub.txOpen, open).Scan(&n); err != nil {
			return fmt.Errorf("outbox: delete subscription: %w", err)
		}
		if n == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%w: %s is paused, but %d transactions that may have enqueued to it are still open after %s",
				ErrSubscriptionBusy, name, n, deleteWaitLimit)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("outbox: delete subscription %s (paused): waiting for %d open transactions: %w", name, n, ctx.Err())
		case <-time.After(wait):
		}
	}
	return nil
}

type subscriptionSQL struct {
	upsert, get, list, setActive, setConfig, lockForDelete, failUndelivered, detachRows, delete string
	readers, txOpen                                                                             string
}

func newSubscriptionSQL(schema string) subscriptionSQL {
	s := subscriptionSQL{
		upsert: store.SubscriptionUpsert, get: store.SubscriptionGet, list: store.SubscriptionList,
		setActive: store.SubscriptionSetActive, setConfig: store.SubscriptionSetConfig,
		lockForDelete: store.SubscriptionLockForDelete, failUndelivered: store.SubscriptionFailUndelivered,
		detachRows: store.SubscriptionDetachRows, delete: store.SubscriptionDelete,
		readers: store.SubscriptionReaders, txOpen: store.TransactionsOpen,
	}
	store.RenderAll(schema, &s.upsert, &s.get, &s.list, &s.setActive, &s.setConfig, &s.lockForDelete, &s.failUndelivered, &s.detachRows, &s.delete,
		&s.readers)
	return s
}
