// Package pgtest gives each test an isolated PostgreSQL schema on the
// database at DATABASE_URL (default: the local server, database test).
//
// With go test -short, database tests are skipped (Go's convention), except
// with CI set, where that fails them. Without -short, an unreachable database
// fails the test with a message that says how to start one: a database test
// never skips silently.
//
// # Connection budget
//
// The shared server's connections (max_connections, 100 by default) are
// shared by every test binary of every suite that runs against it: go test
// runs two package binaries at once here, and a second suite, or another
// developer's, may run beside it. A test binary holds at most PoolConns
// connections in the pool DB returns and, at once, ExtraConns more in the
// pools of the worker processes and private *sql.DB its tests open, each of
// which reserves them first with ReserveConns. The root package's binary is
// the only one that uses much of the extra budget, so one suite needs at
// most PoolConns + ExtraConns plus the few connections of the package
// binary beside it, about 45: two suites fit in 100, with a few to spare.
// ExtraConns is the largest sum of two tests' reservations, so that with go
// test's default -parallel here (2) no test waits for the budget while it
// holds a parallel slot; with a higher -parallel, tests do wait.
//
// A connection the server refuses with "too many clients" (SQLSTATE 53300)
// fails with an error that says so (TooManyClients reports it), and a test
// that fails while such refusals happened is told so in its log: running
// out of connections is the environment, never the behaviour under test.
package pgtest

import (
	"context"
	"crypto/rand"
	"database/sql"
	"database/sql/driver"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-migrate/migrate/v4"
	"github.com/golang-migrate/migrate/v4/database/postgres"
	"github.com/golang-migrate/migrate/v4/source/iofs"
	"github.com/lib/pq" // the driver under test

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

const (
	// PoolConns caps the pool DB returns (one per test binary). Tests run
	// two at a time (go test's default -parallel is GOMAXPROCS, 2 here);
	// a dispatcher's workers queue for a connection rather than open more.
	PoolConns = 12
	// ExtraConns caps the connections a test binary's tests hold at once
	// outside that pool (worker processes, their listeners, private
	// *sql.DB), reserved with ReserveConns: the root package's two largest
	// reservations, 14 (a killed worker and its successor) and 12 (four
	// worker processes).
	ExtraConns = 26
)

var (
	once    sync.Once
	shared  *sql.DB
	openErr error

	// refused counts the connections the shared server refused with
	// "too many clients", through DB's pool.
	refused atomic.Int64
	// noted holds the tests already told about refusals (one note each).
	noted sync.Map
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
		c, err := pq.NewConnector(URL())
		if err != nil {
			openErr = err
			return
		}
		db := sql.OpenDB(refusalConnector{c})
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		err = db.PingContext(ctx)
		cancel()
		if err != nil {
			_ = db.Close()
			openErr = err
			return
		}
		db.SetMaxOpenConns(PoolConns)
		db.SetMaxIdleConns(PoolConns)
		shared = db
	})
	if openErr != nil {
		t.Fatalf("PostgreSQL is not reachable at %s: %v\n"+
			"Start a local server (on Debian: pg_ctlcluster --skip-systemctl-redirect <version> main start),\n"+
			"or point DATABASE_URL at one; run go test -short to skip database tests.", URL(), openErr)
	}
	if _, seen := noted.LoadOrStore(t, true); !seen {
		before := refused.Load()
		t.Cleanup(func() {
			noted.Delete(t)
			if n := refused.Load() - before; n > 0 && t.Failed() {
				t.Logf("pgtest: while this test ran, the shared server refused %d connections of this test binary "+
					"with \"too many clients\" (its max_connections is shared by every suite running against it): "+
					"the failure above may come from that, not from the behaviour under test", n)
			}
		})
	}
	return shared
}

// ReserveConns reserves n of the test binary's ExtraConns connections for
// the rest of t, waiting while other tests hold them: a test that opens
// connections outside DB's pool (a worker process's pool and listener, a
// *sql.DB of its own) calls it first, with what it holds at most at once.
// The reservation ends when t's cleanups run, after the cleanups that t
// registered later (so after the worker processes are gone).
func ReserveConns(t testing.TB, n int) {
	t.Helper()
	if n > ExtraConns {
		t.Fatalf("pgtest: ReserveConns(%d): a test binary holds at most %d connections outside the shared pool", n, ExtraConns)
	}
	budgetMu.Lock()
	for budgetUsed+n > ExtraConns {
		budgetFree.Wait()
	}
	budgetUsed += n
	budgetMu.Unlock()
	t.Cleanup(func() {
		budgetMu.Lock()
		budgetUsed -= n
		budgetFree.Broadcast()
		budgetMu.Unlock()
	})
}

var (
	budgetMu   sync.Mutex
	budgetFree = sync.NewCond(&budgetMu)
	budgetUsed int
)

// TooManyClients reports whether err says that the server refused a
// connection because max_connections was reached (SQLSTATE 53300).
func TooManyClients(err error) bool {
	var pqErr *pq.Error
	return errors.As(err, &pqErr) && pqErr.Code == "53300"
}

// RefusedInLog reports whether a process's log text holds a connection the
// server refused with "too many clients".
func RefusedInLog(log string) bool {
	return strings.Contains(log, "too many clients")
}

// refusalConnector counts the connections the server refuses for lack of
// free slots, and says so in the error.
type refusalConnector struct{ driver.Connector }

func (c refusalConnector) Connect(ctx context.Context) (driver.Conn, error) {
	conn, err := c.Connector.Connect(ctx)
	if err != nil && TooManyClients(err) {
		refused.Add(1)
		return nil, fmt.Errorf("pgtest: the shared server refused a connection of the test pool: its max_connections "+
			"is shared by every suite running against it, and they hold them all (not the behaviour under test): %w", err)
	}
	return conn, err
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
