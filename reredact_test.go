package outbox

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/outboxkit/outbox/redact"
)

// reredactRows is how many integration_log rows the re-redaction tests
// store (security_event gets a quarter): 20,000, or 2,000 under the race
// detector, which slows redaction about tenfold; OUTBOX_REREDACT_ROWS
// overrides it to measure the rate on more (docs/redaction.md).
func reredactRows() int {
	if n, err := strconv.Atoi(os.Getenv("OUTBOX_REREDACT_ROWS")); err == nil && n > 0 {
		return n
	}
	if raceBuild {
		return 2000
	}
	return 20000
}

// seedLogs stores n integration records and n/4 security events as the
// recorders would have under rules that did not know "internal_ref": every
// 10th holds a value under that name (and every 20th record an error
// message and every 10th event a user agent with it as a pair). It returns
// the number of rows of each table that new rules naming internal_ref must
// change.
func seedLogs(t testing.TB, b *bundle, first, n int) (integration, security int64) {
	t.Helper()
	s := `"` + b.schema + `"`
	if _, err := b.db.Exec(`INSERT INTO `+s+`.integration_log (integration_name, operation, request_data, response_data,
		http_status_code, success, error_message, external_id, duration_ms)
	SELECT 'stripe', 'API_CALL_MADE',
		jsonb_build_object('method', 'POST', 'url', 'https://api.example.com/v1/charges?expand=customer',
			'headers', jsonb_build_object('Content-Type', 'application/json', 'Authorization', '[REDACTED]', 'X-Request-Id', 'req-' || i),
			'body', jsonb_strip_nulls(jsonb_build_object('amount', i, 'currency', 'eur', 'description', 'order ' || i || ' ' || repeat('widget ', 60),
				'customer', jsonb_build_object('id', 'cus_' || i, 'email', 'c' || i || '@example.com'),
				'internal_ref', CASE WHEN i % 10 = 0 THEN 'zq-ref-' || i END))),
		jsonb_build_object('headers', jsonb_build_object('Content-Type', 'application/json'),
			'body', jsonb_build_object('id', 'ch_' || i, 'status', 'succeeded', 'padding', repeat('x', 300))),
		200, i % 20 <> 0, CASE WHEN i % 20 = 0 THEN 'card declined: internal_ref=zq-err-' || i END, 'ch_' || i, 20
	FROM generate_series($1::int, $2::int) AS i`, first, first+n-1); err != nil {
		t.Fatal(err)
	}
	if _, err := b.db.Exec(`INSERT INTO `+s+`.security_event (event_type, ip_address, user_agent, event_details, severity, requires_review)
	SELECT 'FAILED_LOGIN', '192.0.2.' || (i % 250), 'Mozilla/5.0 (X11; Linux x86_64)' || CASE WHEN i % 10 = 0 THEN ' internal_ref=zq-ua-' || i ELSE '' END,
		jsonb_strip_nulls(jsonb_build_object('account', 'user' || i, 'reason', 'bad password',
			'internal_ref', CASE WHEN i % 10 = 0 THEN 'zq-det-' || i END)), 'LOW', true
	FROM generate_series($1::int, $2::int) AS i`, first, first+n/4-1); err != nil {
		t.Fatal(err)
	}
	count := func(lo, hi int) int64 {
		var c int64
		for i := lo; i <= hi; i++ {
			if i%10 == 0 {
				c++
			}
		}
		return c
	}
	return count(first, first+n-1), count(first, first+n/4-1)
}

// planted counts the rows of both logs that still hold a planted value.
func (b *bundle) planted(t testing.TB) int64 {
	t.Helper()
	return b.q(t, `SELECT (SELECT count(*) FROM {s}.integration_log r WHERE strpos(r::text, 'zq-') > 0)
		+ (SELECT count(*) FROM {s}.security_event r WHERE strpos(r::text, 'zq-') > 0)`)
}

