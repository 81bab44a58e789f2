package integrationlog_test

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/outboxkit/outbox"
	"github.com/outboxkit/outbox/integrationlog"
	"github.com/outboxkit/outbox/internal/testutil"
	"github.com/outboxkit/outbox/redact"
)

func TestRecordTypedAndList(t *testing.T) {
	t.Parallel()
	b := setupClock(t, nil)
	l := newLog(t, b, integrationlog.Config{})
	ctx := ctxT(t)

	call, err := l.RecordAPICall(ctx, b.db, integrationlog.APICall{
		Integration: "STRIPE", Method: "POST", URL: "https://api.stripe.com/v1/charges?api_key=sk_live_x",
		Request:    map[string]any{"amount": 1000, "card": map[string]any{"number": "4242424242424242", "cvc": "123"}},
		Response:   json.RawMessage(`{"id":"ch_1","status":"succeeded"}`),
		HTTPStatus: 200, ExternalID: "ch_1", Duration: 120 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	if !call.Success || call.Operation != integrationlog.OpAPICallMade || call.ID == uuid.Nil || !call.OccurredAt.Equal(b.clock.Now()) {
		t.Fatalf("api call: %+v", call)
	}
	b.clock.Advance(time.Second)
	hook, err := l.RecordWebhookReceived(ctx, b.db, integrationlog.WebhookReceipt{
		Integration: "PAYPAL", EventType: "PAYMENT.CAPTURE.COMPLETED",
		Headers: http.Header{"Paypal-Transmission-Sig": {"abc"}, "Content-Type": {"application/json"}},
		Payload: []byte(`{"id":"WH-1","resource":{"payer":{"email":"a@b.c"}}}`), HTTPStatus: 500, Error: "handler failed\nstack",
		ExternalID: "WH-1",
	})
	if err != nil {
		t.Fatal(err)
	}
	if hook.Success || hook.Error != "handler failed stack" {
		t.Fatalf("webhook: %+v", hook)
	}
	b.clock.Advance(time.Second)
	syncRec, err := l.RecordDataSync(ctx, b.db, integrationlog.DataSyncRun{Integration: "EMAIL_PROVIDER", Entity: "contacts",
		Direction: "export", Processed: 10, Failed: 0, Details: map[string]string{"cursor": "c1", "token": "t0kv4lue"}})
	if err != nil {
		t.Fatal(err)
	}
	b.clock.Advance(time.Second)
	custom, err := l.Record(ctx, b.db, integrationlog.Record{Integration: "ACME-ERP", Operation: integrationlog.OpDataSync, Success: false,
		Error: "timeout", OccurredAt: b.clock.Now().Add(-time.Hour)})
	if err != nil {
		t.Fatal(err)
	}

	all := listAll(t, l, integrationlog.Filter{Limit: 1})
	if len(all) != 4 || all[0].ID != syncRec.ID || all[1].ID != hook.ID || all[2].ID != call.ID || all[3].ID != custom.ID {
		t.Fatalf("list order: %+v", all)
	}
	stored := all[2]
	for _, secret := range []string{"sk_live_x", "4242424242424242", `"123"`} {
		if strings.Contains(string(stored.Request), secret) {
			t.Errorf("stored request holds %s: %s", secret, stored.Request)
		}
	}
	if stored.HTTPStatus != 200 || stored.ExternalID != "ch_1" || stored.Duration != 120*time.Millisecond ||
		!jsonHas(stored.Response, `"ch_1"`) {
		t.Errorf("stored api call: %+v", stored)
	}
	if strings.Contains(string(all[1].Request), "abc") || !strings.Contains(string(all[1].Request), "a@b.c") {
		t.Errorf("stored webhook: %s", all[1].Request)
	}
	if strings.Contains(string(all[0].Request), "t0kv4lue") || !jsonHas(all[0].Response, `"processed":10`) {
		t.Errorf("stored sync: %s %s", all[0].Request, all[0].Response)
	}

	// Filters.
	no, yes := false, true
	for _, c := range []struct {
		f    integrationlog.Filter
		want int
	}{
		{integrationlog.Filter{Integration: "STRIPE"}, 1},
		{integrationlog.Filter{Operation: integrationlog.OpDataSync}, 2},
		{integrationlog.Filter{Success: &no}, 2},
		{integrationlog.Filter{Success: &yes}, 2},
		{integrationlog.Filter{ExternalID: "WH-1"}, 1},
		{integrationlog.Filter{Since: call.OccurredAt}, 3},
		{integrationlog.Filter{Until: call.OccurredAt}, 1},
		{integrationlog.Filter{Since: call.OccurredAt, Until: syncRec.OccurredAt, Limit: 1}, 2},
	} {
		if got := listAll(t, l, c.f); len(got) != c.want {
			t.Errorf("filter %+v: %d records, want %d", c.f, len(got), c.want)
		}
	}
	for field, f := range map[string]integrationlog.Filter{"cursor": {Cursor: "garbage"}, "limit": {Limit: -1}} {
		var ve *outbox.ValidationError
		if _, err := l.List(ctx, f); !errors.Is(err, outbox.ErrInvalidFilter) || !errors.As(err, &ve) || ve.Field != field {
			t.Errorf("bad %s: %v", field, err)
		}
	}
	if _, err := l.List(ctx, integrationlog.Filter{Operation: "NOPE"}); !errors.Is(err, outbox.ErrInvalidFilter) {
		t.Errorf("bad operation: %v", err)
	}
}

func TestRecordRejectsInvalidAndTxStaysUsable(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	l := newLog(t, b, integrationlog.Config{})
	ctx := ctxT(t)
	ok := integrationlog.Record{Integration: "X", Operation: integrationlog.OpAPICallMade, Success: true}
	bad := map[string]struct {
		rec   integrationlog.Record
		field string
		class error
	}{
		"empty name":     {integrationlog.Record{Operation: integrationlog.OpAPICallMade}, "integration_name", integrationlog.ErrInvalidRecord},
		"long name":      {integrationlog.Record{Integration: strings.Repeat("é", 101), Operation: integrationlog.OpAPICallMade}, "integration_name", integrationlog.ErrInvalidRecord},
		"control name":   {integrationlog.Record{Integration: "a\nb", Operation: integrationlog.OpAPICallMade}, "integration_name", integrationlog.ErrInvalidRecord},
		"bad operation":  {integrationlog.Record{Integration: "X", Operation: "CALL"}, "operation", integrationlog.ErrInvalidRecord},
		"bad status":     {integrationlog.Record{Integration: "X", Operation: integrationlog.OpAPICallMade, HTTPStatus: 42}, "http_status_code", integrationlog.ErrInvalidRecord},
		"negative dur":   {integrationlog.Record{Integration: "X", Operation: integrationlog.OpAPICallMade, Duration: -time.Second}, "duration_ms", integrationlog.ErrInvalidRecord},
		"huge dur":       {integrationlog.Record{Integration: "X", Operation: integrationlog.OpAPICallMade, Duration: 1000 * time.Hour}, "duration_ms", integrationlog.ErrInvalidRecord},
		"long ext id":    {integrationlog.Record{Integration: "X", Operation: integrationlog.OpAPICallMade, ExternalID: strings.Repeat("x", 256)}, "external_id", integrationlog.ErrInvalidRecord},
		"not json":       {integrationlog.Record{Integration: "X", Operation: integrationlog.OpAPICallMade, Request: json.RawMessage(`{"a":`)}, "request_data", integrationlog.ErrInvalidRecord},
		"too large":      {integrationlog.Record{Integration: "X", Operation: integrationlog.OpAPICallMade, Response: json.RawMessage(`"` + strings.Repeat("a", 2<<20) + `"`)}, "response_data", outbox.ErrPayloadTooLarge},
		"lone surrogate": {integrationlog.Record{Integration: "X", Operation: integrationlog.OpAPICallMade, Request: json.RawMessage(`{"a":"\ud800"}`)}, "", nil},
	}
	tx, err := b.db.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback()
	for name, c := range bad {
		_, err := l.Record(ctx, tx, c.rec)
		if c.class == nil {
			// Lone surrogates are replaced on decoding, so the record is
			// stored: what matters is that it does not break the tx.
			if err != nil {
				t.Errorf("%s: %v", name, err)
			}
			continue
		}
		var ve *outbox.ValidationError
		if !errors.As(err, &ve) || !errors.Is(err, c.class) || ve.Field != c.field {
			t.Errorf("%s: got %v, want a %v on %s", name, err, c.class, c.field)
		}
	}
	// A batch with one bad record sends nothing and names the index.
	if _, err := l.RecordBatch(ctx, tx, []integrationlog.Record{ok, bad["bad status"].rec}); err == nil || !strings.Contains(err.Error(), "record 1") {
		t.Errorf("batch: %v", err)
	}
	if _, err := l.Record(ctx, tx, ok); err != nil {
		t.Fatalf("tx unusable after rejections: %v", err)
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	if n := b.countRows(t, "integration_log", ""); n != 2 {
		t.Fatalf("%d rows, want 2 (the valid record and the surrogate one)", n)
	}
}

func TestTransport(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	l := newLog(t, b, integrationlog.Config{Redaction: redact.Rules{MaxBodyBytes: 1024}})
	ctx := ctxT(t)
	big := strings.Repeat("z", 5000)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		w.Header().Set("Set-Cookie", "session=s3cr3t")
		w.Header().Set("Content-Type", "application/json")
		switch r.URL.Path {
		case "/charges":
			time.Sleep(5 * time.Millisecond)
			fmt.Fprintf(w, `{"id":"ch_42","echo_len":%d,"card":{"number":"4000056655665556"}}`, len(body))
		case "/big":
			w.Write([]byte(`"` + big + `"`))
		default:
			w.WriteHeader(http.StatusPaymentRequired)
			w.Write([]byte(`{"error":{"message":"card declined"}}`))
		}
	}))
	defer srv.Close()
	client := &http.Client{Transport: l.Transport("STRIPE", nil, &integrationlog.HTTPOptions{ExternalID: integrationlog.ExternalIDFromJSON("id")})}

	reqBody := `{"amount":1000,"password":"hunter2"}`
	req, _ := http.NewRequestWithContext(ctx, "POST", srv.URL+"/charges?api_key=sk_test_1", strings.NewReader(reqBody))
	req.Header.Set("Authorization", "Bearer sk_test_1")
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if want := fmt.Sprintf(`{"id":"ch_42","echo_len":%d,"card":{"number":"4000056655665556"}}`, len(reqBody)); string(got) != want {
		t.Fatalf("caller got %s, want %s", got, want)
	}
	// A body without GetBody is streamed through a tee.
	req, _ = http.NewRequestWithContext(ctx, "POST", srv.URL+"/declined", io.MultiReader(strings.NewReader(`{"cvc":"999"}`)))
	resp, err = client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	resp, err = client.Get(srv.URL + "/big")
	if err != nil {
		t.Fatal(err)
	}
	got, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if len(got) != len(big)+2 {
		t.Fatalf("big body reached the caller cut: %d bytes", len(got))
	}
	// A transport error is recorded and returned as is.
	dead := httptest.NewServer(http.NotFoundHandler())
	deadURL := dead.URL
	dead.Close()
	if _, err := client.Get(deadURL + "/x?token=t0p"); err == nil {
		t.Fatal("call to a closed server succeeded")
	}

	closeLog(t, l)
	recs := listAll(t, l, integrationlog.Filter{Integration: "STRIPE"})
	if len(recs) != 4 {
		t.Fatalf("%d records, want 4", len(recs))
	}
	byPath := map[string]integrationlog.Record{}
	for _, r := range recs {
		var rq struct {
			URL string `json:"url"`
		}
		json.Unmarshal(r.Request, &rq)
		for _, p := range []string{"/charges", "/declined", "/big", "/x"} {
			if strings.Contains(rq.URL, p) {
				byPath[p] = r
			}
		}
		for _, secret := range []string{"sk_test_1", "hunter2", "s3cr3t", "4000056655665556", `"999"`, "t0p"} {
			if strings.Contains(string(r.Request)+string(r.Response)+r.Error, secret) {
				t.Errorf("secret %s stored: %s %s %s", secret, r.Request, r.Response, r.Error)
			}
		}
	}
	if c := byPath["/charges"]; !c.Success || c.HTTPStatus != 200 || c.ExternalID != "ch_42" || !jsonHas(c.Request, `"amount":1000`) || c.Duration < 5*time.Millisecond {
		t.Errorf("charge record: %+v", c)
	}
	if d := byPath["/declined"]; d.Success || d.HTTPStatus != 402 || !jsonHas(d.Response, "card declined") ||
		!jsonHas(d.Request, `"cvc":"[REDACTED]"`) {
		t.Errorf("declined record: %+v %s %s", d, d.Request, d.Response)
	}
	if g := byPath["/big"]; !jsonHas(g.Response, `"body_truncated":true`) || len(g.Response) > 2000 {
		t.Errorf("big record: %s", g.Response)
	}
	if x := byPath["/x"]; x.Success || x.HTTPStatus != 0 || !strings.Contains(x.Error, "connect") && !strings.Contains(x.Error, "refused") {
		t.Errorf("error record: %+v", x)
	}
}

