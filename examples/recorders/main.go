// Command recorders shows outboxkit's integration log and security log
// (package securitylog): a Stripe-style client whose calls are recorded
// (redacted), an inbound webhook endpoint, and a login endpoint whose
// failed logins are recorded in the same transaction as the application's
// own writes, with brute-force detection and review.
//
// It needs only PostgreSQL (DATABASE_URL, default the local server) and
// runs by itself: go run ./examples/recorders. It recreates the schema
// outbox_example_recorders on each run.
package main

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/google/uuid"
	_ "github.com/lib/pq"

	"github.com/outboxkit/outbox"
	"github.com/outboxkit/outbox/integrationlog"
	"github.com/outboxkit/outbox/securitylog"
)

const schema = "outbox_example_recorders"

func main() {
	if err := run(); err != nil {
		log.Fatal(err)
	}
}

func run() error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	dsn := os.Getenv("DATABASE_URL")
	if dsn == "" {
		dsn = "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"
	}
	db, err := sql.Open("postgres", dsn)
	if err != nil {
		return err
	}
	defer db.Close()
	if _, err := db.ExecContext(ctx, `DROP SCHEMA IF EXISTS `+schema+` CASCADE`); err != nil {
		return fmt.Errorf("reset schema: %w", err)
	}
	ob, err := outbox.New(db, outbox.Config{Schema: schema})
	if err != nil {
		return err
	}
	if err := ob.Migrate(ctx); err != nil {
		return err
	}
	// Security alerts go to a subscriber through the bus.
	if _, err := ob.Subscribe(ctx, outbox.Subscription{Name: "security-alerts", TopicPattern: "security.#", CallbackMethod: "alert"}); err != nil {
		return err
	}
	integrations, err := integrationlog.New(ob, integrationlog.Config{})
	if err != nil {
		return err
	}
	security, err := securitylog.New(ob, securitylog.Config{Publish: true})
	if err != nil {
		return err
	}

	if err := payments(ctx, integrations); err != nil {
		return err
	}
	if err := webhooks(ctx, integrations); err != nil {
		return err
	}
	// Transport and Middleware record through a background writer: Close
	// writes what is still buffered (and stops it) before we read the log.
	if err := integrations.Close(ctx); err != nil {
		return err
	}
	if err := logins(ctx, db, security); err != nil {
		return err
	}

	fmt.Println("\n== integration log ==")
	page, err := integrations.List(ctx, integrationlog.Filter{})
	if err != nil {
		return err
	}
	for _, r := range page.Records {
		fmt.Printf("%-8s %-16s status=%d success=%-5v external_id=%q error=%q\n",
			r.Integration, r.Operation, r.HTTPStatus, r.Success, r.ExternalID, r.Error)
		fmt.Printf("         request: %s\n", r.Request)
	}
	stats, err := integrations.Stats(ctx, integrationlog.Window{})
	if err != nil {
		return err
	}
	for _, s := range stats {
		fmt.Printf("stats %s: %d calls, %d failures, success rate %.2f, p50 %s, p95 %s\n",
			s.Integration, s.Calls, s.Failures, s.SuccessRate, s.P50, s.P95)
	}

	fmt.Println("\n== security review queue ==")
	queue, err := security.AwaitingReview(ctx, securitylog.Filter{MinSeverity: securitylog.SeverityHigh})
	if err != nil {
		return err
	}
	reviewer := uuid.New()
	for _, ev := range queue.Events {
		fmt.Printf("%s %s ip=%s details=%s\n", ev.Severity, ev.Type, ev.IP, ev.Details)
		if _, err := security.MarkReviewed(ctx, db, ev.ID, reviewer); err != nil {
			return err
		}
		_, err := security.MarkReviewed(ctx, db, ev.ID, uuid.New())
		if !errors.Is(err, securitylog.ErrAlreadyReviewed) {
			return fmt.Errorf("second review: %v", err)
		}
	}
	st, err := ob.Stats(ctx)
	if err != nil {
		return err
	}
	fmt.Printf("\nalerts queued for subscribers: %d\n", st.ByStatus[outbox.StatusPending])
	return nil
}

