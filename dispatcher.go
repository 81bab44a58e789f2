package outbox

import (
	"bytes"
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	mrand "math/rand/v2"
	"os"
	"runtime/debug"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/cenkalti/backoff/v4"
	"github.com/google/uuid"
	"github.com/lib/pq"

	"github.com/outboxkit/outbox/internal/store"
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
	BackoffJitter = 0.2
	// MaxFailureReasonBytes caps failure_reason.
	MaxFailureReasonBytes = 4096
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

	cfgMu    sync.Mutex
	cfgCache map[uuid.UUID]cachedConfig

	// webhooks holds the validated webhook options, nil when this
	// dispatcher does not deliver webhooks.
	webhooks *WebhookOptions
	// busyDelay is how long a webhook row waits when its endpoint has no
	// free slot (webhookBusyDelay; tests shorten it).
	busyDelay time.Duration
}

type handler struct {
	fn   HandlerFunc
	txFn TxHandlerFunc
}

type cachedConfig struct {
	updatedAt time.Time
	cfg       SubscriptionConfig
}

// ErrDispatcherRunning reports a second Run, or a registration after Run.
var ErrDispatcherRunning = errors.New("outbox: dispatcher already running")

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
	cfg.Name = truncateUTF8(sanitizeText(cfg.Name), 60)
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
		handlers: map[string]handler{}, cfgCache: map[uuid.UUID]cachedConfig{},
		busyDelay: webhookBusyDelay,
	}
	if cfg.Webhooks != nil {
		s, err := newWebhookSender(cfg.Webhooks)
		if err != nil {
			return nil, err
		}
		s.close()
		d.webhooks = &s.opts
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
	methods := make([]string, 0, len(d.handlers))
	for m := range d.handlers {
		methods = append(methods, m)
	}
	handlers := d.handlers
	d.mu.Unlock()
	defer func() {
		d.mu.Lock()
		d.running = false
		d.mu.Unlock()
	}()
	sort.Strings(methods)
	var sender *webhookSender
	if d.webhooks != nil {
		var err error
		if sender, err = newWebhookSender(d.webhooks); err != nil {
			return err
		}
		defer sender.close()
	} else if len(methods) == 0 {
		d.log.WarnContext(ctx, "dispatcher has no handlers and does not deliver webhooks; it will claim nothing")
	}

	r := &run{
		d: d, o: d.o, handlers: handlers, methods: methods, sender: sender,
		wake:     make(chan struct{}, 1),
		notified: make(chan time.Time, 1),
		freed:    make(chan struct{}, 1),
		due:      make(chan time.Time, 16),
		outcomes: make(chan outcome, d.cfg.Workers+d.cfg.BatchSize),
		inflight: map[uuid.UUID]string{},
	}
	base := context.WithoutCancel(ctx)
	handlerCtx, cancelHandlers := context.WithCancel(base)
	defer cancelHandlers()
	bgCtx, cancelBg := context.WithCancel(base)
	defer cancelBg()

	var bg sync.WaitGroup
	if d.cfg.ListenDSN != "" && !d.cfg.PollOnly {
		bg.Add(1)
		go func() { defer bg.Done(); r.listen(ctx) }()
	} else if !d.cfg.PollOnly {
		d.log.InfoContext(ctx, "no ListenDSN: dispatcher polls only", slog.Duration("poll_interval", d.cfg.PollInterval))
	}
	bg.Add(2)
	go func() { defer bg.Done(); r.heartbeat(bgCtx) }()
	go func() { defer bg.Done(); r.maintain(ctx) }()
	stopCompleter := make(chan struct{})
	completerDone := make(chan struct{})
	go func() { defer close(completerDone); r.complete(bgCtx, stopCompleter) }()

	d.log.InfoContext(ctx, "dispatcher started", slog.Any("handlers", methods), slog.Bool("webhooks", sender != nil),
		slog.Int("workers", d.cfg.Workers))
	r.fetchLoop(ctx, bgCtx, handlerCtx)

	// Shutdown: let running handlers finish, then cut them off.
	done := make(chan struct{})
	go func() { r.workers.Wait(); close(done) }()
	timer := time.NewTimer(d.cfg.ShutdownTimeout)
	select {
	case <-done:
		timer.Stop()
	case <-timer.C:
		d.log.WarnContext(ctx, "shutdown timeout: cancelling running handlers", slog.Int("running", int(r.busy.Load())))
		cancelHandlers()
		<-done
	}
	close(stopCompleter)
	<-completerDone
	cancelBg()
	bg.Wait()
	d.log.InfoContext(ctx, "dispatcher stopped")
	return nil
}

