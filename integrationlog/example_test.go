package integrationlog_test

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"time"

	_ "github.com/lib/pq"

	"github.com/outboxkit/outbox"
	"github.com/outboxkit/outbox/integrationlog"
	"github.com/outboxkit/outbox/internal/pgtest"
)

// A call to a third party recorded in the application's transaction,
// redacted before storage, then listed.
func ExampleLog() {
	ob, done := exampleOutbox()
	defer done()
	ctx := context.Background()
	il, err := integrationlog.New(ob, integrationlog.Config{})
	if err != nil {
		panic(err)
	}
	tx, err := ob.DB().BeginTx(ctx, nil)
	if err != nil {
		panic(err)
	}
	defer tx.Rollback()
	if _, err := il.RecordAPICall(ctx, tx, integrationlog.APICall{
		Integration: "stripe", Method: "POST",
		URL:        "https://api.stripe.com/v1/charges?api_key=sk_live_1",
		Request:    map[string]any{"amount": 1500, "card": map[string]string{"number": "4242424242424242", "cvc": "123"}},
		Response:   map[string]string{"id": "ch_1", "status": "succeeded"},
		HTTPStatus: 200, ExternalID: "ch_1", Duration: 180 * time.Millisecond,
	}); err != nil {
		panic(err)
	}
	if err := tx.Commit(); err != nil {
		panic(err)
	}

	page, err := il.List(ctx, integrationlog.Filter{Integration: "stripe"})
	if err != nil {
		panic(err)
	}
	for _, r := range page.Records {
		fmt.Println(r.Integration, r.Operation, r.HTTPStatus, r.Success, r.ExternalID, r.Duration)
		fmt.Println(string(r.Request))
	}
	// Output:
	// stripe API_CALL_MADE 200 true ch_1 180ms
	// {"url": "https://api.stripe.com/v1/charges?api_key=[REDACTED]", "body": {"card": {"cvc": "[REDACTED]", "number": "[REDACTED]"}, "amount": 1500}, "method": "POST"}
}

// A Stripe client whose every call is recorded, redacted, in
// integration_log. The call never waits on the database: its record is
// written in the background, and Close writes what is still buffered at
// shutdown.
func ExampleLog_Transport() {
	ob, done := exampleOutbox()
	defer done()
	il, err := integrationlog.New(ob, integrationlog.Config{})
	if err != nil {
		panic(err)
	}
	api := stripeStandIn()
	defer api.Close()

	stripe := &http.Client{Transport: il.Transport("stripe", nil,
		&integrationlog.HTTPOptions{ExternalID: integrationlog.ExternalIDFromJSON("id")})}
	resp, err := stripe.Post(api.URL+"/v1/charges", "application/json",
		strings.NewReader(`{"amount":1500,"card":{"number":"4242424242424242"}}`))
	if err != nil {
		panic(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close() // the call is recorded once its body is closed

	// At shutdown, after the last call: write what is still buffered.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := il.Close(ctx); err != nil {
		fmt.Println(err) // errors.Is(err, integrationlog.ErrRecordsNotWritten): some records were lost
	}

	page, err := il.List(ctx, integrationlog.Filter{Integration: "stripe"})
	if err != nil {
		panic(err)
	}
	for _, r := range page.Records {
		var req struct {
			Body json.RawMessage `json:"body"`
		}
		if err := json.Unmarshal(r.Request, &req); err != nil {
			panic(err)
		}
		fmt.Println(r.Operation, r.HTTPStatus, r.Success, r.ExternalID)
		fmt.Println(string(req.Body))
	}
	// Output:
	// API_CALL_MADE 200 true ch_1
	// {"card": {"number": "[REDACTED]"}, "amount": 1500}
}

// Webhooks received through Middleware are readable with List as soon as
// Flush returns, without waiting for a batch to fill; the log goes on
// recording after it.
func ExampleLog_Flush() {
	ob, done := exampleOutbox()
	defer done()
	ctx := context.Background()
	il, err := integrationlog.New(ob, integrationlog.Config{})
	if err != nil {
		panic(err)
	}
	hooks := il.Middleware("stripe", &integrationlog.HTTPOptions{ExternalID: integrationlog.ExternalIDFromJSON("id")})(
		http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusNoContent) }))
	for _, id := range []string{"evt_1", "evt_2"} {
		req := httptest.NewRequest("POST", "/webhooks/stripe", strings.NewReader(`{"id":"`+id+`","type":"charge.succeeded"}`))
		hooks.ServeHTTP(httptest.NewRecorder(), req)
	}

	if err := il.Flush(ctx); err != nil {
		panic(err) // errors.Is(err, integrationlog.ErrRecordsNotWritten)
	}
	page, err := il.List(ctx, integrationlog.Filter{Operation: integrationlog.OpWebhookReceived})
	if err != nil {
		panic(err)
	}
	for _, r := range page.Records {
		fmt.Println(r.Integration, r.ExternalID, r.HTTPStatus, r.Success)
	}

	closeCtx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := il.Close(closeCtx); err != nil {
		panic(err)
	}
	// Output:
	// stripe evt_2 204 true
	// stripe evt_1 204 true
}

// stripeStandIn answers like the Stripe API's charge creation.
func stripeStandIn() *httptest.Server {
	return httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"id":"ch_1","status":"succeeded"}`))
	}))
}

// exampleOutbox opens the database at DATABASE_URL (default: the local
// server, database test), migrates a fresh schema of its own, and returns a
// handle on it (logging nothing: the examples' output is what they print)
// and done, which drops the schema and closes the database.
func exampleOutbox() (ob *outbox.Outbox, done func()) {
	db, err := sql.Open("postgres", pgtest.URL())
	if err != nil {
		panic(err)
	}
	schema := "example_" + pgtest.NewName()
	drop := func() {
		_, _ = db.Exec(`DROP SCHEMA IF EXISTS "` + schema + `" CASCADE`)
		_ = db.Close()
	}
	ob, err = outbox.New(db, outbox.Config{Schema: schema, Logger: slog.New(slog.DiscardHandler)})
	if err == nil {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		err = ob.Migrate(ctx)
		cancel()
	}
	if err != nil {
		drop()
		panic(err)
	}
	return ob, drop
}
