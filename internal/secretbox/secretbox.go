// Package secretbox seals a subscription's secrets at rest: envelope
// encryption with AES-256-GCM. Each sealing draws a random 256-bit data
// key, encrypts every secret and secret header value under it, and has the
// application's key provider wrap the data key under its primary key. The
// additional data of every ciphertext names the subscription and the field,
// so a ciphertext moved to another subscription or field does not open.
//
// The key provider is package keys' Provider; its sentinels (keys.ErrKeyNotFound,
// keys.ErrDecrypt) are the errors of this package too.
package secretbox

import (
	"context"
	"crypto/cipher"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"sort"
	"strconv"
	"strings"

	"github.com/google/uuid"

	"github.com/outboxkit/outbox/internal/aead"
	"github.com/outboxkit/outbox/keys"
	"github.com/outboxkit/outbox/subconfig"
)

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
func Seal(ctx context.Context, kp keys.Provider, sub uuid.UUID, m Material) (*subconfig.Sealed, error) {
	dek := make([]byte, 32)
	if _, err := rand.Read(dek); err != nil {
		return nil, fmt.Errorf("outbox: data key: %w", err)
	}
	kid, wrapped, err := kp.WrapKey(ctx, dek, dataKeyAAD(sub, len(m.Secrets), sortedKeys(m.Headers)))
	if err != nil {
		return nil, fmt.Errorf("wrap data key with key %q: %w", kp.PrimaryKeyID(), err)
	}
	gcm, err := aead.New(dek)
	if err != nil {
		return nil, err
	}
	s := &subconfig.Sealed{KeyID: kid, DataKey: base64.StdEncoding.EncodeToString(wrapped)}
	for i, v := range m.Secrets {
		ct, err := Encrypt(gcm, []byte(v), fieldAAD(sub, fmt.Sprintf("secrets/%d", i)))
		if err != nil {
			return nil, err
		}
		s.Secrets = append(s.Secrets, ct)
	}
	for _, k := range sortedKeys(m.Headers) {
		ct, err := Encrypt(gcm, []byte(m.Headers[k]), fieldAAD(sub, "headers/"+k))
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
// is not found. A failure wraps keys.ErrKeyNotFound or keys.ErrDecrypt and names the
// key id, never a key or a secret.
func Open(ctx context.Context, kp keys.Provider, sub uuid.UUID, s *subconfig.Sealed) (Material, error) {
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

func openDataKey(ctx context.Context, kp keys.Provider, sub uuid.UUID, s *subconfig.Sealed) (cipher.AEAD, error) {
	if kp == nil {
		return nil, fmt.Errorf("%w: secrets are encrypted with key %q, and no key provider is configured", keys.ErrKeyNotFound, s.KeyID)
	}
	wrapped, err := base64.StdEncoding.DecodeString(s.DataKey)
	if err != nil {
		return nil, fmt.Errorf("%w: data key is not base64 (key %q)", keys.ErrDecrypt, s.KeyID)
	}
	dek, err := kp.UnwrapKey(ctx, s.KeyID, wrapped, dataKeyAAD(sub, len(s.Secrets), sortedKeys(s.Headers)))
	if err != nil {
		return nil, fmt.Errorf("unwrap data key with key %q: %w", s.KeyID, err)
	}
	if len(dek) != 32 {
		return nil, fmt.Errorf("%w: data key of %d bytes (key %q)", keys.ErrDecrypt, len(dek), s.KeyID)
	}
	return aead.New(dek)
}

// Encrypt seals pt with a random nonce: base64 of nonce, ciphertext, tag.
func Encrypt(a cipher.AEAD, pt, aad []byte) (string, error) {
	out, err := aead.Seal(a, pt, aad)
	if err != nil {
		return "", err
	}
	return base64.StdEncoding.EncodeToString(out), nil
}

// Decrypt opens a value made by Encrypt; a failure is keys.ErrDecrypt.
func Decrypt(aead cipher.AEAD, b64 string, aad []byte) ([]byte, error) {
	ct, err := base64.StdEncoding.DecodeString(b64)
	if err != nil {
		return nil, fmt.Errorf("%w: not base64", keys.ErrDecrypt)
	}
	return DecryptBytes(aead, ct, aad)
}

// DecryptBytes opens a value made by aead.Seal; a failure is keys.ErrDecrypt.
func DecryptBytes(a cipher.AEAD, ct, aad []byte) ([]byte, error) {
	pt, err := aead.Open(a, ct, aad)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", keys.ErrDecrypt, err)
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
