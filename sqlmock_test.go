package outbox

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/DATA-DOG/go-sqlmock"

	"github.com/outboxkit/outbox/internal/fence"
)

// Driver failures that a real PostgreSQL cannot be made to produce on cue.

var errDriver = errors.New("driver: connection reset by peer")

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// expectFence makes the mock answer the version fence's read (the first
// Enqueue of a handle and a dispatcher's start read it): a schema at this
// release's version that admits it.
func expectFence(mock sqlmock.Sqlmock) {
	mock.ExpectQuery(`SELECT to_regclass`).WillReturnRows(sqlmock.NewRows([]string{"fence", "history"}).AddRow(true, true))
	mock.ExpectQuery(`SELECT schema_version, min_release`).WillReturnRows(
		sqlmock.NewRows([]string{"schema_version", "min_release"}).AddRow(fence.Release, 1))
}

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
	expectFence(mock)
	mock.ExpectQuery(`WITH ev AS \(\s+INSERT INTO "outbox".system_event`).WillReturnError(errDriver)
	mock.ExpectRollback()
	tx, err := db.Begin()
	if err != nil {
		t.Fatal(err)
	}
	_, err = ob.Enqueue(context.Background(), tx, "order.created", map[string]int{"id": 1}, nil)
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
	expectFence(mock)
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
