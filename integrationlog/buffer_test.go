package integrationlog_test

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/outboxkit/outbox"
	"github.com/outboxkit/outbox/integrationlog"
	"github.com/outboxkit/outbox/internal/pgtest"
	"github.com/outboxkit/outbox/internal/testutil"
	"github.com/outboxkit/outbox/redact"
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
// through one integration log, and the same client and server unrecorded, to
// measure what a call costs on this machine without the log.
type recorded struct {
	client  *http.Client
	inbound *httptest.Server
	api     *httptest.Server
	plain   *httptest.Server // the inbound handler without the Middleware
}

func newRecorded(t *testing.T, l *integrationlog.Log) *recorded {
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
		client: &http.Client{Transport: l.Transport("api", api.Client().Transport, &integrationlog.HTTPOptions{ExternalID: integrationlog.ExternalIDFromJSON("id")})}}
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
	return max(timedPost(t, r.client, r.api.URL+"/v1/charges"), timedPost(t, r.inbound.Client(), r.inbound.URL+"/hook"))
}

// plainCall makes the same two calls unrecorded and returns the longer.
func (r *recorded) plainCall(t *testing.T) time.Duration {
	t.Helper()
	return max(timedPost(t, r.api.Client(), r.api.URL+"/v1/charges"), timedPost(t, r.plain.Client(), r.plain.URL+"/hook"))
}

