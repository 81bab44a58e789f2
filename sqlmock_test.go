package outbox

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/DATA-DOG/go-sqlmock"
	"github.com/google/uuid"
)

// Driver failures that a real PostgreSQL cannot be made to produce on cue.

var errDriver = errors.New("driver: connection reset by peer")

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func TestSQLMockEnqueueWrapsDriverError(t *testing.T) {
	t.Parallel()
	db, mock, err := sqlmock.New()
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	ob, err := New(db, Config{Logger: quietLogger(), NoPreparedStatements: true})
	if err != nil {
		t.Fatal(err)
	}
	mock.ExpectBegin()
	mock.ExpectQuery(`WITH ev AS \(\s+INSERT INTO "outbox".system_event`).WillReturnError(errDriver)
	mock.ExpectRollback()
	tx, err := db.Begin()
	if err != nil {
		t.Fatal(err)
	}
	_, err = ob.Enqueue(context.Background(), tx, "order.created", map[string]int{"id": 1})
	if !errors.Is(err, errDriver) || err.Error() != "outbox: enqueue order.created: "+errDriver.Error() {
		t.Fatalf("err = %v, want the driver error wrapped with the topic", err)
	}
	if err := tx.Rollback(); err != nil {
		t.Fatal(err)
	}
	if err := mock.ExpectationsWereMet(); err != nil {
		t.Fatal(err)
	}
}

// A batch of outcomes whose commit fails is retried, then dropped: nothing
// is marked done that was not, and the rows come back when their lease
// expires (TestRescueExpiredLease shows that part on PostgreSQL).
func TestSQLMockOutcomeCommitFails(t *testing.T) {
	t.Parallel()
	db, mock, err := sqlmock.New()
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	ob, err := New(db, Config{Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	d, err := ob.NewDispatcher(DispatcherConfig{})
	if err != nil {
		t.Fatal(err)
	}
	r := &run{d: d, o: ob, wake: make(chan struct{}, 1)}
	id := uuid.New()
	rec := ob.httpCallRecord("hooks", httptest.NewRequest(http.MethodPost, "https://hooks.example/in", nil), nil,
		&http.Response{StatusCode: http.StatusNoContent, Header: http.Header{}}, nil, nil, time.Millisecond)
	batch := []outcome{{id: id, token: "d/1", status: StatusCompleted, record: &rec}}
	for range 4 {
		mock.ExpectBegin()
		mock.ExpectExec(`UPDATE "outbox".event_queue q\s+SET status`).WillReturnResult(sqlmock.NewResult(0, 1))
		mock.ExpectQuery(`INSERT INTO "outbox".integration_log`).
			WillReturnRows(sqlmock.NewRows([]string{"id", "occurred_at"}).AddRow(uuid.NewString(), time.Now()))
		mock.ExpectCommit().WillReturnError(errDriver)
	}
	start := time.Now()
	r.flush(context.Background(), batch)
	if err := mock.ExpectationsWereMet(); err != nil {
		t.Fatalf("the failed batch was not retried as expected: %v", err)
	}
	if took := time.Since(start); took > 10*time.Second {
		t.Fatalf("flush kept retrying for %s", took)
	}
	select {
	case <-r.wake:
		t.Fatal("a failed flush asked for a fetch as if rows had finished")
	default:
	}
}

// A dispatcher whose claims fail keeps running, backs off, and stops cleanly.
func TestSQLMockClaimErrorsDoNotStopRun(t *testing.T) {
	t.Parallel()
	db, mock, err := sqlmock.New()
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	mock.MatchExpectationsInOrder(false)
	ob, err := New(db, Config{Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	d, err := ob.NewDispatcher(DispatcherConfig{PollInterval: time.Hour, RescueInterval: time.Hour, CleanupInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	d.Handle("h", func(context.Context, *Delivery) error { return nil })
	for range 3 {
		mock.ExpectQuery(`WITH c AS \(`).WillReturnError(errDriver).WillDelayFor(0)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	deadline := time.After(10 * time.Second)
	for mock.ExpectationsWereMet() != nil {
		select {
		case <-deadline:
			cancel()
			t.Fatalf("claims were not retried after errors: %v", mock.ExpectationsWereMet())
		case <-time.After(10 * time.Millisecond):
		}
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run = %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return")
	}
}
