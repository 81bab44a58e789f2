package outbox

import (
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

	"github.com/outboxkit/outbox/internal/jsontext"
	"github.com/outboxkit/outbox/internal/store"
	"github.com/outboxkit/outbox/internal/webhooksend"
	"github.com/outboxkit/outbox/subconfig"
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
	Config         subconfig.Config
	CreatedAt      time.Time
	UpdatedAt      time.Time
}

// LogValue logs the subscription without its webhook URL (whose query may
// carry a token) and with its config's LogValue, which shows no secret.
func (s Subscription) LogValue() slog.Value {
	return slog.GroupValue(slog.String("id", s.ID.String()), slog.String("name", s.Name),
		slog.String("topic_pattern", s.TopicPattern), slog.Bool("webhook", s.WebhookURL != ""),
		slog.String("callback_method", s.CallbackMethod), slog.Bool("active", s.Active), slog.Any("config", s.Config))
}

// checkSubscriptionConfig validates a config given to Subscribe or
// UpdateSubscriptionConfig.
func checkSubscriptionConfig(c subconfig.Config) error { return configError(c.Validate()) }

// configError turns subconfig's field error into an ErrInvalidSubscription
// *ValidationError.
func configError(err error) error {
	var fe *subconfig.FieldError
	if errors.As(err, &fe) {
		return invalid(ErrInvalidSubscription, fe.Field, "%s", fe.Reason)
	}
	return err
}

// Subscribe creates the subscription, or updates the one with the same Name
// (pattern, target and config; its active state stays as it is). New
// subscriptions start active. It returns the stored subscription.
//
// With Config.Keys, the config's secrets (Secrets, and the values of secret
// headers: see SecretHeader) are sealed before they are stored, bound to
// the subscription; Encrypted from a GetSubscription of the same
// subscription keeps its sealed secrets (see UpdateSubscriptionConfig).
// Without Keys, a config with secrets is refused with ErrKeyRequired
// unless Config.AllowPlaintextSecrets.
func (o *Outbox) Subscribe(ctx context.Context, s Subscription) (Subscription, error) {
	if err := s.validate(); err != nil {
		return Subscription{}, err
	}
	if s.WebhookURL != "" {
		if err := webhooksend.CheckTarget(ctx, s.WebhookURL, o.cfg.WebhookAllowedNetworks); err != nil {
			return Subscription{}, invalid(ErrInvalidSubscription, "webhook_url", "%v", err)
		}
	}
	out, err := o.writeConfig(ctx, "subscribe", s.Config, func(tx *sql.Tx, cfg string) (Subscription, error) {
		row := tx.QueryRowContext(ctx, o.st.Subscription.Upsert, s.Name, s.TopicPattern, s.WebhookURL, s.CallbackMethod, cfg, o.nowArg())
		return o.scanSubscription(row, "subscribe")
	})
	if err != nil {
		return Subscription{}, err
	}
	return o.hideSecrets(ctx, out)
}

// GetSubscription returns the subscription called name, or
// ErrSubscriptionNotFound. With Config.Keys, its secrets are not in clear:
// Config.Encrypted holds them sealed (GetSubscriptionSecrets decrypts), and
// writing the config back keeps them.
func (o *Outbox) GetSubscription(ctx context.Context, name string) (Subscription, error) {
	s, err := o.scanSubscription(o.db.QueryRowContext(ctx, o.st.Subscription.Get, name), "get subscription "+name)
	if err != nil {
		return Subscription{}, err
	}
	return o.hideSecrets(ctx, s)
}

// ListSubscriptions lists every subscription, by name, their secrets not
// in clear (as GetSubscription).
func (o *Outbox) ListSubscriptions(ctx context.Context) ([]Subscription, error) {
	rows, err := o.db.QueryContext(ctx, o.st.Subscription.List)
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
		if s, err = o.hideSecrets(ctx, s); err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("outbox: list subscriptions: %w", err)
	}
	return out, nil
}

// PauseSubscription stops a subscription: new events no longer fan out to it and its
// PENDING rows wait (no dispatcher claims them) until Resume.
func (o *Outbox) PauseSubscription(ctx context.Context, name string) (Subscription, error) {
	return o.setActive(ctx, name, false)
}

// ResumeSubscription re-activates a paused subscription; its waiting rows flow again.
func (o *Outbox) ResumeSubscription(ctx context.Context, name string) (Subscription, error) {
	return o.setActive(ctx, name, true)
}

func (o *Outbox) setActive(ctx context.Context, name string, active bool) (Subscription, error) {
	s, err := o.scanSubscription(o.db.QueryRowContext(ctx, o.st.Subscription.SetActive, name, active, o.nowArg()), "set active "+name)
	if err != nil {
		return Subscription{}, err
	}
	return o.hideSecrets(ctx, s)
}

