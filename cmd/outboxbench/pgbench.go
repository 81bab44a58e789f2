package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/outboxkit/outbox/internal/store"
)

// Baseline scripts: the physical limits of an outbox table (from the pgbench
// kit issue 7 names). These strings are the source: -write-scripts writes them
// to bench/pgbench beside the kit's other variants. They work on table
// outbox_bench found through search_path, which pgbench gets from PGOPTIONS.
const (
	baseSchemaSQL = `DROP TABLE IF EXISTS outbox_bench;
CREATE TABLE outbox_bench (
    id            uuid         PRIMARY KEY DEFAULT gen_random_uuid(),
    topic         varchar(100) NOT NULL,
    payload       jsonb        NOT NULL,
    status        text         NOT NULL DEFAULT 'PENDING',
    retry_count   int          NOT NULL DEFAULT 0,
    max_retries   int          NOT NULL DEFAULT 3,
    next_retry_at timestamptz,
    created_at    timestamptz  NOT NULL DEFAULT now(),
    processed_at  timestamptz
);
CREATE INDEX outbox_bench_pending_idx ON outbox_bench (created_at) WHERE status = 'PENDING';`

	basePayloadFmt = `format('{"order_id":%s,"customer_id":"cust-%s","currency":"EUR","items":[{"sku":"SKU-%s","qty":2,"price_cents":1999},{"sku":"SKU-%s","qty":1,"price_cents":4999}],"source":"checkout-service"}', N, N, N, N)::jsonb`

	baseEnqueue = `\set n random(100000000, 999999999)
BEGIN;
INSERT INTO outbox_bench (topic, payload, status, retry_count, max_retries)
VALUES ('orders.created', ` + "{payload(:n::bigint)}" + `, 'PENDING', 0, 3);
COMMIT;
`
	baseEnqueueNotify = `\set n random(100000000, 999999999)
BEGIN;
WITH ins AS (
    INSERT INTO outbox_bench (topic, payload, status, retry_count, max_retries)
    VALUES ('orders.created', ` + "{payload(:n::bigint)}" + `, 'PENDING', 0, 3)
    RETURNING topic
)
SELECT pg_notify('outbox_bench', topic) FROM ins;
COMMIT;
`
	baseBatch100 = `\set n random(100000000, 999999999)
INSERT INTO outbox_bench (topic, payload, status, retry_count, max_retries)
SELECT 'orders.created', ` + "{payload(:n::bigint + g)}" + `, 'PENDING', 0, 3
FROM generate_series(1, 100) AS g;
`
	baseDrain2tx = `WITH claimed AS (
    UPDATE outbox_bench
       SET status = 'PROCESSING'
     WHERE id IN (SELECT id
                    FROM outbox_bench
                   WHERE status = 'PENDING'
                     AND (next_retry_at IS NULL OR next_retry_at <= now())
                   ORDER BY created_at
                   LIMIT 100
                     FOR UPDATE SKIP LOCKED)
    RETURNING id
)
SELECT coalesce(array_agg(id), '{}') AS ids FROM claimed \gset
UPDATE outbox_bench
   SET status = 'COMPLETED', processed_at = now()
 WHERE id = ANY (:ids::uuid[]);
`
	basePrefill = `TRUNCATE outbox_bench;
INSERT INTO outbox_bench (topic, payload, status, retry_count, max_retries, created_at)
SELECT 'orders.created', ` + "{payload(100000000 + g)}" + `, 'PENDING', 0, 3,
       now() - (%d - g) * interval '1 millisecond'
FROM generate_series(1, %d) AS g`
)

func withPayload(s string) string {
	return regexp.MustCompile(`\{payload\(([^{}]*)\)\}`).ReplaceAllStringFunc(s, func(m string) string {
		arg := m[len("{payload(") : len(m)-2]
		return strings.ReplaceAll(basePayloadFmt, "N", arg)
	})
}

var paramRE = regexp.MustCompile(`\$(\d+)`)

// bindParams replaces $n in stmt with subst[n] (pgbench variables such as
// ":topic", which pgbench -M prepared sends as parameters, or SQL constants),
// and every other $n with NULL.
func bindParams(stmt string, subst map[int]string) string {
	return paramRE.ReplaceAllStringFunc(stmt, func(m string) string {
		n, _ := strconv.Atoi(m[1:])
		if s, ok := subst[n]; ok {
			return s
		}
		// Parameters of options the benchmark does not use (ordering key,
		// idempotency key, ...): outboxkit sends them as NULL too.
		return "NULL"
	})
}

