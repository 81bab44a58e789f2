package securitylog_test

import (
	"testing"

	"github.com/outboxkit/outbox/internal/testutil"
)

// TestMain fails the package's tests if any goroutine outlives them (the concurrent-login tests, the corpus's HTTP servers and the integration-log writer must all end),
// and under -short runs only the examples that need no database.
func TestMain(m *testing.M) { testutil.Main(m, "ParseIP|ClientIPResolver") }
