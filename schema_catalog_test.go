package outbox

import (
	"context"
	"database/sql"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/lib/pq"

	"github.com/outboxkit/outbox/internal/pgtest"
)

// seedColumn is one column of the seed diagram (SEED-ERD.md), written the
// way PostgreSQL's catalog reports it: TIMESTAMP is timestamp with time
// zone, VARCHAR without a length is text, an ENUM is a PostgreSQL enum type
// (data type USER-DEFINED) whose values are listed in enum.
type seedColumn struct {
	name     string
	typ      string   // information_schema.columns.data_type
	maxLen   int      // character_maximum_length, 0 for none
	nullable bool     // the seed's NULLABLE
	def      string   // the seed's DEFAULT, as pg_get_expr prints it ("" for none)
	extDef   string   // a default the seed does not list but the library adds (ext), "" for none
	enum     []string // the enum's values in order, for ENUM columns
}

// seedTable is a table of the seed with its columns, and the columns the
// library adds (documented as extensions in README.md). A column in neither
// list fails the test, so that a new column is a deliberate, documented
// choice.
type seedTable struct {
	name       string
	columns    []seedColumn
	extensions []string
}

var (
	statusEnum    = []string{"PENDING", "PROCESSING", "COMPLETED", "FAILED"}
	operationEnum = []string{"WEBHOOK_RECEIVED", "API_CALL_MADE", "DATA_SYNC"}
	secTypeEnum   = []string{"FAILED_LOGIN", "SUSPICIOUS_ACTIVITY", "PERMISSION_DENIED"}
	severityEnum  = []string{"LOW", "MEDIUM", "HIGH", "CRITICAL"}
)

const (
	tsz   = "timestamp with time zone"
	vchar = "character varying"
)

// seedTables is SEED-ERD.md, column for column. Every id is a UUIDv7 the
// library makes; the column default uuidv7() is an extension for SQL
// written by hand.
var seedTables = []seedTable{
	{
		name: "event_queue",
		columns: []seedColumn{
			{name: "id", typ: "uuid", extDef: "uuidv7()"},
			{name: "event_id", typ: "uuid"},
			{name: "topic", typ: vchar, maxLen: 100},
			{name: "payload", typ: "jsonb"},
			{name: "status", typ: "USER-DEFINED", enum: statusEnum, extDef: "'PENDING'::event_status"},
			{name: "retry_count", typ: "integer", def: "0"},
			{name: "max_retries", typ: "integer", def: "3"},
			{name: "next_retry_at", typ: tsz, nullable: true},
			{name: "failure_reason", typ: "text", nullable: true},
			{name: "created_at", typ: tsz, def: "now()"},
			{name: "processed_at", typ: tsz, nullable: true},
		},
		extensions: []string{"subscription_id", "locked_until", "locked_by", "ordering_key", "order_seq", "metadata"},
	},
	{
		name: "event_subscription",
		columns: []seedColumn{
			{name: "id", typ: "uuid", extDef: "uuidv7()"},
			{name: "subscriber_name", typ: vchar, maxLen: 100},
			{name: "topic_pattern", typ: vchar, maxLen: 100},
			{name: "webhook_url", typ: vchar, maxLen: 500, nullable: true},
			{name: "callback_method", typ: vchar, maxLen: 100, nullable: true},
			{name: "is_active", typ: "boolean", def: "true"},
			{name: "subscription_config", typ: "jsonb", nullable: true},
			{name: "created_at", typ: tsz, def: "now()"},
			{name: "updated_at", typ: tsz, extDef: "now()"},
		},
		extensions: []string{"pattern_regex"},
	},
	{
		name: "integration_log",
		columns: []seedColumn{
			{name: "id", typ: "uuid", extDef: "uuidv7()"},
			{name: "integration_name", typ: vchar, maxLen: 100},
			{name: "operation", typ: "USER-DEFINED", enum: operationEnum},
			{name: "external_id", typ: "text", nullable: true},
			{name: "request_data", typ: "jsonb", nullable: true},
			{name: "response_data", typ: "jsonb", nullable: true},
			{name: "http_status_code", typ: "integer", nullable: true},
			{name: "success", typ: "boolean"},
			{name: "error_message", typ: "text", nullable: true},
			{name: "occurred_at", typ: tsz, def: "now()"},
		},
		extensions: []string{"duration_ms"},
	},
	{
		name: "security_event",
		columns: []seedColumn{
			{name: "id", typ: "uuid", extDef: "uuidv7()"},
			{name: "user_id", typ: "uuid", nullable: true},
			{name: "event_type", typ: "USER-DEFINED", enum: secTypeEnum},
			{name: "severity", typ: "USER-DEFINED", enum: severityEnum},
			{name: "ip_address", typ: vchar, maxLen: 45},
			{name: "user_agent", typ: vchar, maxLen: 500, nullable: true},
			{name: "event_details", typ: "jsonb"},
			{name: "requires_review", typ: "boolean", def: "false"},
			{name: "reviewed_by", typ: "uuid", nullable: true},
			{name: "reviewed_at", typ: tsz, nullable: true},
			{name: "occurred_at", typ: tsz, def: "now()"},
		},
	},
	{
		// Referenced by the seed, not drawn: the library's minimal one
		// (DESIGN.md §2). Only its id is the seed's contract.
		name:       "system_event",
		columns:    []seedColumn{{name: "id", typ: "uuid"}},
		extensions: []string{"event_type", "payload", "metadata", "occurred_at", "idempotency_key"},
	},
}

