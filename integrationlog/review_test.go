package integrationlog_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/outboxkit/outbox/integrationlog"
	"github.com/outboxkit/outbox/internal/testutil"
)

// TestRecorderOneBadDestinationLosesOnlyItsRecords: records of several
// recorders share a batch; one whose HTTPOptions.DB refuses them for good
// (a finished transaction) loses its own records only, and the counters
// and Close say exactly that.
func TestRecorderOneBadDestinationLosesOnlyItsRecords(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	l := newLog(t, b, integrationlog.Config{FlushInterval: time.Hour}) // one batch, written at Close
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.Write([]byte(`{"ok":true}`))
	}))
	defer api.Close()
	done, err := b.db.BeginTx(ctxT(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := done.Rollback(); err != nil {
		t.Fatal(err)
	}
	// The bad destination first, so that a batch given up whole would
	// lose the good records too.
	bad := &http.Client{Transport: l.Transport("bad", api.Client().Transport, &integrationlog.HTTPOptions{DB: done})}
	good := &http.Client{Transport: l.Transport("good", api.Client().Transport, nil)}
	for _, c := range []*http.Client{bad, good, good, good} {
		resp, err := c.Post(api.URL, "application/json", strings.NewReader(`{"a":1}`))
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err = l.Close(ctx)
	if !errors.Is(err, integrationlog.ErrRecordsNotWritten) || !strings.Contains(err.Error(), "1 record") {
		t.Fatalf("Close: %v, want 1 record not written", err)
	}
	if n := b.countRows(t, "integration_log", "integration_name = 'good'"); n != 3 {
		t.Fatalf("%d good records stored, want 3", n)
	}
	if st := l.BufferStats(); st.Written != 3 || st.Lost != 1 || st.Buffered != 0 {
		t.Fatalf("stats %+v, want 3 written, 1 lost, none buffered", st)
	}
}

// TestTypedRecordsRedactTheirHeadFields: the typed Record* calls redact
// once, while building the record; the short fields beside the body
// (event type, entity, direction, error, external id) are redacted too.
func TestTypedRecordsRedactTheirHeadFields(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	l := newLog(t, b, integrationlog.Config{})
	ctx := ctxT(t)
	const secret = "hunter2-planted"
	if _, err := l.RecordWebhookReceived(ctx, b.db, integrationlog.WebhookReceipt{Integration: "x", EventType: "password=" + secret,
		Payload: json.RawMessage(`{"ok":true}`), Error: "api_key: " + secret, ExternalID: "token=" + secret}); err != nil {
		t.Fatal(err)
	}
	if _, err := l.RecordDataSync(ctx, b.db, integrationlog.DataSyncRun{Integration: "x", Entity: "password=" + secret,
		Direction: "secret=" + secret, Processed: 1}); err != nil {
		t.Fatal(err)
	}
	if n := b.countRows(t, "integration_log", "true"); n != 2 {
		t.Fatalf("%d records, want 2", n)
	}
	testutil.AssertNowhere(t, b.db, b.schema, []string{secret})
}
