package outbox

import (
	"flag"
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package's tests if any goroutine outlives them: every
// dispatcher, listener, heartbeat and worker goroutine must end with Run.
func TestMain(m *testing.M) {
	flag.Parse()
	if testing.Short() {
		// -short skips every test that needs PostgreSQL. Most examples
		// run against it too, and an example cannot skip itself, so -short
		// runs only the examples listed here, which need no database; -run
		// can still name any other. Add a new database-free example here.
		if run := flag.Lookup("test.run"); run != nil && run.Value.String() == "" {
			_ = run.Value.Set("^(Test|Fuzz)|^ExampleMatchTopic$")
		}
	}
	goleak.VerifyTestMain(m,
		// internal/pgtest keeps one package-wide *sql.DB open for the whole
		// test binary (tests share its pool and never close it), and
		// database/sql runs one connectionOpener goroutine per open DB
		// until Close. Nothing of this package starts it.
		goleak.IgnoreTopFunction("database/sql.(*DB).connectionOpener"),
	)
}
