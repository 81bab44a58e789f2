// Command rollworker is the previous release's side of the rolling-deploy
// and rollback tests (rolling_test.go). The tests copy it into a tree of
// that release (v0.2, taken from this repository's history), build it there
// against that release's public API, and run it beside the current code on
// one database. It is not part of the module (testdata is not built).
//
// It enqueues -events events on topic roll.event, at -rate per second,
// each in a transaction that also records it in "<schema>".roll_enqueued
// (so an event is counted exactly when it committed), and runs a dispatcher
// that delivers the handler subscription's rows (recording each delivery in
// "<schema>".roll_delivery) and the webhook subscription's rows. With
// -migrate it calls Migrate first and exits 3 if that fails. SIGTERM
// stops it softly; it prints "enqueued N" before it exits.
package main

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	_ "github.com/lib/pq"

	"github.com/outboxkit/outbox"
)

type payload struct {
	Origin string `json:"origin"`
	Seq    int    `json:"seq"`
}

func main() {
	var (
		dsn     = flag.String("dsn", "", "lib/pq connection string")
		schema  = flag.String("schema", "", "outboxkit schema")
		name    = flag.String("name", "v02", "dispatcher name, and the worker recorded with each delivery")
		keySpec = flag.String("keys", "", "keys as id:base64key (ParseKeys)")
		origin  = flag.String("origin", "v02", "origin written into each event's payload")
		events  = flag.Int("events", 0, "events to enqueue")
		rate    = flag.Int("rate", 100, "events per second")
		doMig   = flag.Bool("migrate", false, "call Migrate at start")
		lease   = flag.Duration("lease", 2*time.Second, "lease duration")
		ua      = flag.String("ua", "outboxkit-rollworker", "webhook User-Agent")
	)
	flag.Parse()
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	if err := run(log, *dsn, *schema, *name, *keySpec, *origin, *events, *rate, *doMig, *lease, *ua); err != nil {
		fmt.Fprintln(os.Stderr, "rollworker:", err)
		var exit interface{ ExitCode() int }
		if errors.As(err, &exit) {
			os.Exit(exit.ExitCode())
		}
		os.Exit(1)
	}
}

type migrateError struct{ error }

func (migrateError) ExitCode() int { return 3 }

func run(log *slog.Logger, dsn, schema, name, keySpec, origin string, events, rate int, doMig bool, lease time.Duration, ua string) error {
	db, err := sql.Open("postgres", dsn)
	if err != nil {
		return err
	}
	defer db.Close()
	db.SetMaxOpenConns(8)
	kp, err := outbox.ParseKeys(keySpec)
	if err != nil {
		return err
	}
	loopback := []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}
	ob, err := outbox.New(db, outbox.Config{Schema: schema, Logger: log, Keys: kp, WebhookAllowedNetworks: loopback})
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	if doMig {
		if err := ob.Migrate(ctx); err != nil {
			return migrateError{fmt.Errorf("migrate: %w", err)}
		}
		fmt.Println("migrated")
	}
	d, err := ob.NewDispatcher(outbox.DispatcherConfig{
		Name: name, Workers: 16, PollInterval: 100 * time.Millisecond, LeaseDuration: lease,
		RescueInterval: 200 * time.Millisecond, ShutdownTimeout: 5 * time.Second, ListenDSN: dsn,
		CompletedRetention: -1, FailedRetention: -1, BackoffInitial: 100 * time.Millisecond,
		Webhooks: &outbox.WebhookOptions{AllowedNetworks: loopback, UserAgent: ua},
	})
	if err != nil {
		return err
	}
	q := func(s string) string { return `"` + schema + `".` + s }
	d.Handle("roll", func(ctx context.Context, dl *outbox.Delivery) error {
		var p payload
		if err := json.Unmarshal(dl.Payload, &p); err != nil {
			return outbox.Permanent(err)
		}
		_, err := db.ExecContext(ctx, `INSERT INTO `+q("roll_delivery")+` (queue_id, event_id, origin, seq, worker)
			VALUES ($1, $2, $3, $4, $5)`, dl.ID, dl.EventID, p.Origin, p.Seq, name)
		return err
	})
	var wg sync.WaitGroup
	enqueued := 0
	wg.Add(1)
	go func() {
		defer wg.Done()
		tick := time.NewTicker(time.Second / time.Duration(max(rate, 1)))
		defer tick.Stop()
		for enqueued < events {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			if err := enqueueOne(ctx, db, ob, q("roll_enqueued"), payload{Origin: origin, Seq: enqueued}); err != nil {
				if ctx.Err() == nil {
					fmt.Fprintln(os.Stderr, "rollworker: enqueue:", err)
				}
				return
			}
			enqueued++
		}
	}()
	runErr := d.Run(ctx)
	wg.Wait()
	fmt.Printf("enqueued %d\n", enqueued)
	return runErr
}

// enqueueOne enqueues p and records it in table, in one transaction.
func enqueueOne(ctx context.Context, db *sql.DB, ob *outbox.Outbox, table string, p payload) error {
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer func() { _ = tx.Rollback() }()
	res, err := ob.Enqueue(ctx, tx, "roll.event", p, nil)
	if err != nil {
		return err
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO `+table+` (origin, seq, event_id) VALUES ($1, $2, $3)`, p.Origin, p.Seq, res.EventID); err != nil {
		return err
	}
	return tx.Commit()
}
