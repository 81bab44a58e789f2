package outbox

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package's tests if any goroutine outlives them: every
// dispatcher, listener, heartbeat and worker goroutine must end with Run.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		// internal/pgtest keeps one package-wide *sql.DB open for the whole
		// test binary (tests share its pool and never close it), and
		// database/sql runs one connectionOpener goroutine per open DB
		// until Close. Nothing of this package starts it.
		goleak.IgnoreTopFunction("database/sql.(*DB).connectionOpener"),
	)
}
