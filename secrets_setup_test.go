package outbox

import (
	"crypto/rand"
	"testing"

	"github.com/outboxkit/outbox/keys"
)

// newTestKeys returns a keys.Provider over one fresh random key called id.
func newTestKeys(t testing.TB, id string) keys.Provider {
	t.Helper()
	kp, err := keys.Static(newTestKey(t, id))
	if err != nil {
		t.Fatal(err)
	}
	return kp
}

func newTestKey(t testing.TB, id string) keys.Key {
	t.Helper()
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return keys.Key{ID: id, Secret: b}
}
