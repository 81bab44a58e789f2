package integrationlog_test

import (
	"testing"

	"github.com/outboxkit/outbox/internal/testutil"
)

// TestMain fails the package's tests if any goroutine outlives them (the recorders' background writers and the tests' HTTP servers must all end),
// and under -short runs only the examples that need no database.
func TestMain(m *testing.M) { testutil.Main(m, "") }
