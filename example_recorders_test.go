package outbox_test

import (
	"context"
	"database/sql"
	"fmt"
	"net/http"
	"net/http/httptest"
	"regexp"

	"github.com/google/uuid"

	"github.com/outboxkit/outbox"
)

func ExampleRedactor() {
	r, err := outbox.NewRedactor(outbox.RedactionRules{
		Keys:     []string{"national_id"},
		Patterns: []*regexp.Regexp{regexp.MustCompile(`acct_[0-9A-Za-z]+`)},
	})
	if err != nil {
		panic(err)
	}
	b, _ := r.JSON([]byte(`{"user":"bob","password":"hunter2","card":{"number":"4242 4242 4242 4242"},"national_id":"X1","ref":"acct_9f"}`))
	fmt.Println(string(b))
	fmt.Println(r.URL("https://api.example.com/v1/charges?api_key=sk_live_1&limit=10"))
	fmt.Println(r.String("retrying with Authorization: Bearer eyJhbGciOi"))
	// Output:
	// {"user":"bob","password":"[REDACTED]","card":{"number":"[REDACTED]"},"national_id":"[REDACTED]","ref":"[REDACTED]"}
	// https://api.example.com/v1/charges?api_key=[REDACTED]&limit=10
	// retrying with Authorization: [REDACTED]
}

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
	il, err := outbox.NewIntegrationLog(ob, outbox.IntegrationLogConfig{})
	if err != nil {
		return
	}
	stripe := &http.Client{Transport: il.Transport("stripe", nil,
		&outbox.HTTPRecordOptions{ExternalID: outbox.ExternalIDFromJSON("id")})}
	_ = stripe // use it like any http.Client; close every response body
}

// A failed login recorded in the application's transaction, with
// brute-force detection.
func ExampleSecurityLog_RecordFailedLogin() {
	var (
		ob  *outbox.Outbox // from outbox.New
		db  *sql.DB
		req *http.Request // the login request
		ctx = context.Background()
	)
	sl, err := outbox.NewSecurityLog(ob, outbox.SecurityLogConfig{Publish: true})
	if err != nil {
		return
	}
	ips, _ := outbox.NewClientIPResolver(outbox.ClientIPConfig{TrustedProxies: []string{"10.0.0.0/8"}})
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return
	}
	defer tx.Rollback()
	res, err := sl.RecordFailedLogin(ctx, tx, outbox.FailedLogin{
		UserID: uuid.MustParse("0190f6c2-0000-7000-8000-000000000001"), Username: "alice",
		IP: ips.ClientIP(req), UserAgent: req.UserAgent(), Reason: "bad_password",
	})
	if err != nil {
		return
	}
	if err := tx.Commit(); err != nil {
		return
	}
	for _, esc := range res.Escalations {
		fmt.Println("brute force:", string(esc.Details))
	}
}
