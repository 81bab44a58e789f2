package outbox

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/golang-migrate/migrate/v4"
	"github.com/golang-migrate/migrate/v4/database/postgres"
	"github.com/golang-migrate/migrate/v4/source/iofs"

	"github.com/outboxkit/outbox/internal/fence"
	"github.com/outboxkit/outbox/internal/handle"
	"github.com/outboxkit/outbox/internal/store"
	"github.com/outboxkit/outbox/keys"
	"github.com/outboxkit/outbox/redact"
	"github.com/outboxkit/outbox/schema"
)

// Defaults for Config fields left at their zero value.
const (
	// SchemaDefault is the PostgreSQL schema that holds outboxkit's tables.
	SchemaDefault = "outbox"
	// MigrationsTable is the golang-migrate history table, created in the
	// configured schema, so it never collides with an application's own.
	MigrationsTable = "outboxkit_schema_migrations"
)

// Defaults of Config fields left at their zero value.
const (
	maxPayloadBytesDefault = 1 << 20
	notifyCooldownDefault  = 2 * time.Millisecond
)

// Querier is what Enqueue and the recorders write through: *sql.Tx, *sql.DB,
// *sql.Conn, *sqlx.Tx and *sqlx.DB all satisfy it. Pass the caller's
// transaction to make a write part of the business transaction.
type Querier interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// Config configures a handle made by New. The zero value means defaults.
type Config struct {
	// Schema is the PostgreSQL schema of the tables: a lower-case identifier.
	// Default SchemaDefault ("outbox").
	Schema string
	// Logger receives structured logs. Default: Warn and above to stderr.
	Logger *slog.Logger
	// MaxPayloadBytes caps the JSON size of a payload. Default
	// 1 MiB (1 << 20 bytes).
	MaxPayloadBytes int
	// NotifyCooldown is the shortest gap between two NOTIFYs sent by
	// Enqueue on this handle: an event enqueued within the cooldown of the
	// previous notify sends none, and dispatchers catch it with a trailing
	// fetch one cooldown after the notify they saw. Default
	// 2 ms; a negative value disables NOTIFY from Enqueue
	// (dispatchers then rely on polling).
	NotifyCooldown time.Duration
	// NoPreparedStatements sends Enqueue's statement unprepared. Set it
	// behind PgBouncer in transaction mode older than 1.21, which cannot
	// keep prepared statements. Unprepared, lib/pq needs two round trips per
	// statement with parameters unless the DSN sets binary_parameters=yes.
	NoPreparedStatements bool
	// WebhookAllowedNetworks are the networks Subscribe lets webhook hosts
	// be in although the SSRF guard blocks them (loopback, private, ...).
	// Subscribe resolves a webhook URL's host and refuses it when any of its
	// addresses is blocked and not allowed here. Delivery checks again, at
	// dial time, with the dispatcher's WebhookOptions.AllowedNetworks.
	WebhookAllowedNetworks []netip.Prefix
	// Redaction extends the rules that scrub the integration_log records
	// the handle writes itself: the webhook attempts the dispatcher
	// records. Nil means the built-in rules (docs/recorders.md,
	// "Redaction"). An integrationlog.Log applies its own rules
	// (integrationlog.Config.Redaction).
	Redaction *redact.Rules
	// Keys seals subscription secrets at rest: webhook signing secrets and
	// the values of secret headers (docs/security.md). keys.Static,
	// keys.Parse and keys.FromEnv make one from local keys; a KMS fits
	// behind the interface. Nil means no encryption: Subscribe and
	// UpdateSubscriptionConfig then refuse a config with secrets
	// (ErrKeyRequired) unless AllowPlaintextSecrets, and dispatchers cannot
	// read secrets sealed earlier.
	Keys keys.Provider
	// AllowPlaintextSecrets lets a handle without Keys store secrets in
	// clear in subscription_config, with a warning logged once. Meant for
	// development; RotateSubscriptionSecrets seals such secrets once a key
	// is configured.
	AllowPlaintextSecrets bool
	// Test holds hooks for tests; leave it zero in production.
	Test TestConfig
}

// TestConfig holds the hooks tests use to control time. Production code
// leaves it zero.
type TestConfig struct {
	// Clock, when set, supplies the current time for every time comparison
	// and timestamp the library writes (tests use it to move time forward).
	// When nil, the database's now() is used: one clock for every process.
	Clock func() time.Time
	// WebhookClock, when set, supplies the time of the webhook-timestamp
	// header and resolves HTTP-date Retry-After values. Receivers compare
	// webhook-timestamp with their own clock. Default time.Now.
	WebhookClock func() time.Time
	// FenceInterval, when positive, replaces the 30 s after which a running
	// dispatcher re-reads the version fence and Enqueue stops trusting its
	// last reading.
	FenceInterval time.Duration
}

