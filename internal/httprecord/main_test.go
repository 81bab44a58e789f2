package httprecord

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package's tests if a goroutine outlives them (test
// servers and client connections included).
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