// run is the state of one Run call.
type run struct {
	d        *Dispatcher
	o        *Outbox
	handlers map[string]handler
	methods  []string
	sender   *webhookSender // nil when webhooks are not delivered

	wake     chan struct{}  // a fetch is wanted now (reconnect)
	notified chan time.Time // a NOTIFY arrived at this time
	freed    chan struct{}  // a worker finished
	due      chan time.Time // a retry this dispatcher scheduled becomes due
	outcomes chan outcome

	busy    atomic.Int32
	workers sync.WaitGroup

	mu       sync.Mutex
	inflight map[uuid.UUID]string // running rows and their claim tokens
}

// claimedRow is one row handed out by a claim.
type claimedRow struct {
	delivery       Delivery
	token          string
	callbackMethod string
	webhookURL     string
	configJSON     string
	subUpdatedAt   time.Time
	retryCount     int
	keyed          bool // the row has an ordering key
}

// outcome is the result of one attempt, written by the completer.
type outcome struct {
	id     uuid.UUID
	token  string
	status Status
	inc    int           // added to retry_count
	delay  time.Duration // before the next attempt, when status is PENDING
	reason string        // failure_reason, or "" to keep the previous one
	// record, when set, is written to integration_log in the transaction
	// that writes the outcome (webhook attempts).
	record *IntegrationRecord
	// keyed marks a row with an ordering key: finishing it may make the
	// next row of its key claimable.
	keyed bool
}

func (r *run) fetchLoop(ctx, bgCtx, handlerCtx context.Context) {
	cfg := r.d.cfg
	poll := time.NewTimer(0)
	defer poll.Stop()
	wakes := newWakeups()
	defer wakes.timer.Stop()
	backlog := false // the last claim was full: more rows are likely due
	errDelay := 100 * time.Millisecond
	skip := false // wake-up without a reason to claim
	var free, threshold int
	for {
		if ctx.Err() != nil {
			return
		}
		if skip {
			skip = false
			goto wait
		}
		free = cfg.Workers - int(r.busy.Load())
		threshold = 1
		if backlog {
			// Claim in batches when rows are waiting: a claim per freed slot
			// would cost a statement per row.
			threshold = max(1, min(cfg.BatchSize, cfg.Workers)/2)
		}
		if free >= threshold {
			limit := min(free, cfg.BatchSize)
			n, err := r.claim(bgCtx, handlerCtx, limit)
			if err != nil {
				r.d.log.ErrorContext(ctx, "claim failed", slog.Any("error", err))
				select {
				case <-ctx.Done():
					return
				case <-time.After(errDelay):
				}
				errDelay = min(errDelay*2, cfg.PollInterval)
				continue
			}
			errDelay = 100 * time.Millisecond
			backlog = n == limit
			if backlog && cfg.Workers-int(r.busy.Load()) >= threshold {
				continue
			}
		}
	wait:
		select {
		case <-ctx.Done():
			return
		case <-poll.C:
			poll.Reset(cfg.PollInterval)
		case <-r.wake:
		case t := <-r.notified:
			// Trailing fetch: an event whose own NOTIFY was suppressed by
			// the enqueuer's cooldown commits within one cooldown of the
			// notify we saw.
			if r.o.cfg.NotifyCooldown > 0 {
				wakes.add(t.Add(r.o.cfg.NotifyCooldown))
			}
		case <-wakes.timer.C:
			wakes.fired()
		case at := <-r.due:
			// A retry scheduled here falls due before the next poll: look
			// again then rather than a whole poll interval later.
			if time.Until(at) < cfg.PollInterval {
				wakes.add(at)
			}
		case <-r.freed:
			// A worker finished: claim again only if rows were waiting
			// when we last looked; otherwise wait for a reason to look.
			if !backlog {
				skip = true
			}
		}
	}
}

// wakeups is a set of future times at which the fetch loop looks again,
// served by one timer set to the earliest.
type wakeups struct {
	timer *time.Timer
	at    []time.Time
}

func newWakeups() *wakeups {
	t := time.NewTimer(time.Hour)
	t.Stop()
	return &wakeups{timer: t}
}

func (w *wakeups) add(t time.Time) {
	for _, x := range w.at {
		if x.Sub(t).Abs() < time.Millisecond {
			return // close enough to one already set
		}
	}
	w.at = append(w.at, t)
	w.arm()
}

// fired drops the times that have passed and arms the timer for the next.
func (w *wakeups) fired() {
	now := time.Now()
	keep := w.at[:0]
	for _, x := range w.at {
		if x.After(now) {
			keep = append(keep, x)
		}
	}
	w.at = keep
	w.arm()
}

func (w *wakeups) arm() {
	if len(w.at) == 0 {
		w.timer.Stop()
		return
	}
	next := w.at[0]
	for _, x := range w.at[1:] {
		if x.Before(next) {
			next = x
		}
	}
	w.timer.Reset(max(time.Until(next), 0))
}

