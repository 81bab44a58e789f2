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
)

// callBound is the longest one recorded call may take in these tests,
// whatever the database does (a generous bound: the hand-off itself takes
// microseconds).
const callBound = 100 * time.Millisecond

// recorded is an outbound client and an inbound server, both recording
// through one IntegrationLog.
type recorded struct {
	client  *http.Client
	inbound *httptest.Server
	api     *httptest.Server
}

func newRecorded(t *testing.T, l *IntegrationLog) *recorded {
	t.Helper()
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte(`{"id":"ch_1","ok":true}`))
	}))
	inbound := httptest.NewServer(l.Middleware("hooks", nil)(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.WriteHeader(http.StatusNoContent)
	})))
	r := &recorded{api: api, inbound: inbound,
		client: &http.Client{Transport: l.Transport("api", api.Client().Transport, &HTTPRecordOptions{ExternalID: ExternalIDFromJSON("id")})}}
	t.Cleanup(func() {
		inbound.Close()
		api.Close()
		r.client.CloseIdleConnections()
	})
	return r
}

// call makes one outbound and one inbound call and returns the longer of
// their durations.
func (r *recorded) call(t *testing.T) time.Duration {
	t.Helper()
	var longest time.Duration
	for _, u := range []string{r.api.URL + "/v1/charges", r.inbound.URL + "/hook"} {
		c := r.client
		if strings.HasPrefix(u, r.inbound.URL) {
			c = r.inbound.Client()
		}
		start := time.Now()
		resp, err := c.Post(u, "application/json", strings.NewReader(`{"amount":100,"password":"hunter2"}`))
		if err != nil {
			// Errorf, not Fatal: call also runs on goroutines of its own.
			t.Errorf("POST %s: %v", u, err)
			return longest
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		longest = max(longest, time.Since(start))
	}
	return longest
}

// callsWithinBound makes n outbound and n inbound calls and fails the test
// if any took longer than bound.
func (r *recorded) callsWithinBound(t *testing.T, n int, bound time.Duration) {
	t.Helper()
	var worst time.Duration
	for range n {
		worst = max(worst, r.call(t))
	}
	if worst > bound {
		t.Fatalf("a recorded call took %s, over the bound of %s", worst, bound)
	}
	t.Logf("slowest of %d calls: %s", 2*n, worst)
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

	r.callsWithinBound(t, 15, callBound) // 30 records, 20 fit
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
	r.callsWithinBound(t, 5, callBound)
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	err = l.Close(ctx)
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("Close took %s with a 300ms context", d)
	}
	if !errors.Is(err, ErrRecordsNotWritten) || !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "10 records") {
		t.Fatalf("Close: %v", err)
	}
	waitFor(t, "the records counted lost", func() bool { return l.BufferStats().Lost == 10 })
	// After Close, calls still work and their records are dropped.
	r.callsWithinBound(t, 1, callBound)
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
	db, err := sql.Open("postgres", pgtest.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	db.SetMaxOpenConns(1)
	l := logOn(t, db, b.schema, nil, IntegrationLogConfig{WriteTimeout: 50 * time.Millisecond, FlushInterval: time.Millisecond})
	r := newRecorded(t, l)
	tx, err := db.BeginTx(ctxT(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	r.callsWithinBound(t, 10, callBound)
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
			r.callsWithinBound(t, 10, callBound)
			hole.waitAccepted(t)
			if st := l.BufferStats(); st.Dropped != 14 || st.Buffered != 6 {
				t.Fatalf("stats: %+v", st)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
			defer cancel()
			start := time.Now()
			if err := l.Close(ctx); !errors.Is(err, ErrRecordsNotWritten) || !strings.Contains(err.Error(), "6 records") {
				t.Fatalf("Close: %v", err)
			}
			if d := time.Since(start); d > 2*time.Second {
				t.Fatalf("Close took %s", d)
			}
			// Hanging up ends the stuck attempt, and with it the writer
			// (goleak in TestMain checks that nothing is left).
			hole.close()
			waitFor(t, "the stuck batch given up", func() bool { return l.BufferStats().Lost == 6 })
		})
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
