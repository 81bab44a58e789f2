package dispatch

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"math"
	"testing"
	"time"

	"github.com/DATA-DOG/go-sqlmock"
	"github.com/google/uuid"
	"go.uber.org/goleak"

	"github.com/outboxkit/outbox/internal/intrecord"
	"github.com/outboxkit/outbox/internal/pgtest"
	"github.com/outboxkit/outbox/internal/store"
	"github.com/outboxkit/outbox/internal/testutil"
	"github.com/outboxkit/outbox/subconfig"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		// internal/pgtest keeps one package-wide *sql.DB open for the whole
		// test binary; database/sql runs its connectionOpener until Close.
		goleak.IgnoreTopFunction("database/sql.(*DB).connectionOpener"),
	)
}

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func TestUUIDV7Floor(t *testing.T) {
	for _, at := range []time.Time{time.Now(), time.Unix(0, 0), time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)} {
		f := UUIDV7Floor(at)
		if f.Version() != 7 || f.Variant() != uuid.RFC4122 {
			t.Fatalf("%v: version %d variant %v", at, f.Version(), f.Variant())
		}
		if sec, nsec := f.Time().UnixTime(); time.Unix(sec, nsec).UnixMilli() != at.UnixMilli() {
			t.Fatalf("%v: floor carries %v", at, time.Unix(sec, nsec))
		}
	}
	before := UUIDV7Floor(time.Now())
	id := uuid.Must(uuid.NewV7())
	after := UUIDV7Floor(time.Now().Add(time.Millisecond))
	if !(before.String() <= id.String() && id.String() < after.String()) {
		t.Fatalf("%s not within [%s, %s)", id, before, after)
	}
}

func TestRetryDelays(t *testing.T) {
	t.Parallel()
	bo := Backoff{Initial: time.Second, Max: time.Minute, Multiplier: 2}
	for n, want := range map[int]time.Duration{1: time.Second, 2: 2 * time.Second, 3: 4 * time.Second, 7: time.Minute, 500: time.Minute} {
		got := retryDelay(n, subconfig.Config{}, bo)
		if got < want*8/10 || got > want*12/10 {
			t.Errorf("retry %d: delay %s, want %s ± 20%%", n, got, want)
		}
	}
	sub := subconfig.Config{BackoffInitial: subconfig.Duration(10 * time.Millisecond), BackoffMultiplier: 3}
	if got := retryDelay(2, sub, bo); got < 24*time.Millisecond || got > 36*time.Millisecond {
		t.Errorf("subscription backoff: %s, want 30ms ± 20%%", got)
	}
	sched := subconfig.Config{RetrySchedule: []subconfig.Duration{subconfig.Duration(time.Second), subconfig.Duration(time.Hour)}}
	if got := retryDelay(5, sched, bo); got < 48*time.Minute || got > 72*time.Minute {
		t.Errorf("schedule's last entry repeats: %s", got)
	}
	if got := scheduleDelay(1, sched.RetrySchedule, func() float64 { return 0 }); got != 800*time.Millisecond {
		t.Errorf("schedule jitter low bound = %s", got)
	}
	// A schedule entry near Duration's limit saturates: never a negative
	// delay, which would retry at once.
	huge := []subconfig.Duration{subconfig.Duration(math.MaxInt64)}
	if got := scheduleDelay(1, huge, func() float64 { return 0.99 }); got != math.MaxInt64 {
		t.Errorf("jittered maximal entry = %s, want the largest Duration", got)
	}
	for range 20 {
		if got := retryDelay(1, subconfig.Config{RetrySchedule: huge}, bo); got <= 0 {
			t.Fatalf("retry delay %s of a maximal schedule entry", got)
		}
	}
}

