// Package pgtest gives each test an isolated PostgreSQL schema on the
// database at DATABASE_URL (default: the local server, database test).
//
// With go test -short, database tests are skipped (Go's convention), except
// with CI set, where that fails them. Without -short, an unreachable database
// fails the test with a message that says how to start one: a database test
// never skips silently.
package pgtest

import (
	"context"
	"crypto/rand"
	"database/sql"
	"database/sql/driver"
	"encoding/hex"
	"fmt"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/golang-migrate/migrate/v4"
	"github.com/golang-migrate/migrate/v4/database/postgres"
	"github.com/golang-migrate/migrate/v4/source/iofs"
	_ "github.com/lib/pq" // the driver under test

	"github.com/outboxkit/outbox/schema"
)

// DefaultURL is used when DATABASE_URL is not set.
const DefaultURL = "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"

// URL returns the database URL tests use.
func URL() string {
	if u := os.Getenv("DATABASE_URL"); u != "" {
		return u
	}
	return DefaultURL
}

var (
	once    sync.Once
	shared  *sql.DB
	openErr error
)

// DB returns the package-wide pool on URL(), or ends the test: skipped
// under -short, failed when the database cannot be reached.
func DB(t testing.TB) *sql.DB {
	t.Helper()
	if testing.Short() {
		if os.Getenv("CI") != "" {
			t.Fatalf("database test in -short mode with CI set: CI runs every database test.\n" +
				"Run without -short against PostgreSQL (on Debian: pg_ctlcluster --skip-systemctl-redirect <version> main start).")
		}
		t.Skip("database test skipped in -short mode")
	}
	once.Do(func() {
		db, err := sql.Open("postgres", URL())
		if err == nil {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			err = db.PingContext(ctx)
			cancel()
		}
		if err != nil {
			openErr = err
			return
		}
		// go test runs two packages at once here; with listeners and the
		// tests' own extra connections, two pools of 30 stay well inside
		// PostgreSQL's default max_connections of 100.
		db.SetMaxOpenConns(30)
		db.SetMaxIdleConns(30)
		shared = db
	})
	if openErr != nil {
		t.Fatalf("PostgreSQL is not reachable at %s: %v\n"+
			"Start a local server (on Debian: pg_ctlcluster --skip-systemctl-redirect <version> main start),\n"+
			"or point DATABASE_URL at one; run go test -short to skip database tests.", URL(), openErr)
	}
	return shared
}

// Schema returns a fresh schema name for t (not yet created) and drops the
// schema, with everything in it, when the test ends.
func Schema(t testing.TB) string {
	t.Helper()
	db := DB(t)
	name := NewName()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if _, err := db.ExecContext(ctx, `DROP SCHEMA IF EXISTS "`+name+`" CASCADE`); err != nil {
			t.Errorf("pgtest: drop schema %s: %v", name, err)
		}
	})
	return name
}

// NewName returns a random schema name.
func NewName() string {
	var b [6]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(fmt.Sprintf("pgtest: %v", err))
	}
	return "t_" + hex.EncodeToString(b[:])
}

// MigratedSchema returns a fresh schema with every migration of package
// schema applied, dropped when the test ends: for the tests of internal
// packages, which cannot use the root package's Migrate.
func MigratedSchema(t testing.TB) string {
	t.Helper()
	db := DB(t)
	name := Schema(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := db.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		// The session holds a search_path: never reuse it.
		_ = conn.Raw(func(any) error { return driver.ErrBadConn })
		_ = conn.Close()
	}()
	for _, q := range []string{`CREATE SCHEMA "` + name + `"`, `SET search_path TO "` + name + `"`} {
		if _, err := conn.ExecContext(ctx, q); err != nil {
			t.Fatalf("pgtest: %s: %v", q, err)
		}
	}
	src, err := iofs.New(schema.FS, ".")
	if err != nil {
		t.Fatal(err)
	}
	// The history table Migrate keeps (the root's MigrationsTable): the
	// version fence reads it where the schema has no fence table.
	drv, err := postgres.WithConnection(ctx, conn, &postgres.Config{MigrationsTable: "outboxkit_schema_migrations", SchemaName: name})
	if err != nil {
		t.Fatal(err)
	}
	m, err := migrate.NewWithInstance("iofs", src, "postgres", drv)
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Up(); err != nil {
		t.Fatalf("pgtest: migrate %s: %v", name, err)
	}
	return name
}
