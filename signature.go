package outbox

import (
	"encoding/base64"
	"fmt"
	"strings"
)

// decodeSecret decodes a Standard Webhooks signing secret: "whsec_" followed
// by the base64 of 16 to 128 random bytes (the prefix is optional).
func decodeSecret(s string) ([]byte, error) {
	raw := strings.TrimPrefix(s, "whsec_")
	key, err := base64.StdEncoding.DecodeString(raw)
	if err != nil {
		return nil, fmt.Errorf("secret is not whsec_ followed by base64: %w", err)
	}
	if len(key) < 16 || len(key) > 128 {
		return nil, fmt.Errorf("secret must decode to 16 to 128 bytes, got %d", len(key))
	}
	return key, nil
}
