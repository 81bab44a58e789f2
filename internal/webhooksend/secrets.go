package webhooksend

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"maps"

	"github.com/google/uuid"

	"github.com/outboxkit/outbox/internal/dispatch"
	"github.com/outboxkit/outbox/internal/secretbox"
	"github.com/outboxkit/outbox/subconfig"
)

// ErrSecretsInClear reports signing secrets or secret header values stored
// in clear in subscription_config of a handle that has keys: the row is not
// sent until they are sealed.
var ErrSecretsInClear = errors.New("secrets stored in clear although keys are configured; not sent")

// openedSecrets is a subscription's sealed block, by identity and
// fingerprint, and its secrets in clear.
type openedSecrets struct {
	sealed *subconfig.Sealed // the block last opened: the engine hands the same one while its config stands
	fp     [sha256.Size]byte
	m      secretbox.Material
}

// withSecrets returns the row's config with its sealed secrets decrypted
// into Secrets and Headers. Decrypted secrets are cached per subscription
// until its sealed block changes (the cache never outlives the sender);
// the engine re-reads a subscription's config whenever its stored text
// changes (a rotation included), so the row always carries the current
// block.
//
// When the handle has keys, secrets written in clear into
// subscription_config (by SQL, or by a process without keys) are refused:
// they would sign ahead of, or instead of, the sealed ones. The error
// wraps ErrSecretsInClear and says how to seal them.
func (s *Sender) withSecrets(ctx context.Context, row *dispatch.Row) (subconfig.Config, error) {
	cfg := row.Config
	if s.cfg.Keys != nil {
		if cs, ch := cfg.SecretMaterial(); len(cs) > 0 || len(ch) > 0 {
			return cfg, fmt.Errorf("outbox: webhook secrets of subscription %s: %w (%d secrets, %d secret headers): "+
				"run Migrate or RotateSubscriptionSecrets with the keys to seal them", row.Delivery.Subscription, ErrSecretsInClear, len(cs), len(ch))
		}
	}
	if cfg.Encrypted == nil {
		return cfg, nil
	}
	id := row.Delivery.SubscriptionID
	m, err := s.openCached(ctx, id, cfg.Encrypted)
	if err != nil {
		return cfg, fmt.Errorf("outbox: webhook secrets of subscription %s: %w", row.Delivery.Subscription, err)
	}
	cfg.Secrets = m.Secrets
	if len(m.Headers) > 0 {
		h := make(map[string]string, len(cfg.Headers)+len(m.Headers))
		maps.Copy(h, cfg.Headers)
		maps.Copy(h, m.Headers)
		cfg.Headers = h
	}
	cfg.Encrypted = nil
	return cfg, nil
}

func (s *Sender) openCached(ctx context.Context, id uuid.UUID, sealed *subconfig.Sealed) (secretbox.Material, error) {
	s.secMu.Lock()
	c, ok := s.secrets[id]
	s.secMu.Unlock()
	if ok && c.sealed == sealed {
		return c.m, nil // the common case: no hashing per delivery
	}
	fp := fingerprint(sealed)
	if ok && c.fp == fp {
		s.secMu.Lock()
		s.secrets[id] = openedSecrets{sealed: sealed, fp: fp, m: c.m}
		s.secMu.Unlock()
		return c.m, nil
	}
	m, err := secretbox.Open(ctx, s.cfg.Keys, id, sealed)
	if err != nil {
		return m, err
	}
	s.secMu.Lock()
	s.secrets[id] = openedSecrets{sealed: sealed, fp: fp, m: m}
	s.secMu.Unlock()
	return m, nil
}

// fingerprint identifies a sealed block (JSON sorts map keys).
func fingerprint(sealed *subconfig.Sealed) [sha256.Size]byte {
	b, _ := json.Marshal(sealed)
	return sha256.Sum256(b)
}
