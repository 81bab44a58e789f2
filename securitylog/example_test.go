package securitylog_test

import (
	"context"
	"database/sql"
	"fmt"
	"log/slog"
	"net/http/httptest"
	"time"

	"github.com/google/uuid"
	_ "github.com/lib/pq"

	"github.com/outboxkit/outbox"
	"github.com/outboxkit/outbox/internal/pgtest"
	"github.com/outboxkit/outbox/securitylog"
)

func ExampleParseIP() {
	for _, s := range []string{"::ffff:192.0.2.1", "2001:DB8:0:0::1", "192.0.2.1:443"} {
		ip, err := securitylog.ParseIP(s)
		fmt.Printf("%q %v\n", ip, err)
	}
	// Output:
	// "192.0.2.1" <nil>
	// "2001:db8::1" <nil>
	// "" securitylog: invalid event: ip_address: is not an IP address: "192.0.2.1:443"
}

func ExampleClientIPResolver() {
	ips, err := securitylog.NewClientIPResolver(securitylog.ClientIPConfig{TrustedProxies: []string{"10.0.0.0/8"}})
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

// Failed logins recorded in the application's transaction: the third
// failure from one IP for one account escalates to a SUSPICIOUS_ACTIVITY
// that awaits review until someone marks it reviewed.
func ExampleLog() {
	ob, done := exampleOutbox()
	defer done()
	ctx := context.Background()
	db := ob.DB()
	sl, err := securitylog.New(ob, securitylog.Config{BruteForce: securitylog.BruteForceConfig{Rules: []securitylog.BruteForceRule{
		{Name: "account_ip", Scope: securitylog.ScopeAccountIP, Threshold: 3, Window: 15 * time.Minute},
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
		res, err := sl.RecordFailedLogin(ctx, tx, securitylog.FailedLogin{
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

	page, err := sl.AwaitingReview(ctx, securitylog.Filter{})
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
	page, err = sl.AwaitingReview(ctx, securitylog.Filter{})
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
