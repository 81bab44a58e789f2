package integrationlog_test

import (
	"flag"
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package's tests if any goroutine outlives them: every
// log's background writer must end with Close, and every HTTP server and
// client of the tests with the test.
func TestMain(m *testing.M) {
	flag.Parse()
	if testing.Short() {
		// -short skips every test that needs PostgreSQL. The examples run
		// against it too, and an example cannot skip itself, so -short
		// runs no example unless -run names it.
		if run := flag.Lookup("test.run"); run != nil && run.Value.String() == "" {
			_ = run.Value.Set("^(Test|Fuzz)")
		}
	}
	goleak.VerifyTestMain(m,
		// internal/pgtest keeps one package-wide *sql.DB open for the whole
		// test binary, and database/sql runs one connectionOpener goroutine
		// per open DB until Close. Nothing of this package starts it.
		goleak.IgnoreTopFunction("database/sql.(*DB).connectionOpener"),
	)
}
