// Command testworker is the dispatcher process that the reliability tests
// (reliability_test.go) build with go build and start, kill and restart as
// a separate process. It is not meant for production use.
//
// It runs one Dispatcher on an already migrated schema. Its handler records
// every delivery it receives as a row of "<schema>".rel_delivery, in a
// transaction of its own (autocommit), before it returns: a row recorded by a
// handler whose outcome was never written is a duplicate delivery that the
// tests can count.
//
// Every flag can also be given as an environment variable, TESTWORKER_ and
// the flag name in upper case with - as _ (TESTWORKER_DSN, TESTWORKER_LEASE,
// ...); DATABASE_URL is the DSN's fallback. SIGTERM or SIGINT stops the
// dispatcher softly (Run returns, the process exits 0); SIGKILL is the crash
// the tests are about.
//
// Handler modes (-mode):
//
//	record  record the delivery, then sleep -delay (or until cancelled), succeed
//	block   record the delivery, then block until the handler's context ends
package main

import (
	"context"
	"database/sql"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	_ "github.com/lib/pq"

	"github.com/outboxkit/outbox"
)

// DeliveryTable is the table (in the worker's schema) the handler writes to;
// the tests create it.
const DeliveryTable = "rel_delivery"

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "testworker:", err)
		os.Exit(1)
	}
}

type config struct {
	dsn, schema, name, method, mode     string
	workers, batch, maxConns            int
	lease, rescue, poll, delay, shutdwn time.Duration
	listen                              bool
}

func parseFlags() config {
	var c config
	fs := flag.CommandLine
	fs.StringVar(&c.dsn, "dsn", env("DSN", os.Getenv("DATABASE_URL")), "lib/pq connection string (set application_name to find the backends)")
	fs.StringVar(&c.schema, "schema", env("SCHEMA", ""), "outboxkit schema (already migrated)")
	fs.StringVar(&c.name, "name", env("NAME", fmt.Sprintf("testworker-%d", os.Getpid())), "dispatcher name (locked_by prefix)")
	fs.StringVar(&c.method, "method", env("METHOD", "record"), "callback_method to register the handler under")
	fs.StringVar(&c.mode, "mode", env("MODE", "record"), "handler mode: record or block")
	fs.IntVar(&c.workers, "workers", envInt("WORKERS", 8), "dispatcher workers")
	fs.IntVar(&c.batch, "batch", envInt("BATCH", 0), "claim batch size (0: default)")
	fs.IntVar(&c.maxConns, "max-conns", envInt("MAX_CONNS", 4), "pool size (0: workers+4)")
	fs.DurationVar(&c.lease, "lease", envDur("LEASE", 2*time.Second), "lease duration")
	fs.DurationVar(&c.rescue, "rescue", envDur("RESCUE", 500*time.Millisecond), "lease rescue interval")
	fs.DurationVar(&c.poll, "poll", envDur("POLL", 200*time.Millisecond), "poll interval")
	fs.DurationVar(&c.delay, "delay", envDur("DELAY", 0), "handler sleep after recording")
	fs.DurationVar(&c.shutdwn, "shutdown", envDur("SHUTDOWN", 5*time.Second), "shutdown timeout")
	fs.BoolVar(&c.listen, "listen", env("LISTEN", "true") == "true", "LISTEN for notifications on the DSN")
	flag.Parse()
	return c
}

func run() error {
	c := parseFlags()
	if c.dsn == "" || c.schema == "" {
		return errors.New("-dsn (or DATABASE_URL) and -schema are required")
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	db, err := sql.Open("postgres", c.dsn)
	if err != nil {
		return err
	}
	defer db.Close()
	if c.maxConns == 0 {
		c.maxConns = c.workers + 4
	}
	db.SetMaxOpenConns(c.maxConns)
	db.SetMaxIdleConns(c.maxConns)

	ob, err := outbox.New(db, outbox.Config{Schema: c.schema, Logger: log})
	if err != nil {
		return err
	}
	cfg := outbox.DispatcherConfig{
		Name: c.name, Workers: c.workers, BatchSize: c.batch, PollInterval: c.poll,
		LeaseDuration: c.lease, RescueInterval: c.rescue, ShutdownTimeout: c.shutdwn,
		CompletedRetention: -1, FailedRetention: -1,
	}
	if c.listen {
		cfg.ListenDSN = c.dsn
	}
	d, err := ob.NewDispatcher(cfg)
	if err != nil {
		return err
	}
	insert := `INSERT INTO "` + strings.ReplaceAll(c.schema, `"`, `""`) + `".` + DeliveryTable +
		` (queue_id, event_id, worker, attempt) VALUES ($1, $2, $3, $4)`
	d.Handle(c.method, func(ctx context.Context, dl *outbox.Delivery) error {
		// Its own transaction: committed before the outcome is written.
		if _, err := db.ExecContext(ctx, insert, dl.ID, dl.EventID, c.name, dl.Attempt); err != nil {
			return fmt.Errorf("record delivery: %w", err)
		}
		switch c.mode {
		case "block":
			<-ctx.Done()
			return ctx.Err()
		default:
			if c.delay > 0 {
				select {
				case <-time.After(c.delay):
				case <-ctx.Done():
					return ctx.Err()
				}
			}
			return nil
		}
	})

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	log.Info("testworker started", slog.String("name", c.name), slog.Int("workers", c.workers),
		slog.Duration("lease", c.lease), slog.Bool("listen", c.listen))
	if err := d.Run(ctx); err != nil {
		return err
	}
	log.Info("testworker stopped", slog.String("name", c.name))
	return nil
}

func env(name, def string) string {
	if v, ok := os.LookupEnv("TESTWORKER_" + name); ok {
		return v
	}
	return def
}

func envInt(name string, def int) int {
	var n int
	if _, err := fmt.Sscan(env(name, fmt.Sprint(def)), &n); err != nil {
		return def
	}
	return n
}

func envDur(name string, def time.Duration) time.Duration {
	d, err := time.ParseDuration(env(name, def.String()))
	if err != nil {
		return def
	}
	return d
}
