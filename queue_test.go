package outbox

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/jmoiron/sqlx"

	"github.com/outboxkit/outbox/internal/jsontext"
	"github.com/outboxkit/outbox/subconfig"
)

func TestEnqueueFansOutAndRollsBack(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	ctx := ctxT(t)
	b.subscribe(t, "a", "order.*", "a")
	b.subscribe(t, "b", "order.#", "b")
	b.subscribe(t, "c", "billing.*", "c")
	b.subscribe(t, "d", "#", "d")
	if _, err := b.ob.PauseSubscription(ctx, "d"); err != nil {
		t.Fatal(err)
	}

	// Rolled back: no trace.
	tx, err := b.db.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	res, err := b.ob.Enqueue(ctx, tx, "order.created", map[string]int{"id": 1}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if res.Deliveries != 2 {
		t.Fatalf("deliveries = %d, want 2 (a and b)", res.Deliveries)
	}
	if err := tx.Rollback(); err != nil {
		t.Fatal(err)
	}
	if n := countRows(t, b.db, `SELECT (SELECT count(*) FROM "`+b.schema+`".system_event) + (SELECT count(*) FROM "`+b.schema+`".event_queue)`); n != 0 {
		t.Fatalf("%d rows left after rollback", n)
	}

	// Committed through sqlx: one event, one row per matching active subscription.
	xdb := sqlx.NewDb(b.db, "postgres")
	xtx, err := xdb.BeginTxx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	res, err = b.ob.Enqueue(ctx, xtx, "order.created", json.RawMessage(`{"id":2}`), nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := xtx.Commit(); err != nil {
		t.Fatal(err)
	}
	var subs []string
	rows, err := b.db.QueryContext(ctx, `SELECT s.subscriber_name FROM "`+b.schema+`".event_queue q
		JOIN "`+b.schema+`".event_subscription s ON s.id = q.subscription_id WHERE q.event_id = $1 ORDER BY 1`, res.EventID)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			t.Fatal(err)
		}
		subs = append(subs, s)
	}
	if strings.Join(subs, ",") != "a,b" {
		t.Fatalf("rows for %v, want a,b", subs)
	}
	if n := b.count(t, "event_id = $1 AND status = 'PENDING' AND retry_count = 0 AND max_retries = 3 AND payload = '{\"id\":2}'", res.EventID); n != 2 {
		t.Fatalf("queue rows with defaults = %d, want 2", n)
	}
	// An event nobody subscribes to is kept, with no queue rows.
	res = b.enqueue(t, "nobody.listens", 1)
	if res.Deliveries != 0 || b.count(t, "event_id = $1", res.EventID) != 0 {
		t.Fatalf("unmatched event fanned out: %+v", res)
	}
}

