package outbox

import (
	"testing"

	"github.com/outboxkit/outbox/internal/testutil"
)

// TestMain fails the package's tests if any goroutine outlives them (every dispatcher, listener, heartbeat and worker goroutine must end with Run),
// and under -short runs only the examples that need no database.
func TestMain(m *testing.M) { testutil.Main(m, "MatchTopic") }
