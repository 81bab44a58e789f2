package intrecord_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/outboxkit/outbox/internal/intrecord"
	"github.com/outboxkit/outbox/internal/pgtest"
	"github.com/outboxkit/outbox/internal/store"
	"github.com/outboxkit/outbox/internal/testutil"
	"github.com/outboxkit/outbox/redact"
)

// TestInsertWebhookAttemptRecords follows the records of webhook attempts
// the way the dispatcher writes them: built from the exchange by FromHTTP
// (redacted there, once), prepared without a second redaction, and
// inserted in the transaction of the attempts' outcomes. A rolled-back
// transaction leaves nothing; a committed one leaves every record, with
// no secret of the exchange in it.
func TestInsertWebhookAttemptRecords(t *testing.T) {
	t.Parallel()
	db := pgtest.DB(t)
	schema := pgtest.MigratedSchema(t)
	st, err := store.New(db, schema, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	const target = "https://hooks.example.com/in?token=abc"
	body := []byte(`{"password":"p"}`)
	header := http.Header{"Webhook-Signature": {"v1,xyz"}, "Content-Type": {"application/json"}}
	now := time.Now()
	exchange := func(status int, respBody []byte, callErr error, d time.Duration) *intrecord.HTTP {
		h := &intrecord.HTTP{Method: http.MethodPost, URL: target, RequestHeader: header, RequestBody: body,
			RequestBytes: int64(len(body)), Err: callErr, Start: now.Add(-d), Duration: d}
		if status != 0 {
			h.Status, h.ResponseHeader = status, http.Header{"Retry-After": {"5"}}
			h.ResponseBody, h.ResponseBytes = respBody, int64(len(respBody))
		}
		return h
	}
	red := redact.Default()
	recs := []intrecord.Record{
		intrecord.FromHTTP(red, "orders-hook", intrecord.OpAPICallMade, exchange(503, []byte("busy"), nil, 30*time.Millisecond), nil),
		intrecord.FromHTTP(red, "orders-hook", intrecord.OpAPICallMade, exchange(0, nil,
			fmt.Errorf("deliver: %w", &url.Error{Op: "Post", URL: target, Err: errors.New("connection refused")}), time.Second), nil),
	}
	if recs[0].Success || recs[0].Error != "HTTP 503 Service Unavailable" || recs[0].HTTPStatus != 503 {
		t.Errorf("record of a 503: %+v", recs[0])
	}
	if recs[1].Success || recs[1].HTTPStatus != 0 || strings.Contains(recs[1].Error, "abc") || recs[1].Response != nil {
		t.Errorf("record of a transport error: %+v", recs[1])
	}
	prepared := func() []intrecord.Record {
		out := make([]intrecord.Record, len(recs))
		for i, rec := range recs {
			var err error
			if out[i], err = intrecord.Prepare(rec, nil, 1<<20); err != nil {
				t.Fatal(err)
			}
		}
		return out
	}

	// Rolled back: nothing stays.
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := intrecord.Insert(ctx, tx, st, prepared()); err != nil {
		t.Fatal(err)
	}
	_ = tx.Rollback()
	if n := testutil.CountRows(t, db, schema, "integration_log", ""); n != 0 {
		t.Fatalf("%d rows after rollback", n)
	}
	tx, err = db.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := intrecord.Insert(ctx, tx, st, prepared()); err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	if n := testutil.CountRows(t, db, schema, "integration_log",
		`NOT success AND integration_name = 'orders-hook' AND operation = 'API_CALL_MADE'`); n != 2 {
		t.Fatalf("%d rows, want 2", n)
	}
	leaked := testutil.CountRows(t, db, schema, "integration_log",
		`request_data::text LIKE '%abc%' OR request_data::text LIKE '%xyz%' OR request_data::text LIKE '%"p"%' OR error_message LIKE '%abc%'`)
	if leaked != 0 {
		t.Fatalf("%d rows hold a secret", leaked)
	}
	if err := intrecord.Insert(ctx, db, st, nil); err != nil {
		t.Fatal(err)
	}
}
