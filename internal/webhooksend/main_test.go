package webhooksend

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package's tests if any goroutine (a send, an idle
// connection of the sender's transport) outlives them.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