// claim claims up to limit rows and starts a worker for each. It runs on
// bgCtx so that a claim that committed is always read back.
func (r *run) claim(bgCtx, handlerCtx context.Context, limit int) (int, error) {
	cfg := r.d.cfg
	token := newToken(cfg.Name)
	ctx, cancel := context.WithTimeout(bgCtx, 30*time.Second)
	defer cancel()
	rows, err := r.o.st.Stmt(nil, r.o.st.Queue.Claim).Query(ctx, r.o.nowArg(), pq.Array(r.methods), r.sender != nil,
		limit, token, cfg.LeaseDuration.Microseconds())
	if err != nil {
		return 0, err
	}
	defer rows.Close()
	// Handlers start only once the claim has committed (the last Next reads
	// the commit's acknowledgement): an outcome written while the claim is
	// still uncommitted would not see the row as claimed and be lost.
	var claimed []*claimedRow
	for rows.Next() {
		c := &claimedRow{token: token}
		var payload, metadata string
		dl := &c.delivery
		if err := rows.Scan(&dl.ID, &dl.EventID, &dl.SubscriptionID, &dl.Subscription, &c.callbackMethod,
			&c.webhookURL, &c.configJSON, &c.subUpdatedAt, &dl.Topic, &payload, &metadata,
			&c.retryCount, &dl.MaxRetries, &dl.CreatedAt, &c.keyed); err != nil {
			return 0, err
		}
		dl.Payload = json.RawMessage(payload)
		dl.Attempt = c.retryCount + 1
		if metadata != "" {
			if err := json.Unmarshal([]byte(metadata), &dl.Metadata); err != nil {
				r.d.log.Warn("unreadable event metadata", slog.String("event_id", dl.EventID.String()), slog.Any("error", err))
			}
		}
		claimed = append(claimed, c)
	}
	if err := rows.Err(); err != nil {
		return 0, err
	}
	r.mu.Lock()
	for _, c := range claimed {
		r.inflight[c.delivery.ID] = token
	}
	r.mu.Unlock()
	for _, c := range claimed {
		r.busy.Add(1)
		r.workers.Add(1)
		go r.process(handlerCtx, bgCtx, c)
	}
	return len(claimed), nil
}

// process runs one row's handler and hands its outcome to the completer.
func (r *run) process(handlerCtx, bgCtx context.Context, c *claimedRow) {
	defer func() {
		r.mu.Lock()
		delete(r.inflight, c.delivery.ID)
		r.mu.Unlock()
		r.busy.Add(-1)
		r.workers.Done()
		select {
		case r.freed <- struct{}{}:
		default:
		}
	}()
	sub := r.d.subscriptionConfig(c)
	if c.webhookURL != "" {
		if r.sender == nil {
			// The subscription became a webhook after the claim read it:
			// leave the row to a dispatcher that delivers webhooks.
			r.submit(outcome{id: c.delivery.ID, token: c.token, status: StatusPending})
			return
		}
		r.deliverWebhook(handlerCtx, bgCtx, c, sub)
		return
	}
	ctx := handlerCtx
	timeout := time.Duration(sub.Timeout)
	if timeout == 0 {
		timeout = r.d.cfg.HandlerTimeout
	}
	if timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
	}
	dl := &c.delivery
	log := rowLogger{r.d.log, dl}
	h, ok := r.handlers[c.callbackMethod]
	var err error
	switch {
	case !ok:
		err = fmt.Errorf("outbox: no handler registered for %q", c.callbackMethod)
	case h.txFn != nil:
		var completed bool
		completed, err = r.runTx(ctx, bgCtx, h.txFn, c)
		if completed {
			log.DebugContext(ctx, "delivered")
			if c.keyed {
				r.poke()
			}
			return
		}
	default:
		err = safeCall(ctx, h.fn, dl)
	}
	if err != nil && handlerCtx.Err() != nil {
		r.release(bgCtx, log, c, err, nil)
		return
	}
	r.settle(bgCtx, log, r.d.decide(c, sub, err), err)
}

// release gives back a row whose attempt was cut off by shutdown, without
// counting the attempt; rec, if set, records the attempt all the same.
func (r *run) release(ctx context.Context, log rowLogger, c *claimedRow, err error, rec *IntegrationRecord) {
	log.WarnContext(ctx, "attempt cut off by shutdown; row released", slog.Any("error", err))
	r.submit(outcome{id: c.delivery.ID, token: c.token, status: StatusPending,
		reason: truncateReason("released at shutdown: " + err.Error()), record: rec})
}

// settle logs an attempt's outcome, looks again when a retry falls due
// before the next poll, and hands the outcome to the completer. attrs are
// added to the log record.
func (r *run) settle(ctx context.Context, log rowLogger, oc outcome, err error, attrs ...any) {
	switch oc.status {
	case StatusCompleted:
		log.DebugContext(ctx, "delivered", attrs...)
	case StatusFailed:
		log.WarnContext(ctx, "delivery failed for good", append(attrs, slog.Any("error", err))...)
	default:
		log.InfoContext(ctx, "delivery failed; will retry", append(attrs, slog.Any("error", err), slog.Duration("retry_in", oc.delay))...)
		r.dueIn(oc.delay)
	}
	r.submit(oc)
}

