package outbox_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"time"

	"github.com/google/uuid"

	"github.com/outboxkit/outbox"
)

func ExampleParseIP() {
	for _, s := range []string{"::ffff:192.0.2.1", "2001:DB8:0:0::1", "192.0.2.1:443"} {
		ip, err := outbox.ParseIP(s)
		fmt.Printf("%q %v\n", ip, err)
	}
	// Output:
	// "192.0.2.1" <nil>
	// "2001:db8::1" <nil>
	// "" outbox: invalid record: ip_address: is not an IP address: "192.0.2.1:443"
}

func ExampleClientIPResolver() {
	ips, err := outbox.NewClientIPResolver(outbox.ClientIPConfig{TrustedProxies: []string{"10.0.0.0/8"}})
	if err != nil {
		panic(err)
	}
	viaProxy := httptest.NewRequest("GET", "/login", nil)
	viaProxy.RemoteAddr = "10.0.0.5:40000"
	viaProxy.Header.Set("X-Forwarded-For", "198.51.100.1, 203.0.113.7")
	direct := httptest.NewRequest("GET", "/login", nil)
	direct.RemoteAddr = "203.0.113.99:5555"
	direct.Header.Set("X-Forwarded-For", "1.1.1.1") // spoofed: not from a trusted proxy
	fmt.Println(ips.ClientIP(viaProxy))
	fmt.Println(ips.ClientIP(direct))
	// Output:
	// 203.0.113.7
	// 203.0.113.99
}

// A Stripe client whose every call is recorded, redacted, in
// integration_log.
func ExampleIntegrationLog_Transport() {
	var ob *outbox.Outbox // from outbox.New
	il, err := ob.NewIntegrationLog(outbox.IntegrationLogConfig{})
	if err != nil {
		return
	}
	stripe := &http.Client{Transport: il.Transport("stripe", nil,
		&outbox.HTTPRecordOptions{ExternalID: outbox.ExternalIDFromJSON("id")})}
	_ = stripe // use it like any http.Client; close every response body

	// At shutdown, after the last call: write what is still buffered.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := il.Close(ctx); err != nil {
		fmt.Println(err) // errors.Is(err, outbox.ErrRecordsNotWritten): some records were lost
	}
}

// A call to a third party recorded in the application's transaction,
// redacted before storage, then listed.
func ExampleIntegrationLog() {
	ob, _, done := exampleOutbox()
	defer done()
	ctx := context.Background()
	il, err := ob.NewIntegrationLog(outbox.IntegrationLogConfig{})
	if err != nil {
		panic(err)
	}
	tx, err := ob.DB().BeginTx(ctx, nil)
	if err != nil {
		panic(err)
	}
	defer tx.Rollback()
	if _, err := il.RecordAPICall(ctx, tx, outbox.APICall{
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

	page, err := il.List(ctx, outbox.IntegrationFilter{Integration: "stripe"})
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

// Failed logins recorded in the application's transaction: the third
// failure from one IP for one account escalates to a SUSPICIOUS_ACTIVITY
// that awaits review until someone marks it reviewed.
func ExampleSecurityLog() {
	ob, _, done := exampleOutbox()
	defer done()
	ctx := context.Background()
	db := ob.DB()
	sl, err := ob.NewSecurityLog(outbox.SecurityLogConfig{BruteForce: outbox.BruteForceConfig{Rules: []outbox.BruteForceRule{
		{Name: "account_ip", Scope: outbox.ScopeAccountIP, Threshold: 3, Window: 15 * time.Minute},
	}}})
	if err != nil {
		panic(err)
	}
	alice := uuid.MustParse("0190f6c2-0000-7000-8000-000000000001")
	for range 3 {
		tx, err := db.BeginTx(ctx, nil) // the login request's transaction
		if err != nil {
			panic(err)
		}
		res, err := sl.RecordFailedLogin(ctx, tx, outbox.FailedLogin{
			UserID: alice, Username: "alice", IP: "203.0.113.7", Reason: "bad_password", Method: "password",
		})
		if err != nil {
			panic(err)
		}
		if err := tx.Commit(); err != nil {
			panic(err)
		}
		fmt.Println(res.Event.Type, res.Event.Severity, "escalations:", len(res.Escalations))
	}

	page, err := sl.AwaitingReview(ctx, outbox.SecurityFilter{})
	if err != nil {
		panic(err)
	}
	reviewer := uuid.MustParse("0190f6c2-0000-7000-8000-0000000000aa")
	for _, ev := range page.Events {
		fmt.Println("to review:", ev.Type, ev.Severity, ev.IP)
		if _, err := sl.MarkReviewed(ctx, db, ev.ID, reviewer); err != nil {
			panic(err)
		}
	}
	page, err = sl.AwaitingReview(ctx, outbox.SecurityFilter{})
	if err != nil {
		panic(err)
	}
	fmt.Println("awaiting review:", len(page.Events))
	// Output:
	// FAILED_LOGIN MEDIUM escalations: 0
	// FAILED_LOGIN MEDIUM escalations: 0
	// FAILED_LOGIN MEDIUM escalations: 1
	// to review: SUSPICIOUS_ACTIVITY HIGH 203.0.113.7
	// awaiting review: 0
}
