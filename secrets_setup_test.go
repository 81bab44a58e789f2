package outbox

import (
	"crypto/rand"
	"testing"
)

// newTestKeys returns a KeyProvider over one fresh random key called id.
func newTestKeys(t testing.TB, id string) KeyProvider {
	t.Helper()
	kp, err := StaticKeys(newTestKey(t, id))
	if err != nil {
		t.Fatal(err)
	}
	return kp
}

func newTestKey(t testing.TB, id string) Key {
	t.Helper()
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return Key{ID: id, Secret: b}
}
