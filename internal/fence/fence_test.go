package fence

import (
	"context"
	"errors"
	"io"
	"io/fs"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/outboxkit/outbox/internal/pgtest"
	"github.com/outboxkit/outbox/internal/store"
	"github.com/outboxkit/outbox/schema"
)

func TestJudge(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		release, minSchema int
		st                 State
		fenced             bool
		says               string
	}{
		{10, 9, State{Schema: 10, MinRelease: 9}, false, ""},
		{10, 9, State{Schema: 9}, false, ""},                  // v0.3 on v0.2's schema (10 reverted)
		{10, 9, State{Schema: 12, MinRelease: 10}, false, ""}, // a newer, additive schema
		{9, 9, State{Schema: 10, MinRelease: 9}, false, ""},   // v0.2 beside v0.3 (were it to read the fence)
		{10, 9, State{Schema: 11, MinRelease: 11}, true, "admits releases 11 and later"},
		{10, 9, State{Schema: 8}, true, "is at version 8"},
		{10, 9, State{}, true, "has no version"},
		{11, 11, State{Schema: 10, MinRelease: 9}, true, "needs schema version 11"},
	} {
		err := Judge(c.release, c.minSchema, c.st)
		if (err != nil) != c.fenced {
			t.Errorf("Judge(%d, %d, %+v) = %v", c.release, c.minSchema, c.st, err)
			continue
		}
		if err != nil && !strings.Contains(err.Error(), c.says) {
			t.Errorf("Judge(%d, %d, %+v) says %q, want %q in it", c.release, c.minSchema, c.st, err, c.says)
		}
	}
}

// Release is the number of the last migration this release ships.
func TestReleaseIsLastMigration(t *testing.T) {
	t.Parallel()
	entries, err := fs.ReadDir(schema.FS, ".")
	if err != nil {
		t.Fatal(err)
	}
	last := ""
	for _, e := range entries {
		if strings.HasSuffix(e.Name(), ".up.sql") && e.Name() > last {
			last = e.Name()
		}
	}
	if !strings.HasPrefix(last, "000010_") || Release != 10 {
		t.Fatalf("last migration %s, Release %d: raise Release with every migration", last, Release)
	}
}

// Read never sends a failing statement: on a schema without tables, with
// history only, with a dirty history; and a Guard keeps its last verdict
// when a read fails.
func TestReadAndGuard(t *testing.T) {
	t.Parallel()
	db := pgtest.DB(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	empty, err := store.New(db, pgtest.Schema(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = tx.Rollback() }()
	if st, err := Read(ctx, empty, tx); err != nil || st != (State{}) {
		t.Fatalf("empty schema: %+v, %v", st, err)
	}
	if _, err := tx.ExecContext(ctx, `SELECT 1`); err != nil {
		t.Fatalf("transaction aborted by the read: %v", err)
	}

	name := pgtest.MigratedSchema(t)
	st, err := store.New(db, name, nil)
	if err != nil {
		t.Fatal(err)
	}
	if s, err := Read(ctx, st, nil); err != nil || s != (State{Schema: 10, MinRelease: 9}) {
		t.Fatalf("migrated: %+v, %v", s, err)
	}
	g := New(st, slog.New(slog.NewTextHandler(io.Discard, nil)), nil)
	if known, _ := g.Verdict(); known {
		t.Fatal("verdict before any read")
	}
	if err := g.Allow(ctx, nil); err != nil {
		t.Fatal(err)
	}
	// Without the fence: the history decides, and a dirty one is no verdict.
	if _, err := db.ExecContext(ctx, `DROP TABLE "`+name+`".outboxkit_fence; UPDATE "`+name+`".`+store.MigrationsTable+` SET version = 9, dirty = true`); err != nil {
		t.Fatal(err)
	}
	if _, err := Read(ctx, st, nil); !errors.Is(err, ErrMigrating) {
		t.Fatalf("dirty history: %v", err)
	}
	if fenced, err := g.Check(ctx, nil); fenced != nil || err == nil {
		t.Fatalf("Check on a dirty history: %v, %v", fenced, err)
	}
	if known, fenced := g.Verdict(); !known || fenced != nil {
		t.Fatalf("the last verdict did not stand: %v %v", known, fenced)
	}
	if _, err := db.ExecContext(ctx, `UPDATE "`+name+`".`+store.MigrationsTable+` SET dirty = false`); err != nil {
		t.Fatal(err)
	}
	if s, err := Read(ctx, st, nil); err != nil || s != (State{Schema: 9}) {
		t.Fatalf("version 9 without a fence: %+v, %v", s, err)
	}
}
