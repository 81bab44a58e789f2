package outbox

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/outboxkit/outbox/internal/pgtest"
	"github.com/outboxkit/outbox/internal/testutil"
)

// callBound is what recording may add to one call in these tests, whatever
// the database does, on top of what the same call takes unrecorded on this
// machine at the same time (callsWithinBound measures that): a generous
// figure, since the hand-off itself takes microseconds, while a call that
// waited for the database would wait for a write attempt (its
// WriteTimeout) or, in these tests, for ever.
const callBound = 100 * time.Millisecond

// callSlowdown is how many times the slowest unrecorded call a recorded
// call may take (besides callBound): scheduling on a loaded machine hits
// single calls, and the recorded ones are as many as the unrecorded ones
// they are compared with.
const callSlowdown = 4

// recorded is an outbound client and an inbound server, both recording
// through one IntegrationLog, and the same client and server unrecorded, to
// measure what a call costs on this machine without the log.
type recorded struct {
	client  *http.Client
	inbound *httptest.Server
	api     *httptest.Server
	plain   *httptest.Server // the inbound handler without the Middleware
}

func newRecorded(t *testing.T, l *IntegrationLog) *recorded {
	t.Helper()
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte(`{"id":"ch_1","ok":true}`))
	}))
	hook := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.WriteHeader(http.StatusNoContent)
	})
	inbound := httptest.NewServer(l.Middleware("hooks", nil)(hook))
	plain := httptest.NewServer(hook)
	r := &recorded{api: api, inbound: inbound, plain: plain,
		client: &http.Client{Transport: l.Transport("api", api.Client().Transport, &HTTPRecordOptions{ExternalID: ExternalIDFromJSON("id")})}}
	t.Cleanup(func() {
		inbound.Close()
		plain.Close()
		api.Close()
		r.client.CloseIdleConnections()
	})
	return r
}

// call makes one outbound and one inbound call, both recorded, and returns
// the longer of their durations.
func (r *recorded) call(t *testing.T) time.Duration {
	t.Helper()
	return max(post(t, r.client, r.api.URL+"/v1/charges"), post(t, r.inbound.Client(), r.inbound.URL+"/hook"))
}

// plainCall makes the same two calls unrecorded and returns the longer.
func (r *recorded) plainCall(t *testing.T) time.Duration {
	t.Helper()
	return max(post(t, r.api.Client(), r.api.URL+"/v1/charges"), post(t, r.plain.Client(), r.plain.URL+"/hook"))
}

func post(t *testing.T, c *http.Client, u string) time.Duration {
	t.Helper()
	start := time.Now()
	resp, err := c.Post(u, "application/json", strings.NewReader(`{"amount":100,"password":"hunter2"}`))
	if err != nil {
		// Errorf, not Fatal: call also runs on goroutines of its own.
		t.Errorf("POST %s: %v", u, err)
		return time.Since(start)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return time.Since(start)
}

// callsWithinBound makes n recorded outbound and inbound calls, each round
// beside the same calls unrecorded, and fails the test if a recorded call
// took longer than callBound plus callSlowdown times the slowest
// unrecorded call: recording must not make a call wait for the database.
func (r *recorded) callsWithinBound(t *testing.T, n int) {
	t.Helper()
	var worst, plain time.Duration
	for range n {
		plain = max(plain, r.plainCall(t))
		worst = max(worst, r.call(t))
	}
	bound := testutil.Bound{}.Plus("recording", callBound).PlusTimes(callSlowdown, "slowest unrecorded call", plain)
	if !testutil.Within(t, fmt.Sprintf("slowest of %d recorded calls", 2*n), worst, bound) {
		t.FailNow()
	}
}

// logOn returns an IntegrationLog of a handle on db in schema.
func logOn(t *testing.T, db *sql.DB, schema string, logger *slog.Logger, cfg IntegrationLogConfig) *IntegrationLog {
	t.Helper()
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	ob, err := New(db, Config{Schema: schema, Logger: logger})
	if err != nil {
		t.Fatal(err)
	}
	l, err := ob.NewIntegrationLog(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func countLog(t *testing.T, db *sql.DB, schema string) int64 {
	t.Helper()
	return countRows(t, db, `SELECT count(*) FROM "`+schema+`".integration_log`)
}

// With a healthy database every record lands once Close returns, redacted,
// whatever the concurrency.
func TestRecorderHealthyEveryRecordLands(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	l := newIntegrationLog(t, b, IntegrationLogConfig{BatchSize: 16})
	r := newRecorded(t, l)
	const workers, each = 8, 25
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for range each {
				r.call(t)
			}
		})
	}
	wg.Wait()
	closeLog(t, l)
	if n := countLog(t, b.db, b.schema); n != 2*workers*each {
		t.Fatalf("%d records, want %d", n, 2*workers*each)
	}
	st := l.BufferStats()
	if st.Written != 2*workers*each || st.Dropped+st.Rejected+st.Lost != 0 || st.Buffered != 0 {
		t.Fatalf("stats %+v", st)
	}
	for _, integration := range []string{"api", "hooks"} {
		recs := listAll(t, l, IntegrationFilter{Integration: integration, Limit: 50})
		if len(recs) != workers*each {
			t.Fatalf("%s: %d records listed, want %d", integration, len(recs), workers*each)
		}
		for _, rec := range recs {
			if strings.Contains(string(rec.Request), "hunter2") || !strings.Contains(string(rec.Request), "[REDACTED]") ||
				(integration == "api" && rec.ExternalID != "ch_1") {
				t.Fatalf("%s record %+v %s", integration, rec, rec.Request)
			}
		}
	}
}

