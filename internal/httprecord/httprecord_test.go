package httprecord

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"testing/iotest"
	"time"
)

// exchanges collects what a Transport or Handler hands over.
type exchanges chan *Exchange

func newExchanges() exchanges { return make(exchanges, 16) }

func (c exchanges) done(ex *Exchange) { c <- ex }

// next returns the next exchange, failing the test after a deadline.
func (c exchanges) next(t *testing.T) *Exchange {
	t.Helper()
	select {
	case ex := <-c:
		return ex
	case <-time.After(10 * time.Second):
		t.Fatal("no exchange")
		return nil
	}
}

// none fails the test if an exchange is waiting.
func (c exchanges) none(t *testing.T) {
	t.Helper()
	select {
	case ex := <-c:
		t.Fatalf("unexpected exchange: %+v", ex)
	default:
	}
}

func fixedNow() time.Time { return time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC) }

// echo answers with the request body, or with the size asked for in ?n=.
func echo() *httptest.Server {
	return httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		w.Header().Set("X-Seen", fmt.Sprint(len(body)))
		switch {
		case r.URL.Query().Get("n") != "":
			var n int
			fmt.Sscan(r.URL.Query().Get("n"), &n)
			w.Write([]byte(strings.Repeat("r", n)))
		case r.URL.Path == "/empty":
			w.WriteHeader(http.StatusNoContent)
		default:
			w.WriteHeader(http.StatusCreated)
			w.Write(body)
		}
	}))
}

func TestTransportCapturesBothBodies(t *testing.T) {
	t.Parallel()
	srv := echo()
	defer srv.Close()
	got := newExchanges()
	client := &http.Client{Transport: Transport(srv.Client().Transport, Config{Limit: 8, Now: fixedNow}, got.done)}

	for name, body := range map[string]func() io.Reader{
		"replayable": func() io.Reader { return strings.NewReader("0123456789abcdef") },
		"streamed":   func() io.Reader { return io.MultiReader(strings.NewReader("0123456789abcdef")) },
	} {
		req, _ := http.NewRequest("POST", srv.URL+"/echo", body())
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		got.none(t) // not before the body is read
		b, _ := io.ReadAll(resp.Body)
		if string(b) != "0123456789abcdef" || resp.Header.Get("X-Seen") != "16" {
			t.Fatalf("%s: caller got %q, server saw %s bytes", name, b, resp.Header.Get("X-Seen"))
		}
		ex := got.next(t) // at EOF, before Close
		resp.Body.Close()
		got.none(t) // once only
		if ex.Request != req || !ex.Start.Equal(fixedNow()) || ex.Duration <= 0 || ex.Err != nil || ex.Response != resp ||
			string(ex.RequestBody) != "01234567" || ex.RequestBytes != 16 ||
			string(ex.ResponseBody) != "01234567" || ex.ResponseBytes != 16 {
			t.Errorf("%s: %+v", name, ex)
		}
	}
}

func TestTransportEarlyCloseAndNoBody(t *testing.T) {
	t.Parallel()
	srv := echo()
	defer srv.Close()
	got := newExchanges()
	client := &http.Client{Transport: Transport(srv.Client().Transport, Config{Limit: 4}, got.done)}

	// Closed after a part was read: what was read is kept and counted.
	resp, err := client.Get(srv.URL + "/?n=100000")
	if err != nil {
		t.Fatal(err)
	}
	part := make([]byte, 10)
	if _, err := io.ReadFull(resp.Body, part); err != nil {
		t.Fatal(err)
	}
	got.none(t)
	resp.Body.Close()
	ex := got.next(t)
	if string(ex.ResponseBody) != "rrrr" || ex.ResponseBytes < 10 || ex.ResponseBytes >= 100000 || ex.Response.StatusCode != 200 {
		t.Errorf("early close: %+v", ex)
	}
	resp.Body.Close()
	got.none(t)

	// Closed unread.
	resp, err = client.Get(srv.URL + "/?n=10")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if ex := got.next(t); len(ex.ResponseBody) != 0 || ex.ResponseBytes != 0 || ex.Response.StatusCode != 200 {
		t.Errorf("closed unread: %+v", ex)
	}

	// No body: handed over when RoundTrip returns.
	resp, err = client.Get(srv.URL + "/empty")
	if err != nil {
		t.Fatal(err)
	}
	if ex := got.next(t); ex.Response.StatusCode != http.StatusNoContent || ex.ResponseBytes != 0 {
		t.Errorf("no body: %+v", ex)
	}
	resp.Body.Close()
	got.none(t)
}

// A response body cut short (fewer bytes than its Content-Length) fails the
// caller's read; the exchange ends at Close with what was read.
func TestTransportBodyReadError(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "100")
		w.Write([]byte("short"))
	}))
	defer srv.Close()
	got := newExchanges()
	client := &http.Client{Transport: Transport(srv.Client().Transport, Config{Limit: 64}, got.done)}
	resp, err := client.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(resp.Body)
	if !errors.Is(err, io.ErrUnexpectedEOF) || string(b) != "short" {
		t.Fatalf("caller read %q, %v", b, err)
	}
	got.none(t) // an error is not the end of the body: Close is
	resp.Body.Close()
	if ex := got.next(t); string(ex.ResponseBody) != "short" || ex.ResponseBytes != 5 || ex.Err != nil {
		t.Errorf("read error: %+v", ex)
	}
}