// failingQuerier fails every statement.
type failingQuerier struct{}

func (failingQuerier) ExecContext(context.Context, string, ...any) (sql.Result, error) {
	return nil, errors.New("db down")
}
func (failingQuerier) QueryContext(context.Context, string, ...any) (*sql.Rows, error) {
	return nil, errors.New("db down")
}
func (failingQuerier) QueryRowContext(context.Context, string, ...any) *sql.Row { return nil }

func TestRecordFailureNeverFailsTheCall(t *testing.T) {
	t.Parallel()
	var logs testutil.LockedBuffer
	b := setup(t, &outbox.Config{Logger: slog.New(slog.NewJSONHandler(&logs, nil))})
	l := newLog(t, b, integrationlog.Config{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("ok")) }))
	defer srv.Close()
	client := &http.Client{Transport: l.Transport("X", nil, &integrationlog.HTTPOptions{DB: failingQuerier{}})}
	resp, err := client.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(body) != "ok" {
		t.Fatalf("body %q", body)
	}
	h := l.Middleware("X", &integrationlog.HTTPOptions{DB: failingQuerier{}})(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(204)
	}))
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("POST", "/hook", strings.NewReader("{}")))
	if rec.Code != 204 {
		t.Fatalf("status %d", rec.Code)
	}
	// The writer retries in the background and logs the failure (at most
	// once per 10 s); Close gives up at its deadline and says so.
	testutil.WaitFor(t, "the failure logged", func() bool {
		return strings.Contains(logs.String(), "batch not written, retrying") && strings.Contains(logs.String(), "db down")
	})
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if err := l.Close(ctx); !errors.Is(err, integrationlog.ErrRecordsNotWritten) || !strings.Contains(err.Error(), "2 records") {
		t.Fatalf("Close: %v", err)
	}
	// The writer may end just after Close returns (Close does not wait for
	// a driver that ignores cancellation): its counts settle then.
	testutil.WaitFor(t, "the lost records counted", func() bool { return l.BufferStats().Lost == 2 })
	if st := l.BufferStats(); st.Lost != 2 || st.Written != 0 || st.Retries == 0 {
		t.Fatalf("stats %+v", st)
	}
	defer func() {
		if recover() == nil {
			t.Error("Transport accepted an empty integration name")
		}
	}()
	l.Transport("", nil, nil)
}

