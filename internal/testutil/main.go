package testutil

import (
	"flag"
	"testing"

	"go.uber.org/goleak"
)

// Main is the TestMain of the packages whose tests use PostgreSQL: it fails
// the package's tests if any goroutine outlives them, and under -short it
// runs only the examples whose names match shortExamples (a regular
// expression of example names without the "Example" prefix, such as
// "MatchTopic|ParseIP"): -short skips every test that needs PostgreSQL, most
// examples run against it too, and an example cannot skip itself. -run can
// still name any other. Add a new database-free example to the package's
// list.
func Main(m *testing.M, shortExamples string) {
	flag.Parse()
	if testing.Short() {
		if run := flag.Lookup("test.run"); run != nil && run.Value.String() == "" {
			_ = run.Value.Set("^(Test|Fuzz)|^Example(" + shortExamples + ")$")
		}
	}
	goleak.VerifyTestMain(m,
		// internal/pgtest keeps one package-wide *sql.DB open for the whole
		// test binary (tests share its pool and never close it), and
		// database/sql runs one connectionOpener goroutine per open DB
		// until Close. Nothing of the packages under test starts it.
		goleak.IgnoreTopFunction("database/sql.(*DB).connectionOpener"),
	)
}
