package outbox

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"

	"github.com/google/uuid"

	"github.com/outboxkit/outbox/internal/secretbox"
	"github.com/outboxkit/outbox/keys"
	"github.com/outboxkit/outbox/subconfig"
)

// rotateBatchSize is how many subscription ids RotateSubscriptionSecrets
// reads per page; each subscription is then re-sealed in a transaction of
// its own.
const rotateBatchSize = 100

// SubscriptionSecrets are a subscription's secrets in clear, as
// GetSubscriptionSecrets returns them.
type SubscriptionSecrets struct {
	// Secrets are the webhook signing secrets ("whsec_…").
	Secrets []string
	// Headers are the values of the secret headers, by name.
	Headers map[string]string
}

// LogValue keeps the secrets out of logs.
func (s SubscriptionSecrets) LogValue() slog.Value {
	return slog.GroupValue(slog.Int("secrets", len(s.Secrets)), slog.Int("headers", len(s.Headers)))
}

// GetSubscriptionSecrets returns the secrets of the subscription called
// name in clear: its signing secrets and secret header values, decrypted.
// GetSubscription and ListSubscriptions never return them in clear. A
// failure to decrypt is a *SecretsError wrapping keys.ErrKeyNotFound or
// keys.ErrDecrypt.
func (o *Outbox) GetSubscriptionSecrets(ctx context.Context, name string) (SubscriptionSecrets, error) {
	s, err := o.scanSubscription(o.db.QueryRowContext(ctx, o.st.Subscription.Get, name), "get subscription secrets "+name)
	if err != nil {
		return SubscriptionSecrets{}, err
	}
	m, err := o.openSecrets(ctx, s.ID, s.Name, s.Config)
	if err != nil {
		return SubscriptionSecrets{}, err
	}
	return SubscriptionSecrets{Secrets: m.Secrets, Headers: m.Headers}, nil
}

// RotationResult counts what RotateSubscriptionSecrets did.
type RotationResult struct {
	// Sealed counts subscriptions whose secrets were stored in clear and
	// are now encrypted.
	Sealed int
	// Rotated counts subscriptions re-encrypted under the primary key.
	Rotated int
	// Current counts subscriptions already under the primary key, or
	// without secrets.
	Current int
	// Failed names the subscriptions whose secrets could not be read; the
	// returned error says why for each.
	Failed []string
}

// RotateSubscriptionSecrets re-encrypts the secrets of every subscription
// not sealed under the keys.Provider's primary key: those stored in clear
// (written before a key was configured, or under AllowPlaintextSecrets) and
// those sealed under an older key. Run it after adding a key (as primary),
// then remove the old key once it returns without error.
//
// Each subscription is re-sealed in a short transaction of its own, so
// dispatchers keep delivering throughout (a dispatcher holding the previous
// form reads the new one when the old key is gone); running it from
// several processes at once is safe. A subscription whose secrets do not
// open is left as it is and named in Failed, and the error joins one
// *SecretsError per such subscription; the others are rotated all the same.
// Without Config.Keys it returns ErrKeyRequired.
func (o *Outbox) RotateSubscriptionSecrets(ctx context.Context) (RotationResult, error) {
	if o.keys == nil {
		return RotationResult{}, fmt.Errorf("%w: nothing to rotate to", ErrKeyRequired)
	}
	return o.reseal(ctx, false)
}