func TestMiddleware(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	l := newLog(t, b, integrationlog.Config{})
	var seen []byte
	mw := l.Middleware("STRIPE", &integrationlog.HTTPOptions{ExternalID: integrationlog.ExternalIDFromJSON("id")})
	h := mw(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seen, _ = io.ReadAll(r.Body)
		if r.URL.Query().Get("panic") != "" {
			panic("boom")
		}
		w.WriteHeader(http.StatusAccepted)
		w.Write([]byte(`{"received":true}`))
	}))
	payload := `{"id":"evt_1","type":"charge.succeeded","data":{"object":{"source":{"number":"4242424242424242"}}}}`
	req := httptest.NewRequest("POST", "/webhooks/stripe?sig=abc", strings.NewReader(payload))
	req.Header.Set("Stripe-Signature", "t=1,v1=deadbeef")
	req.Header.Set("Content-Type", "application/json")
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if rec.Code != 202 || string(seen) != payload || rec.Body.String() != `{"received":true}` {
		t.Fatalf("handler saw %q, answered %d %q", seen, rec.Code, rec.Body.String())
	}
	func() {
		defer func() {
			if p := recover(); p != "boom" {
				t.Errorf("panic not re-raised: %v", p)
			}
		}()
		h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("POST", "/webhooks/stripe?panic=1", strings.NewReader(`{"id":"evt_2"}`)))
	}()
	closeLog(t, l)
	recs := listAll(t, l, integrationlog.Filter{Operation: integrationlog.OpWebhookReceived})
	if len(recs) != 2 {
		t.Fatalf("%d records", len(recs))
	}
	ok, failed := recs[1], recs[0]
	if !ok.Success || ok.HTTPStatus != 202 || ok.ExternalID != "evt_1" || !jsonHas(ok.Response, `"received":true`) ||
		!strings.Contains(string(ok.Request), `"charge.succeeded"`) {
		t.Errorf("ok record: %+v %s %s", ok, ok.Request, ok.Response)
	}
	for _, secret := range []string{"deadbeef", "4242424242424242", "sig=abc"} {
		if strings.Contains(string(ok.Request), secret) {
			t.Errorf("secret %s stored: %s", secret, ok.Request)
		}
	}
	if failed.Success || failed.HTTPStatus != 500 || failed.Error != "panic: boom" || failed.ExternalID != "evt_2" {
		t.Errorf("panic record: %+v", failed)
	}
}

