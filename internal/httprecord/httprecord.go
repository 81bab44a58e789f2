// Package httprecord captures HTTP exchanges while they happen, for a
// recorder to store: it wraps an http.RoundTripper (calls we make) and an
// http.Handler (requests we serve), keeps the first bytes of each body as it
// streams and counts the rest, times the exchange, and hands the finished
// exchange to a callback. Bodies reach the caller and the handler intact.
//
// It knows nothing of where exchanges go: storing, redacting or dropping
// them is the callback's business.
package httprecord

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"
)

// Exchange is one finished HTTP exchange.
type Exchange struct {
	// Start is when the exchange began, by Config.Now.
	Start time.Time
	// Duration is how long the exchange took: for a call, until the
	// response headers arrived or the call failed; for a served request,
	// until the handler returned.
	Duration time.Duration
	// Request is the caller's request (a call) or the request the handler
	// served.
	Request *http.Request
	// RequestBody holds the first Config.Limit bytes of the request body,
	// RequestBytes the size of the body as far as it was seen (at least
	// its Content-Length).
	RequestBody  []byte
	RequestBytes int64
	// Response is the response of a call, nil when the call failed. For a
	// served request it holds the status (200 when the handler set none,
	// 500 when it panicked) and the headers the handler wrote.
	Response *http.Response
	// ResponseBody holds the first Config.Limit bytes of the response
	// body as read by the caller (a call) or written by the handler;
	// ResponseBytes counts them all.
	ResponseBody  []byte
	ResponseBytes int64
	// Err is the error of a failed call, as RoundTrip returned it, or the
	// panic of the handler ("panic: <value>").
	Err error
	// Panic is the value the handler panicked with, nil if none.
	Panic any
}

// Config tunes the capture. The zero value keeps no body bytes (sizes are
// still counted) and times with time.Now.
type Config struct {
	// Limit is how many bytes of each body an Exchange keeps.
	Limit int
	// Now is the clock of Exchange.Start. Default time.Now. Durations are
	// measured on the monotonic clock whatever Now says.
	Now func() time.Time
}

// Transport wraps base (http.DefaultTransport when nil): every call made
// through it is handed to done once, on the goroutine that ends it. A call
// that fails ends when RoundTrip returns; a call that gets a response ends
// when the caller reads its body to the end or closes it (a response
// without a body ends at once). A body never read to the end nor closed
// never ends.
//
// A request body with GetBody is captured from a copy; any other request
// body is captured as the transport reads it, so it may be partial when
// the call failed.
func Transport(base http.RoundTripper, cfg Config, done func(*Exchange)) http.RoundTripper {
	if base == nil {
		base = http.DefaultTransport
	}
	return &transport{base: base, cfg: cfg.withDefaults(), done: done}
}

// Handler wraps next: every request it serves is handed to done once,
// after next returns, with the status, headers and body next wrote. The
// request body is read up to Config.Limit before next runs (so a body next
// never reads is captured as well), and next reads all of it, and any read
// error, as sent. The ResponseWriter next gets flushes (http.Flusher) and
// unwraps (http.ResponseController) to the server's. A panic in next is
// handed to done (Exchange.Panic) and then re-raised.
func Handler(next http.Handler, cfg Config, done func(*Exchange)) http.Handler {
	cfg = cfg.withDefaults()
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		serve(w, r, next, cfg, done)
	})
}

// transport is the http.RoundTripper of Transport.
type transport struct {
	base http.RoundTripper
	cfg  Config
	done func(*Exchange)
}

func (t *transport) RoundTrip(req *http.Request) (*http.Response, error) {
	ex := &Exchange{Start: t.cfg.Now(), Request: req}
	began := time.Now()
	out := req
	var capReq *capture
	if req.Body != nil && req.Body != http.NoBody {
		if req.GetBody != nil {
			// A replayable body: read a copy, never the caller's stream.
			if rc, err := req.GetBody(); err == nil {
				ex.RequestBody, _ = io.ReadAll(io.LimitReader(rc, int64(t.cfg.Limit)))
				_ = rc.Close()
				ex.RequestBytes = max(req.ContentLength, int64(len(ex.RequestBody)))
			}
		} else {
			capReq = &capture{limit: t.cfg.Limit}
			out = req.Clone(req.Context())
			out.Body = &teeBody{rc: req.Body, c: capReq}
		}
	}
	resp, err := t.base.RoundTrip(out)
	ex.Duration = time.Since(began)
	if capReq != nil {
		ex.RequestBody, ex.RequestBytes = capReq.snapshot()
	}
	if err != nil {
		ex.Err = err
		t.done(ex)
		return resp, err
	}
	ex.Response = resp
	c := &capture{limit: t.cfg.Limit}
	finish := func() {
		ex.ResponseBody, ex.ResponseBytes = c.snapshot()
		if capReq != nil {
			ex.RequestBody, ex.RequestBytes = capReq.snapshot()
		}
		t.done(ex)
	}
	if resp == nil || resp.Body == nil || resp.Body == http.NoBody {
		finish()
		return resp, nil
	}
	resp.Body = &recordingBody{rc: resp.Body, c: c, finish: finish}
	return resp, nil
}