// payments calls a Stripe-like API through a recording client.
func payments(ctx context.Context, il *integrationlog.Log) error {
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_ = r.ParseForm()
		w.Header().Set("Content-Type", "application/json")
		if r.Form.Get("amount") == "999999" {
			w.WriteHeader(http.StatusPaymentRequired)
			_, _ = io.WriteString(w, `{"error":{"type":"card_error","message":"Your card was declined."}}`)
			return
		}
		_, _ = fmt.Fprintf(w, `{"id":"ch_%d","object":"charge","status":"succeeded","amount":%s}`, time.Now().UnixNano()%1e6, r.Form.Get("amount"))
	}))
	defer api.Close()
	client := &http.Client{Transport: il.Transport("stripe", nil,
		&integrationlog.HTTPOptions{ExternalID: integrationlog.ExternalIDFromJSON("id")})}
	for _, amount := range []string{"1999", "999999"} {
		form := url.Values{"amount": {amount}, "currency": {"eur"}, "card[number]": {"4242424242424242"}, "card[cvc]": {"123"}}
		req, err := http.NewRequestWithContext(ctx, "POST", api.URL+"/v1/charges", strings.NewReader(form.Encode()))
		if err != nil {
			return err
		}
		req.Header.Set("Authorization", "Bearer sk_test_example")
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		resp, err := client.Do(req)
		if err != nil {
			return err
		}
		var body map[string]any
		_ = json.NewDecoder(resp.Body).Decode(&body)
		_ = resp.Body.Close() // the call is recorded now
		fmt.Printf("charge of %s: HTTP %d\n", amount, resp.StatusCode)
	}
	return nil
}

// webhooks receives a webhook through the recording middleware.
func webhooks(ctx context.Context, il *integrationlog.Log) error {
	handler := il.Middleware("stripe", &integrationlog.HTTPOptions{ExternalID: integrationlog.ExternalIDFromJSON("id")})(
		http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			var ev struct{ Type string }
			if err := json.NewDecoder(r.Body).Decode(&ev); err != nil {
				http.Error(w, "bad payload", http.StatusBadRequest)
				return
			}
			w.WriteHeader(http.StatusNoContent)
		}))
	srv := httptest.NewServer(handler)
	defer srv.Close()
	req, err := http.NewRequestWithContext(ctx, "POST", srv.URL+"/webhooks/stripe",
		strings.NewReader(`{"id":"evt_1","type":"charge.succeeded","data":{"object":{"id":"ch_1"}}}`))
	if err != nil {
		return err
	}
	req.Header.Set("Stripe-Signature", "t=1700000000,v1=5257a869e7ecebeda32affa62cdca3fa51cad7e77a0e56ff536d0ce8e108d8bd")
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	_ = resp.Body.Close()
	fmt.Printf("webhook delivered: HTTP %d\n", resp.StatusCode)
	return nil
}

// logins runs a login endpoint behind a (simulated) reverse proxy and
// hammers it with a wrong password.
func logins(ctx context.Context, db *sql.DB, sl *securitylog.Log) error {
	// The test server's peer is 127.0.0.1: trust it as the proxy, so the
	// client IP comes from X-Forwarded-For.
	ips, err := securitylog.NewClientIPResolver(securitylog.ClientIPConfig{TrustedProxies: []string{"127.0.0.1"}})
	if err != nil {
		return err
	}
	userID := uuid.New()
	login := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.FormValue("password") == "correct horse" {
			w.WriteHeader(http.StatusNoContent)
			return
		}
		// Record the failure in the same transaction as the application's
		// own bookkeeping (here: nothing else), so both commit together.
		tx, err := db.BeginTx(r.Context(), nil)
		if err != nil {
			http.Error(w, "unavailable", http.StatusServiceUnavailable)
			return
		}
		defer func() { _ = tx.Rollback() }()
		res, err := sl.RecordFailedLogin(r.Context(), tx, securitylog.FailedLogin{
			UserID: userID, Username: r.FormValue("username"), IP: ips.ClientIP(r), UserAgent: r.UserAgent(),
			Reason: "bad_password", Method: "password",
		})
		if err == nil {
			err = tx.Commit()
		}
		if err != nil {
			log.Printf("record failed login: %v", err)
			http.Error(w, "unavailable", http.StatusServiceUnavailable)
			return
		}
		for _, esc := range res.Escalations {
			fmt.Printf("brute force detected: %s\n", esc.Details)
		}
		http.Error(w, "invalid credentials", http.StatusUnauthorized)
	})
	srv := httptest.NewServer(login)
	defer srv.Close()
	// The default account_ip rule escalates at the 10th failure of one
	// account from one IP (securitylog.DefaultBruteForceRules).
	const attempts = 12
	for i := range attempts {
		form := url.Values{"username": {"alice"}, "password": {fmt.Sprintf("guess-%d", i)}}
		req, err := http.NewRequestWithContext(ctx, "POST", srv.URL+"/login", strings.NewReader(form.Encode()))
		if err != nil {
			return err
		}
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("X-Forwarded-For", "203.0.113.7")
		req.Header.Set("User-Agent", "example-bot/1.0")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return err
		}
		_ = resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized {
			return fmt.Errorf("login %d: HTTP %d", i, resp.StatusCode)
		}
	}
	fmt.Printf("%d failed logins recorded\n", attempts)
	return nil
}