// rowLogger logs about one delivery, adding the delivery's attributes only
// to records that are emitted (a With per row would allocate on every
// delivery, logged or not).
type rowLogger struct {
	l  *slog.Logger
	dl *Delivery
}

func (rl rowLogger) log(ctx context.Context, level slog.Level, msg string, args ...any) {
	if !rl.l.Enabled(ctx, level) {
		return
	}
	attrs := append([]any{slog.String("event_id", rl.dl.EventID.String()), slog.String("subscription", rl.dl.Subscription),
		slog.Int("attempt", rl.dl.Attempt)}, args...)
	rl.l.Log(ctx, level, msg, attrs...)
}

func (rl rowLogger) DebugContext(ctx context.Context, msg string, args ...any) {
	rl.log(ctx, slog.LevelDebug, msg, args...)
}

func (rl rowLogger) InfoContext(ctx context.Context, msg string, args ...any) {
	rl.log(ctx, slog.LevelInfo, msg, args...)
}

func (rl rowLogger) WarnContext(ctx context.Context, msg string, args ...any) {
	rl.log(ctx, slog.LevelWarn, msg, args...)
}

func (r *run) submit(oc outcome) { r.outcomes <- oc }

// dueIn tells the fetch loop that a row this dispatcher released falls due
// after delay.
func (r *run) dueIn(delay time.Duration) {
	select {
	case r.due <- time.Now().Add(delay + dueSlack):
	default:
	}
}

// dueSlack is added to a retry's delay before looking for it: the outcome,
// and so next_retry_at, is written a little after the handler returns.
const dueSlack = 20 * time.Millisecond

// runTx runs a HandleTx handler and, if it succeeds, completes the row in
// the same transaction. completed reports that the row is COMPLETED.
func (r *run) runTx(ctx, bgCtx context.Context, fn TxHandlerFunc, c *claimedRow) (completed bool, err error) {
	tx, err := r.o.db.BeginTx(ctx, nil)
	if err != nil {
		return false, fmt.Errorf("outbox: begin handler transaction: %w", err)
	}
	if err := safeCallTx(ctx, fn, tx, &c.delivery); err != nil {
		_ = tx.Rollback()
		return false, err
	}
	res, err := r.o.st.Stmt(tx, r.o.st.Queue.CompleteOne).Exec(ctx, r.o.nowArg(), c.delivery.ID, c.token)
	if err != nil {
		_ = tx.Rollback()
		return false, fmt.Errorf("outbox: complete in handler transaction: %w", err)
	}
	if n, _ := res.RowsAffected(); n != 1 {
		_ = tx.Rollback()
		r.d.log.WarnContext(bgCtx, "lease lost before completion; handler effects rolled back",
			slog.String("event_id", c.delivery.EventID.String()))
		return true, nil // nothing to write: the row belongs to another claim
	}
	if err := tx.Commit(); err != nil {
		// Whether it committed is unknown; the outcome write is fenced on
		// the claim token (cleared by a commit), so a retry outcome cannot
		// undo a commit.
		return false, fmt.Errorf("outbox: commit handler transaction: %w", err)
	}
	return true, nil
}

// decide turns a handler's result into an outcome.
func (d *Dispatcher) decide(c *claimedRow, sub SubscriptionConfig, err error) outcome {
	oc := outcome{id: c.delivery.ID, token: c.token, keyed: c.keyed}
	if err == nil {
		oc.status = StatusCompleted
		return oc
	}
	oc.inc = 1
	oc.reason = truncateReason(err.Error())
	var perm *permanentError
	if errors.As(err, &perm) || c.retryCount+1 > c.delivery.MaxRetries {
		oc.status = StatusFailed
		return oc
	}
	oc.status = StatusPending
	var ra *retryAfterError
	switch {
	case errors.As(err, &ra):
		oc.delay = max(ra.delay, 0)
	case c.webhookURL != "" && len(sub.RetrySchedule) == 0 && sub.BackoffInitial == 0 && sub.BackoffMax == 0 &&
		sub.BackoffMultiplier == 0:
		// A webhook subscription that sets no retry settings of its own
		// follows the Standard Webhooks schedule.
		oc.delay = webhookRetryDelay(c.retryCount+1, nil, nil)
	default:
		oc.delay = d.retryDelay(c.retryCount+1, sub)
	}
	return oc
}