func serve(w http.ResponseWriter, r *http.Request, next http.Handler, cfg Config, done func(*Exchange)) {
	ex := &Exchange{Start: cfg.Now(), Request: r}
	began := time.Now()
	var counted *countingReader
	if r.Body != nil && r.Body != http.NoBody {
		// Read up to the limit now (next may never read the body), and give
		// next those bytes and the rest.
		buf, err := io.ReadAll(io.LimitReader(r.Body, int64(cfg.Limit)))
		ex.RequestBody = buf
		orig := r.Body
		rest := io.Reader(orig)
		if err != nil {
			rest = errReader{err}
		}
		counted = &countingReader{r: io.MultiReader(bytes.NewReader(buf), rest)}
		r.Body = readCloser{Reader: counted, Closer: orig}
	}
	rw := &recordingWriter{ResponseWriter: w, limit: cfg.Limit}
	func() {
		defer func() {
			if p := recover(); p != nil {
				ex.Panic = p
			}
		}()
		next.ServeHTTP(rw, r)
	}()
	ex.Duration = time.Since(began)
	status := rw.status
	if status == 0 {
		status = http.StatusOK
	}
	if ex.Panic != nil {
		status, ex.Err = http.StatusInternalServerError, fmt.Errorf("panic: %v", ex.Panic)
	}
	ex.Response = &http.Response{StatusCode: status, Header: w.Header()}
	ex.ResponseBody, ex.ResponseBytes = rw.body.Bytes(), rw.total
	ex.RequestBytes = max(r.ContentLength, int64(len(ex.RequestBody)))
	if counted != nil {
		ex.RequestBytes = max(ex.RequestBytes, counted.n)
	}
	done(ex)
	if ex.Panic != nil {
		panic(ex.Panic)
	}
}

func (c Config) withDefaults() Config {
	c.Limit = max(c.Limit, 0)
	if c.Now == nil {
		c.Now = time.Now
	}
	return c
}

// capture keeps the first limit bytes written to it and counts them all.
type capture struct {
	mu    sync.Mutex
	limit int
	buf   []byte
	total int64
}

func (c *capture) add(p []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.total += int64(len(p))
	if room := c.limit - len(c.buf); room > 0 {
		c.buf = append(c.buf, p[:min(room, len(p))]...)
	}
}

func (c *capture) snapshot() ([]byte, int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]byte(nil), c.buf...), c.total
}

// teeBody copies what the transport reads from a request body.
type teeBody struct {
	rc io.ReadCloser
	c  *capture
}

func (b *teeBody) Read(p []byte) (int, error) {
	n, err := b.rc.Read(p)
	b.c.add(p[:n])
	return n, err
}

func (b *teeBody) Close() error { return b.rc.Close() }

// recordingBody copies what the caller reads from a response body and ends
// the exchange at EOF or Close, whichever comes first.
type recordingBody struct {
	rc     io.ReadCloser
	c      *capture
	once   sync.Once
	finish func()
}

func (b *recordingBody) Read(p []byte) (int, error) {
	n, err := b.rc.Read(p)
	b.c.add(p[:n])
	if err == io.EOF {
		b.once.Do(b.finish)
	}
	return n, err
}

func (b *recordingBody) Close() error {
	err := b.rc.Close()
	b.once.Do(b.finish)
	return err
}

// recordingWriter captures the status and the first bytes of the body a
// handler writes.
type recordingWriter struct {
	http.ResponseWriter
	status int
	limit  int
	body   bytes.Buffer
	total  int64
}

func (w *recordingWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *recordingWriter) Write(p []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	n, err := w.ResponseWriter.Write(p)
	w.total += int64(n)
	if room := w.limit - w.body.Len(); room > 0 {
		w.body.Write(p[:min(room, n)])
	}
	return n, err
}

// Unwrap lets http.ResponseController reach the underlying writer.
func (w *recordingWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// Flush forwards to the underlying writer when it can flush.
func (w *recordingWriter) Flush() {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// countingReader counts the bytes read through it.
type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

type readCloser struct {
	io.Reader
	io.Closer
}

// errReader returns err on every read.
type errReader struct{ err error }

func (e errReader) Read([]byte) (int, error) { return 0, e.err }