// Outbox is a handle on outboxkit's tables in one schema. It is safe for
// concurrent use; make one per schema and share it.
type Outbox struct {
	link       // the machinery shared with integrationlog and securitylog
	db         *sql.DB
	cfg        Config
	log        *slog.Logger
	st         *store.Store // every statement, rendered for cfg.Schema, and their runner
	fence      *fence.Guard // the schema's version fence, as this handle last read it
	lastNotify atomic.Int64 // unix nanoseconds of the last NOTIFY sent by Enqueue

	red *redact.Redactor // integration_log redaction; nil means the built-in rules

	keys          keys.Provider // seals subscription secrets; nil: none
	plaintextWarn sync.Once     // the no-key warning is logged once per handle
}

// New returns a handle on the tables in cfg.Schema of db. It sends no SQL:
// call Migrate once at start-up to create or upgrade the schema.
func New(db *sql.DB, cfg Config) (*Outbox, error) {
	if db == nil {
		return nil, fmt.Errorf("%w: db is nil", ErrInvalidConfig)
	}
	if cfg.Schema == "" {
		cfg.Schema = SchemaDefault
	}
	if !store.ValidSchema(cfg.Schema) {
		return nil, fmt.Errorf("%w: schema %q is not a lower-case identifier of at most 63 bytes", ErrInvalidConfig, cfg.Schema)
	}
	if cfg.MaxPayloadBytes < 0 {
		return nil, fmt.Errorf("%w: MaxPayloadBytes is negative", ErrInvalidConfig)
	}
	if cfg.MaxPayloadBytes == 0 {
		cfg.MaxPayloadBytes = maxPayloadBytesDefault
	}
	if cfg.NotifyCooldown == 0 {
		cfg.NotifyCooldown = notifyCooldownDefault
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	}
	o := &Outbox{db: db, cfg: cfg, log: log, keys: cfg.Keys}
	if o.keys == nil && cfg.AllowPlaintextSecrets {
		o.warnPlaintext(context.Background(), "Config.AllowPlaintextSecrets is set and Config.Keys is nil, so signing secrets and credentials are stored in clear")
	}
	if cfg.Redaction != nil {
		red, err := redact.New(*cfg.Redaction)
		if err != nil {
			return nil, fmt.Errorf("%w: Redaction: %w", ErrInvalidConfig, err)
		}
		o.red = red
	}
	st, err := store.New(db, cfg.Schema, &store.Options{Clock: cfg.Test.Clock, NoPreparedStatements: cfg.NoPreparedStatements})
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalidConfig, err)
	}
	o.st = st
	o.fence = fence.New(st, log, &fence.Options{Interval: cfg.Test.FenceInterval})
	o.link = link{handle.NewRef(&handle.Core{
		DB: db, Store: st, Schema: cfg.Schema, Logger: log, MaxPayloadBytes: cfg.MaxPayloadBytes,
	})}
	return o, nil
}

// link embeds the handle's Core reference without exporting it: its
// unexported method makes *Outbox an internal/handle.Holder.
type link struct{ handle.Ref }

// DB returns the database handle the Outbox was made with.
func (o *Outbox) DB() *sql.DB { return o.db }

// Schema returns the PostgreSQL schema of the tables.
func (o *Outbox) Schema() string { return o.cfg.Schema }

// Migrate creates the schema and applies every migration not yet applied. It
// is idempotent, and safe when several processes call it at once (they queue
// on an advisory lock).
//
// Migrate reads the schema's version fence (docs/schema.md) before and
// after: on a schema that a newer release migrated, it applies nothing and
// returns nil while the fence admits this release, and a
// *SchemaFenceError (ErrSchemaFenced) once it does not. The handle's
// dispatchers and Enqueue start from the verdict it read.
//
// With Config.Keys, Migrate then seals the webhook secrets of subscriptions
// still stored in clear (written before a key was configured, or under
// AllowPlaintextSecrets): the data migration of secrets at rest, run the
// first time a process starts with a key. Subscriptions already sealed are
// only read; key rotation stays RotateSubscriptionSecrets' job. A
// subscription whose secrets cannot be sealed fails Migrate with a
// *SecretsError naming it; the others are sealed all the same.
func (o *Outbox) Migrate(ctx context.Context) error {
	var fenced error
	err := o.migrate(ctx, func(conn *sql.Conn, m *migrate.Migrate) error {
		st, err := fence.Read(ctx, o.st, conn)
		if err != nil {
			return err
		}
		if st.Schema <= fence.Release {
			// Otherwise a newer release migrated the schema: this one has
			// nothing to apply, and golang-migrate would fail on a version
			// it has no file for.
			if err := m.Up(); err != nil && !errors.Is(err, migrate.ErrNoChange) {
				return err
			}
			if st, err = fence.Read(ctx, o.st, conn); err != nil {
				return err
			}
		}
		fenced = o.fence.Record(ctx, st)
		return nil
	})
	if err != nil {
		return err
	}
	if fenced != nil {
		return fenceError(fenced)
	}
	if o.keys == nil {
		return nil
	}
	if _, err := o.reseal(ctx, true); err != nil {
		return fmt.Errorf("outbox: migrate: seal secrets stored in clear: %w", err)
	}
	return nil
}

