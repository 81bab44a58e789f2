package webhook

import (
	"os/exec"
	"strings"
	"testing"
)

// TestNoDatabaseDependencies keeps the receiver side light: a service that
// only verifies webhooks must not link a database driver or the migrator.
func TestNoDatabaseDependencies(t *testing.T) {
	t.Parallel()
	out, err := exec.Command("go", "list", "-deps", ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	for _, dep := range strings.Fields(string(out)) {
		for _, banned := range []string{"database/sql", "github.com/lib/pq", "github.com/golang-migrate", "github.com/jmoiron/sqlx", "github.com/outboxkit/outbox/internal"} {
			if strings.HasPrefix(dep, banned) {
				t.Errorf("package webhook depends on %s", dep)
			}
		}
		if dep == "github.com/outboxkit/outbox" {
			t.Errorf("package webhook depends on the root package")
		}
	}
}
