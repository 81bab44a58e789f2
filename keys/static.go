package keys

import (
	"context"
	"crypto/cipher"
	"errors"
	"fmt"

	"github.com/outboxkit/outbox/internal/aead"
)

// static is a Provider over local 256-bit keys: the primary wraps, every
// one unwraps. It wraps a data key with AES-256-GCM under the key and keeps
// ciphers, not the key bytes.
type static struct {
	primary string
	keys    map[string]cipher.AEAD
}

func newStatic(primary string, keys map[string][]byte) (*static, error) {
	s := &static{primary: primary, keys: map[string]cipher.AEAD{}}
	for id, k := range keys {
		a, err := aead.New(k)
		if err != nil {
			return nil, fmt.Errorf("%w: key %q: %v", ErrInvalidKey, id, err)
		}
		s.keys[id] = a
	}
	return s, nil
}

// PrimaryKeyID names the key that wraps.
func (s *static) PrimaryKeyID() string { return s.primary }

// WrapKey encrypts dataKey under the primary key.
func (s *static) WrapKey(_ context.Context, dataKey, aad []byte) (string, []byte, error) {
	out, err := aead.Seal(s.keys[s.primary], dataKey, aad)
	return s.primary, out, err
}

// UnwrapKey decrypts a data key wrapped under key kid.
func (s *static) UnwrapKey(_ context.Context, kid string, wrapped, aad []byte) ([]byte, error) {
	a, ok := s.keys[kid]
	if !ok {
		return nil, fmt.Errorf("%w: no key %q among the configured keys", ErrKeyNotFound, kid)
	}
	pt, err := aead.Open(a, wrapped, aad)
	if errors.Is(err, aead.ErrOpen) {
		return nil, fmt.Errorf("%w: wrapped data key (key %q): %v", ErrDecrypt, kid, err)
	}
	return pt, err
}