func TestStats(t *testing.T) {
	t.Parallel()
	b := setupClock(t, nil)
	l := newLog(t, b, integrationlog.Config{})
	ctx := ctxT(t)
	var recs []integrationlog.Record
	for i := 1; i <= 20; i++ {
		recs = append(recs, integrationlog.Record{Integration: "STRIPE", Operation: integrationlog.OpAPICallMade, Success: i%5 != 0,
			Duration: time.Duration(i*10) * time.Millisecond})
	}
	recs = append(recs, integrationlog.Record{Integration: "PAYPAL", Operation: integrationlog.OpWebhookReceived, Success: true},
		integrationlog.Record{Integration: "STRIPE", Operation: integrationlog.OpAPICallMade, Success: false, OccurredAt: b.clock.Now().Add(-48 * time.Hour)})
	if _, err := l.RecordBatch(ctx, b.db, recs); err != nil {
		t.Fatal(err)
	}
	b.clock.Advance(time.Minute)
	stats, err := l.Stats(ctx, integrationlog.Window{})
	if err != nil {
		t.Fatal(err)
	}
	if len(stats) != 2 {
		t.Fatalf("stats: %+v", stats)
	}
	pp, st := stats[0], stats[1]
	if pp.Integration != "PAYPAL" || pp.Calls != 1 || pp.Failures != 0 || pp.SuccessRate != 1 || pp.P50 != 0 {
		t.Errorf("paypal: %+v", pp)
	}
	// Durations 10..200 ms: median 105 ms, p95 190.5 ms (linear interpolation).
	if st.Calls != 20 || st.Failures != 4 || st.SuccessRate != 0.8 || st.P50 != 105*time.Millisecond || st.P95 != 190500*time.Microsecond {
		t.Errorf("stripe: %+v", st)
	}
	old, err := l.Stats(ctx, integrationlog.Window{Since: b.clock.Now().Add(-72 * time.Hour), Until: b.clock.Now().Add(-24 * time.Hour), Integration: "STRIPE"})
	if err != nil || len(old) != 1 || old[0].Calls != 1 || old[0].SuccessRate != 0 {
		t.Errorf("old window: %+v %v", old, err)
	}
	if _, err := l.Stats(ctx, integrationlog.Window{Since: b.clock.Now(), Until: b.clock.Now()}); !errors.Is(err, outbox.ErrInvalidFilter) {
		t.Errorf("empty window: %v", err)
	}
}
