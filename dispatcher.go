package outbox

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/outboxkit/outbox/internal/dispatch"
	"github.com/outboxkit/outbox/internal/webhooksend"
)

// Defaults for DispatcherConfig fields left at their zero value.
const (
	WorkersDefault            = 100
	BatchSizeDefault          = 100
	PollIntervalDefault       = time.Second
	LeaseDurationDefault      = 30 * time.Second
	ShutdownTimeoutDefault    = 10 * time.Second
	RescueIntervalDefault     = 5 * time.Second
	CleanupIntervalDefault    = time.Minute
	CompletedRetentionDefault = 24 * time.Hour
	FailedRetentionDefault    = 7 * 24 * time.Hour
	BackoffInitialDefault     = time.Second
	BackoffMaxDefault         = time.Hour
	BackoffMultiplierDefault  = 2.0
	// BackoffJitter is the randomization factor of retry delays (±20 %).
	BackoffJitter = dispatch.BackoffJitter
	// MaxFailureReasonBytes caps failure_reason.
	MaxFailureReasonBytes = dispatch.MaxFailureReasonBytes
)

// DispatcherConfig configures a Dispatcher. The zero value means defaults.
type DispatcherConfig struct {
	// Name identifies this dispatcher in leases (locked_by) and logs.
	// Default: host name and process id.
	Name string
	// Workers bounds how many handlers run at once. Default WorkersDefault.
	Workers int
	// BatchSize bounds how many rows one claim takes. Default BatchSizeDefault.
	BatchSize int
	// PollInterval is how often the dispatcher looks for due rows when no
	// notification arrives; polling is what guarantees progress. Default
	// PollIntervalDefault.
	PollInterval time.Duration
	// LeaseDuration is how long a claimed row stays reserved without a
	// heartbeat; a crashed dispatcher's rows return to the queue after it.
	// Default LeaseDurationDefault.
	LeaseDuration time.Duration
	// HeartbeatInterval is how often the leases of running rows are
	// extended. Default LeaseDuration/3.
	HeartbeatInterval time.Duration
	// ShutdownTimeout bounds how long Run waits, once its context ends, for
	// running handlers before it cancels their contexts. Default
	// ShutdownTimeoutDefault.
	ShutdownTimeout time.Duration
	// ListenDSN is a lib/pq connection string for the LISTEN connection
	// that wakes the dispatcher as soon as events commit. Empty means
	// poll-only.
	ListenDSN string
	// PollOnly disables LISTEN/NOTIFY even when ListenDSN is set, for
	// PgBouncer in transaction mode, where LISTEN cannot work.
	PollOnly bool
	// RescueInterval is how often expired leases are looked for. Default
	// RescueIntervalDefault.
	RescueInterval time.Duration
	// CleanupInterval is how often finished rows past their retention are
	// deleted. Default CleanupIntervalDefault.
	CleanupInterval time.Duration
	// CompletedRetention and FailedRetention say how long finished rows are
	// kept. Defaults CompletedRetentionDefault and FailedRetentionDefault; a
	// negative value keeps them forever.
	CompletedRetention time.Duration
	FailedRetention    time.Duration
	// BackoffInitial, BackoffMax and BackoffMultiplier shape retry delays
	// when a subscription's config does not. Defaults BackoffInitialDefault,
	// BackoffMaxDefault, BackoffMultiplierDefault; jitter is ±20 %.
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
	cfg DispatcherConfig
	log *slog.Logger

	mu       sync.Mutex
	handlers map[string]handler
	running  bool

	// webhooks holds the validated webhook options, nil when this
	// dispatcher does not deliver webhooks.
	webhooks *webhooksend.Config
	// busyDelay is how long a webhook row waits when its endpoint has no
	// free slot (webhookBusyDelay; tests shorten it).
	busyDelay time.Duration
}

type handler struct {
	fn   HandlerFunc
	txFn TxHandlerFunc
}