// reseal is RotateSubscriptionSecrets; with sealOnly it seals only the
// subscriptions whose secrets are stored in clear and leaves sealed ones as
// they are, locking no row that holds nothing in clear (Migrate's pass).
func (o *Outbox) reseal(ctx context.Context, sealOnly bool) (RotationResult, error) {
	var res RotationResult
	if err := o.allow(ctx, nil, "rotate subscription secrets"); err != nil {
		return res, err
	}
	var errs []error
	after := uuid.Nil
	for {
		ids, err := o.subscriptionIDsAfter(ctx, after)
		if err != nil {
			return res, errors.Join(append(errs, err)...)
		}
		if len(ids) == 0 {
			break
		}
		for _, id := range ids {
			if sealOnly {
				clear, err := o.holdsClearSecrets(ctx, id)
				if err != nil {
					return res, errors.Join(append(errs, err)...)
				}
				if !clear {
					res.Current++
					continue
				}
			}
			name, outcome, err := o.rotateOne(ctx, id)
			switch {
			case err != nil && ctx.Err() != nil:
				return res, errors.Join(append(errs, err)...)
			case err != nil:
				var se *SecretsError
				if !errors.As(err, &se) {
					return res, errors.Join(append(errs, err)...)
				}
				res.Failed = append(res.Failed, name)
				errs = append(errs, err)
			case outcome == rotSealed:
				res.Sealed++
			case outcome == rotRotated:
				res.Rotated++
			case outcome == rotCurrent:
				res.Current++
			}
		}
		after = ids[len(ids)-1]
	}
	if res.Sealed+res.Rotated > 0 || len(res.Failed) > 0 {
		o.log.InfoContext(ctx, "subscription secrets rotated", slog.String("primary_kid", o.keys.PrimaryKeyID()),
			slog.Int("sealed", res.Sealed), slog.Int("rotated", res.Rotated), slog.Int("failed", len(res.Failed)))
	}
	return res, errors.Join(errs...)
}

type rotationOutcome int

const (
	rotCurrent rotationOutcome = iota // already sealed under the primary key, or no secrets (or deleted)
	rotSealed                         // clear secrets sealed
	rotRotated                        // re-sealed under the primary key
)

func (o *Outbox) subscriptionIDsAfter(ctx context.Context, after uuid.UUID) ([]uuid.UUID, error) {
	rows, err := o.db.QueryContext(ctx, o.st.Subscription.IDsAfter, after, rotateBatchSize)
	if err != nil {
		return nil, fmt.Errorf("outbox: rotate subscription secrets: %w", err)
	}
	defer rows.Close()
	var ids []uuid.UUID
	for rows.Next() {
		var id uuid.UUID
		if err := rows.Scan(&id); err != nil {
			return nil, fmt.Errorf("outbox: rotate subscription secrets: %w", err)
		}
		ids = append(ids, id)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("outbox: rotate subscription secrets: %w", err)
	}
	return ids, nil
}

// holdsClearSecrets reports whether subscription id stores secrets in
// clear, reading its config without locking the row.
func (o *Outbox) holdsClearSecrets(ctx context.Context, id uuid.UUID) (bool, error) {
	var name, raw string
	if err := o.db.QueryRowContext(ctx, o.st.Subscription.ConfigByID, id).Scan(&name, &raw); err != nil {
		if errors.Is(err, sql.ErrNoRows) {
			return false, nil // deleted meanwhile
		}
		return false, fmt.Errorf("outbox: seal subscription secrets: %w", err)
	}
	var cfg subconfig.Config
	if raw == "" || json.Unmarshal([]byte(raw), &cfg) != nil {
		return false, nil // an unreadable config is RotateSubscriptionSecrets' to report
	}
	clearS, clearH := cfg.SecretMaterial()
	return len(clearS) > 0 || len(clearH) > 0, nil
}

