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
	"github.com/outboxkit/outbox/internal/subconfig"
)

// openedSecrets is a subscription's sealed block, by fingerprint, and its
// secrets in clear.
type openedSecrets struct {
	fp [sha256.Size]byte
	m  secretbox.Material
}

// withSecrets returns the row's config with its sealed secrets decrypted
// into Secrets and Headers. Decrypted secrets are cached per subscription
// until its sealed block changes (the cache never outlives the sender).
// When the row's config does not open for want of its key, the
// subscription's current config is read again: the engine caches configs
// per subscription and updated_at, and a rotation re-seals without
// changing updated_at.
func (s *Sender) withSecrets(ctx context.Context, row *dispatch.Row) (subconfig.Config, error) {
	cfg := row.Config
	if cfg.Encrypted == nil {
		return cfg, nil
	}
	id := row.Delivery.SubscriptionID
	m, err := s.openCached(ctx, id, cfg.Encrypted)
	if err != nil && errors.Is(err, secretbox.ErrKeyNotFound) && s.cfg.Store != nil {
		if cur, rerr := s.currentSealed(ctx, id); rerr == nil && cur != nil && fingerprint(cur) != fingerprint(cfg.Encrypted) {
			m, err = s.openCached(ctx, id, cur)
		}
	}
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
	fp := fingerprint(sealed)
	s.secMu.Lock()
	c, ok := s.secrets[id]
	s.secMu.Unlock()
	if ok && c.fp == fp {
		return c.m, nil
	}
	m, err := secretbox.Open(ctx, s.cfg.Keys, id, sealed)
	if err != nil {
		return m, err
	}
	s.secMu.Lock()
	s.secrets[id] = openedSecrets{fp: fp, m: m}
	s.secMu.Unlock()
	return m, nil
}

// currentSealed reads subscription id's sealed block as it is stored now.
func (s *Sender) currentSealed(ctx context.Context, id uuid.UUID) (*subconfig.Sealed, error) {
	st := s.cfg.Store
	var name, raw string
	if err := st.DB.QueryRowContext(ctx, st.Subscription.ConfigByID, id).Scan(&name, &raw); err != nil {
		return nil, err
	}
	var cfg subconfig.Config
	if raw != "" {
		if err := json.Unmarshal([]byte(raw), &cfg); err != nil {
			return nil, err
		}
	}
	return cfg.Encrypted, nil
}

// fingerprint identifies a sealed block (JSON sorts map keys).
func fingerprint(sealed *subconfig.Sealed) [sha256.Size]byte {
	b, _ := json.Marshal(sealed)
	return sha256.Sum256(b)
}
