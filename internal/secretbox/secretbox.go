// Package secretbox seals a subscription's secrets at rest: envelope
// encryption with AES-256-GCM. Each sealing draws a random 256-bit data
// key, encrypts every secret and secret header value under it, and has the
// application's key provider wrap the data key under its primary key. The
// additional data of every ciphertext names the subscription and the field,
// so a ciphertext moved to another subscription or field does not open.
//
// The root package exposes the key provider (outbox.KeyProvider, which has
// the method set of KeyProvider here) and the local implementation, Static.
package secretbox

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"

	"github.com/google/uuid"

	"github.com/outboxkit/outbox/internal/subconfig"
)

// Errors the root re-exports.
var (
	// ErrKeyNotFound reports a key id the key provider does not hold, or
	// no key provider at all.
	ErrKeyNotFound = errors.New("outbox: encryption key not found")
	// ErrDecrypt reports a ciphertext that does not authenticate: tampered
	// with, moved from another subscription or field, or made under a
	// different key of the same id.
	ErrDecrypt = errors.New("outbox: stored secrets do not decrypt")
)

// KeyProvider wraps and unwraps data keys (see outbox.KeyProvider).
type KeyProvider interface {
	PrimaryKeyID() string
	WrapKey(ctx context.Context, dataKey, aad []byte) (kid string, wrapped []byte, err error)
	UnwrapKey(ctx context.Context, kid string, wrapped, aad []byte) ([]byte, error)
}

// Material is a subscription's secrets in clear.
type Material struct {
	Secrets []string
	Headers map[string]string
}

// Empty reports whether m holds nothing.
func (m Material) Empty() bool { return len(m.Secrets) == 0 && len(m.Headers) == 0 }

// format is the version of the additional data; a future format changes it.
const format = "outboxkit/v1"

// dataKeyAAD binds a wrapped data key to its subscription and to the
// sealed block's manifest: how many secrets and which secret headers it
// holds. Dropping a secret or a header from the stored block then fails to
// open, like altering one does.
func dataKeyAAD(sub uuid.UUID, secrets int, headers []string) []byte {
	return []byte(format + "/dek/" + sub.String() + "/secrets=" + strconv.Itoa(secrets) +
		"/headers=" + strings.Join(headers, "\x00"))
}

// fieldAAD binds a value to its subscription and field ("secrets/0",
// "headers/Authorization").
func fieldAAD(sub uuid.UUID, field string) []byte {
	return []byte(format + "/" + sub.String() + "/" + field)
}

// Seal encrypts m for subscription sub under a fresh data key wrapped by
// kp's primary key.
func Seal(ctx context.Context, kp KeyProvider, sub uuid.UUID, m Material) (*subconfig.Sealed, error) {
	dek := make([]byte, 32)
	if _, err := rand.Read(dek); err != nil {
		return nil, fmt.Errorf("outbox: data key: %w", err)
	}
	kid, wrapped, err := kp.WrapKey(ctx, dek, dataKeyAAD(sub, len(m.Secrets), sortedKeys(m.Headers)))
	if err != nil {
		return nil, fmt.Errorf("wrap data key with key %q: %w", kp.PrimaryKeyID(), err)
	}
	aead, err := NewGCM(dek)
	if err != nil {
		return nil, err
	}
	s := &subconfig.Sealed{KeyID: kid, DataKey: base64.StdEncoding.EncodeToString(wrapped)}
	for i, v := range m.Secrets {
		ct, err := Encrypt(aead, []byte(v), fieldAAD(sub, fmt.Sprintf("secrets/%d", i)))
		if err != nil {
			return nil, err
		}
		s.Secrets = append(s.Secrets, ct)
	}
	for _, k := range sortedKeys(m.Headers) {
		ct, err := Encrypt(aead, []byte(m.Headers[k]), fieldAAD(sub, "headers/"+k))
		if err != nil {
			return nil, err
		}
		if s.Headers == nil {
			s.Headers = map[string]string{}
		}
		s.Headers[k] = ct
	}
	return s, nil
}

// Open decrypts s, sealed for subscription sub. kp may be nil: then the key
// is not found. A failure wraps ErrKeyNotFound or ErrDecrypt and names the
// key id, never a key or a secret.
func Open(ctx context.Context, kp KeyProvider, sub uuid.UUID, s *subconfig.Sealed) (Material, error) {
	var m Material
	if s == nil {
		return m, nil
	}
	aead, err := openDataKey(ctx, kp, sub, s)
	if err != nil {
		return m, err
	}
	for i, v := range s.Secrets {
		pt, err := Decrypt(aead, v, fieldAAD(sub, fmt.Sprintf("secrets/%d", i)))
		if err != nil {
			return Material{}, fmt.Errorf("%w: secret %d (key %q)", err, i, s.KeyID)
		}
		m.Secrets = append(m.Secrets, string(pt))
	}
	for _, k := range sortedKeys(s.Headers) {
		pt, err := Decrypt(aead, s.Headers[k], fieldAAD(sub, "headers/"+k))
		if err != nil {
			return Material{}, fmt.Errorf("%w: header %s (key %q)", err, k, s.KeyID)
		}
		if m.Headers == nil {
			m.Headers = map[string]string{}
		}
		m.Headers[k] = string(pt)
	}
	return m, nil
}