// rotateOne re-seals subscription id under the primary key if it needs it,
// in a transaction that locks its row.
func (o *Outbox) rotateOne(ctx context.Context, id uuid.UUID) (name string, _ rotationOutcome, err error) {
	tx, err := o.db.BeginTx(ctx, nil)
	if err != nil {
		return "", 0, fmt.Errorf("outbox: rotate subscription secrets: %w", err)
	}
	defer func() {
		if rbErr := tx.Rollback(); rbErr != nil && !errors.Is(rbErr, sql.ErrTxDone) {
			err = errors.Join(err, rbErr)
		}
	}()
	var raw string
	if err := tx.QueryRowContext(ctx, o.st.Subscription.LockConfigByID, id).Scan(&name, &raw); err != nil {
		if errors.Is(err, sql.ErrNoRows) {
			return "", rotCurrent, nil // deleted meanwhile
		}
		return "", 0, fmt.Errorf("outbox: rotate subscription secrets: %w", err)
	}
	// Strictly: a key this release does not know (a newer release's stored
	// form) is refused, never dropped by writing the config back.
	cfg, err := subconfig.Parse([]byte(raw))
	if err != nil {
		return name, 0, &SecretsError{Subscription: name, Err: fmt.Errorf("%w: unreadable subscription_config: %v", keys.ErrDecrypt, err)}
	}
	clearS, clearH := cfg.SecretMaterial()
	hasClear := len(clearS) > 0 || len(clearH) > 0
	if !hasClear && (cfg.Encrypted == nil || cfg.Encrypted.KeyID == o.keys.PrimaryKeyID()) {
		return name, rotCurrent, nil
	}
	m, err := o.openSecrets(ctx, id, name, cfg)
	if err != nil {
		return name, 0, err
	}
	if _, err := o.storeSealed(ctx, tx, id, name, cfg, m); err != nil {
		return name, 0, err
	}
	if err := tx.Commit(); err != nil {
		return name, 0, fmt.Errorf("outbox: rotate subscription secrets: %w", err)
	}
	if cfg.Encrypted == nil {
		return name, rotSealed, nil
	}
	return name, rotRotated, nil
}

// openSecrets returns every secret of cfg in clear: the sealed ones,
// decrypted, overridden by those cfg holds in clear.
func (o *Outbox) openSecrets(ctx context.Context, id uuid.UUID, name string, cfg subconfig.Config) (secretbox.Material, error) {
	var m secretbox.Material
	if cfg.Encrypted != nil {
		var kp keys.Provider
		if o.keys != nil {
			kp = o.keys
		}
		var err error
		if m, err = secretbox.Open(ctx, kp, id, cfg.Encrypted); err != nil {
			return m, &SecretsError{Subscription: name, KeyID: cfg.Encrypted.KeyID, Err: err}
		}
	}
	clearS, clearH := cfg.SecretMaterial()
	if len(clearS) > 0 {
		m.Secrets = clearS
	}
	for k, v := range clearH {
		if m.Headers == nil {
			m.Headers = map[string]string{}
		}
		for old := range m.Headers {
			if strings.EqualFold(old, k) {
				delete(m.Headers, old)
			}
		}
		m.Headers[k] = v
	}
	return m, nil
}

// storeSealed seals m for subscription id and writes it as the secret
// part of its config (cfg without its secrets, plus the sealed block), in
// tx, returning the stored subscription.
func (o *Outbox) storeSealed(ctx context.Context, tx *sql.Tx, id uuid.UUID, name string, cfg subconfig.Config, m secretbox.Material) (Subscription, error) {
	part := struct {
		Headers   map[string]string `json:"headers,omitempty"`
		Encrypted *subconfig.Sealed `json:"encrypted,omitempty"`
	}{Headers: cfg.WithoutSecrets().Headers}
	if !m.Empty() {
		sealed, err := secretbox.Seal(ctx, o.keys, id, m)
		if err != nil {
			return Subscription{}, &SecretsError{Subscription: name, KeyID: o.keys.PrimaryKeyID(), Err: err}
		}
		part.Encrypted = sealed
	}
	b, err := json.Marshal(part)
	if err != nil {
		return Subscription{}, fmt.Errorf("outbox: seal secrets: %w", err)
	}
	return o.scanSubscription(tx.QueryRowContext(ctx, o.st.Subscription.SetSealed, id, string(b)), "seal secrets of "+name)
}

