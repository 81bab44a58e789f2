package outbox

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/outboxkit/outbox/internal/dispatch"
	"github.com/outboxkit/outbox/internal/webhooksend"
)

// DispatcherConfig configures a Dispatcher. The zero value of a field means
// its default, named in the field's comment. NewDispatcher checks the
// values: one that cannot be used is an ErrInvalidConfig *ValidationError.
type DispatcherConfig struct {
	// Name identifies this dispatcher in leases (locked_by) and logs; it is
	// cut to 60 bytes. Default: host name and process id ("host-1234").
	Name string
	// Workers bounds how many handlers run at once. Default 100.
	Workers int
	// BatchSize bounds how many rows one claim takes. Default 100.
	BatchSize int
	// PollInterval is how often the dispatcher looks for due rows when no
	// notification arrives; polling is what guarantees progress. Default
	// 1 s.
	PollInterval time.Duration
	// LeaseDuration is how long a claimed row stays reserved without a
	// heartbeat; a crashed dispatcher's rows return to the queue after it.
	// Default 30 s.
	LeaseDuration time.Duration
	// HeartbeatInterval is how often the leases of running rows are
	// extended; it must be shorter than LeaseDuration. Default
	// LeaseDuration/3 (10 s).
	HeartbeatInterval time.Duration
	// ShutdownTimeout bounds how long Run waits, once its context ends, for
	// running handlers before it cancels their contexts. Default 10 s.
	ShutdownTimeout time.Duration
	// ListenDSN is a lib/pq connection string for the LISTEN connection
	// that wakes the dispatcher as soon as events commit. Empty means
	// poll-only.
	ListenDSN string
	// PollOnly disables LISTEN/NOTIFY even when ListenDSN is set, for
	// PgBouncer in transaction mode, where LISTEN cannot work.
	PollOnly bool
	// RescueInterval is how often expired leases are looked for. Default
	// 5 s.
	RescueInterval time.Duration
	// CleanupInterval is how often finished rows past their retention are
	// deleted. Default 1 min.
	CleanupInterval time.Duration
	// CompletedRetention and FailedRetention say how long finished rows are
	// kept; a negative value keeps them forever. Defaults 24 h and 7 days.
	CompletedRetention time.Duration
	FailedRetention    time.Duration
	// BackoffInitial, BackoffMax and BackoffMultiplier shape retry delays
	// when a subscription's config does not: retry n waits
	// BackoffInitial·BackoffMultiplier^(n-1), at most BackoffMax, ±20 %
	// jitter. BackoffMultiplier must be at least 1. Defaults 1 s, 1 h and 2.
	BackoffInitial    time.Duration
	BackoffMax        time.Duration
	BackoffMultiplier float64
	// HandlerTimeout bounds one handler call when the subscription's config
	// sets no timeout. Zero means no bound (leases are renewed meanwhile).
	// Webhook deliveries are bounded by WebhookOptions.Timeout instead.
	HandlerTimeout time.Duration
	// Webhooks, when non-nil, makes this dispatcher deliver the rows of
	// webhook subscriptions too, as signed HTTP POSTs (see WebhookOptions;
	// &WebhookOptions{} means every default). When nil, the dispatcher
	// leaves webhook rows to dispatchers that deliver them.
	Webhooks *WebhookOptions
}

// Dispatcher drains the queue to registered handlers. Register handlers with
// Handle and HandleTx, then call Run. A dispatcher claims only rows whose
// subscription's callback_method it has a handler for, and the rows of
// webhook subscriptions when DispatcherConfig.Webhooks is set, so processes
// can split handlers and webhook delivery between them.
type Dispatcher struct {
	o   *Outbox
	cfg DispatcherConfig // as given; the engines' settings are below
	log *slog.Logger

	mu       sync.Mutex
	handlers map[string]handler
	running  bool

	// engine holds the engine's settings, checked and defaulted.
	engine dispatch.Settings
	// webhooks holds the webhook sender's settings, checked and
	// defaulted, nil when this dispatcher does not deliver webhooks.
	webhooks *webhooksend.Settings
}

type handler struct {
	fn   HandlerFunc
	txFn TxHandlerFunc
}

