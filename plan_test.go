package outbox

import (
	"fmt"
	"strings"
	"testing"
)

// TestBatchWritesUsePrimaryKey: the outcome and heartbeat statements look
// their batch up by primary key, in custom and in generic plans, even when the
// statistics (as after a fresh ANALYZE of a backlog) hold no PROCESSING row.
// The backlog is large enough (20,000 rows) that reading the table whole is
// not the planner's choice either.
// With "status = 'PROCESSING'" in their WHERE, the planner took the lease
// index for a one-row scan and read every entry of it, dead ones included:
// the drain spent half its database time there.
func TestBatchWritesUsePrimaryKey(t *testing.T) {
	b := setup(t, nil)
	ctx := ctxT(t)
	b.subscribe(t, "s", "orders.*", "m")
	events := make([]Event, 20000)
	for i := range events {
		events[i] = Event{Topic: "orders.created", Payload: map[string]int{"n": i}}
	}
	if _, err := b.ob.EnqueueBatch(ctx, b.db, events); err != nil {
		t.Fatal(err)
	}
	conn, err := b.db.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	q := func(query string) string {
		t.Helper()
		rows, err := conn.QueryContext(ctx, query)
		if err != nil {
			t.Fatalf("%v\n%s", err, query)
		}
		defer rows.Close()
		var out []string
		for rows.Next() {
			var line string
			if err := rows.Scan(&line); err != nil {
				t.Fatal(err)
			}
			out = append(out, line)
		}
		if err := rows.Err(); err != nil {
			t.Fatal(err)
		}
		return strings.Join(out, "\n")
	}
	q(`ANALYZE "` + b.schema + `".event_queue`)
	// Hold 100 rows as a claim would.
	q(`UPDATE "` + b.schema + `".event_queue SET status = 'PROCESSING', locked_by = 'plan/1',
		locked_until = now() + interval '1 minute'
		WHERE id IN (SELECT id FROM "` + b.schema + `".event_queue ORDER BY id LIMIT 100)`)
	ids := q(`SELECT array_agg(id)::text FROM "` + b.schema + `".event_queue WHERE locked_by = 'plan/1'`)
	tokens := fmt.Sprintf("array_fill('plan/1'::text, ARRAY[%d])", 100)
	for _, c := range []struct{ name, stmt, args string }{
		{"outcomes", b.ob.st.Queue.Outcomes, fmt.Sprintf(
			`NULL, '%s', %s, array_fill('COMPLETED'::text, ARRAY[100]), array_fill(0, ARRAY[100]),
			array_fill(0::bigint, ARRAY[100]), array_fill(NULL::text, ARRAY[100])`, ids, tokens)},
		{"completeMany", b.ob.st.Queue.CompleteMany, fmt.Sprintf(`NULL, '%s', %s`, ids, tokens)},
		{"heartbeat", b.ob.st.Queue.Heartbeat, fmt.Sprintf(`NULL, '%s', %s, 30000000`, ids, tokens)},
	} {
		for _, mode := range []string{"force_custom_plan", "force_generic_plan"} {
			q(`SET plan_cache_mode = ` + mode)
			q(`PREPARE p AS ` + c.stmt)
			plan := q(`EXPLAIN EXECUTE p(` + c.args + `)`)
			q(`DEALLOCATE p`)
			if !strings.Contains(plan, "event_queue_pkey") || strings.Contains(plan, "event_queue_lease_idx") {
				t.Errorf("%s, %s: want a primary-key lookup, got\n%s", c.name, mode, plan)
			}
		}
	}
	q(`RESET plan_cache_mode`)
}