// A database that refuses connections (a server of the test's own,
// stopped): calls finish within the bound, records wait in the buffer up
// to its bound and the rest are dropped and counted (and logged once);
// once the server is back the writer's retries write every buffered one.
func TestRecorderRefusingDatabaseThenBack(t *testing.T) {
	t.Parallel()
	srv := pgtest.NewServer(t)
	db, err := sql.Open("postgres", srv.DSN())
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var logs lockedBuffer
	l := logOn(t, db, "recorder", slog.New(slog.NewJSONHandler(&logs, nil)), IntegrationLogConfig{BufferRecords: 20, BatchSize: 4})
	if err := l.o.Migrate(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	r := newRecorded(t, l)
	srv.Stop()

	r.callsWithinBound(t, 15) // 30 records, 20 fit
	waitFor(t, "retries", func() bool { return l.BufferStats().Retries > 0 })
	st := l.BufferStats()
	if st.Buffered != 20 || st.Dropped != 10 || st.Written != 0 {
		t.Fatalf("stats while down: %+v", st)
	}
	waitFor(t, "the drops logged", func() bool { return strings.Contains(logs.String(), "records dropped") })

	srv.Start()
	waitFor(t, "the buffered records written", func() bool { return l.BufferStats().Written == 20 })
	closeLog(t, l)
	if n := countLog(t, db, "recorder"); n != 20 {
		t.Fatalf("%d records stored, want 20", n)
	}
	if n := strings.Count(logs.String(), "records dropped"); n != 1 {
		t.Fatalf("drops logged %d times, want once (rate-limited): %s", n, logs.String())
	}
}

// Close bounds the flush by its context: with a database that refuses
// (a closed port), it returns at the deadline and reports what it could
// not write.
func TestRecorderCloseBoundsTheFlush(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens there any more
	db, err := sql.Open("postgres", "postgres://postgres@"+addr+"/test?sslmode=disable")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	l := logOn(t, db, "recorder", nil, IntegrationLogConfig{})
	r := newRecorded(t, l)
	r.callsWithinBound(t, 5)
	err = closeWithin(t, l, 300*time.Millisecond)
	if !errors.Is(err, ErrRecordsNotWritten) || !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "10 records") {
		t.Fatalf("Close: %v", err)
	}
	waitFor(t, "the records counted lost", func() bool { return l.BufferStats().Lost == 10 })
	// After Close, calls still work and their records are dropped.
	r.callsWithinBound(t, 1)
	if st := l.BufferStats(); st.Dropped != 2 {
		t.Fatalf("stats after Close: %+v", st)
	}
}