// retryDelay is the delay before retry n (1-based) under the subscription's
// settings, falling back to the dispatcher's.
func (d *Dispatcher) retryDelay(n int, sub SubscriptionConfig) time.Duration {
	if len(sub.RetrySchedule) > 0 {
		return scheduleDelay(n, sub.RetrySchedule, mrand.Float64)
	}
	initial, maxDelay, mult := d.cfg.BackoffInitial, d.cfg.BackoffMax, d.cfg.BackoffMultiplier
	if sub.BackoffInitial > 0 {
		initial = time.Duration(sub.BackoffInitial)
	}
	if sub.BackoffMax > 0 {
		maxDelay = time.Duration(sub.BackoffMax)
	}
	if sub.BackoffMultiplier > 0 {
		mult = sub.BackoffMultiplier
	}
	return backoffDelay(n, initial, maxDelay, mult)
}

// backoffDelay is the n-th delay (1-based) of cenkalti/backoff's
// exponential backoff with ±20 % jitter.
func backoffDelay(n int, initial, maxDelay time.Duration, mult float64) time.Duration {
	b := &backoff.ExponentialBackOff{
		InitialInterval:     initial,
		RandomizationFactor: BackoffJitter,
		Multiplier:          mult,
		MaxInterval:         maxDelay,
		MaxElapsedTime:      0,
		Stop:                backoff.Stop,
		Clock:               backoff.SystemClock,
	}
	b.Reset()
	// Past the cap every delay is MaxInterval ± jitter: skip the walk.
	if mult > 1 && float64(initial)*math.Pow(mult, float64(n-1)) >= float64(maxDelay) {
		b.InitialInterval = maxDelay
		b.Reset()
		return b.NextBackOff()
	}
	var delay time.Duration
	for range n {
		delay = b.NextBackOff()
	}
	return delay
}

// scheduleDelay is the delay before retry n (1-based; the last entry
// repeats) of a fixed schedule, jittered with rnd (in [0, 1)).
func scheduleDelay(n int, schedule []Duration, rnd func() float64) time.Duration {
	n = min(max(n, 1), len(schedule))
	return jitter(time.Duration(schedule[n-1]), rnd())
}

// jitter spreads d by ±BackoffJitter with r in [0, 1); a delay too long
// for a Duration saturates rather than wrapping to a negative one.
func jitter(d time.Duration, r float64) time.Duration {
	f := float64(d) * (1 - BackoffJitter + 2*BackoffJitter*r)
	if f >= math.MaxInt64 {
		return math.MaxInt64
	}
	return time.Duration(f)
}

// subscriptionConfig parses a claimed row's subscription config, cached per
// subscription until the subscription changes.
func (d *Dispatcher) subscriptionConfig(c *claimedRow) SubscriptionConfig {
	id := c.delivery.SubscriptionID
	d.cfgMu.Lock()
	defer d.cfgMu.Unlock()
	if cc, ok := d.cfgCache[id]; ok && cc.updatedAt.Equal(c.subUpdatedAt) {
		return cc.cfg
	}
	var cfg SubscriptionConfig
	if c.configJSON != "" {
		if err := json.Unmarshal([]byte(c.configJSON), &cfg); err != nil {
			d.log.Warn("unreadable subscription_config; using defaults", slog.String("subscription", c.delivery.Subscription), slog.Any("error", err))
		}
	}
	d.cfgCache[id] = cachedConfig{updatedAt: c.subUpdatedAt, cfg: cfg}
	return cfg
}

// complete writes outcomes in batches until stop is closed and every
// submitted outcome is written.
func (r *run) complete(ctx context.Context, stop <-chan struct{}) {
	batch := make([]outcome, 0, 512)
	for {
		select {
		case oc := <-r.outcomes:
			batch = append(batch, oc)
		case <-stop:
			for {
				select {
				case oc := <-r.outcomes:
					batch = append(batch, oc)
					continue
				default:
				}
				break
			}
			if len(batch) > 0 {
				r.flush(ctx, batch)
			}
			return
		}
	drain:
		for len(batch) < cap(batch) {
			select {
			case oc := <-r.outcomes:
				batch = append(batch, oc)
			default:
				break drain
			}
		}
		r.flush(ctx, batch)
		batch = batch[:0]
	}
}