// libScripts are pgbench scripts that send the library's own statements
// (internal/store, rendered for schema) with the same parameters outboxkit
// binds: Enqueue's statement, EnqueueBatch's, and the dispatcher's claim and
// outcome statements as two transactions.
func libScripts(schema string) map[string]string {
	s := func(t string) string { return store.Render(schema, t) }
	uuid := s(`{s}.uuidv7()`)
	// Enqueue: $1 id (made in Go as a UUIDv7; here by the schema's uuidv7()),
	// $2 topic, $3 payload (parameters), $4..$8 NULL as Enqueue sends them
	// without options.
	one := map[int]string{1: uuid, 2: ":topic", 3: ":payload", 4: "NULL", 5: "NULL", 6: "NULL", 7: "NULL", 8: "NULL"}
	enqueue := "BEGIN;\n" + bindParams(s(fmt.Sprintf(store.EnqueueOne, "NULL::text")), one) + ";\nCOMMIT;\n"
	notify := fmt.Sprintf("pg_notify('%s', '')::text", store.Channel(schema))
	enqueueNotify := "BEGIN;\n" + bindParams(s(fmt.Sprintf(store.EnqueueOne, notify)), one) + ";\nCOMMIT;\n"
	batch := bindParams(s(fmt.Sprintf(store.EnqueueBatch, "NULL::text")), map[int]string{
		1: "ARRAY(SELECT " + uuid + " FROM generate_series(1, 100))", 2: ":topics", 3: ":payloads",
		4: "NULL", 5: "NULL", 6: "NULL", 7: "NULL", 8: "NULL",
	}) + ";\n"
	// Claim ($1 now=NULL, $2 methods, $3 webhooks=false, $4 limit, $5 token,
	// $6 lease µs), then the outcome write for every claimed row, each in its
	// own transaction as the dispatcher sends them: a batch of successes
	// only, which the dispatcher writes with CompleteMany.
	claim := bindParams(s(store.Claim), map[int]string{1: "NULL", 2: ":methods", 3: ":webhooks", 4: ":limit", 5: ":token", 6: ":lease"})
	outcomes := bindParams(s(store.CompleteMany), map[int]string{1: "NULL", 2: ":ids", 3: ":toks"})
	drain := "WITH claimed AS (\n" + claim + "\n)\n" +
		`SELECT coalesce(array_agg(id), '{}') AS ids, coalesce(array_agg(:token::text), '{}') AS toks
FROM claimed \gset
` + outcomes + ";\n"
	return map[string]string{
		"lib_enqueue.sql":        enqueue,
		"lib_enqueue_notify.sql": enqueueNotify,
		"lib_batch100.sql":       batch,
		"lib_drain_2tx.sql":      drain,
	}
}

func baseScripts() map[string]string {
	return map[string]string{
		"schema.sql":           baseSchemaSQL + "\n",
		"enqueue.sql":          withPayload(baseEnqueue),
		"enqueue_notify.sql":   withPayload(baseEnqueueNotify),
		"enqueue_batch100.sql": withPayload(baseBatch100),
		"drain_2tx.sql":        baseDrain2tx,
	}
}

// writeScripts writes every pgbench script into dir.
func writeScripts(dir, schema string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	for name, body := range baseScripts() {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			return err
		}
	}
	for name, body := range libScripts(schema) {
		hdr := fmt.Sprintf("-- Generated by `go run ./cmd/outboxbench -write-scripts DIR` from internal/store for schema %q:\n-- the statement outboxkit sends, with the same parameters. Variables come from pgbench -D (see bench/run.sh).\n", schema)
		if err := os.WriteFile(filepath.Join(dir, name), []byte(hdr+body), 0o644); err != nil {
			return err
		}
	}
	return nil
}

// pgbenchRun runs one pgbench script and returns its transactions per second.
// Rows per second are tps × rows per script run.
func (b *bench) pgbench(ctx context.Context, script string, clients int, args ...string) (float64, error) {
	jobs := min(clients, 2)
	full := append([]string{"-n", "-M", "prepared", "-c", strconv.Itoa(clients), "-j", strconv.Itoa(jobs),
		"-f", filepath.Join(b.scriptDir, script)}, args...)
	full = append(full, b.libpqDSN)
	// Free our idle connections for pgbench's (the server is shared), and
	// retry when other work holds every connection slot.
	b.db.SetMaxIdleConns(0)
	defer b.db.SetMaxIdleConns(poolSize)
	var out []byte
	var err error
	for attempt := 0; attempt < 10; attempt++ {
		cmd := exec.CommandContext(ctx, b.pgbenchBin, full...)
		cmd.Env = append(os.Environ(), "PGOPTIONS=-c search_path="+b.baseSchema)
		out, err = cmd.CombinedOutput()
		if err == nil || !strings.Contains(string(out), "too many clients") {
			break
		}
		time.Sleep(time.Second)
	}
	if err != nil {
		return 0, fmt.Errorf("pgbench %s: %w\n%s", script, err, out)
	}
	if m := regexp.MustCompile(`number of failed transactions: ([1-9]\d*)`).FindSubmatch(out); m != nil {
		return 0, fmt.Errorf("pgbench %s: %s failed transactions\n%s", script, m[1], out)
	}
	m := regexp.MustCompile(`tps = ([0-9.]+)`).FindSubmatch(out)
	if m == nil {
		return 0, fmt.Errorf("pgbench %s: no tps in output\n%s", script, out)
	}
	return strconv.ParseFloat(string(m[1]), 64)
}