func timedPost(t *testing.T, c *http.Client, u string) time.Duration {
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

// With a healthy database every record lands once Close returns, redacted,
// whatever the concurrency.
func TestRecorderHealthyEveryRecordLands(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	l := newLog(t, b, integrationlog.Config{BatchSize: 16})
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
	if n := b.countRows(t, "integration_log", ""); n != 2*workers*each {
		t.Fatalf("%d records, want %d", n, 2*workers*each)
	}
	st := l.BufferStats()
	if st.Written != 2*workers*each || st.Dropped+st.Rejected+st.Lost != 0 || st.Buffered != 0 {
		t.Fatalf("stats %+v", st)
	}
	for _, integration := range []string{"api", "hooks"} {
		recs := listAll(t, l, integrationlog.Filter{Integration: integration, Limit: 50})
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
	var logs testutil.LockedBuffer
	ob := handleOn(t, db, "recorder", slog.New(slog.NewJSONHandler(&logs, nil)))
	if err := ob.Migrate(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	l := logOn(t, ob, integrationlog.Config{BufferRecords: 20, BatchSize: 4})
	r := newRecorded(t, l)
	srv.Stop()
	began := time.Now()

	r.callsWithinBound(t, 15) // 30 records, 20 fit
	testutil.WaitFor(t, "retries", func() bool { return l.BufferStats().Retries > 0 })
	st := l.BufferStats()
	if st.Buffered != 20 || st.Dropped != 10 || st.Written != 0 {
		t.Fatalf("stats while down: %+v", st)
	}
	testutil.WaitFor(t, "the drops logged", func() bool { return strings.Contains(logs.String(), "records dropped") })

	srv.Start()
	testutil.WaitFor(t, "the buffered records written", func() bool { return l.BufferStats().Written == 20 })
	closeLog(t, l)
	if n := testutil.CountRows(t, db, "recorder", "integration_log", ""); n != 20 {
		t.Fatalf("%d records stored, want 20", n)
	}
	// Drops are logged at most once per 10 s (the log interval), plus one
	// last report when the log closes, and every drop is in a report.
	var lines, dropped int
	for _, line := range strings.Split(logs.String(), "\n") {
		var e struct {
			Msg     string `json:"msg"`
			Dropped int    `json:"dropped"`
		}
		if json.Unmarshal([]byte(line), &e) == nil && e.Msg == "records dropped: buffer full or closed" {
			lines, dropped = lines+1, dropped+e.Dropped
		}
	}
	if most := 2 + int(time.Since(began)/(10*time.Second)); lines < 1 || lines > most || dropped != 10 {
		t.Fatalf("drops logged %d times (at most %d: rate-limited) for %d drops, want 10: %s", lines, most, dropped, logs.String())
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
	l := logOn(t, handleOn(t, db, "recorder", nil), integrationlog.Config{})
	r := newRecorded(t, l)
	r.callsWithinBound(t, 5)
	err = closeWithin(t, l, 300*time.Millisecond)
	if !errors.Is(err, integrationlog.ErrRecordsNotWritten) || !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "10 records") {
		t.Fatalf("Close: %v", err)
	}
	testutil.WaitFor(t, "the records counted lost", func() bool { return l.BufferStats().Lost == 10 })
	// After Close, calls still work and their records are dropped.
	r.callsWithinBound(t, 1)
	if st := l.BufferStats(); st.Dropped != 2 {
		t.Fatalf("stats after Close: %+v", st)
	}
}

// A database that blocks: the pool's only connection is held by another
// open transaction. Calls do not wait; the writer's attempts time out and
// are retried; once the transaction ends every record is written. (The
// write timeout leaves a loaded machine room for a write once the pool is
// free: at 50 ms, every attempt could time out until Close's deadline.)
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
	l := logOn(t, handleOn(t, db, b.schema, nil), integrationlog.Config{WriteTimeout: writeTimeout, FlushInterval: time.Millisecond})
	r := newRecorded(t, l)
	tx, err := db.BeginTx(ctxT(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	r.callsWithinBound(t, 10)
	testutil.WaitFor(t, "a timed-out attempt retried", func() bool { return l.BufferStats().Retries > 0 })
	if st := l.BufferStats(); st.Written != 0 || st.Buffered != 20 {
		t.Fatalf("stats while blocked: %+v", st)
	}
	if err := tx.Rollback(); err != nil {
		t.Fatal(err)
	}
	closeLog(t, l)
	if n := b.countRows(t, "integration_log", ""); n != 20 {
		t.Fatalf("%d records stored, want 20", n)
	}
}

// A database that accepts TCP connections and never answers (lib/pq does
// not honour the context during its handshake, so the writer's attempt
// hangs): calls still finish within the bound, under both full-buffer
// policies, drops are counted, and Close returns at its deadline.
func TestRecorderUnresponsiveDatabase(t *testing.T) {
	t.Parallel()
	for _, policy := range []integrationlog.BufferFullPolicy{integrationlog.DropWhenFull, integrationlog.BlockWhenFull} {
		t.Run(fmt.Sprint("policy=", policy), func(t *testing.T) {
			t.Parallel()
			hole := newBlackHole(t)
			db, err := sql.Open("postgres", "postgres://postgres@"+hole.addr()+"/test?sslmode=disable")
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			l := logOn(t, handleOn(t, db, "recorder", nil), integrationlog.Config{BufferRecords: 6, WhenFull: policy, FlushInterval: time.Millisecond})
			r := newRecorded(t, l)
			r.callsWithinBound(t, 10)
			hole.waitAccepted(t)
			if st := l.BufferStats(); st.Dropped != 14 || st.Buffered != 6 {
				t.Fatalf("stats: %+v", st)
			}
			if err := closeWithin(t, l, 200*time.Millisecond); !errors.Is(err, integrationlog.ErrRecordsNotWritten) || !strings.Contains(err.Error(), "6 records") {
				t.Fatalf("Close: %v", err)
			}
			// Hanging up ends the stuck attempt, and with it the writer
			// (goleak in TestMain checks that nothing is left).
			hole.close()
			testutil.WaitFor(t, "the stuck batch given up", func() bool { return l.BufferStats().Lost == 6 })
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
func closeWithin(t *testing.T, l *integrationlog.Log, timeout time.Duration) error {
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

// newAPI returns a third-party API that answers every call with a JSON id.
func newAPI(t *testing.T) *httptest.Server {
	t.Helper()
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte(`{"id":"ch_1"}`))
	}))
	t.Cleanup(api.Close)
	return api
}

// post makes n calls through c and closes their bodies (which hands their
// records to the buffer).
func post(t *testing.T, c *http.Client, url string, n int) {
	t.Helper()
	for range n {
		resp, err := c.Post(url, "application/json", strings.NewReader(`{"amount":100}`))
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
}

// untilStored polls integration_log in db until it holds want records of
// integration, and returns how long that took.
func untilStored(t *testing.T, db *sql.DB, schema, integration string, want int64) time.Duration {
	t.Helper()
	start := time.Now()
	tick := time.NewTicker(2 * time.Millisecond)
	defer tick.Stop()
	deadline := time.After(30 * time.Second)
	for testutil.CountRows(t, db, schema, "integration_log", "integration_name = $1", integration) < want {
		select {
		case <-tick.C:
		case <-deadline:
			t.Fatalf("%s: fewer than %d records stored after 30s", integration, want)
		}
	}
	return time.Since(start)
}

// Flush makes what Transport and Middleware recorded readable at once,
// without waiting for the flush interval nor closing the log, which goes
// on recording after it.
func TestRecorderFlushThenList(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	l := newLog(t, b, integrationlog.Config{FlushInterval: time.Hour}) // only Flush and Close write
	if err := l.Flush(ctxT(t)); err != nil {
		t.Fatalf("Flush of an unused log: %v", err)
	}
	r := newRecorded(t, l)
	for round := 1; round <= 3; round++ {
		for range 4 {
			r.call(t)
		}
		if err := l.Flush(ctxT(t)); err != nil {
			t.Fatal(err)
		}
		api := listAll(t, l, integrationlog.Filter{Integration: "api"})
		hooks := listAll(t, l, integrationlog.Filter{Integration: "hooks"})
		if len(api) != 4*round || len(hooks) != 4*round {
			t.Fatalf("round %d: %d api and %d hooks records readable after Flush, want %d each", round, len(api), len(hooks), 4*round)
		}
		for _, rec := range api {
			if rec.ExternalID != "ch_1" || rec.Operation != integrationlog.OpAPICallMade || strings.Contains(string(rec.Request), "hunter2") {
				t.Fatalf("record %+v %s", rec, rec.Request)
			}
		}
	}
	if st := l.BufferStats(); st.Written != 24 || st.Buffered != 0 || st.Lost+st.Dropped+st.Rejected != 0 {
		t.Fatalf("stats %+v", st)
	}
}

// A Flush whose context ends while the database is blocked (the pool's
// only connection held by an open transaction) says how many records it
// left unwritten; none is lost: they are written once the database is
// free.
func TestRecorderFlushContextEndsWhileBlocked(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	db, err := sql.Open("postgres", pgtest.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	db.SetMaxOpenConns(1)
	l := logOn(t, handleOn(t, db, b.schema, nil), integrationlog.Config{FlushInterval: time.Millisecond})
	defer closeLog(t, l)
	api := newAPI(t)
	c := &http.Client{Transport: l.Transport("api", api.Client().Transport, nil)}
	tx, err := db.BeginTx(ctxT(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback()
	post(t, c, api.URL, 6)

	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	if err := l.Flush(cancelled); !errors.Is(err, integrationlog.ErrRecordsNotWritten) || !errors.Is(err, context.Canceled) ||
		!strings.Contains(err.Error(), "6 records") {
		t.Fatalf("Flush with a cancelled context: %v", err)
	}
	short, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if err := l.Flush(short); !errors.Is(err, integrationlog.ErrRecordsNotWritten) || !errors.Is(err, context.DeadlineExceeded) ||
		!strings.Contains(err.Error(), "6 records") {
		t.Fatalf("Flush with a short deadline: %v", err)
	}
	if st := l.BufferStats(); st.Buffered != 6 || st.Written != 0 || st.Lost != 0 {
		t.Fatalf("stats while blocked: %+v", st)
	}

	if err := tx.Rollback(); err != nil {
		t.Fatal(err)
	}
	if err := l.Flush(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	if n := b.countRows(t, "integration_log", "integration_name = 'api'"); n != 6 {
		t.Fatalf("%d records stored, want 6", n)
	}
	// And the log goes on.
	post(t, c, api.URL, 1)
	if err := l.Flush(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	if st := l.BufferStats(); st.Written != 7 || st.Lost != 0 {
		t.Fatalf("stats %+v", st)
	}
}

// healthyTime returns how long records made through c (of integration)
// take to be stored in db when nothing fails, on this machine now: the
// median of three rounds of five calls, after a round that warms the
// connections up.
func healthyTime(t *testing.T, c *http.Client, url string, db *sql.DB, schema, integration string) time.Duration {
	t.Helper()
	var rounds []time.Duration
	for i := range 4 {
		post(t, c, url, 5)
		d := untilStored(t, db, schema, integration, int64(5*(i+1)))
		if i > 0 {
			rounds = append(rounds, d)
		}
	}
	slices.Sort(rounds)
	return rounds[1]
}

// goodWithin returns the bound within which the healthy recorder's records
// must be stored while another destination fails: twenty times what they
// took with every destination healthy in the same run, plus two flush
// intervals (the machine may be loaded; what is asserted is that they do
// not wait on the failing destination's retries).
func goodWithin(healthy, flushInterval time.Duration) time.Duration {
	return 20*healthy + 2*flushInterval
}

// One recorder writes to a database that is down (a private server,
// stopped), another to the log's own: the healthy one's records are stored
// while the other's are retried, and these are given up once their
// destination has failed for MaxRetryTime, counted exactly and reported.
// When the server is back, that destination is written again.
func TestRecorderStoppedDestinationGivenUpOthersFlow(t *testing.T) {
	t.Parallel()
	var logs testutil.LockedBuffer
	b := setup(t, &outbox.Config{Logger: slog.New(slog.NewJSONHandler(&logs, nil))})
	api := newAPI(t)
	const flushEvery = 10 * time.Millisecond

	// How long the healthy recorder's records take to be stored when
	// nothing fails, on this machine now (a log of its own: the bound of
	// the log under test depends on it).
	l0 := newLog(t, b, integrationlog.Config{FlushInterval: flushEvery})
	c0 := &http.Client{Transport: l0.Transport("baseline", api.Client().Transport, nil)}
	healthy := healthyTime(t, c0, api.URL, b.db, b.schema, "baseline")
	within := goodWithin(healthy, flushEvery)
	bound := max(2*time.Second, 4*within)

	srv := pgtest.NewServer(t)
	far, err := sql.Open("postgres", srv.DSN())
	if err != nil {
		t.Fatal(err)
	}
	defer far.Close()
	obFar, err := outbox.New(far, outbox.Config{Schema: b.schema})
	if err != nil {
		t.Fatal(err)
	}
	if err := obFar.Migrate(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	l := newLog(t, b, integrationlog.Config{FlushInterval: flushEvery, MaxRetryTime: bound})
	bad := &http.Client{Transport: l.Transport("far", api.Client().Transport, &integrationlog.HTTPOptions{DB: far})}
	good := &http.Client{Transport: l.Transport("near", api.Client().Transport, nil)}

	srv.Stop()
	start := time.Now()
	post(t, bad, api.URL, 5)
	testutil.WaitFor(t, "the far destination retried", func() bool { return l.BufferStats().Retries > 0 })
	post(t, good, api.URL, 5)
	took := untilStored(t, b.db, b.schema, "near", 5)
	t.Logf("healthy: %s; near records stored in %s while far retried (bound %s); MaxRetryTime %s", healthy, took, within, bound)
	if took > within {
		t.Fatalf("near records took %s to be stored while far failed, over %s (20 x %s healthy + 2 flush intervals)", took, within, healthy)
	}
	// (Stored is seen a moment before the writer counts it written.)
	testutil.WaitFor(t, "near counted written", func() bool { return l.BufferStats().Written == 5 })
	if st := l.BufferStats(); st.Lost != 0 || st.Buffered != 5 {
		t.Fatalf("stats while far retries: %+v, want its 5 records buffered", st)
	}

	err = l.Flush(ctxT(t))
	elapsed := time.Since(start)
	if !errors.Is(err, integrationlog.ErrRecordsNotWritten) || !strings.Contains(err.Error(), "5 records") || !strings.Contains(err.Error(), "given up") {
		t.Fatalf("Flush: %v, want 5 records given up", err)
	}
	if elapsed < bound {
		t.Fatalf("far records given up after %s, before MaxRetryTime %s", elapsed, bound)
	}
	if st := l.BufferStats(); st.Lost != 5 || st.Written != 5 || st.Buffered != 0 {
		t.Fatalf("stats after the bound: %+v, want 5 lost, 5 written", st)
	}
	if !strings.Contains(logs.String(), "records given up: destination failing") {
		t.Fatalf("the give-up not logged: %s", logs.String())
	}
	t.Logf("far given up %s after the calls (bound %s)", elapsed, bound)

	srv.Start()
	post(t, bad, api.URL, 2)
	if err := l.Flush(ctxT(t)); err != nil {
		t.Fatalf("Flush with the far destination back: %v", err)
	}
	if n := testutil.CountRows(t, far, b.schema, "integration_log", "integration_name = 'far'"); n != 2 {
		t.Fatalf("%d far records stored, want the 2 made after it came back", n)
	}
	closeLog(t, l)
	if st := l.BufferStats(); st.Lost != 5 || st.Written != 7 {
		t.Fatalf("final stats %+v", st)
	}
}

// One recorder writes through a pool exhausted by a held transaction,
// another to the log's own database: the healthy one's records are stored
// while the other's attempts hang and are retried; when the transaction
// ends, before the bound, every held-back record is written.
func TestRecorderExhaustedPoolBackBeforeBound(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	api := newAPI(t)
	const flushEvery = 10 * time.Millisecond
	busy, err := sql.Open("postgres", pgtest.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	busy.SetMaxOpenConns(1)
	l := newLog(t, b, integrationlog.Config{FlushInterval: flushEvery, WriteTimeout: time.Second})
	slow := &http.Client{Transport: l.Transport("busy", api.Client().Transport, &integrationlog.HTTPOptions{DB: busy})}
	slow2 := &http.Client{Transport: l.Transport("busy2", api.Client().Transport, &integrationlog.HTTPOptions{DB: busy})}
	good := &http.Client{Transport: l.Transport("free", api.Client().Transport, nil)}

	// Every destination healthy: how long records take to be stored.
	post(t, slow, api.URL, 1)
	healthy := healthyTime(t, good, api.URL, b.db, b.schema, "free")
	within := goodWithin(healthy, flushEvery)
	if err := l.Flush(ctxT(t)); err != nil {
		t.Fatal(err)
	}

	tx, err := busy.BeginTx(ctxT(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback()
	post(t, slow, api.URL, 4)
	post(t, slow2, api.URL, 3) // the same pool: one destination
	testutil.WaitFor(t, "a hung attempt retried", func() bool { return l.BufferStats().Retries > 0 })
	post(t, good, api.URL, 5)
	took := untilStored(t, b.db, b.schema, "free", 25)
	t.Logf("healthy: %s; free records stored in %s while busy hung (bound %s)", healthy, took, within)
	if took > within {
		t.Fatalf("free records took %s to be stored while busy hung, over %s (20 x %s healthy + 2 flush intervals)", took, within, healthy)
	}
	testutil.WaitFor(t, "free counted written", func() bool { return l.BufferStats().Written == 26 })
	if st := l.BufferStats(); st.Buffered != 7 || st.Lost != 0 {
		t.Fatalf("stats while busy hangs: %+v, want its 7 records buffered", st)
	}

	if err := tx.Rollback(); err != nil {
		t.Fatal(err)
	}
	if err := l.Flush(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	if n := b.countRows(t, "integration_log", "integration_name IN ('busy', 'busy2')"); n != 8 {
		t.Fatalf("%d busy records stored, want 8", n)
	}
	if st := l.BufferStats(); st.Written != 33 || st.Lost != 0 || st.Buffered != 0 {
		t.Fatalf("stats %+v", st)
	}
}

// New refuses buffer settings it cannot use, naming the field, before it
// touches the database.
func TestNewChecksBufferConfig(t *testing.T) {
	t.Parallel()
	db, err := sql.Open("postgres", pgtest.URL()) // never connected: New sends no SQL
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	ob := handleOn(t, db, "recorder", nil)
	for _, tc := range []struct {
		field string
		cfg   integrationlog.Config
	}{
		{"buffer_records", integrationlog.Config{BufferRecords: -1}},
		{"buffer_bytes", integrationlog.Config{BufferBytes: -1}},
		{"batch_size", integrationlog.Config{BatchSize: -1}},
		{"flush_interval", integrationlog.Config{FlushInterval: -time.Second}},
		{"block_timeout", integrationlog.Config{BlockTimeout: -time.Second}},
		{"write_timeout", integrationlog.Config{WriteTimeout: -time.Second}},
		{"max_retry_time", integrationlog.Config{MaxRetryTime: -time.Second}},
		{"when_full", integrationlog.Config{WhenFull: 7}},
	} {
		var ve *outbox.ValidationError
		if _, err := integrationlog.New(ob, tc.cfg); !errors.Is(err, outbox.ErrInvalidConfig) || !errors.As(err, &ve) || ve.Field != tc.field {
			t.Errorf("%s: %v", tc.field, err)
		}
	}
	if _, err := integrationlog.New(ob, integrationlog.Config{MaxRetryTime: time.Second}); err != nil {
		t.Fatal(err)
	}
	if _, err := integrationlog.New(nil, integrationlog.Config{}); !errors.Is(err, outbox.ErrInvalidConfig) {
		t.Errorf("nil handle: %v", err)
	}
	if _, err := integrationlog.New(ob, integrationlog.Config{Redaction: redact.Rules{MaxBodyBytes: -1}}); !errors.Is(err, outbox.ErrInvalidConfig) {
		t.Errorf("bad redaction rules: %v", err)
	}
}
