// Command webhooks delivers events to an HTTP endpoint the way Svix or Stripe
// do: it starts a local receiver, subscribes it with a signing secret,
// enqueues two events and runs a dispatcher that delivers webhooks. The
// receiver verifies every request's Standard Webhooks signature with
// webhook.NewVerifier, answers the first request with 503 and a
// Retry-After of 0, and accepts the retry. It then prints the attempts the
// dispatcher recorded in integration_log and exits.
//
//	go run ./examples/webhooks
//
// It reads DATABASE_URL (default: the local PostgreSQL, database test) and
// works in its own schema, outbox_example_webhooks, recreated on each run.
package main

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"sync/atomic"
	"time"

	"github.com/outboxkit/outbox/keys"
	"github.com/outboxkit/outbox/subconfig"
	"github.com/outboxkit/outbox/webhook"

	_ "github.com/lib/pq"

	"github.com/outboxkit/outbox"
)

const schema = "outbox_example_webhooks"

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "webhooks:", err)
		os.Exit(1)
	}
}

// exampleKeys returns the keys that seal the subscription's secret and
// credential at rest: from OUTBOX_KEYS ("id:base64key,...") when set, else a
// throwaway development key made for this run, with a warning.
func exampleKeys() (keys.Provider, error) {
	if os.Getenv(keys.EnvDefault) != "" {
		return keys.FromEnv(keys.EnvDefault)
	}
	spec, err := keys.NewSpec("dev-only")
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(os.Stderr, "WARNING: %s is not set; sealing secrets with a throwaway development key (docs/security.md)\n", keys.EnvDefault)
	return keys.Parse(spec)
}

func run() error {
	dsn := os.Getenv("DATABASE_URL")
	if dsn == "" {
		dsn = "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	db, err := sql.Open("postgres", dsn)
	if err != nil {
		return err
	}
	defer db.Close()
	if _, err := db.ExecContext(ctx, `DROP SCHEMA IF EXISTS `+schema+` CASCADE`); err != nil {
		return fmt.Errorf("is PostgreSQL running at %s? %w", dsn, err)
	}
	logger := slog.New(slog.NewTextHandler(os.Stdout, &slog.HandlerOptions{Level: slog.LevelError}))
	// The SSRF guard refuses loopback by default; the local receiver needs
	// it let through, when subscribing and when delivering.
	loopback := []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("::1/128")}
	keys, err := exampleKeys()
	if err != nil {
		return err
	}
	ob, err := outbox.New(db, outbox.Config{Schema: schema, Logger: logger, WebhookAllowedNetworks: loopback, Keys: keys})
	if err != nil {
		return err
	}
	if err := ob.Migrate(ctx); err != nil {
		return err
	}

	// The receiving side: a service that verifies each webhook before it
	// trusts it. It shares the subscription's secret.
	secret, err := webhook.NewSecret()
	if err != nil {
		return err
	}
	verifier, err := webhook.NewVerifier(secret)
	if err != nil {
		return err
	}
	var requests atomic.Int32
	accepted := make(chan webhook.Envelope, 4)
	receiver := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := requests.Add(1)
		body, err := verifier.VerifyRequest(r)
		if err != nil {
			fmt.Printf("receiver: request %d rejected: %v\n", n, err)
			http.Error(w, "bad signature", http.StatusUnauthorized)
			return
		}
		var env webhook.Envelope
		if err := json.Unmarshal(body, &env); err != nil {
			http.Error(w, "bad body", http.StatusBadRequest)
			return
		}
		fmt.Printf("receiver: request %d, webhook-id %s, type %s: signature valid\n", n, r.Header.Get(webhook.HeaderID), env.Type)
		if n == 1 {
			// Busy: ask for a retry right away. (Without Retry-After the
			// subscription's retry_schedule, 100 ms here, would apply.)
			fmt.Println("receiver: answering 503, Retry-After: 0")
			w.Header().Set("Retry-After", "0")
			http.Error(w, "busy, try again", http.StatusServiceUnavailable)
			return
		}
		w.WriteHeader(http.StatusNoContent)
		accepted <- env
	}))
	defer receiver.Close()

	// The subscription: its URL, its secret, a fast retry schedule for the
	// demo (the default is the Standard Webhooks one: 5 s, 5 min, 30 min, ...)
	// and an extra header, kept out of integration_log by redaction.
	if _, err := ob.Subscribe(ctx, outbox.Subscription{
		Name: "billing-service", TopicPattern: "invoice.*", WebhookURL: receiver.URL + "/webhooks/outbox",
		Config: subconfig.Config{
			Secrets:       []string{secret},
			RetrySchedule: []subconfig.Duration{subconfig.Duration(100 * time.Millisecond)},
			Headers:       map[string]string{"Authorization": "Bearer demo-token"},
		},
	}); err != nil {
		return err
	}

	// The dispatcher delivers webhooks.
	d, err := ob.NewDispatcher(outbox.DispatcherConfig{
		Name: "webhooks-example", ListenDSN: dsn, PollInterval: 200 * time.Millisecond,
		Webhooks: &outbox.WebhookOptions{
			AllowedNetworks: loopback,
		},
	})
	if err != nil {
		return err
	}
	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	runDone := make(chan error, 1)
	go func() { runDone <- d.Run(runCtx) }()

	for i, topic := range []string{"invoice.created", "invoice.paid"} {
		tx, err := db.BeginTx(ctx, nil)
		if err != nil {
			return err
		}
		if _, err := ob.Enqueue(ctx, tx, topic, map[string]any{"invoice": 1001, "step": i + 1}, nil); err != nil {
			_ = tx.Rollback()
			return err
		}
		if err := tx.Commit(); err != nil {
			return err
		}
		fmt.Printf("enqueued %s\n", topic)
	}
	for range 2 {
		select {
		case env := <-accepted:
			fmt.Printf("receiver: accepted %s (%s)\n", env.Type, env.Data)
		case <-ctx.Done():
			return errors.New("the webhooks were not delivered in time")
		}
	}
	stop()
	if err := <-runDone; err != nil {
		return err
	}

	// Every attempt is in integration_log, written with the row's outcome.
	rows, err := db.QueryContext(ctx, `SELECT http_status_code, success, duration_ms,
			request_data->'headers'->>'Authorization'
		FROM `+schema+`.integration_log WHERE integration_name = 'billing-service' ORDER BY occurred_at, id`)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		var status, ms sql.NullInt64
		var ok bool
		var auth sql.NullString
		if err := rows.Scan(&status, &ok, &ms, &auth); err != nil {
			return err
		}
		fmt.Printf("integration_log: HTTP %d success=%v %d ms, Authorization stored as %q\n", status.Int64, ok, ms.Int64, auth.String)
	}
	if err := rows.Err(); err != nil {
		return err
	}
	fmt.Printf("done: %d requests for 2 events\n", requests.Load())
	return nil
}