// decide: success completes; an error retries with backoff, or fails once
// retries are spent or at once when Permanent; RetryAfter picks the delay;
// a webhook subscription without retry settings takes the webhook schedule.
func TestDecide(t *testing.T) {
	t.Parallel()
	bo := Backoff{Initial: time.Second, Max: time.Hour, Multiplier: 2}
	row := func(retries int, webhook string) *Row {
		c := &Row{Token: "d/1", RetryCount: retries, WebhookURL: webhook}
		c.Delivery.ID, c.Delivery.MaxRetries = uuid.New(), 3
		return c
	}
	boom := errors.New("boom")
	if oc := decide(row(0, ""), bo, nil); oc.status != StatusCompleted || oc.inc != 0 || oc.reason != "" {
		t.Errorf("success: %+v", oc)
	}
	if oc := decide(row(0, ""), bo, boom); oc.status != StatusPending || oc.inc != 1 || oc.reason != "boom" ||
		oc.delay < 800*time.Millisecond || oc.delay > 1200*time.Millisecond {
		t.Errorf("first failure: %+v", oc)
	}
	if oc := decide(row(3, ""), bo, boom); oc.status != StatusFailed {
		t.Errorf("retries spent: %+v", oc)
	}
	if oc := decide(row(0, ""), bo, Permanent(boom)); oc.status != StatusFailed {
		t.Errorf("permanent: %+v", oc)
	}
	if oc := decide(row(0, ""), bo, RetryAfter(time.Minute, boom)); oc.status != StatusPending || oc.delay != time.Minute {
		t.Errorf("retry after: %+v", oc)
	}
	if oc := decide(row(1, "https://hooks.example/in"), bo, boom); oc.delay < 4*time.Minute || oc.delay > 6*time.Minute {
		t.Errorf("webhook retry 2 waits %s, want 5m ± 20%%", oc.delay)
	}
	if oc := decide(row(0, ""), bo, errors.New("bad\x00text\xff")); oc.reason != "badtext\uFFFD" {
		t.Errorf("reason not sanitized: %q", oc.reason)
	}
}

func TestWakeups(t *testing.T) {
	t.Parallel()
	w := newWakeups()
	defer w.timer.Stop()
	now := time.Now()
	w.add(now.Add(time.Hour))
	w.add(now.Add(time.Hour + 100*time.Microsecond)) // close enough to the first
	w.add(now.Add(20 * time.Millisecond))
	if len(w.at) != 2 {
		t.Fatalf("wake-ups = %v, want 2", w.at)
	}
	select {
	case <-w.timer.C:
	case <-time.After(5 * time.Second):
		t.Fatal("the earliest wake-up did not fire")
	}
	w.fired()
	if len(w.at) != 1 || !w.at[0].Equal(now.Add(time.Hour)) {
		t.Fatalf("after firing: %v", w.at)
	}
}

func TestRowLoggerAddsAttributesOnlyWhenEnabled(t *testing.T) {
	t.Parallel()
	var buf safeBuffer
	l := slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelInfo}))
	dl := &Delivery{EventID: uuid.New(), Subscription: "billing", Attempt: 2}
	rl := rowLogger{l, dl}
	rl.DebugContext(context.Background(), "hidden")
	rl.WarnContext(context.Background(), "shown", slog.Int("x", 1))
	out := buf.String()
	if want := "event_id=" + dl.EventID.String() + " subscription=billing attempt=2 x=1"; !contains(out, want) || contains(out, "hidden") {
		t.Fatalf("log = %q, want %q and no debug record", out, want)
	}
}

// TestOutcomeWriteStatement: a batch of successes only takes the lean
// statement; one retry, failure or reason takes the full one, for the whole
// batch.
func TestOutcomeWriteStatement(t *testing.T) {
	done := func() outcome { return outcome{id: uuid.New(), token: "d/1", status: StatusCompleted} }
	w, _ := outcomeArgs([]outcome{done(), done()})
	if !w.completed || len(w.args) != 2 {
		t.Fatalf("successes only: completed=%v with %d arrays", w.completed, len(w.args))
	}
	for _, odd := range []outcome{
		{id: uuid.New(), token: "d/1", status: StatusPending, inc: 1, delay: time.Second, reason: "boom"},
		{id: uuid.New(), token: "d/1", status: StatusFailed, inc: 1, reason: "boom"},
		{id: uuid.New(), token: "d/1", status: StatusPending, reason: "released at shutdown"},
	} {
		w, _ := outcomeArgs([]outcome{done(), odd, done()})
		if w.completed || len(w.args) != 6 {
			t.Fatalf("%+v: completed=%v with %d arrays", odd, w.completed, len(w.args))
		}
	}
}

func TestTruncateReason(t *testing.T) {
	t.Parallel()
	long := string(make([]byte, 0)) + stringsRepeat("é", MaxFailureReasonBytes)
	got := TruncateReason(long)
	if len(got) > MaxFailureReasonBytes || !contains(got, "…[truncated]") {
		t.Fatalf("len %d: %q...", len(got), got[:20])
	}
	if got := TruncateReason("a\x00b"); got != "ab" {
		t.Fatalf("NUL kept: %q", got)
	}
}

