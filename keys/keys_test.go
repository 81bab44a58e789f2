package keys

import (
	"errors"
	"strings"
	"testing"
)

// TestKeyParsing: key specs parse, errors never show key material, and a
// few header names are classified as the documentation says.
func TestKeyParsing(t *testing.T) {
	t.Parallel()
	spec, err := NewSpec("2030-01")
	if err != nil {
		t.Fatal(err)
	}
	old, _ := NewSpec("2029-12")
	kp, err := Parse(spec + ", " + old)
	if err != nil || kp.PrimaryKeyID() != "2030-01" {
		t.Fatalf("ParseKeys: %v", err)
	}
	_, b64, _ := strings.Cut(spec, ":")
	for _, bad := range []string{"", "nokey", "a:", ":" + b64, "a:" + b64[:20], "a:" + b64 + ",a:" + b64, "a b:" + b64, "a:!!" + b64} {
		_, err := Parse(bad)
		if !errors.Is(err, ErrInvalidKey) {
			t.Errorf("Parse(%q) = %v", bad, err)
		}
		if err != nil && len(b64) > 10 && strings.Contains(err.Error(), b64[:10]) {
			t.Errorf("error shows the key: %v", err)
		}
	}
}

// TestKeysFromEnv reads keys from the environment (not parallel: it sets
// environment variables).
func TestKeysFromEnv(t *testing.T) {
	spec, err := NewSpec("env-key")
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv("OUTBOX_TEST_KEYS", "")
	if _, err := FromEnv("OUTBOX_TEST_KEYS"); !errors.Is(err, ErrInvalidKey) {
		t.Fatalf("unset: %v", err)
	}
	t.Setenv("OUTBOX_TEST_KEYS", spec)
	if kp, err := FromEnv("OUTBOX_TEST_KEYS"); err != nil || kp.PrimaryKeyID() != "env-key" {
		t.Fatalf("set: %v", err)
	}
	t.Setenv("OUTBOX_TEST_KEYS", "env-key:short")
	if _, err := FromEnv("OUTBOX_TEST_KEYS"); !errors.Is(err, ErrInvalidKey) || !strings.Contains(err.Error(), "OUTBOX_TEST_KEYS") {
		t.Fatalf("bad: %v", err)
	}
}