func TestEnqueueRejectsBadInputAndKeepsTxUsable(t *testing.T) {
	t.Parallel()
	b := setup(t, &Config{MaxPayloadBytes: 2048})
	ctx := ctxT(t)
	b.subscribe(t, "a", "#", "a")
	tx, err := b.db.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback() //nolint:errcheck
	cases := []struct {
		name    string
		topic   string
		payload any
		opts    *EnqueueOptions
		want    error
	}{
		{"empty topic", "", 1, nil, ErrInvalidTopic},
		{"wildcard topic", "order.*", 1, nil, ErrInvalidTopic},
		{"empty segment", "order..created", 1, nil, ErrInvalidTopic},
		{"long topic", strings.Repeat("a", 101), 1, nil, ErrInvalidTopic},
		{"injection", "x'; DROP TABLE event_queue; --", 1, nil, ErrInvalidTopic},
		{"nil payload", "ok", nil, nil, ErrInvalidPayload},
		{"bad raw JSON", "ok", []byte(`{"a":`), nil, ErrInvalidPayload},
		{"unmarshalable", "ok", make(chan int), nil, ErrInvalidPayload},
		{"NUL escape", "ok", map[string]string{"a": "x\x00y"}, nil, ErrInvalidPayload},
		{"lone surrogate", "ok", json.RawMessage(`"\ud800"`), nil, ErrInvalidPayload},
		{"invalid UTF-8", "ok", []byte("\"\xff\""), nil, ErrInvalidPayload},
		// Marshalled values are not re-checked for syntax, but what a
		// MarshalJSON method returns still is for UTF-8, numbers and NULs.
		{"invalid UTF-8 via MarshalJSON", "ok", map[string]json.RawMessage{"a": json.RawMessage("\"\xff\"")}, nil, ErrInvalidPayload},
		{"huge number via MarshalJSON", "ok", map[string]json.RawMessage{"a": json.RawMessage("1e999999")}, nil, ErrInvalidPayload},
		{"NUL escape via MarshalJSON", "ok", map[string]json.RawMessage{"a": json.RawMessage(`"\u0000"`)}, nil, ErrInvalidPayload},
		{"too deep", "ok", json.RawMessage(strings.Repeat("[", jsontext.MaxDepth+1) + strings.Repeat("]", jsontext.MaxDepth+1)), nil, ErrInvalidPayload},
		{"too large", "ok", strings.Repeat("x", 2047), nil, ErrPayloadTooLarge},
		{"negative delay", "ok", 1, &EnqueueOptions{Delay: -time.Second}, ErrInvalidConfig},
		{"max retries", "ok", 1, &EnqueueOptions{MaxRetries: intPtr(-1)}, ErrInvalidConfig},
		{"max retries over the limit", "ok", 1, &EnqueueOptions{MaxRetries: intPtr(subconfig.MaxRetriesLimit + 1)}, ErrInvalidConfig},
		{"delay and run-at", "ok", 1, &EnqueueOptions{Delay: time.Second, RunAt: time.Now()}, ErrInvalidConfig},
		{"long ordering key", "ok", 1, &EnqueueOptions{OrderingKey: strings.Repeat("k", maxKeyLength+1)}, ErrInvalidConfig},
		{"NUL in idempotency key", "ok", 1, &EnqueueOptions{IdempotencyKey: "a\x00b"}, ErrInvalidConfig},
	}
	for _, c := range cases {
		_, err := b.ob.Enqueue(ctx, tx, c.topic, c.payload, c.opts)
		if !errors.Is(err, c.want) {
			t.Errorf("%s: err = %v, want %v", c.name, err, c.want)
		}
		var ve *ValidationError
		if !errors.As(err, &ve) || ve.Field == "" {
			t.Errorf("%s: err %v is not a *ValidationError with a field", c.name, err)
		}
	}
	// A payload exactly at the limit is accepted; the transaction still works.
	atLimit := json.RawMessage(`"` + strings.Repeat("x", 2046) + `"`)
	res, err := b.ob.Enqueue(ctx, tx, "ok", atLimit, nil)
	if err != nil {
		t.Fatalf("enqueue after rejections: %v", err)
	}
	if err := tx.Commit(); err != nil {
		t.Fatalf("commit after rejections: %v", err)
	}
	if n := countRows(t, b.db, `SELECT count(*) FROM "`+b.schema+`".system_event`); n != 1 {
		t.Fatalf("events = %d, want 1", n)
	}
	if n := b.count(t, "event_id = $1", res.EventID); n != 1 {
		t.Fatalf("queue rows = %d, want 1", n)
	}
}

func TestEnqueueSchedulingOptions(t *testing.T) {
	t.Parallel()
	b := setupClock(t, nil)
	b.subscribe(t, "a", "#", "a")
	now := b.clock.Now()
	delayed := b.enqueue(t, "x", 1, &EnqueueOptions{Delay: 90 * time.Second, MaxRetries: intPtr(7)})
	at := now.Add(time.Hour).Truncate(time.Microsecond)
	runAt := b.enqueue(t, "y", 1, &EnqueueOptions{RunAt: at})
	check := func(id any, want time.Time, retries int) {
		t.Helper()
		var next, created time.Time
		var maxRetries int
		if err := b.db.QueryRow(`SELECT next_retry_at, created_at, max_retries FROM "`+b.schema+`".event_queue WHERE event_id = $1`, id).
			Scan(&next, &created, &maxRetries); err != nil {
			t.Fatal(err)
		}
		if !next.Equal(want) || !created.Equal(now) || maxRetries != retries {
			t.Fatalf("next_retry_at %s created_at %s max_retries %d; want %s %s %d", next, created, maxRetries, want, now, retries)
		}
	}
	check(delayed.EventID, now.Add(90*time.Second), 7)
	check(runAt.EventID, at, 3)
}

func TestEnqueueDelayWithDatabaseClock(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	b.subscribe(t, "a", "#", "a")
	res := b.enqueue(t, "x", 1, &EnqueueOptions{Delay: time.Hour})
	if n := b.count(t, "event_id = $1 AND next_retry_at - created_at = interval '1 hour'", res.EventID); n != 1 {
		t.Fatal("delay not applied relative to the database clock")
	}
}