// writeConfig writes a subscription's config in a transaction: first runs
// write (a statement returning the subscription, given the config to
// store), then, with a key, seals the secrets for the subscription's id.
// Without a key, the config is stored as given: refused with
// ErrKeyRequired when it holds clear secrets, unless
// AllowPlaintextSecrets.
func (o *Outbox) writeConfig(ctx context.Context, op string, cfg subconfig.Config,
	write func(tx *sql.Tx, cfgJSON string) (Subscription, error)) (_ Subscription, err error) {
	if err := o.allow(ctx, nil, op); err != nil {
		return Subscription{}, err
	}
	clearS, clearH := cfg.SecretMaterial()
	hasClear := len(clearS) > 0 || len(clearH) > 0
	stored := cfg
	if o.keys == nil {
		if hasClear && !o.cfg.AllowPlaintextSecrets {
			return Subscription{}, fmt.Errorf("%w: %s: the config holds %d secrets and %d secret headers; configure Config.Keys (docs/security.md) or set Config.AllowPlaintextSecrets",
				ErrKeyRequired, op, len(clearS), len(clearH))
		}
		if hasClear && cfg.Encrypted != nil {
			return Subscription{}, fmt.Errorf("%w: %s: clear secrets cannot join sealed ones without the key %q", keys.ErrKeyNotFound, op, cfg.Encrypted.KeyID)
		}
	} else {
		stored = cfg.WithoutSecrets()
	}
	b, err := json.Marshal(stored)
	if err != nil {
		return Subscription{}, fmt.Errorf("outbox: %s: %w", op, err)
	}
	tx, err := o.db.BeginTx(ctx, nil)
	if err != nil {
		return Subscription{}, fmt.Errorf("outbox: %s: %w", op, err)
	}
	defer func() {
		if rbErr := tx.Rollback(); rbErr != nil && !errors.Is(rbErr, sql.ErrTxDone) {
			err = errors.Join(err, rbErr)
		}
	}()
	s, err := write(tx, string(b))
	if err != nil {
		return Subscription{}, err
	}
	if o.keys != nil && (hasClear || cfg.Encrypted != nil) {
		m, err := o.openSecrets(ctx, s.ID, s.Name, cfg)
		if err != nil {
			return Subscription{}, err
		}
		if s, err = o.storeSealed(ctx, tx, s.ID, s.Name, cfg, m); err != nil {
			return Subscription{}, err
		}
	}
	if err := tx.Commit(); err != nil {
		return Subscription{}, fmt.Errorf("outbox: %s: %w", op, err)
	}
	return s, nil
}

// hideSecrets makes s fit to return from GetSubscription and the like:
// with a key, secrets still stored in clear (written before the key was
// configured) are returned sealed, as they will be stored, so that a
// config read and written back keeps them. Without a key, the config is
// returned as stored.
func (o *Outbox) hideSecrets(ctx context.Context, s Subscription) (Subscription, error) {
	if o.keys == nil {
		return s, nil
	}
	clearS, clearH := s.Config.SecretMaterial()
	if len(clearS) == 0 && len(clearH) == 0 {
		return s, nil
	}
	m, err := o.openSecrets(ctx, s.ID, s.Name, s.Config)
	if err != nil {
		return Subscription{}, err
	}
	sealed, err := secretbox.Seal(ctx, o.keys, s.ID, m)
	if err != nil {
		return Subscription{}, &SecretsError{Subscription: s.Name, KeyID: o.keys.PrimaryKeyID(), Err: err}
	}
	s.Config = s.Config.WithoutSecrets()
	s.Config.Encrypted = sealed
	return s, nil
}

// warnPlaintext logs, once per handle, that secrets are not encrypted at
// rest.
func (o *Outbox) warnPlaintext(ctx context.Context, why string) {
	o.plaintextWarn.Do(func() {
		o.log.WarnContext(ctx, "webhook secrets are not encrypted at rest: "+why+" (see docs/security.md)")
	})
}