func TestTransportError(t *testing.T) {
	t.Parallel()
	boom := errors.New("boom")
	got := newExchanges()
	rt := Transport(roundTripFunc(func(r *http.Request) (*http.Response, error) {
		io.ReadAll(io.LimitReader(r.Body, 3)) // a transport that gave up mid-body
		return nil, boom
	}), Config{Limit: 64}, got.done)
	req, _ := http.NewRequest("POST", "http://example.invalid/", io.MultiReader(strings.NewReader("abcdef")))
	if _, err := rt.RoundTrip(req); !errors.Is(err, boom) {
		t.Fatalf("error %v, want boom", err)
	}
	if ex := got.next(t); ex.Err != boom || ex.Response != nil || string(ex.RequestBody) != "abc" || ex.RequestBytes != 3 {
		t.Errorf("failed call: %+v", ex)
	}
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

func TestHandlerCaptures(t *testing.T) {
	t.Parallel()
	got := newExchanges()
	var seen []byte
	h := Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seen, _ = io.ReadAll(r.Body)
		w.Header().Set("X-Answer", "yes")
		w.WriteHeader(http.StatusAccepted)
		w.WriteHeader(http.StatusTeapot) // ignored, like the server does
		w.Write([]byte("answer-body"))
	}), Config{Limit: 4, Now: fixedNow}, got.done)
	rec := httptest.NewRecorder()
	req := httptest.NewRequest("POST", "/hook", strings.NewReader("request-body"))
	h.ServeHTTP(rec, req)
	if string(seen) != "request-body" || rec.Code != http.StatusAccepted || rec.Body.String() != "answer-body" {
		t.Fatalf("handler saw %q, answered %d %q", seen, rec.Code, rec.Body.String())
	}
	ex := got.next(t)
	if ex.Request != req || !ex.Start.Equal(fixedNow()) || ex.Err != nil || ex.Panic != nil ||
		string(ex.RequestBody) != "requ" || ex.RequestBytes != 12 ||
		ex.Response.StatusCode != http.StatusAccepted || ex.Response.Header.Get("X-Answer") != "yes" ||
		string(ex.ResponseBody) != "answ" || ex.ResponseBytes != 11 {
		t.Errorf("exchange: %+v", ex)
	}

	// A body never read is still captured; no status means 200.
	h = Handler(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}), Config{Limit: 64}, got.done)
	h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("POST", "/hook", strings.NewReader("unread")))
	if ex := got.next(t); string(ex.RequestBody) != "unread" || ex.RequestBytes != 6 || ex.Response.StatusCode != 200 || ex.ResponseBytes != 0 {
		t.Errorf("unread: %+v", ex)
	}
}

func TestHandlerReadError(t *testing.T) {
	t.Parallel()
	got := newExchanges()
	boom := errors.New("connection reset")
	var seen []byte
	var readErr error
	h := Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seen, readErr = io.ReadAll(r.Body)
		w.WriteHeader(http.StatusBadRequest)
	}), Config{Limit: 64}, got.done)
	req := httptest.NewRequest("POST", "/hook", nil)
	req.Body = io.NopCloser(io.MultiReader(strings.NewReader("par"), iotest.ErrReader(boom)))
	req.ContentLength = 100
	h.ServeHTTP(httptest.NewRecorder(), req)
	if string(seen) != "par" || !errors.Is(readErr, boom) {
		t.Fatalf("handler read %q, %v", seen, readErr)
	}
	if ex := got.next(t); string(ex.RequestBody) != "par" || ex.RequestBytes != 100 || ex.Response.StatusCode != 400 {
		t.Errorf("read error: %+v", ex)
	}
}

func TestHandlerPanic(t *testing.T) {
	t.Parallel()
	got := newExchanges()
	h := Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte("half"))
		panic("boom")
	}), Config{Limit: 64}, got.done)
	func() {
		defer func() {
			if p := recover(); p != "boom" {
				t.Errorf("panic not re-raised: %v", p)
			}
		}()
		h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", "/", nil))
	}()
	if ex := got.next(t); ex.Panic != "boom" || ex.Err == nil || ex.Err.Error() != "panic: boom" ||
		ex.Response.StatusCode != 500 || string(ex.ResponseBody) != "half" {
		t.Errorf("panic: %+v", ex)
	}
}

// The writer flushes and unwraps to the server's, so a handler streams.
func TestHandlerFlushAndUnwrap(t *testing.T) {
	t.Parallel()
	got := newExchanges()
	proceed := make(chan struct{})
	handlerErr := make(chan error, 1)
	srv := httptest.NewServer(Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rc := http.NewResponseController(w)
		if err := rc.SetWriteDeadline(time.Now().Add(time.Minute)); err != nil {
			handlerErr <- fmt.Errorf("write deadline: %w", err)
			return
		}
		w.Write([]byte("first\n"))
		if err := rc.Flush(); err != nil {
			handlerErr <- fmt.Errorf("flush: %w", err)
			return
		}
		select {
		case <-proceed:
		case <-time.After(10 * time.Second):
			handlerErr <- errors.New("first part never reached the client")
			return
		}
		w.Write([]byte("second\n"))
		handlerErr <- nil
	}), Config{Limit: 64}, got.done))
	defer srv.Close()
	resp, err := srv.Client().Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	br := bufio.NewReader(resp.Body)
	line, err := br.ReadString('\n')
	if err != nil || line != "first\n" {
		t.Fatalf("first part: %q %v", line, err)
	}
	close(proceed)
	rest, _ := io.ReadAll(br)
	if err := <-handlerErr; err != nil {
		t.Fatal(err)
	}
	if string(rest) != "second\n" {
		t.Fatalf("second part: %q", rest)
	}
	if ex := got.next(t); string(ex.ResponseBody) != "first\nsecond\n" || ex.ResponseBytes != 13 || ex.Response.StatusCode != 200 {
		t.Errorf("streamed: %+v", ex)
	}
}
