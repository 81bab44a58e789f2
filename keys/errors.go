package keys

import "errors"

var (
	// ErrInvalidKey reports a key, key id or key specification that cannot
	// be used. Its text names the key id, never the key.
	ErrInvalidKey = errors.New("keys: invalid key")
	// ErrKeyNotFound reports that stored secrets are sealed under a key the
	// Provider does not hold, or that no Provider is configured. A
	// Provider's UnwrapKey returns it (wrapped) for an unknown key id.
	ErrKeyNotFound = errors.New("keys: encryption key not found")
	// ErrDecrypt reports sealed data that does not authenticate: tampered
	// with, moved from another subscription or field, or sealed under a
	// different key of the same id. A Provider's UnwrapKey returns it
	// (wrapped) for a wrapped key that does not authenticate.
	ErrDecrypt = errors.New("keys: sealed secrets do not decrypt")
)
