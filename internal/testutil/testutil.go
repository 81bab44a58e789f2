// Package testutil holds the helpers the tests of several packages share
// (the root, the product packages and internal ones): HTTP receivers, a
// channel receive and a poll with a deadline, a test clock, a buffer safe
// for concurrent log writes, row counts and scans of a test's schema, and time bounds measured
// against what the machine did in the same test (timing.go).
// Only tests import it. It imports neither the root package nor a product
// package, so that the tests of every package may use it.
package testutil

import (
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

// Received is one request a Receiver saw.
type Received struct {
	Header http.Header
	Body   []byte
}

// Receiver starts an httptest server, closed when the test ends, that
// sends each request it gets on the returned channel (buffered: 100) and
// answers with respond.
func Receiver(t testing.TB, respond func(w http.ResponseWriter, r *http.Request)) (*httptest.Server, <-chan Received) {
	t.Helper()
	ch := make(chan Received, 100)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		ch <- Received{Header: r.Header.Clone(), Body: body}
		respond(w, r)
	}))
	t.Cleanup(srv.Close)
	return srv, ch
}

// Status answers every request with code.
func Status(code int) func(http.ResponseWriter, *http.Request) {
	return func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(code) }
}

// Recv receives one value from ch, failing the test after 30 seconds.
func Recv[T any](t testing.TB, ch <-chan T) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(30 * time.Second):
		t.Fatal("timed out waiting for a delivery")
	}
	panic("unreachable")
}

// WaitFor polls cond (a database or counter check) until it holds, failing
// the test after 30 seconds, or at once when the test has failed meanwhile
// (cond may report the failure itself).
func WaitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if t.Failed() {
			t.FailNow()
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out after 30s waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
