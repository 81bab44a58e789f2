package webhook_test

import (
	"errors"
	"fmt"
	"net/http/httptest"
	"strings"
	"time"

	"github.com/outboxkit/outbox/webhook"
)

// A receiver checks every webhook before it trusts the body: the signature
// under its secret, and a timestamp within the tolerance (no replays).
func ExampleVerifier_VerifyRequest() {
	const secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw" // from webhook.NewSecret, shared with the sender
	verifier, err := webhook.NewVerifier(secret)
	if err != nil {
		panic(err)
	}

	// What the sender (outboxkit's dispatcher, or any Standard Webhooks
	// sender) does: sign the body and set the three headers.
	signer, err := webhook.NewSigner(secret)
	if err != nil {
		panic(err)
	}
	body := `{"id":"evt_1","type":"order.created","timestamp":"2030-01-01T00:00:00Z","data":{"order_id":42}}`
	req := httptest.NewRequest("POST", "/webhooks/orders", strings.NewReader(body))
	signer.Header(req.Header, "evt_1", time.Now(), []byte(body))

	// In the receiver's handler.
	got, err := verifier.VerifyRequest(req)
	if err != nil {
		panic(err) // answer 400 and drop the body
	}
	fmt.Println(req.Header.Get(webhook.HeaderID), string(got))

	// The same headers on a body changed in transit.
	tampered := httptest.NewRequest("POST", "/webhooks/orders", strings.NewReader(strings.Replace(body, "42", "43", 1)))
	tampered.Header = req.Header.Clone()
	_, err = verifier.VerifyRequest(tampered)
	fmt.Println(errors.Is(err, webhook.ErrSignature), err)
	// Output:
	// evt_1 {"id":"evt_1","type":"order.created","timestamp":"2030-01-01T00:00:00Z","data":{"order_id":42}}
	// true webhook: signature mismatch
}