// Rules changed to mask more: Reredact rewrites exactly the stored rows
// they mask more of, leaves every other row byte for byte, and a second
// run changes nothing. It is resumable: a run cut off by its context goes
// on from its cursor and the counts add up. It runs beside live traffic
// (recorders inserting, reviews updating events) without errors.
func TestReredactStoredLogs(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	n := reredactRows()
	wantInt, wantSec := seedLogs(t, b, 1, n)
	beforeInt, beforeSec := b.rowDigests(t, "integration_log"), b.rowDigests(t, "security_event")
	red, err := redact.New(redact.Rules{Keys: []string{"internal_ref"}})
	if err != nil {
		t.Fatal(err)
	}
	// Bounded by the rows, not by ctxT's minute: OUTBOX_REREDACT_ROWS may
	// be large.
	ctx, cancelAll := context.WithTimeout(context.Background(), time.Minute+time.Duration(n)*10*time.Millisecond)
	defer cancelAll()

	// The rules of the handle change nothing here: nothing is rewritten.
	res, err := b.ob.Reredact(ctx, &ReredactOptions{BatchSize: 1000})
	if err != nil || res.IntegrationLog.Changed+res.SecurityEvent.Changed != 0 || res.IntegrationLog.Scanned != int64(n) {
		t.Fatalf("Reredact under unchanged rules = %+v, %v", res, err)
	}

	// Live traffic beside the run.
	var wg sync.WaitGroup
	stop := make(chan struct{})
	var stopOnce sync.Once
	stopLive := func() { stopOnce.Do(func() { close(stop) }); wg.Wait() }
	defer stopLive()
	var inserted, reviewed atomic.Int64
	live := func(what string, fn func(i int) error) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				if err := fn(i); err != nil {
					t.Errorf("%s beside Reredact: %v", what, err)
					return
				}
			}
		}()
	}
	live("recorder insert", func(i int) error {
		_, err := b.db.Exec(`INSERT INTO "`+b.schema+`".integration_log (integration_name, operation, request_data, success)
			VALUES ('live', 'API_CALL_MADE', jsonb_build_object('n', $1::int), true)`, i)
		inserted.Add(1)
		return err
	})
	live("review", func(i int) error {
		_, err := b.db.Exec(`UPDATE "`+b.schema+`".security_event SET reviewed_by = $1, reviewed_at = now()
			WHERE id = (SELECT id FROM "`+b.schema+`".security_event WHERE reviewed_at IS NULL ORDER BY random() LIMIT 1)`, uuid.New())
		reviewed.Add(1)
		return err
	})

	// Cut off part-way, then resumed from its cursor.
	cctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	first, err := b.ob.Reredact(cctx, &ReredactOptions{Redactor: red, BatchSize: 200})
	cancel()
	interrupted := err != nil
	if interrupted && !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("cut-off run: %v", err)
	}
	start := time.Now()
	rest, err := b.ob.Reredact(ctx, &ReredactOptions{Redactor: red, BatchSize: 200, Resume: first.Cursor})
	if err != nil {
		t.Fatal(err)
	}
	took := time.Since(start)
	stopLive()
	gotInt := first.IntegrationLog.Changed + rest.IntegrationLog.Changed
	gotSec := first.SecurityEvent.Changed + rest.SecurityEvent.Changed
	if gotInt != wantInt || gotSec != wantSec {
		t.Fatalf("changed %d integration records and %d events, want %d and %d (first %+v, rest %+v)", gotInt, gotSec, wantInt, wantSec, first, rest)
	}
	if p := b.planted(t); p != 0 {
		t.Fatalf("%d rows still hold a planted value", p)
	}
	afterInt, afterSec := b.rowDigests(t, "integration_log"), b.rowDigests(t, "security_event")
	var changedInt int64
	for id, d := range beforeInt {
		if afterInt[id] != d {
			changedInt++
		}
	}
	if changedInt != wantInt {
		t.Fatalf("%d stored records differ after the run, want the %d rewritten", changedInt, wantInt)
	}
	var changedSec int64
	for id, d := range beforeSec {
		var reviewedNow bool
		_ = b.db.QueryRow(`SELECT reviewed_at IS NOT NULL FROM "`+b.schema+`".security_event WHERE id = $1`, id).Scan(&reviewedNow)
		if afterSec[id] != d && !reviewedNow {
			changedSec++
		}
	}
	if changedSec > wantSec {
		t.Fatalf("%d unreviewed events differ, at most %d were rewritten", changedSec, wantSec)
	}
	if n := b.q(t, `SELECT count(*) FROM {s}.security_event WHERE (reviewed_by IS NULL) <> (reviewed_at IS NULL)`); n != 0 {
		t.Fatal("a review was torn")
	}
	again, err := b.ob.Reredact(ctx, &ReredactOptions{Redactor: red})
	if err != nil || again.IntegrationLog.Changed+again.SecurityEvent.Changed != 0 {
		t.Fatalf("second run = %+v, %v (redaction is idempotent)", again, err)
	}
	scanned := rest.IntegrationLog.Scanned + rest.SecurityEvent.Scanned
	rate := float64(scanned) / took.Seconds()
	t.Logf("re-redaction: %d rows (%d rewritten) in %s after the cut-off run (interrupted: %v): %.0f rows/s, %s per million rows; "+
		"beside it %d inserts and %d reviews", scanned, rest.IntegrationLog.Changed+rest.SecurityEvent.Changed, took.Round(time.Millisecond),
		interrupted, rate, (time.Duration(float64(time.Second) * 1e6 / rate)).Round(time.Second), inserted.Load(), reviewed.Load())
}

// A fenced handle does not rewrite stored rows.
func TestReredactFenced(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	futureMigration(t, b.db, b.schema, 11, 11)
	_, err := handleFor(t, b, Config{}, 0).Reredact(ctxT(t), nil)
	asFence(t, "Reredact", err)
	if _, err := b.ob.Reredact(ctxT(t), &ReredactOptions{BatchSize: -1}); err == nil || !strings.Contains(fmt.Sprint(err), "batch_size") {
		t.Fatalf("negative batch size: %v", err)
	}
}
