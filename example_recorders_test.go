package outbox_test

import (
	"context"
	"fmt"
	"net/http"
	"time"

	"github.com/outboxkit/outbox"
	"github.com/outboxkit/outbox/integrationlog"
)

// A Stripe client whose every call is recorded, redacted, in
// integration_log.
func ExampleIntegrationLog_Transport() {
	var ob *outbox.Outbox // from outbox.New
	il, err := integrationlog.New(ob, integrationlog.Config{})
	if err != nil {
		return
	}
	stripe := &http.Client{Transport: il.Transport("stripe", nil,
		&integrationlog.HTTPOptions{ExternalID: integrationlog.ExternalIDFromJSON("id")})}
	_ = stripe // use it like any http.Client; close every response body

	// At shutdown, after the last call: write what is still buffered.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := il.Close(ctx); err != nil {
		fmt.Println(err) // errors.Is(err, integrationlog.ErrRecordsNotWritten): some records were lost
	}
}

// A call to a third party recorded in the application's transaction,
// redacted before storage, then listed.
func ExampleIntegrationLog() {
	ob, _, done := exampleOutbox()
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
