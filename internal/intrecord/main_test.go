package intrecord_test

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package's tests if a goroutine outlives them. Tests
// that need PostgreSQL skip under -short (internal/pgtest).
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		// internal/pgtest keeps one package-wide *sql.DB open for the whole
		// test binary, and database/sql runs one connectionOpener goroutine
		// per open DB until Close. Nothing of this package starts it.
		goleak.IgnoreTopFunction("database/sql.(*DB).connectionOpener"),
	)
}