// A database that blocks: the pool's only connection is held by another
// open transaction. Calls do not wait; the writer's attempts time out and
// are retried; once the transaction ends every record is written.
func TestRecorderBlockedPool(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	pgtest.ReserveConns(t, 1)
	// The writer's attempts after the rollback must fit in WriteTimeout on
	// this machine as loaded as it is now, a new connection included (the
	// pool's may have been dropped after a cancelled attempt): a fixed
	// 50 ms did not, with a second suite beside this one, and every attempt
	// timed out for 30 s. It is ten times a new connection and a write,
	// the slowest of three, and at least a second. While the transaction
	// holds the pool, every attempt times out whatever its length.
	connectWrite := testutil.Slowest(3, func() { freshConnectionWrite(t) })
	writeTimeout := max(time.Second, 10*connectWrite)
	t.Logf("new connection and write: slowest of 3 %s; WriteTimeout %s", connectWrite.Round(time.Millisecond), writeTimeout.Round(time.Millisecond))
	db, err := sql.Open("postgres", pgtest.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	db.SetMaxOpenConns(1)
	l := logOn(t, db, b.schema, nil, IntegrationLogConfig{WriteTimeout: writeTimeout, FlushInterval: time.Millisecond})
	r := newRecorded(t, l)
	tx, err := db.BeginTx(ctxT(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	r.callsWithinBound(t, 10)
	waitFor(t, "a timed-out attempt retried", func() bool { return l.BufferStats().Retries > 0 })
	if st := l.BufferStats(); st.Written != 0 || st.Buffered != 20 {
		t.Fatalf("stats while blocked: %+v", st)
	}
	if err := tx.Rollback(); err != nil {
		t.Fatal(err)
	}
	closeLog(t, l)
	if n := countLog(t, b.db, b.schema); n != 20 {
		t.Fatalf("%d records stored, want 20", n)
	}
}

// A database that accepts TCP connections and never answers (lib/pq does
// not honour the context during its handshake, so the writer's attempt
// hangs): calls still finish within the bound, under both full-buffer
// policies, drops are counted, and Close returns at its deadline.
func TestRecorderUnresponsiveDatabase(t *testing.T) {
	t.Parallel()
	for _, policy := range []BufferFullPolicy{DropWhenFull, BlockWhenFull} {
		t.Run(fmt.Sprint("policy=", policy), func(t *testing.T) {
			t.Parallel()
			hole := newBlackHole(t)
			db, err := sql.Open("postgres", "postgres://postgres@"+hole.addr()+"/test?sslmode=disable")
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			l := logOn(t, db, "recorder", nil, IntegrationLogConfig{BufferRecords: 6, WhenFull: policy, FlushInterval: time.Millisecond})
			r := newRecorded(t, l)
			r.callsWithinBound(t, 10)
			hole.waitAccepted(t)
			if st := l.BufferStats(); st.Dropped != 14 || st.Buffered != 6 {
				t.Fatalf("stats: %+v", st)
			}
			if err := closeWithin(t, l, 200*time.Millisecond); !errors.Is(err, ErrRecordsNotWritten) || !strings.Contains(err.Error(), "6 records") {
				t.Fatalf("Close: %v", err)
			}
			// Hanging up ends the stuck attempt, and with it the writer
			// (goleak in TestMain checks that nothing is left).
			hole.close()
			waitFor(t, "the stuck batch given up", func() bool { return l.BufferStats().Lost == 6 })
		})
	}
}

// closeSlack is what Close may take beyond its context's deadline on a
// quiet machine (a loaded one adds ten times its measured timer lag).
const closeSlack = 1700 * time.Millisecond

// closeWithin closes l with a context that ends after timeout and fails
// the test unless Close returned by then, plus closeSlack, plus ten times
// the lateness of this machine's timers measured right after: Close must
// return at its deadline, not once the records are written (never, in the
// tests that use it). It returns Close's error.
func closeWithin(t *testing.T, l *IntegrationLog, timeout time.Duration) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	start := time.Now()
	err := l.Close(ctx)
	took := time.Since(start)
	lag := testutil.TimerLag(5, 10*time.Millisecond)
	bound := testutil.Bound{}.Plus("Close's context", timeout).Plus("slack", closeSlack).PlusTimes(10, "timer lag", lag)
	testutil.Within(t, fmt.Sprintf("Close with a %s context", timeout), took, bound)
	return err
}

// freshConnectionWrite opens a connection of its own to the shared server,
// commits a write on it (a statement that takes a transaction id, so that
// its commit is flushed like a real write's) and closes it.
func freshConnectionWrite(t *testing.T) {
	t.Helper()
	db, err := sql.Open("postgres", pgtest.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.ExecContext(ctxT(t), `SELECT pg_current_xact_id()`); err != nil {
		t.Fatal(err)
	}
}

// blackHole accepts TCP connections on loopback and never writes a byte.
type blackHole struct {
	ln       net.Listener
	mu       sync.Mutex
	conns    []net.Conn
	accepted chan struct{}
	done     chan struct{}
}

func newBlackHole(t *testing.T) *blackHole {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	h := &blackHole{ln: ln, accepted: make(chan struct{}, 1), done: make(chan struct{})}
	go func() {
		defer close(h.done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			h.mu.Lock()
			h.conns = append(h.conns, c)
			h.mu.Unlock()
			select {
			case h.accepted <- struct{}{}:
			default:
			}
		}
	}()
	t.Cleanup(h.close)
	return h
}

func (h *blackHole) addr() string { return h.ln.Addr().String() }

func (h *blackHole) waitAccepted(t *testing.T) {
	t.Helper()
	select {
	case <-h.accepted:
	case <-time.After(10 * time.Second):
		t.Fatal("the writer never connected")
	}
}

func (h *blackHole) close() {
	h.ln.Close()
	<-h.done
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, c := range h.conns {
		c.Close()
	}
	h.conns = nil
}