func openDataKey(ctx context.Context, kp KeyProvider, sub uuid.UUID, s *subconfig.Sealed) (cipher.AEAD, error) {
	if kp == nil {
		return nil, fmt.Errorf("%w: secrets are encrypted with key %q, and no key provider is configured", ErrKeyNotFound, s.KeyID)
	}
	wrapped, err := base64.StdEncoding.DecodeString(s.DataKey)
	if err != nil {
		return nil, fmt.Errorf("%w: data key is not base64 (key %q)", ErrDecrypt, s.KeyID)
	}
	dek, err := kp.UnwrapKey(ctx, s.KeyID, wrapped, dataKeyAAD(sub, len(s.Secrets), sortedKeys(s.Headers)))
	if err != nil {
		return nil, fmt.Errorf("unwrap data key with key %q: %w", s.KeyID, err)
	}
	if len(dek) != 32 {
		return nil, fmt.Errorf("%w: data key of %d bytes (key %q)", ErrDecrypt, len(dek), s.KeyID)
	}
	return NewGCM(dek)
}

// NewGCM returns AES-256-GCM under key (32 bytes).
func NewGCM(key []byte) (cipher.AEAD, error) {
	if len(key) != 32 {
		return nil, fmt.Errorf("outbox: AES-256 needs a 32-byte key, got %d bytes", len(key))
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("outbox: %w", err)
	}
	return cipher.NewGCM(block)
}

// Encrypt seals pt with a random nonce: base64 of nonce, ciphertext, tag.
func Encrypt(aead cipher.AEAD, pt, aad []byte) (string, error) {
	out, err := EncryptBytes(aead, pt, aad)
	if err != nil {
		return "", err
	}
	return base64.StdEncoding.EncodeToString(out), nil
}

// EncryptBytes seals pt with a random nonce: nonce, ciphertext, tag.
func EncryptBytes(aead cipher.AEAD, pt, aad []byte) ([]byte, error) {
	nonce := make([]byte, aead.NonceSize(), aead.NonceSize()+len(pt)+aead.Overhead())
	if _, err := rand.Read(nonce); err != nil {
		return nil, fmt.Errorf("outbox: nonce: %w", err)
	}
	return aead.Seal(nonce, nonce, pt, aad), nil
}

// Decrypt opens a value made by Encrypt; a failure is ErrDecrypt.
func Decrypt(aead cipher.AEAD, b64 string, aad []byte) ([]byte, error) {
	ct, err := base64.StdEncoding.DecodeString(b64)
	if err != nil {
		return nil, fmt.Errorf("%w: not base64", ErrDecrypt)
	}
	return DecryptBytes(aead, ct, aad)
}

// DecryptBytes opens a value made by EncryptBytes; a failure is ErrDecrypt.
func DecryptBytes(aead cipher.AEAD, ct, aad []byte) ([]byte, error) {
	if len(ct) < aead.NonceSize()+aead.Overhead() {
		return nil, fmt.Errorf("%w: ciphertext too short", ErrDecrypt)
	}
	pt, err := aead.Open(nil, ct[:aead.NonceSize()], ct[aead.NonceSize():], aad)
	if err != nil {
		return nil, fmt.Errorf("%w: authentication failed", ErrDecrypt)
	}
	return pt, nil
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// Static is a KeyProvider over local 256-bit keys: the first encrypts,
// every one decrypts. It wraps a data key with AES-256-GCM under the key.
type Static struct {
	primary string
	keys    map[string]cipher.AEAD
}

// NewStatic returns the provider of keys (id → 32-byte key); primary names
// the one that encrypts. The key bytes are not kept beyond their ciphers.
func NewStatic(primary string, keys map[string][]byte) (*Static, error) {
	s := &Static{primary: primary, keys: map[string]cipher.AEAD{}}
	for id, k := range keys {
		aead, err := NewGCM(k)
		if err != nil {
			return nil, fmt.Errorf("key %q: %w", id, err)
		}
		s.keys[id] = aead
	}
	if _, ok := s.keys[primary]; !ok {
		return nil, fmt.Errorf("primary key %q is not among the keys", primary)
	}
	return s, nil
}

// PrimaryKeyID names the key that encrypts.
func (s *Static) PrimaryKeyID() string { return s.primary }

// KeyIDs lists the ids of the keys held, sorted.
func (s *Static) KeyIDs() []string {
	ids := make([]string, 0, len(s.keys))
	for id := range s.keys {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	return ids
}

// WrapKey encrypts dataKey under the primary key.
func (s *Static) WrapKey(_ context.Context, dataKey, aad []byte) (string, []byte, error) {
	out, err := EncryptBytes(s.keys[s.primary], dataKey, aad)
	return s.primary, out, err
}

// UnwrapKey decrypts a data key wrapped under key kid.
func (s *Static) UnwrapKey(_ context.Context, kid string, wrapped, aad []byte) ([]byte, error) {
	aead, ok := s.keys[kid]
	if !ok {
		return nil, fmt.Errorf("%w: no key %q among the configured keys", ErrKeyNotFound, kid)
	}
	return DecryptBytes(aead, wrapped, aad)
}