// flush writes one batch of outcomes in one statement, retrying briefly on
// error. When outcomes carry integration records, the outcomes and the
// records (one statement each) commit in one transaction. A batch that cannot be written is dropped: its rows keep their
// lease, which is no longer renewed, and are rescued after it expires.
func (r *run) flush(ctx context.Context, batch []outcome) {
	n := len(batch)
	// Rows are locked in id order, as the heartbeat and other writers
	// of several rows lock them.
	slices.SortFunc(batch, func(a, b outcome) int { return compareIDs(a.id, b.id) })
	w, recs := outcomeArgs(batch)
	recs = r.storableRecords(ctx, recs)
	var err error
	for attempt, wait := 0, 50*time.Millisecond; attempt < outcomeWriteAttempts; attempt, wait = attempt+1, wait*4 {
		var written int
		written, err = r.writeOutcomes(ctx, recs, w)
		if err == nil {
			if written < n {
				r.d.log.WarnContext(ctx, "outcomes of rows whose lease was lost were not written",
					slog.Int("lost", n-written), slog.Int("batch", n))
			}
			for _, oc := range batch {
				if oc.keyed && oc.status != StatusPending {
					// The next row of its key may be claimable now: look
					// rather than wait for the next poll.
					r.poke()
					break
				}
			}
			return
		}
		if ctx.Err() != nil || attempt == outcomeWriteAttempts-1 {
			break
		}
		select {
		case <-ctx.Done():
		case <-time.After(wait):
		}
	}
	r.d.log.ErrorContext(ctx, "writing outcomes failed; rows return to the queue when their lease expires",
		slog.Int("rows", n), slog.Any("error", err))
}

// storableRecords prepares (validates and redacts) a batch's integration
// records once, before any write, and drops with a log each one the log
// would refuse (a response body with a number jsonb cannot hold, one over
// MaxPayloadBytes...): a record never holds back the outcomes it rides with.
func (r *run) storableRecords(ctx context.Context, recs []IntegrationRecord) []IntegrationRecord {
	out := recs[:0]
	red := r.o.redactor()
	for _, rec := range recs {
		p, err := r.o.prepareIntegration(rec, red)
		if err != nil {
			r.d.log.ErrorContext(ctx, "integration record of a webhook attempt refused; its outcome is written without it",
				slog.String("integration", rec.Integration), slog.String("external_id", rec.ExternalID), slog.Any("error", err))
			continue
		}
		out = append(out, p)
	}
	return out
}

// outcomeWrite is one batch of outcomes as the statement that writes it.
type outcomeWrite struct {
	completed bool  // every outcome is a success: the lean CompleteMany statement
	args      []any // its parameters after the time parameter
}

// outcomeArgs returns the write of batch and the integration records it
// carries.
func outcomeArgs(batch []outcome) (w outcomeWrite, recs []IntegrationRecord) {
	n := len(batch)
	ids, tokens := make([]string, n), make([]string, n)
	w.completed = true
	for i, oc := range batch {
		if oc.record != nil {
			recs = append(recs, *oc.record)
		}
		ids[i], tokens[i] = oc.id.String(), oc.token
		w.completed = w.completed && oc.status == StatusCompleted && oc.inc == 0 && oc.reason == ""
	}
	if w.completed {
		w.args = []any{pq.Array(ids), pq.Array(tokens)}
		return w, recs
	}
	statuses := make([]string, n)
	incs, delays := make([]int64, n), make([]int64, n)
	reasons := make([]sql.NullString, n)
	for i, oc := range batch {
		statuses[i], incs[i], delays[i] = string(oc.status), int64(oc.inc), oc.delay.Microseconds()
		reasons[i] = sql.NullString{String: oc.reason, Valid: oc.reason != ""}
	}
	w.args = []any{pq.Array(ids), pq.Array(tokens), pq.Array(statuses), pq.Array(incs), pq.Array(delays), pq.Array(reasons)}
	return w, recs
}

// writeOutcomes writes w and recs: in autocommit when recs is empty, else in
// one transaction. It returns how many rows were still held (and written).
func (r *run) writeOutcomes(ctx context.Context, recs []IntegrationRecord, w outcomeWrite) (n int, err error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	text := r.o.st.Queue.Outcomes
	if w.completed {
		text = r.o.st.Queue.CompleteMany
	}
	full := append([]any{r.o.nowArg()}, w.args...)
	if len(recs) == 0 {
		return store.RowsAffected(r.o.st.Stmt(nil, text).Exec(ctx, full...))
	}
	tx, err := r.o.db.BeginTx(ctx, nil)
	if err != nil {
		return 0, err
	}
	defer func() {
		if err != nil {
			if rbErr := tx.Rollback(); rbErr != nil && !errors.Is(rbErr, sql.ErrTxDone) {
				err = errors.Join(err, rbErr)
			}
		}
	}()
	if n, err = store.RowsAffected(r.o.st.Stmt(tx, text).Exec(ctx, full...)); err != nil {
		return 0, err
	}
	if err = r.o.insertPrepared(ctx, tx, recs); err != nil {
		return 0, err
	}
	if err = tx.Commit(); err != nil {
		return 0, err
	}
	return n, nil
}

// outcomeWriteAttempts is how often a batch of outcomes is tried (waiting
// 50 ms, 200 ms, 800 ms in between) before it is left to the lease.
const outcomeWriteAttempts = 4