func mockEngine(t *testing.T) (*Engine, sqlmock.Sqlmock) {
	t.Helper()
	db, mock, err := sqlmock.New()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	st, err := store.New(db, "outbox", nil)
	if err != nil {
		t.Fatal(err)
	}
	return New(Config{Settings: mustSettings(t, Settings{Name: "t", Workers: 1, BatchSize: 1}), Store: st, Logger: quietLogger()}), mock
}

// A batch of outcomes whose commit fails is retried, then dropped: nothing
// is marked done that was not, and the rows come back when their lease
// expires (the root's TestRescueExpiredLease shows that part on PostgreSQL).
func TestOutcomeCommitFails(t *testing.T) {
	t.Parallel()
	errDriver := errors.New("driver: connection reset by peer")
	e, mock := mockEngine(t)
	rec := &intrecord.Record{ID: uuid.New(), Integration: "hooks", Operation: intrecord.OpAPICallMade}
	batch := []outcome{{id: uuid.New(), token: "d/1", status: StatusCompleted, attempt: rec}}
	for range outcomeWriteAttempts {
		mock.ExpectBegin()
		mock.ExpectExec(`UPDATE "outbox".event_queue q\s+SET status`).WillReturnResult(sqlmock.NewResult(0, 1))
		mock.ExpectQuery(`INSERT INTO "outbox".integration_log`).WillReturnRows(
			sqlmock.NewRows([]string{"id", "occurred_at"}).AddRow(rec.ID.String(), time.Now()))
		mock.ExpectCommit().WillReturnError(errDriver)
	}
	start := time.Now()
	e.flush(context.Background(), batch)
	took := time.Since(start)
	if err := mock.ExpectationsWereMet(); err != nil {
		t.Fatalf("the failed batch was not retried as expected: %v", err)
	}
	// flush gives up after its attempts: it takes the waits between them
	// (50 ms, then four times the last), within the old bound's slack plus
	// ten times this machine's timer lag for each wait, measured right
	// after.
	var waits time.Duration
	for i, w := 0, 50*time.Millisecond; i < outcomeWriteAttempts-1; i, w = i+1, w*4 {
		waits += w
	}
	lag := testutil.TimerLag(5, 10*time.Millisecond)
	bound := testutil.Bound{}.Plus("waits between attempts", waits).Plus("slack", 10*time.Second-waits).
		PlusTimes(10*(outcomeWriteAttempts-1), "timer lag", lag)
	testutil.Within(t, "flush of a batch whose commit always fails", took, bound)
	select {
	case <-e.wake:
		t.Fatal("a failed flush asked for a fetch as if rows had finished")
	default:
	}
}

func TestFirstAnalyzeOfABacklog(t *testing.T) {
	t.Parallel()
	db := pgtest.DB(t)
	schema := pgtest.MigratedSchema(t)
	st, err := store.New(db, schema, nil)
	if err != nil {
		t.Fatal(err)
	}
	e := New(Config{Settings: mustSettings(t, Settings{}), Store: st, Logger: quietLogger()})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	// Autovacuum must not analyze the table first: the test is about the
	// engine's own ANALYZE.
	if _, err := db.ExecContext(ctx, `ALTER TABLE "`+schema+`".event_queue SET (autovacuum_enabled = false)`); err != nil {
		t.Fatal(err)
	}
	if e.firstAnalyze(ctx) {
		t.Fatal("an empty, never analyzed table reported as analyzed")
	}
	if _, err := db.ExecContext(ctx, `WITH ev AS (
		INSERT INTO "`+schema+`".system_event (id, event_type, payload) SELECT gen_random_uuid(), 'x', '1' FROM generate_series(1, $1::int)
		RETURNING id)
		INSERT INTO "`+schema+`".event_queue (event_id, topic, payload) SELECT id, 'x', '1' FROM ev`, firstAnalyzeRows+10); err != nil {
		t.Fatal(err)
	}
	// Table statistics reach pg_stat_user_tables within about a second.
	deadline := time.Now().Add(30 * time.Second)
	for !e.firstAnalyze(ctx) {
		if time.Now().After(deadline) {
			t.Fatal("the first analyze did not happen")
		}
		time.Sleep(50 * time.Millisecond)
	}
	var n int
	if err := db.QueryRowContext(ctx, `SELECT count(*) FROM pg_stat_user_tables WHERE schemaname = $1 AND relname = 'event_queue'
		AND last_analyze IS NOT NULL`, schema).Scan(&n); err != nil || n != 1 {
		t.Fatalf("queue table still without statistics (%v)", err)
	}
}
