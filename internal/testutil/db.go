package testutil

import (
	"context"
	"database/sql"
	"testing"

	"github.com/lib/pq"
)

// Querier runs a query: a pool or a transaction.
type Querier interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// CountRows counts the rows of table in schema matching where ("" for
// all; args are its parameters), failing the test on error.
func CountRows(t testing.TB, q Querier, schema, table, where string, args ...any) int64 {
	t.Helper()
	query := `SELECT count(*) FROM ` + pq.QuoteIdentifier(schema) + `.` + pq.QuoteIdentifier(table)
	if where != "" {
		query += " WHERE " + where
	}
	var n int64
	if err := q.QueryRowContext(context.Background(), query, args...).Scan(&n); err != nil {
		t.Fatalf("%s: %v", query, err)
	}
	return n
}

// Tables lists the base tables of schema; it fails the test when the
// schema holds fewer than the library's five, so that a scan of every
// table is never vacuous.
func Tables(t testing.TB, q Querier, schema string) []string {
	t.Helper()
	rows, err := q.QueryContext(context.Background(),
		`SELECT table_name FROM information_schema.tables WHERE table_schema = $1 AND table_type = 'BASE TABLE'`, schema)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var tables []string
	for rows.Next() {
		var n string
		if err := rows.Scan(&n); err != nil {
			t.Fatal(err)
		}
		tables = append(tables, n)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	if len(tables) < 5 {
		t.Fatalf("schema %s has only tables %v", schema, tables)
	}
	return tables
}

// AssertNowhere fails the test if any row of any table of schema holds one
// of needles, every column read as text (lower-cased, so that hex matches
// in any case). The error names the table and the needle's length, never
// the needle.
func AssertNowhere(t testing.TB, q Querier, schema string, needles []string) {
	t.Helper()
	for _, tbl := range Tables(t, q, schema) {
		query := `SELECT count(*) FROM ` + pq.QuoteIdentifier(schema) + `.` + pq.QuoteIdentifier(tbl) +
			` r WHERE strpos(lower(r::text), lower($1)) > 0`
		for _, n := range needles {
			var c int64
			if err := q.QueryRowContext(context.Background(), query, n).Scan(&c); err != nil {
				t.Fatalf("%s: %v", query, err)
			}
			if c > 0 {
				t.Errorf("table %s: %d rows hold a secret in clear (%d bytes)", tbl, c, len(n))
			}
		}
	}
}