// heartbeat extends the leases of running rows until ctx ends.
func (r *run) heartbeat(ctx context.Context) {
	t := time.NewTicker(r.d.cfg.HeartbeatInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		r.mu.Lock()
		held := make([]uuid.UUID, 0, len(r.inflight))
		for id := range r.inflight {
			held = append(held, id)
		}
		slices.SortFunc(held, compareIDs) // rows are locked in one order
		ids := make([]string, len(held))
		tokens := make([]string, len(held))
		for i, id := range held {
			ids[i], tokens[i] = id.String(), r.inflight[id]
		}
		r.mu.Unlock()
		if len(ids) == 0 {
			continue
		}
		hctx, cancel := context.WithTimeout(ctx, r.d.cfg.HeartbeatInterval)
		_, err := r.o.db.ExecContext(hctx, r.o.st.Queue.Heartbeat, r.o.nowArg(), pq.Array(ids), pq.Array(tokens),
			r.d.cfg.LeaseDuration.Microseconds())
		cancel()
		if err != nil && ctx.Err() == nil {
			r.d.log.WarnContext(ctx, "heartbeat failed", slog.Int("rows", len(ids)), slog.Any("error", err))
		}
	}
}

// maintain rescues expired leases and deletes finished rows past their
// retention, until ctx ends.
func (r *run) maintain(ctx context.Context) {
	rescue := time.NewTicker(r.d.cfg.RescueInterval)
	defer rescue.Stop()
	cleanup := time.NewTicker(r.d.cfg.CleanupInterval)
	defer cleanup.Stop()
	analyzed := false
	for {
		select {
		case <-ctx.Done():
			return
		case <-rescue.C:
			if !analyzed {
				analyzed = r.d.firstAnalyze(ctx)
			}
			if n, err := r.d.rescue(ctx); err != nil && ctx.Err() == nil {
				r.d.log.WarnContext(ctx, "lease rescue failed", slog.Any("error", err))
			} else if n > 0 {
				r.d.log.WarnContext(ctx, "rows with expired leases returned to the queue", slog.Int64("rows", n))
				r.poke()
			}
		case <-cleanup.C:
			if n, err := r.d.cleanup(ctx); err != nil && ctx.Err() == nil {
				r.d.log.WarnContext(ctx, "retention cleanup failed", slog.Any("error", err))
			} else if n > 0 {
				r.d.log.InfoContext(ctx, "finished rows deleted", slog.Int64("rows", n))
			}
		}
	}
}