// UpdateSubscriptionConfig replaces the subscription's config. It applies
// to rows claimed from then on (max_retries only to rows enqueued from then
// on).
//
// Secrets: cfg.Encrypted, as GetSubscription returned it, keeps the sealed
// secrets; secrets and secret header values given in clear replace theirs
// (all of Secrets, or one header). Without Encrypted, the secrets are
// those cfg holds in clear. With Config.Keys they are sealed before they
// are stored.
func (o *Outbox) UpdateSubscriptionConfig(ctx context.Context, name string, cfg subconfig.Config) (Subscription, error) {
	if err := checkSubscriptionConfig(cfg); err != nil {
		return Subscription{}, err
	}
	s, err := o.writeConfig(ctx, "update config "+name, cfg, func(tx *sql.Tx, b string) (Subscription, error) {
		return o.scanSubscription(tx.QueryRowContext(ctx, o.st.Subscription.SetConfig, name, b, o.nowArg()), "update config "+name)
	})
	if err != nil {
		return Subscription{}, err
	}
	return o.hideSecrets(ctx, s)
}

// DeleteOptions tune DeleteSubscription.
type DeleteOptions struct {
	// DiscardUndelivered lets DeleteSubscription go ahead when the subscription still
	// has PENDING or PROCESSING rows: those rows become FAILED with a reason
	// (they are kept, not deleted).
	DiscardUndelivered bool
}

// DeleteSubscription removes the subscription. It is refused with ErrSubscriptionBusy
// while the subscription has PENDING or PROCESSING rows, unless
// opts.DiscardUndelivered is set. opts may be nil. Rows of a deleted
// subscription keep their history with subscription_id set to NULL.
//
// DeleteSubscription first pauses the subscription, then waits (at most 30 seconds, or
// until ctx ends) for the transactions that may have fanned an event out to
// it before the pause to end, so that their rows are counted too rather than
// left behind for a subscription that no longer exists. A refused or
// timed-out Delete leaves the subscription paused.
func (o *Outbox) DeleteSubscription(ctx context.Context, name string, opts *DeleteOptions) (err error) {
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
	if err := tx.QueryRowContext(ctx, o.st.Subscription.LockForDelete, name).Scan(&id, &undelivered); err != nil {
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("%w: %s", ErrSubscriptionNotFound, name)
		}
		return fmt.Errorf("outbox: delete subscription: %w", err)
	}
	if undelivered > 0 {
		if !opts.DiscardUndelivered {
			return fmt.Errorf("%w: %s has %d PENDING or PROCESSING rows (pass DiscardUndelivered to fail them)", ErrSubscriptionBusy, name, undelivered)
		}
		if _, err := tx.ExecContext(ctx, o.st.Subscription.FailUndelivered, id, "subscription "+name+" deleted", o.nowArg()); err != nil {
			return fmt.Errorf("outbox: delete subscription: %w", err)
		}
	}
	if _, err := tx.ExecContext(ctx, o.st.Subscription.DetachRows, id); err != nil {
		return fmt.Errorf("outbox: delete subscription: %w", err)
	}
	if _, err := tx.ExecContext(ctx, o.st.Subscription.Delete, id); err != nil {
		return fmt.Errorf("outbox: delete subscription: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("outbox: delete subscription: %w", err)
	}
	return nil
}

func (o *Outbox) scanSubscription(row store.Scanner, op string) (Subscription, error) {
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
	if !utf8.ValidString(s.Name) || jsontext.HasControl(s.Name) {
		return f("subscriber_name", "must be valid UTF-8 without control characters")
	}
	if why := checkTopic(s.TopicPattern, true); why != "" {
		return &ValidationError{Field: "topic_pattern", Reason: why, Err: ErrInvalidPattern}
	}
	if (s.WebhookURL == "") == (s.CallbackMethod == "") {
		return f("webhook_url", "exactly one of webhook_url and callback_method must be set")
	}
	if s.CallbackMethod != "" {
		if utf8.RuneCountInString(s.CallbackMethod) > 100 || !utf8.ValidString(s.CallbackMethod) || jsontext.HasControl(s.CallbackMethod) {
			return f("callback_method", "must be 1 to 100 characters without control characters")
		}
	}
	if s.WebhookURL != "" {
		if err := checkWebhookURL(s.WebhookURL); err != nil {
			return err
		}
	}
	return checkSubscriptionConfig(s.Config)
}

// checkWebhookURL validates a webhook URL's form, and refuses literal IP
// hosts no receiver can have (see webhooksend.CheckLiteralAddr).
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
	if why := webhooksend.CheckLiteralAddr(u.Hostname()); why != "" {
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

// deleteWaitLimit bounds how long Delete waits for transactions that read
// the subscriptions before its pause (an Enqueue not yet committed) to end.
const deleteWaitLimit = 30 * time.Second

// waitForSubscriptionReaders waits until every other transaction that held
// a lock on event_subscription when it was called has ended: an Enqueue that
// read the subscription as active before Delete paused it commits its rows
// (or rolls back) first.
func (o *Outbox) waitForSubscriptionReaders(ctx context.Context, name string) error {
	var open pq.StringArray
	if err := o.db.QueryRowContext(ctx, o.st.Subscription.Readers).Scan(&open); err != nil {
		return fmt.Errorf("outbox: delete subscription: %w", err)
	}
	deadline := time.Now().Add(deleteWaitLimit)
	for wait := time.Millisecond; len(open) > 0; wait = min(2*wait, 100*time.Millisecond) {
		var n int
		if err := o.db.QueryRowContext(ctx, o.st.Subscription.TransactionsOpen, open).Scan(&n); err != nil {
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