// NewDispatcher returns a dispatcher that drains this handle's queue.
func (o *Outbox) NewDispatcher(cfg DispatcherConfig) (*Dispatcher, error) {
	if cfg.Workers < 0 || cfg.BatchSize < 0 || cfg.PollInterval < 0 || cfg.LeaseDuration < 0 ||
		cfg.HeartbeatInterval < 0 || cfg.ShutdownTimeout < 0 || cfg.RescueInterval < 0 ||
		cfg.CleanupInterval < 0 || cfg.BackoffInitial < 0 || cfg.BackoffMax < 0 || cfg.HandlerTimeout < 0 {
		return nil, fmt.Errorf("%w: dispatcher durations and sizes must not be negative", ErrInvalidConfig)
	}
	if cfg.BackoffMultiplier != 0 && cfg.BackoffMultiplier < 1 {
		return nil, fmt.Errorf("%w: BackoffMultiplier must be at least 1", ErrInvalidConfig)
	}
	if cfg.Name == "" {
		host, _ := os.Hostname()
		cfg.Name = fmt.Sprintf("%s-%d", host, os.Getpid())
	}
	// The name goes into every claim token (varchar): valid UTF-8, no NUL,
	// cut on a character boundary.
	cfg.Name = dispatch.TruncateUTF8(dispatch.SanitizeText(cfg.Name), 60)
	setDefault(&cfg.Workers, WorkersDefault)
	setDefault(&cfg.BatchSize, BatchSizeDefault)
	setDefault(&cfg.PollInterval, PollIntervalDefault)
	setDefault(&cfg.LeaseDuration, LeaseDurationDefault)
	setDefault(&cfg.HeartbeatInterval, cfg.LeaseDuration/3)
	setDefault(&cfg.ShutdownTimeout, ShutdownTimeoutDefault)
	setDefault(&cfg.RescueInterval, RescueIntervalDefault)
	setDefault(&cfg.CleanupInterval, CleanupIntervalDefault)
	setDefault(&cfg.CompletedRetention, CompletedRetentionDefault)
	setDefault(&cfg.FailedRetention, FailedRetentionDefault)
	setDefault(&cfg.BackoffInitial, BackoffInitialDefault)
	setDefault(&cfg.BackoffMax, BackoffMaxDefault)
	setDefault(&cfg.BackoffMultiplier, BackoffMultiplierDefault)
	if cfg.HeartbeatInterval >= cfg.LeaseDuration {
		return nil, fmt.Errorf("%w: HeartbeatInterval must be shorter than LeaseDuration", ErrInvalidConfig)
	}
	d := &Dispatcher{
		o: o, cfg: cfg, log: o.log.With(slog.String("dispatcher", cfg.Name)),
		handlers: map[string]handler{}, busyDelay: webhookBusyDelay,
	}
	if cfg.Webhooks != nil {
		wc, err := webhookConfig(cfg.Webhooks, o.cfg.Test.WebhookClock)
		if err != nil {
			return nil, err
		}
		d.webhooks = &wc
		if o.keys == nil {
			o.warnPlaintext(context.Background(), "Config.Keys is nil, so secrets sealed earlier cannot be read and new ones are stored in clear or refused")
		}
	}
	return d, nil
}

func setDefault[T comparable](v *T, def T) {
	var zero T
	if *v == zero {
		*v = def
	}
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
// have ended. It returns an error only if the dispatcher cannot start.
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
	cfg := d.cfg
	st := d.o.st
	targets := make(map[string]dispatch.Target, len(handlers))
	for m, h := range handlers {
		targets[m] = &handlerTarget{st: st, log: d.log, fn: h.fn, txFn: h.txFn, timeout: cfg.HandlerTimeout}
	}
	ec := dispatch.Config{
		Store: st, Logger: d.log, Name: cfg.Name, Workers: cfg.Workers, BatchSize: cfg.BatchSize,
		PollInterval: cfg.PollInterval, LeaseDuration: cfg.LeaseDuration, HeartbeatInterval: cfg.HeartbeatInterval,
		ShutdownTimeout: cfg.ShutdownTimeout, RescueInterval: cfg.RescueInterval, CleanupInterval: cfg.CleanupInterval,
		CompletedRetention: cfg.CompletedRetention, FailedRetention: cfg.FailedRetention,
		Backoff:   dispatch.Backoff{Initial: cfg.BackoffInitial, Max: cfg.BackoffMax, Multiplier: cfg.BackoffMultiplier},
		ListenDSN: cfg.ListenDSN, PollOnly: cfg.PollOnly, NotifyCooldown: d.o.cfg.NotifyCooldown,
		Targets: targets,
	}
	if d.webhooks != nil {
		wc := *d.webhooks
		wc.BusyDelay = d.busyDelay
		wc.Store, wc.Logger, wc.Redactor, wc.MaxRecordBytes = st, d.log, d.o.redactor(), d.o.cfg.MaxPayloadBytes
		if d.o.keys != nil {
			wc.Keys = d.o.keys
		}
		wc.Disabled = d.o.publishDisabled
		sender := webhooksend.New(wc)
		defer sender.Close()
		ec.Webhooks = sender
	}
	dispatch.New(ec).Run(ctx)
	return nil
}
