// Package keys holds the keys that seal outboxkit's secrets at rest
// (webhook signing secrets and endpoint credentials, see outbox.Config.Keys):
// the Provider interface, which a KMS or a Vault transit engine can
// implement, and a local implementation over 256-bit keys read from a
// string or an environment variable.
package keys

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"unicode/utf8"
)

// EnvDefault is the environment variable FromEnv reads by
// convention: OUTBOX_KEYS="id:base64key[,id:base64key...]", the first key
// encrypting.
const EnvDefault = "OUTBOX_KEYS"

// Provider holds the keys that seal subscription secrets at rest
// (outbox.Config.Keys). Secrets are sealed by envelope encryption: each
// subscription's secrets are encrypted with AES-256-GCM under a random data
// key, and the Provider wraps that data key under its primary key. The
// id of the wrapping key is stored beside the ciphertext, so keys can
// rotate: the primary key wraps, every key the provider still holds
// unwraps.
//
// Static, Parse and FromEnv make one from local keys; a KMS or
// Vault transit engine fits behind the same three methods (wrap = the
// service's encrypt with aad as encryption context, unwrap = its decrypt).
// A Provider is used concurrently.
type Provider interface {
	// PrimaryKeyID names the key WrapKey uses.
	PrimaryKeyID() string
	// WrapKey encrypts dataKey under the primary key, authenticating aad,
	// and returns that key's id with the result.
	WrapKey(ctx context.Context, dataKey, aad []byte) (kid string, wrapped []byte, err error)
	// UnwrapKey decrypts a data key wrapped under key kid with aad. An
	// unknown kid is an error wrapping ErrKeyNotFound; a wrapped key that
	// does not authenticate, one wrapping ErrDecrypt.
	UnwrapKey(ctx context.Context, kid string, wrapped, aad []byte) ([]byte, error)
}

// Key is one local key: an id (1-100 characters of [A-Za-z0-9._-], stored
// beside every ciphertext it seals) and 32 random bytes (AES-256).
type Key struct {
	ID     string
	Secret []byte
}

// LogValue keeps the key's bytes out of logs.
func (k Key) LogValue() slog.Value { return slog.StringValue("key " + k.ID) }

// Static returns a Provider over local keys: primary wraps new data
// keys, older ones still unwrap what they wrapped. Each key must be 32 bytes
// and ids must differ. The provider keeps AES ciphers, not copies of the
// key bytes.
func Static(primary Key, older ...Key) (Provider, error) {
	keys := map[string][]byte{}
	for _, k := range append([]Key{primary}, older...) {
		if !validKeyID(k.ID) {
			return nil, fmt.Errorf("%w: key id %q must be 1 to 100 characters of A-Z a-z 0-9 . _ -", ErrInvalidKey, k.ID)
		}
		if len(k.Secret) != 32 {
			return nil, fmt.Errorf("%w: key %q must be 32 bytes, got %d", ErrInvalidKey, k.ID, len(k.Secret))
		}
		if _, dup := keys[k.ID]; dup {
			return nil, fmt.Errorf("%w: key id %q given twice", ErrInvalidKey, k.ID)
		}
		keys[k.ID] = k.Secret
	}
	return newStatic(primary.ID, keys)
}

// Parse reads keys written as "id:base64key", comma-separated, the
// first one primary: "2025-06:q3J…=,2024-12:Zm9…=". The key is standard or
// URL-safe base64 of 32 bytes (`openssl rand -base64 32`, or NewSpec).
// Errors name the key id, never the key.
func Parse(spec string) (Provider, error) {
	var keys []Key
	for i, part := range strings.Split(spec, ",") {
		part = strings.TrimSpace(part)
		id, b64, ok := strings.Cut(part, ":")
		if !ok || id == "" || b64 == "" {
			return nil, fmt.Errorf("%w: key %d is not written id:base64key", ErrInvalidKey, i+1)
		}
		secret, err := decodeKey(b64)
		if err != nil {
			return nil, fmt.Errorf("%w: key %q is not base64", ErrInvalidKey, id)
		}
		keys = append(keys, Key{ID: id, Secret: secret})
	}
	return Static(keys[0], keys[1:]...)
}

// FromEnv is Parse of the environment variable name (EnvDefault
// by convention). An unset or empty variable is an ErrInvalidKey error.
func FromEnv(name string) (Provider, error) {
	spec := strings.TrimSpace(os.Getenv(name))
	if spec == "" {
		return nil, fmt.Errorf("%w: environment variable %s is not set", ErrInvalidKey, name)
	}
	kp, err := Parse(spec)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return kp, nil
}

// NewSpec returns a new random key in Parse' form, "id:base64key",
// for a key setup script. Keep it secret.
func NewSpec(id string) (string, error) {
	if !validKeyID(id) {
		return "", fmt.Errorf("%w: key id %q must be 1 to 100 characters of A-Z a-z 0-9 . _ -", ErrInvalidKey, id)
	}
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("keys: new key: %w", err)
	}
	return id + ":" + base64.StdEncoding.EncodeToString(b), nil
}

func decodeKey(s string) ([]byte, error) {
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.URLEncoding, base64.RawStdEncoding, base64.RawURLEncoding} {
		if b, err := enc.DecodeString(s); err == nil {
			return b, nil
		}
	}
	return nil, errors.New("not base64")
}

func validKeyID(id string) bool {
	if id == "" || utf8.RuneCountInString(id) > 100 {
		return false
	}
	for _, c := range id {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}