// NewDispatcher returns a dispatcher that drains this handle's queue. A
// config value that cannot be used is an ErrInvalidConfig
// *ValidationError naming the field ("batch_size", "webhooks.timeout").
func (o *Outbox) NewDispatcher(cfg DispatcherConfig) (*Dispatcher, error) {
	if cfg.HandlerTimeout < 0 {
		return nil, invalid(ErrInvalidConfig, "handler_timeout", "must not be negative, got %s", cfg.HandlerTimeout)
	}
	engine, webhooks, err := o.engineSettings(cfg)
	if err != nil {
		return nil, err
	}
	d := &Dispatcher{
		o: o, cfg: cfg, log: o.log.With(slog.String("dispatcher", engine.Name)),
		handlers: map[string]handler{}, engine: engine, webhooks: webhooks,
	}
	if webhooks != nil && o.keys == nil {
		o.warnPlaintext(context.Background(), "Config.Keys is nil, so secrets sealed earlier cannot be read and new ones are stored in clear or refused")
	}
	return d, nil
}

// engineSettings maps cfg, and the handle's settings the engine reads, to
// the settings of the delivery engine and, when cfg.Webhooks is set, of the
// webhook sender. It is the one place where public fields meet internal
// ones: the internal packages check the values and apply the defaults, and
// a value they refuse becomes an ErrInvalidConfig *ValidationError.
func (o *Outbox) engineSettings(cfg DispatcherConfig) (dispatch.Settings, *webhooksend.Settings, error) {
	engine, err := dispatch.Settings{
		Name: cfg.Name, Workers: cfg.Workers, BatchSize: cfg.BatchSize, PollInterval: cfg.PollInterval,
		LeaseDuration: cfg.LeaseDuration, HeartbeatInterval: cfg.HeartbeatInterval, ShutdownTimeout: cfg.ShutdownTimeout,
		RescueInterval: cfg.RescueInterval, CleanupInterval: cfg.CleanupInterval,
		CompletedRetention: cfg.CompletedRetention, FailedRetention: cfg.FailedRetention,
		Backoff:   dispatch.Backoff{Initial: cfg.BackoffInitial, Max: cfg.BackoffMax, Multiplier: cfg.BackoffMultiplier},
		ListenDSN: cfg.ListenDSN, PollOnly: cfg.PollOnly, NotifyCooldown: o.cfg.NotifyCooldown,
	}.WithDefaults()
	if err != nil {
		return dispatch.Settings{}, nil, settingsError("", err)
	}
	if cfg.Webhooks == nil {
		return engine, nil, nil
	}
	w := cfg.Webhooks
	webhooks, err := webhooksend.Settings{
		Timeout: w.Timeout, EndpointConcurrency: w.EndpointConcurrency, UserAgent: w.UserAgent,
		AllowedNetworks: w.AllowedNetworks, MaxResponseBytes: w.MaxResponseBytes, MaxRetryAfter: w.MaxRetryAfter,
		DisableAfter: w.DisableAfter, DisableMinFailures: w.DisableMinFailures, Clock: o.cfg.Test.WebhookClock,
	}.WithDefaults()
	if err != nil {
		return dispatch.Settings{}, nil, settingsError("webhooks.", err)
	}
	return engine, &webhooks, nil
}

// settingsError turns a setting an internal package refused (a
// *dispatch.FieldError) into an ErrInvalidConfig *ValidationError whose
// field is named under prefix.
func settingsError(prefix string, err error) error {
	var fe *dispatch.FieldError
	if errors.As(err, &fe) {
		return invalid(ErrInvalidConfig, prefix+fe.Field, "%s", fe.Reason)
	}
	return err
}

// Handle registers fn for the subscriptions whose callback_method is
// method. Like database/sql.Register it panics on a mistake: an empty
// method, a nil fn, a duplicate method, or a dispatcher already running.
func (d *Dispatcher) Handle(method string, fn HandlerFunc) {
	if fn == nil {
		panic("outbox: Handle " + method + ": nil handler")
	}
	d.register(method, handler{fn: fn})
}

// HandleTx registers fn like Handle, but runs it inside a transaction that
// also marks the row COMPLETED: the handler's writes and the completion
// commit together (exactly-once effects within this database).
func (d *Dispatcher) HandleTx(method string, fn TxHandlerFunc) {
	if fn == nil {
		panic("outbox: HandleTx " + method + ": nil handler")
	}
	d.register(method, handler{txFn: fn})
}

