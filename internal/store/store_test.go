package store

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/lib/pq"

	"github.com/outboxkit/outbox/internal/pgtest"
)

func TestNewRendersEveryStatement(t *testing.T) {
	t.Parallel()
	db, err := sql.Open("postgres", "") // never connects: New sends no SQL
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	st, err := New(db, "shop_outbox", nil)
	if err != nil {
		t.Fatal(err)
	}
	all := st.Statements()
	if len(all) < 40 {
		t.Fatalf("only %d statements", len(all))
	}
	for name, text := range all {
		switch {
		case text == "":
			t.Errorf("%s is empty", name)
		case strings.Contains(text, "{s}"):
			t.Errorf("%s still holds {s}", name)
		case strings.Contains(text, "%!"):
			t.Errorf("%s was formatted with a wrong verb", name)
		}
	}
	if !strings.Contains(st.Queue.Claim, `"shop_outbox".event_queue`) {
		t.Errorf("claim not schema-qualified: %s", st.Queue.Claim)
	}
	for _, bad := range []string{"", "Outbox", "a-b", `x"; DROP TABLE y; --`, strings.Repeat("a", 64)} {
		if _, err := New(db, bad, nil); err == nil {
			t.Errorf("schema %q accepted", bad)
		}
	}
}

// Every statement is accepted by PostgreSQL in a migrated schema.
func TestStatementsPrepare(t *testing.T) {
	t.Parallel()
	db := pgtest.DB(t)
	st, err := New(db, pgtest.MigratedSchema(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for name, text := range st.Statements() {
		p, err := db.PrepareContext(ctx, text)
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		_ = p.Close()
	}
}

// A transaction of another pool than the store's: the statement prepared on
// the store's pool cannot run in it, and the text is sent instead, once.
func TestStmtInTransactionOfAnotherPool(t *testing.T) {
	t.Parallel()
	db := pgtest.DB(t)
	schema := pgtest.MigratedSchema(t)
	st, err := New(db, schema, nil)
	if err != nil {
		t.Fatal(err)
	}
	pgtest.ReserveConns(t, 1)
	other, err := sql.Open("postgres", pgtest.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	tx, err := other.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = tx.Rollback() }()
	if _, err := tx.ExecContext(ctx, `CREATE TEMP TABLE hits (n int)`); err != nil {
		t.Fatal(err)
	}
	insert := `INSERT INTO hits VALUES ($1::int)`
	if _, err := st.Stmt(tx, insert).Exec(ctx, 1); err != nil {
		t.Fatalf("exec through another pool's transaction: %v", err)
	}
	var n int
	rows, err := st.Stmt(tx, `SELECT count(*) FROM hits WHERE n = $1::int`).Query(ctx, 1)
	if err == nil {
		err = ScanOne(rows, &n)
	}
	if err != nil || n != 1 {
		t.Fatalf("rows inserted = %d, %v; want exactly 1", n, err)
	}
	// The store's prepared statement is in its cache: later calls still
	// fall back rather than fail.
	if _, err := st.Stmt(tx, insert).Exec(ctx, 2); err != nil {
		t.Fatal(err)
	}
	// A server error is returned as is, never retried as text.
	_, err = st.Stmt(tx, `SELECT 1 / $1::int`).Query(ctx, 0)
	var pqErr *pq.Error
	if !errors.As(err, &pqErr) || pqErr.Code != "22012" {
		t.Fatalf("division by zero = %v, want the server's error", err)
	}
}

func TestTextFallback(t *testing.T) {
	t.Parallel()
	done, cancel := context.WithCancel(context.Background())
	cancel()
	for _, tt := range []struct {
		name string
		ctx  context.Context
		err  error
		want bool
	}{
		{"success", context.Background(), nil, false},
		{"server error", context.Background(), &pq.Error{Code: "22012"}, false},
		{"wrapped server error", context.Background(), errors.Join(errors.New("x"), &pq.Error{}), false},
		{"plain error raised by database/sql", context.Background(), errors.New("sql: Tx.Stmt: ..."), true},
		{"bad connection", context.Background(), driver.ErrBadConn, false},
		{"context ended", done, errors.New("x"), false},
	} {
		if got := textFallback(tt.ctx, tt.err); got != tt.want {
			t.Errorf("%s: textFallback = %v, want %v", tt.name, got, tt.want)
		}
	}
}

// TestAdvisoryKeyIsStable pins the lock keys: processes of two releases
// side by side (a rolling deploy) must take the same lock for one name.
func TestAdvisoryKeyIsStable(t *testing.T) {
	t.Parallel()
	for name, want := range map[string]int64{
		"outboxkit.migrate.outbox":                 2996102416544318602,
		"outboxkit.bruteforce.outbox.ip:192.0.2.1": -4373138625583470226,
	} {
		if got := AdvisoryKey(name); got != want {
			t.Errorf("AdvisoryKey(%q) = %d, want %d", name, got, want)
		}
	}
}
