package securitylog_test

import (
	"flag"
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package's tests if any goroutine outlives them (the
// concurrent-login tests, the corpus's HTTP servers and integration-log
// writer must all end).
func TestMain(m *testing.M) {
	flag.Parse()
	if testing.Short() {
		// -short skips every test that needs PostgreSQL. ExampleLog runs
		// against it, and an example cannot skip itself, so -short runs
		// only the examples listed here, which need no database; -run can
		// still name any other. Add a new database-free example here.
		if run := flag.Lookup("test.run"); run != nil && run.Value.String() == "" {
			_ = run.Value.Set("^(Test|Fuzz)|^Example(ParseIP|ClientIPResolver)$")
		}
	}
	goleak.VerifyTestMain(m,
		// internal/pgtest keeps one package-wide *sql.DB open for the whole
		// test binary, and database/sql runs one connectionOpener goroutine
		// per open DB until Close. Nothing of this package starts it.
		goleak.IgnoreTopFunction("database/sql.(*DB).connectionOpener"),
	)
}