func (d *Dispatcher) register(method string, h handler) {
	d.mu.Lock()
	defer d.mu.Unlock()
	switch {
	case method == "" || utf8.RuneCountInString(method) > 100:
		panic(fmt.Sprintf("outbox: handler name %q must be 1 to 100 characters", method))
	case d.running:
		panic("outbox: Handle " + method + " after Run started")
	}
	if _, dup := d.handlers[method]; dup {
		panic("outbox: handler " + method + " registered twice")
	}
	d.handlers[method] = h
}

// Typed adapts a handler of a payload type T: the payload is decoded into T
// before fn runs, and a payload that does not decode fails the row at once.
func Typed[T any](fn func(ctx context.Context, d *Delivery, v T) error) HandlerFunc {
	return func(ctx context.Context, d *Delivery) error {
		v, err := decodePayload[T](d)
		if err != nil {
			return err
		}
		return fn(ctx, d, v)
	}
}

// TypedTx is Typed for HandleTx handlers.
func TypedTx[T any](fn func(ctx context.Context, tx *sql.Tx, d *Delivery, v T) error) TxHandlerFunc {
	return func(ctx context.Context, tx *sql.Tx, d *Delivery) error {
		v, err := decodePayload[T](d)
		if err != nil {
			return err
		}
		return fn(ctx, tx, d, v)
	}
}

func decodePayload[T any](d *Delivery) (T, error) {
	var v T
	if err := json.Unmarshal(d.Payload, &v); err != nil {
		return v, Permanent(fmt.Errorf("outbox: decode %s payload into %T: %w", d.Topic, v, err))
	}
	return v, nil
}

// Run drains the queue until ctx ends. Then it stops claiming, lets running
// handlers finish for up to ShutdownTimeout, cancels the contexts of those
// still running (their rows go back to PENDING without counting an
// attempt), writes every outcome, and returns nil once all its goroutines
// have ended.
//
// Run runs only while the schema admits this release (the version fence,
// docs/schema.md). It reads the fence before it claims anything, and again
// every 30 s and whenever a migration announces a change (a NOTIFY, heard
// at once unless the dispatcher polls only). When the schema does not
// admit this release, Run stops claiming, sending webhooks, running
// handlers and writing outcomes (the rows it holds go back to the queue
// when their leases expire, for a release the schema admits), logs why at
// Error, cancels the running handlers, and returns a *SchemaFenceError
// (ErrSchemaFenced) once its goroutines have ended. It returns no other
// error but ErrDispatcherRunning.
func (d *Dispatcher) Run(ctx context.Context) error {
	d.mu.Lock()
	if d.running {
		d.mu.Unlock()
		return ErrDispatcherRunning
	}
	d.running = true
	handlers := d.handlers
	d.mu.Unlock()
	defer func() {
		d.mu.Lock()
		d.running = false
		d.mu.Unlock()
	}()
	if fenced, err := d.o.fence.Check(ctx, nil); fenced != nil {
		return fenceError(fenced)
	} else if err != nil && ctx.Err() == nil {
		// The database may be down: the engine claims nothing until a
		// reading of the fence admits it.
		d.log.WarnContext(ctx, "version fence not readable at start", slog.Any("error", err))
	}
	cfg := d.cfg
	st := d.o.st
	targets := make(map[string]dispatch.Target, len(handlers))
	for m, h := range handlers {
		targets[m] = &handlerTarget{st: st, log: d.log, fn: h.fn, txFn: h.txFn, timeout: cfg.HandlerTimeout}
	}
	ec := dispatch.Config{
		Settings: d.engine, Store: st, Logger: d.log, Targets: targets, Fence: d.o.fence,
	}
	if d.webhooks != nil {
		wc := webhooksend.Config{Settings: *d.webhooks, Store: st, Logger: d.log, Redactor: d.o.redactor(),
			MaxRecordBytes: d.o.cfg.MaxPayloadBytes}
		if d.o.keys != nil {
			wc.Keys = d.o.keys
		}
		wc.Disabled = d.o.publishDisabled
		sender := webhooksend.New(wc)
		defer sender.Close()
		ec.Webhooks = sender
	}
	return fenceError(dispatch.New(ec).Run(ctx))
}