// seedForeignKey is a foreign key of the seed's relations. USER belongs to
// the application, so security_event.user_id and reviewed_by have none
// (README shows the statement that adds them).
type seedForeignKey struct {
	table, column, refTable, refColumn string
	onDelete                           string // pg_constraint.confdeltype: a no action, n set null, c cascade
}

var seedForeignKeys = []seedForeignKey{
	{"event_queue", "event_id", "system_event", "id", "a"},
	{"event_queue", "subscription_id", "event_subscription", "id", "n"},
}

// TestSchemaMatchesSeed compares the migrated schema with the seed diagram:
// every seed column's type, length, nullability and default, the enum
// values in order, the primary keys, the foreign keys with their ON DELETE
// action and an index serving each of them. It also checks that
// MigrateDown and Migrate again give the same catalog.
func TestSchemaMatchesSeed(t *testing.T) {
	t.Parallel()
	db := pgtest.DB(t)
	schema := pgtest.Schema(t)
	ob, err := New(db, Config{Schema: schema})
	if err != nil {
		t.Fatal(err)
	}
	ctx := ctxT(t)
	if err := ob.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	checkSeedCatalog(t, db, schema)
	first := catalogSnapshot(t, db, schema)

	if err := ob.MigrateDown(ctx); err != nil {
		t.Fatal(err)
	}
	if err := ob.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	checkSeedCatalog(t, db, schema)
	if again := catalogSnapshot(t, db, schema); !slices.Equal(first, again) {
		t.Errorf("catalog after MigrateDown and Migrate differs:\nfirst: %q\nagain: %q", first, again)
	}
}

type catalogColumn struct {
	typ, udt, nullable, def string
	maxLen                  sql.NullInt64
}