func TestEnqueueBatch(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	ctx := ctxT(t)
	b.subscribe(t, "orders", "order.*", "orders")
	b.subscribe(t, "all", "#", "all")
	tx, err := b.db.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback() //nolint:errcheck
	_, err = b.ob.EnqueueBatch(ctx, tx, []Event{{Topic: "order.a", Payload: 1}, {Topic: "bad topic", Payload: 1}})
	if !errors.Is(err, ErrInvalidTopic) || !strings.Contains(err.Error(), "event 1") {
		t.Fatalf("invalid batch: %v", err)
	}
	res, err := b.ob.EnqueueBatch(ctx, tx, []Event{
		{Topic: "order.a", Payload: map[string]int{"n": 1}, Options: &EnqueueOptions{Metadata: map[string]string{"k": "v"}}},
		{Topic: "user.b", Payload: "two", Options: &EnqueueOptions{MaxRetries: intPtr(9), Delay: time.Minute}},
		{Topic: "order.c", Payload: []int{3}},
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	if len(res) != 3 || res[0].Deliveries != 2 || res[1].Deliveries != 1 || res[2].Deliveries != 2 {
		t.Fatalf("results = %+v", res)
	}
	if n := b.count(t, "event_id = $1 AND max_retries = 9 AND next_retry_at > created_at + interval '59 seconds'", res[1].EventID); n != 1 {
		t.Fatal("batch options not applied")
	}
	if n := countRows(t, b.db, `SELECT count(*) FROM "`+b.schema+`".system_event WHERE id = $1 AND metadata->>'k' = 'v'`, res[0].EventID); n != 1 {
		t.Fatal("batch metadata not stored")
	}
	if n := b.count(t, "event_id = $1 AND metadata->>'k' = 'v'", res[0].EventID); n != 2 {
		t.Fatalf("batch metadata on %d of the event's 2 queue rows", n)
	}
	if n := b.count(t, "true"); n != 5 {
		t.Fatalf("queue rows = %d, want 5", n)
	}
}

func TestOperations(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	ctx := ctxT(t)
	b.subscribe(t, "a", "#", "a")
	b.subscribe(t, "b", "#", "b")
	for range 3 {
		if res := b.enqueue(t, "x", 1); res.Deliveries != 2 {
			t.Fatalf("enqueue fanned out to %d subscriptions, want 2", res.Deliveries)
		}
	}
	// Fail every row of a by hand, as the dispatcher would.
	if _, err := b.db.ExecContext(ctx, `UPDATE "`+b.schema+`".event_queue q SET status = 'FAILED', retry_count = 4,
		failure_reason = 'boom', processed_at = now() FROM "`+b.schema+`".event_subscription s
		WHERE s.id = q.subscription_id AND s.subscriber_name = 'a'`); err != nil {
		t.Fatal(err)
	}
	st, err := b.ob.Stats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.ByStatus[StatusFailed] != 3 || st.ByStatus[StatusPending] != 3 || st.BySubscription["a"][StatusFailed] != 3 ||
		st.BySubscription["b"][StatusPending] != 3 || st.OldestClaimableAge <= 0 {
		t.Fatalf("stats = %+v", st)
	}
	failed, err := b.ob.ListFailed(ctx, FailedFilter{Subscription: "a", Limit: 2})
	if err != nil {
		t.Fatal(err)
	}
	if len(failed) != 2 || failed[0].FailureReason != "boom" || failed[0].Subscription != "a" || failed[0].RetryCount != 4 {
		t.Fatalf("ListFailed page 1 = %+v", failed)
	}
	more, err := b.ob.ListFailed(ctx, FailedFilter{Subscription: "a", After: failed[1].ID})
	if err != nil {
		t.Fatal(err)
	}
	if len(more) != 1 || more[0].ID == failed[0].ID || more[0].ID == failed[1].ID {
		t.Fatalf("ListFailed page 2 = %+v", more)
	}
	if n, err := b.ob.RetryFailed(ctx, failed[0].ID); err != nil || n != 1 {
		t.Fatalf("RetryFailed = %d, %v", n, err)
	}
	if n := b.count(t, "id = $1 AND status = 'PENDING' AND retry_count = 0 AND processed_at IS NULL", failed[0].ID); n != 1 {
		t.Fatal("retried row not reset")
	}
	if n, err := b.ob.DiscardFailed(ctx, failed[1].ID); err != nil || n != 1 {
		t.Fatalf("DiscardFailed = %d, %v", n, err)
	}
	if n, err := b.ob.RetrySubscriptionFailed(ctx, "a"); err != nil || n != 1 {
		t.Fatalf("RetrySubscription = %d, %v", n, err)
	}
	if n := b.count(t, "status = 'FAILED'"); n != 0 {
		t.Fatalf("FAILED rows left = %d", n)
	}
	if n := b.count(t, "true"); n != 5 {
		t.Fatalf("rows = %d, want 5", n)
	}
}