func (r *run) poke() {
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

const maintenanceBatch = 1000

// firstAnalyzeRows is how many changed rows make a never-analyzed queue
// table worth analyzing.
const firstAnalyzeRows = 1000

// firstAnalyze analyzes the queue table if it has never been analyzed but
// already holds a backlog: without statistics the planner may read every
// PENDING row and sort them on each claim instead of walking the claim index
// (autovacuum, where it runs, soon does the same). It reports true once the
// table has statistics, so the check stops.
func (d *Dispatcher) firstAnalyze(ctx context.Context) bool {
	var analyzed bool
	var changed int64
	if err := d.o.db.QueryRowContext(ctx, d.o.st.Queue.NeedsFirstAnalyze, d.o.cfg.Schema).Scan(&analyzed, &changed); err != nil {
		return false
	}
	if analyzed || changed < firstAnalyzeRows {
		return analyzed
	}
	if _, err := d.o.db.ExecContext(ctx, d.o.st.Queue.Analyze); err != nil {
		d.log.WarnContext(ctx, "analyze of the queue table failed", slog.Any("error", err))
		return false
	}
	d.log.InfoContext(ctx, "queue table had no statistics: analyzed it")
	return true
}

// rescue returns every row whose lease expired to the queue, in batches.
func (d *Dispatcher) rescue(ctx context.Context) (int64, error) {
	var total int64
	for {
		n, err := d.o.execCount(ctx, "rescue", d.o.st.Queue.Rescue, d.o.nowArg(), maintenanceBatch)
		total += n
		if err != nil || n < maintenanceBatch {
			return total, err
		}
	}
}

// cleanup deletes finished rows past their retention, and events no row
// refers to any more, in small batches (at most 100 per kind per call).
func (d *Dispatcher) cleanup(ctx context.Context) (int64, error) {
	now := d.o.now()
	var total int64
	type job struct {
		status    Status
		retention time.Duration
	}
	for _, j := range []job{{StatusCompleted, d.cfg.CompletedRetention}, {StatusFailed, d.cfg.FailedRetention}} {
		if j.retention < 0 {
			continue
		}
		for range 100 {
			n, err := d.o.execCount(ctx, "cleanup", d.o.st.Queue.DeleteFinished, now.Add(-j.retention).UTC(), string(j.status), maintenanceBatch)
			total += n
			if err != nil {
				return total, err
			}
			if n < maintenanceBatch {
				break
			}
		}
	}
	eventRetention := d.cfg.CompletedRetention
	if eventRetention >= 0 {
		for range 100 {
			cutoff := now.Add(-eventRetention)
			// Event ids are UUIDv7 of the process's wall clock; with a
			// clock of its own the handle cannot bound them by time.
			bound := uuid.Max
			if d.o.cfg.Clock == nil {
				bound = uuidV7Floor(cutoff)
			}
			n, err := d.o.execCount(ctx, "cleanup events", d.o.st.Queue.DeleteEvents, cutoff.UTC(), maintenanceBatch, bound)
			total += n
			if err != nil {
				return total, err
			}
			if n < maintenanceBatch {
				break
			}
		}
	}
	return total, nil
}

// compareIDs orders UUIDs as PostgreSQL's uuid type does (bytewise).
func compareIDs(a, b uuid.UUID) int { return bytes.Compare(a[:], b[:]) }

// uuidV7Floor is the smallest UUIDv7 of t's millisecond: every UUIDv7 made
// at or after t sorts at or above it.
func uuidV7Floor(t time.Time) uuid.UUID {
	var u uuid.UUID
	ms := uint64(max(t.UnixMilli(), 0))
	for i := range 6 {
		u[i] = byte(ms >> (40 - 8*i))
	}
	u[6] = 0x70 // version 7
	u[8] = 0x80 // RFC 9562 variant
	return u
}

// listen holds a LISTEN connection until ctx ends, turning notifications into
// fetches. lib/pq's Listener reconnects by itself; after a reconnect the
// dispatcher fetches at once, since notifications may have been missed.
func (r *run) listen(ctx context.Context) {
	l := pq.NewListener(r.d.cfg.ListenDSN, 100*time.Millisecond, 5*time.Second, func(ev pq.ListenerEventType, err error) {
		switch ev {
		case pq.ListenerEventDisconnected:
			r.d.log.WarnContext(ctx, "listener disconnected", slog.Any("error", err))
		case pq.ListenerEventReconnected:
			r.d.log.InfoContext(ctx, "listener reconnected")
			r.poke()
		case pq.ListenerEventConnectionAttemptFailed:
			r.d.log.WarnContext(ctx, "listener connection attempt failed", slog.Any("error", err))
		}
	})
	closed := make(chan struct{})
	go func() {
		<-ctx.Done()
		_ = l.Close()
		close(closed)
	}()
	defer func() { <-closed }()
	if err := l.Listen(r.o.channel); err != nil {
		if ctx.Err() == nil {
			r.d.log.ErrorContext(ctx, "LISTEN failed; dispatcher polls only", slog.Any("error", err))
		}
		return
	}
	ping := time.NewTicker(30 * time.Second)
	defer ping.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case n, ok := <-l.Notify:
			if !ok {
				return
			}
			if n == nil { // reconnected: notifications may have been lost
				r.poke()
				continue
			}
			select {
			case r.notified <- time.Now():
			default:
			}
		case <-ping.C:
			go func() { _ = l.Ping() }()
		}
	}
}

func safeCall(ctx context.Context, fn HandlerFunc, d *Delivery) (err error) {
	defer recoverInto(&err)
	return fn(ctx, d)
}

func safeCallTx(ctx context.Context, fn TxHandlerFunc, tx *sql.Tx, d *Delivery) (err error) {
	defer recoverInto(&err)
	return fn(ctx, tx, d)
}

// PanicError is the error a recovered handler panic becomes; its text, with
// a truncated stack, is stored as failure_reason.
type PanicError struct {
	Value any
	Stack []byte
}

// Error returns the panic value and the truncated stack.
func (e *PanicError) Error() string {
	return fmt.Sprintf("panic: %v\n%s", e.Value, e.Stack)
}

func recoverInto(err *error) {
	if v := recover(); v != nil {
		stack := debug.Stack()
		if len(stack) > 2048 {
			stack = append(stack[:2048:2048], "\n..."...)
		}
		*err = &PanicError{Value: v, Stack: stack}
	}
}

// truncateReason caps s at MaxFailureReasonBytes on a rune boundary and
// makes it valid UTF-8 without NUL bytes (text columns reject them).
func truncateReason(s string) string {
	s = sanitizeText(s)
	if len(s) <= MaxFailureReasonBytes {
		return s
	}
	const marker = " …[truncated]"
	return truncateUTF8(s, MaxFailureReasonBytes-len(marker)) + marker
}

func sanitizeText(s string) string {
	if utf8.ValidString(s) && !containsNUL(s) {
		return s
	}
	b := make([]rune, 0, len(s))
	for _, r := range s {
		if r != 0 {
			b = append(b, r) // invalid bytes became U+FFFD
		}
	}
	return string(b)
}

func containsNUL(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] == 0 {
			return true
		}
	}
	return false
}

func newToken(name string) string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return name + "/" + hex.EncodeToString(b[:])
}