func readColumns(t *testing.T, db *sql.DB, schema, table string) (map[string]catalogColumn, []string) {
	t.Helper()
	rows, err := db.QueryContext(context.Background(), `SELECT column_name, data_type, udt_name, is_nullable,
		COALESCE(column_default, ''), character_maximum_length
		FROM information_schema.columns WHERE table_schema = $1 AND table_name = $2 ORDER BY ordinal_position`, schema, table)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	cols := map[string]catalogColumn{}
	var order []string
	for rows.Next() {
		var name string
		var c catalogColumn
		if err := rows.Scan(&name, &c.typ, &c.udt, &c.nullable, &c.def, &c.maxLen); err != nil {
			t.Fatal(err)
		}
		// Defaults name the schema's own objects qualified (t_x.uuidv7()).
		c.def = strings.ReplaceAll(c.def, schema+".", "")
		cols[name] = c
		order = append(order, name)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return cols, order
}

func checkSeedCatalog(t *testing.T, db *sql.DB, schema string) {
	t.Helper()
	ctx := context.Background()
	for _, st := range seedTables {
		cols, order := readColumns(t, db, schema, st.name)
		if len(cols) == 0 {
			t.Errorf("table %s missing", st.name)
			continue
		}
		known := map[string]bool{}
		for _, e := range st.extensions {
			known[e] = true
		}
		for _, sc := range st.columns {
			known[sc.name] = true
			c, ok := cols[sc.name]
			where := st.name + "." + sc.name
			if !ok {
				t.Errorf("%s: seed column missing", where)
				continue
			}
			if c.typ != sc.typ {
				t.Errorf("%s: type %s, seed %s", where, c.typ, sc.typ)
			}
			if got := int(c.maxLen.Int64); got != sc.maxLen {
				t.Errorf("%s: max length %d, seed %d", where, got, sc.maxLen)
			}
			if got := c.nullable == "YES"; got != sc.nullable {
				t.Errorf("%s: nullable %v, seed %v", where, got, sc.nullable)
			}
			want := sc.def
			if want == "" {
				want = sc.extDef
			}
			if c.def != want {
				t.Errorf("%s: default %q, want %q", where, c.def, want)
			}
			if sc.enum != nil {
				var got pq.StringArray
				err := db.QueryRowContext(ctx, `SELECT COALESCE(array_agg(e.enumlabel ORDER BY e.enumsortorder), '{}')
					FROM pg_type ty JOIN pg_namespace n ON n.oid = ty.typnamespace
					LEFT JOIN pg_enum e ON e.enumtypid = ty.oid
					WHERE n.nspname = $1 AND ty.typname = $2 AND ty.typtype = 'e'`, schema, c.udt).Scan(&got)
				if err != nil {
					t.Fatal(err)
				}
				if !slices.Equal(got, sc.enum) {
					t.Errorf("%s: enum %s values %v, seed %v", where, c.udt, got, sc.enum)
				}
			}
		}
		for _, name := range order {
			if !known[name] {
				t.Errorf("%s.%s: column neither in the seed nor a known extension", st.name, name)
			}
		}
		var pk pq.StringArray
		if err := db.QueryRowContext(ctx, `SELECT COALESCE((SELECT array_agg(a.attname ORDER BY k.n)
			FROM pg_constraint c
			CROSS JOIN unnest(c.conkey) WITH ORDINALITY AS k(attnum, n)
			JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = k.attnum
			WHERE c.conrelid = format('%I.%I', $1::text, $2::text)::regclass AND c.contype = 'p'), '{}')`,
			schema, st.name).Scan(&pk); err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(pk, []string{"id"}) {
			t.Errorf("%s: primary key %v, seed (id)", st.name, pk)
		}
	}

	// Foreign keys: exactly the seed's relations the library owns.
	rows, err := db.QueryContext(ctx, `SELECT cl.relname, a.attname, rc.relname, ra.attname, c.confdeltype::text,
			c.convalidated, c.condeferrable
		FROM pg_constraint c
		JOIN pg_class cl ON cl.oid = c.conrelid
		JOIN pg_namespace n ON n.oid = cl.relnamespace
		JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = c.conkey[1]
		JOIN pg_class rc ON rc.oid = c.confrelid
		JOIN pg_attribute ra ON ra.attrelid = c.confrelid AND ra.attnum = c.confkey[1]
		WHERE n.nspname = $1 AND c.contype = 'f' AND cardinality(c.conkey) = 1
		ORDER BY 1, 2`, schema)
	if err != nil {
		t.Fatal(err)
	}
	var got []seedForeignKey
	for rows.Next() {
		var fk seedForeignKey
		var validated, deferrable bool
		if err := rows.Scan(&fk.table, &fk.column, &fk.refTable, &fk.refColumn, &fk.onDelete, &validated, &deferrable); err != nil {
			t.Fatal(err)
		}
		if !validated || deferrable {
			t.Errorf("foreign key %s.%s: validated %v, deferrable %v; want a validated, immediate constraint",
				fk.table, fk.column, validated, deferrable)
		}
		got = append(got, fk)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	rows.Close()
	var multi int
	if err := db.QueryRowContext(ctx, `SELECT count(*) FROM pg_constraint c JOIN pg_namespace n ON n.oid = c.connamespace
		WHERE n.nspname = $1 AND c.contype = 'f' AND cardinality(c.conkey) <> 1`, schema).Scan(&multi); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got, seedForeignKeys) || multi != 0 {
		t.Errorf("foreign keys %+v (and %d multi-column), want %+v", got, multi, seedForeignKeys)
	}
	// Each referencing column leads a plain (non-partial) index, so that
	// deleting an event or a subscription looks its rows up instead of
	// scanning the queue.
	for _, fk := range seedForeignKeys {
		var n int
		if err := db.QueryRowContext(ctx, `SELECT count(*) FROM pg_index i
			JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0]
			WHERE i.indrelid = format('%I.%I', $1::text, $2::text)::regclass AND a.attname = $3
				AND i.indpred IS NULL AND i.indisvalid`, schema, fk.table, fk.column).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n == 0 {
			t.Errorf("no index leads with %s.%s, the referencing column of a foreign key", fk.table, fk.column)
		}
	}
}

// catalogSnapshot lists the schema's columns, constraints and indexes as
// text, to compare one migration run with another.
func catalogSnapshot(t *testing.T, db *sql.DB, schema string) []string {
	t.Helper()
	rows, err := db.QueryContext(context.Background(), `
		SELECT format('column %s.%s %s %s %s', c.relname, a.attname, format_type(a.atttypid, a.atttypmod),
			a.attnotnull, COALESCE(pg_get_expr(d.adbin, d.adrelid), ''))
		FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace
		LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
		WHERE n.nspname = $1 AND c.relkind = 'r' AND a.attnum > 0 AND NOT a.attisdropped
		UNION ALL
		SELECT format('constraint %s %s', co.conname, pg_get_constraintdef(co.oid))
		FROM pg_constraint co JOIN pg_namespace n ON n.oid = co.connamespace WHERE n.nspname = $1
		UNION ALL
		SELECT format('index %s', pg_get_indexdef(i.indexrelid))
		FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE n.nspname = $1
		ORDER BY 1`, schema)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			t.Fatal(err)
		}
		out = append(out, strings.ReplaceAll(s, schema, "<schema>"))
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestMigration9BringsExistingRowsToTheSeed: rows written under version 8
// that the seed's constraints refuse are brought in line, not dropped, and
// the migration goes down again.
func TestMigration9BringsExistingRowsToTheSeed(t *testing.T) {
	t.Parallel()
	ob, db, schema := unmigrated(t)
	ctx := ctxT(t)
	if err := ob.migrateTo(ctx, 8); err != nil {
		t.Fatal(err)
	}
	const (
		sub      = "01900000-0000-7000-8000-0000000000a1"
		goneSub  = "01900000-0000-7000-8000-0000000000a2"
		kept     = "01900000-0000-7000-8000-000000000001"
		orphan   = "01900000-0000-7000-8000-000000000002" // its event was deleted by hand
		orphanMD = "01900000-0000-7000-8000-000000000003" // ditto, written by a process older than version 7
	)
	if _, err := db.ExecContext(ctx, `SET search_path TO "`+schema+`";
		INSERT INTO event_subscription (id, subscriber_name, event_pattern, callback_method) VALUES ('`+sub+`', 's', '#', 'h');
		INSERT INTO system_event (id, event_type, payload) VALUES ('`+kept+`', 'x', '1');
		INSERT INTO event_queue (event_id, subscription_id, topic, payload, metadata, status, created_at) VALUES
			('`+kept+`', '`+sub+`', 'x', '1', NULL, 'PENDING', now()),
			('`+orphan+`', '`+sub+`', 'o', '{"n":2}', '{"trace":"t"}', 'PENDING', '2030-01-01T00:00:00Z'),
			('`+orphan+`', NULL, 'o', '{"n":2}', '{"trace":"t"}', 'COMPLETED', '2030-01-01T00:00:00Z'),
			('`+orphanMD+`', '`+sub+`', 'p', '3', 'false', 'FAILED', now()),
			('`+kept+`', '`+goneSub+`', 'x', '1', NULL, 'PENDING', now()),
			('`+kept+`', '`+goneSub+`', 'x', '1', NULL, 'COMPLETED', now());
		INSERT INTO security_event (event_type, severity, ip_address, event_details) VALUES
			('FAILED_LOGIN', 'LOW', NULL, NULL), ('FAILED_LOGIN', 'LOW', '192.0.2.1', '{"a":1}');
		RESET search_path`); err != nil {
		t.Fatal(err)
	}
	if err := ob.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	b := &bundle{db: db, ob: ob, schema: schema}
	q := func(query string, dest ...any) {
		t.Helper()
		if err := db.QueryRowContext(ctx, strings.ReplaceAll(query, "{s}", `"`+schema+`"`)).Scan(dest...); err != nil {
			t.Fatalf("%s: %v", query, err)
		}
	}
	// Orphan queue rows got their event back, from the row.
	var typ, payload string
	var md sql.NullString
	var at time.Time
	q(`SELECT event_type, payload::text, metadata::text, occurred_at FROM {s}.system_event WHERE id = '`+orphan+`'`, &typ, &payload, &md, &at)
	if typ != "o" || payload != `{"n": 2}` || md.String != `{"trace": "t"}` || !at.Equal(time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)) {
		t.Errorf("rebuilt event: %s %s %v %s", typ, payload, md, at)
	}
	q(`SELECT metadata::text FROM {s}.system_event WHERE id = '`+orphanMD+`'`, &md)
	if md.Valid {
		t.Errorf("rebuilt event of a pre-version-7 row has metadata %s, want NULL", md.String)
	}
	if n := b.countRows(t, "event_queue", ""); n != 6 {
		t.Errorf("%d queue rows after the migration, want all 6", n)
	}
	// Rows of a subscription that is gone: detached, the undelivered one FAILED.
	var failed, detached int
	q(`SELECT count(*) FILTER (WHERE status = 'FAILED' AND failure_reason LIKE 'subscription deleted%'),
		count(*) FILTER (WHERE subscription_id IS NULL) FROM {s}.event_queue WHERE event_id = '`+kept+`'`, &failed, &detached)
	if failed != 1 || detached != 2 {
		t.Errorf("rows of a vanished subscription: %d failed, %d detached; want 1 and 2", failed, detached)
	}
	// Security events: no NULL left, the placeholder address marks the one without.
	var placeholders, empty int
	q(`SELECT count(*) FILTER (WHERE ip_address = '::'), count(*) FILTER (WHERE event_details = '{}') FROM {s}.security_event`,
		&placeholders, &empty)
	if placeholders != 1 || empty != 1 {
		t.Errorf("security events: %d placeholder addresses, %d empty details; want 1 and 1", placeholders, empty)
	}
	// The pending rows of the live subscription are still delivered.
	if n := b.count(t, "status = 'PENDING' AND subscription_id IS NOT NULL"); n != 2 {
		t.Errorf("%d deliverable rows, want 2", n)
	}
	// Down to 8 restores NULL for the placeholder.
	if err := ob.migrateTo(ctx, 8); err != nil {
		t.Fatal(err)
	}
	var nullIPs int
	q(`SELECT count(*) FROM {s}.security_event WHERE ip_address IS NULL`, &nullIPs)
	if nullIPs != 1 {
		t.Errorf("after down: %d NULL addresses, want 1", nullIPs)
	}
	if err := ob.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	checkSeedCatalog(t, db, schema)
}