// MigrateTo applies or reverts migrations until the schema is at version,
// from 1 to the last migration this release ships (10): the way back to an
// earlier release (MigrateTo(ctx, 9) reverts what v0.3 added, for v0.2; see
// docs/migrating-from-0.2.md, "Upgrade and rollback"), or forward to a
// chosen version. Every down migration keeps the data of the tables it
// leaves (migration 10's removes only the version fence). It refuses a
// schema that a newer release migrated: revert that one with its own
// release. The handle's verdict follows the version it leaves: a version
// this release cannot run on fences the handle off (logged at Error).
func (o *Outbox) MigrateTo(ctx context.Context, version int) error {
	if version < 1 || version > fence.Release {
		return invalid(ErrInvalidConfig, "version", "must be between 1 and %d, got %d", fence.Release, version)
	}
	return o.migrate(ctx, func(conn *sql.Conn, m *migrate.Migrate) error {
		st, err := fence.Read(ctx, o.st, conn)
		if err != nil {
			return err
		}
		if st.Schema > fence.Release {
			return fmt.Errorf("the schema is at version %d, newer than this release's migrations (up to %d): migrate it with the release that wrote them",
				st.Schema, fence.Release)
		}
		if err := m.Migrate(uint(version)); err != nil && !errors.Is(err, migrate.ErrNoChange) {
			return err
		}
		if st, err = fence.Read(ctx, o.st, conn); err != nil {
			return err
		}
		o.fence.Record(ctx, st)
		return nil
	})
}

// MigrateDown reverts every migration, removing all tables, types and
// functions the library created in the schema. The schema itself and the
// migrations table stay. The handle is then fenced off (the schema has no
// version) until Migrate runs again.
func (o *Outbox) MigrateDown(ctx context.Context) error {
	return o.migrate(ctx, func(conn *sql.Conn, m *migrate.Migrate) error {
		if err := m.Down(); err != nil && !errors.Is(err, migrate.ErrNoChange) {
			return err
		}
		st, err := fence.Read(ctx, o.st, conn)
		if err != nil {
			return err
		}
		o.fence.Record(ctx, st)
		return nil
	})
}

// migrate runs step with golang-migrate set up on a connection of its own,
// under the schema's migration lock.
func (o *Outbox) migrate(ctx context.Context, step func(*sql.Conn, *migrate.Migrate) error) (err error) {
	conn, err := o.db.Conn(ctx)
	if err != nil {
		return fmt.Errorf("outbox: migrate: %w", err)
	}
	clean := false
	defer func() {
		if !clean {
			// The session may hold a lock or a search_path: never reuse it.
			_ = conn.Raw(func(any) error { return driver.ErrBadConn })
		}
		_ = conn.Close()
	}()
	lockID := store.AdvisoryKey("outboxkit.migrate." + o.cfg.Schema)
	if _, err := conn.ExecContext(ctx, `SELECT pg_advisory_lock($1)`, lockID); err != nil {
		return fmt.Errorf("outbox: migrate: lock: %w", err)
	}
	q := store.QuoteIdent(o.cfg.Schema)
	if _, err := conn.ExecContext(ctx, `CREATE SCHEMA IF NOT EXISTS `+q); err != nil {
		return fmt.Errorf("outbox: migrate: create schema: %w", err)
	}
	if _, err := conn.ExecContext(ctx, `SET search_path TO `+q); err != nil {
		return fmt.Errorf("outbox: migrate: %w", err)
	}
	src, err := iofs.New(schema.FS, ".")
	if err != nil {
		return fmt.Errorf("outbox: migrate: source: %w", err)
	}
	drv, err := postgres.WithConnection(ctx, conn, &postgres.Config{
		MigrationsTable: MigrationsTable,
		SchemaName:      o.cfg.Schema,
	})
	if err != nil {
		return fmt.Errorf("outbox: migrate: driver: %w", err)
	}
	m, err := migrate.NewWithInstance("iofs", src, "postgres", drv)
	if err != nil {
		return fmt.Errorf("outbox: migrate: %w", err)
	}
	if err := step(conn, m); err != nil {
		return fmt.Errorf("outbox: migrate: %w", err)
	}
	if _, err := conn.ExecContext(ctx, `RESET search_path`); err != nil {
		return fmt.Errorf("outbox: migrate: %w", err)
	}
	if _, err := conn.ExecContext(ctx, `SELECT pg_advisory_unlock($1)`, lockID); err != nil {
		return fmt.Errorf("outbox: migrate: unlock: %w", err)
	}
	clean = true
	return nil
}

// nowArg is the time parameter runtime SQL compares against: the configured
// clock's time, or nil so that the statement uses the database's now().
func (o *Outbox) nowArg() any { return o.st.NowArg() }

// now is the handle's notion of the current time, for values computed in Go.
func (o *Outbox) now() time.Time { return o.st.Now() }

// redactor returns the redaction rules of the records the handle writes
// itself (webhook delivery attempts): Config.Redaction, or the built-in
// rules.
func (o *Outbox) redactor() *redact.Redactor {
	if o.red != nil {
		return o.red
	}
	return redact.Default()
}
