// Package aead is AES-256-GCM with a random nonce stored before the
// ciphertext: the one sealing primitive of the key provider (package keys)
// and of secrets at rest (internal/secretbox).
package aead

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"errors"
	"fmt"
)

// ErrOpen reports a ciphertext that is too short or does not authenticate.
var ErrOpen = errors.New("ciphertext")

// New returns AES-256-GCM under key (32 bytes).
func New(key []byte) (cipher.AEAD, error) {
	if len(key) != 32 {
		return nil, fmt.Errorf("AES-256 needs a 32-byte key, got %d bytes", len(key))
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(block)
}

// Seal encrypts pt with a random nonce: nonce, ciphertext, tag.
func Seal(a cipher.AEAD, pt, aad []byte) ([]byte, error) {
	nonce := make([]byte, a.NonceSize(), a.NonceSize()+len(pt)+a.Overhead())
	if _, err := rand.Read(nonce); err != nil {
		return nil, fmt.Errorf("nonce: %w", err)
	}
	return a.Seal(nonce, nonce, pt, aad), nil
}

// Open decrypts what Seal made; a failure wraps ErrOpen.
func Open(a cipher.AEAD, ct, aad []byte) ([]byte, error) {
	if len(ct) < a.NonceSize()+a.Overhead() {
		return nil, fmt.Errorf("%w too short", ErrOpen)
	}
	pt, err := a.Open(nil, ct[:a.NonceSize()], ct[a.NonceSize():], aad)
	if err != nil {
		return nil, fmt.Errorf("%w does not authenticate", ErrOpen)
	}
	return pt, nil
}
