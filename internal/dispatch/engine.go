// Package dispatch is the delivery engine: it claims due queue rows, hands
// each one to its Target on a bounded pool of workers, turns the result
// into an outcome under the retry policy, and writes outcomes in batches.
// Beside that run the lease heartbeat, maintenance (lease rescue, retention
// cleanup, the first analyze) and the LISTEN listener that wakes the fetch
// loop.
//
// Where a claimed row goes: engine.go (claim, process) → a Target
// (handler.go for Go handlers, package webhooksend for webhooks) → retry.go
// (decide: the next status and retry delay) → completer.go (the batched,
// lease-fenced write).
//
// The package never imports the root package: the root hands it a store,
// a logger, its targets and an attempt sink.
package dispatch

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	mrand "math/rand/v2"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/lib/pq"

	"github.com/outboxkit/outbox/internal/intrecord"
	"github.com/outboxkit/outbox/internal/store"
	"github.com/outboxkit/outbox/internal/subconfig"
)

// Config configures an Engine. Every field is set: the root applies the
// defaults and validates.
type Config struct {
	Store  *store.Store
	Logger *slog.Logger
	// Name goes into claim tokens (locked_by).
	Name              string
	Workers           int
	BatchSize         int
	PollInterval      time.Duration
	LeaseDuration     time.Duration
	HeartbeatInterval time.Duration
	ShutdownTimeout   time.Duration
	RescueInterval    time.Duration
	CleanupInterval   time.Duration
	// CompletedRetention and FailedRetention: negative keeps rows forever.
	CompletedRetention time.Duration
	FailedRetention    time.Duration
	Backoff            Backoff
	// ListenDSN is the LISTEN connection's DSN; empty or PollOnly: poll only.
	ListenDSN string
	PollOnly  bool
	// NotifyCooldown is the enqueuers' cooldown between NOTIFYs: a notify
	// is followed by a trailing fetch one cooldown later. Zero or negative:
	// none.
	NotifyCooldown time.Duration
	// Targets are the targets by callback method: the engine claims the
	// rows of the subscriptions whose callback_method is among them.
	Targets map[string]Target
	// Webhooks, when set, delivers the rows of webhook subscriptions,
	// which the engine then claims too.
	Webhooks Target
}

// Engine is one run of the delivery engine.
type Engine struct {
	cfg     Config
	st      *store.Store
	log     *slog.Logger
	methods []string

	cfgMu    sync.Mutex
	cfgCache map[uuid.UUID]cachedConfig

	wake     chan struct{}  // a fetch is wanted now (reconnect)
	notified chan time.Time // a NOTIFY arrived at this time
	freed    chan struct{}  // a worker finished
	due      chan time.Time // a retry this engine scheduled becomes due
	outcomes chan outcome

	busy    atomic.Int32
	workers sync.WaitGroup

	mu       sync.Mutex
	inflight map[uuid.UUID]string // running rows and their claim tokens
}

type cachedConfig struct {
	updatedAt time.Time
	raw       string // the config's text, as the claim read it
	cfg       subconfig.Config
}

// outcome is the result of one attempt, written by the completer.
type outcome struct {
	id     uuid.UUID
	token  string
	status Status
	inc    int           // added to retry_count
	delay  time.Duration // before the next attempt, when status is PENDING
	reason string        // failure_reason, or "" to keep the previous one
	// keepPlace, with status PENDING, gives the row back at the due time
	// it was claimed at (delay is ignored): a row handed back without a
	// failure of its own resumes its place in line.
	keepPlace bool
	// attempt, when set, is written to integration_log in the transaction
	// that writes the outcome.
	attempt *intrecord.Record
	// keyed marks a row with an ordering key: finishing it may make the
	// next row of its key claimable.
	keyed bool
}

// New returns an engine for one Run.
func New(cfg Config) *Engine {
	methods := make([]string, 0, len(cfg.Targets))
	for m := range cfg.Targets {
		methods = append(methods, m)
	}
	sort.Strings(methods)
	return &Engine{
		cfg: cfg, st: cfg.Store, log: cfg.Logger, methods: methods,
		cfgCache: map[uuid.UUID]cachedConfig{},
		wake:     make(chan struct{}, 1),
		notified: make(chan time.Time, 1),
		freed:    make(chan struct{}, 1),
		due:      make(chan time.Time, 16),
		outcomes: make(chan outcome, cfg.Workers+cfg.BatchSize),
		inflight: map[uuid.UUID]string{},
	}
}

// Run drains the queue until ctx ends. Then it stops claiming, lets running
// deliveries finish for up to ShutdownTimeout, cancels the contexts of those
// still running (their rows go back to PENDING without counting an
// attempt), writes every outcome, and returns once all its goroutines have
// ended. An Engine runs once.
func (e *Engine) Run(ctx context.Context) {
	cfg := e.cfg
	if e.cfg.Webhooks == nil && len(e.methods) == 0 {
		e.log.WarnContext(ctx, "dispatcher has no handlers and does not deliver webhooks; it will claim nothing")
	}
	base := context.WithoutCancel(ctx)
	handlerCtx, cancelHandlers := context.WithCancel(base)
	defer cancelHandlers()
	bgCtx, cancelBg := context.WithCancel(base)
	defer cancelBg()

	var bg sync.WaitGroup
	if cfg.ListenDSN != "" && !cfg.PollOnly {
		bg.Add(1)
		go func() { defer bg.Done(); e.listen(ctx) }()
	} else if !cfg.PollOnly {
		e.log.InfoContext(ctx, "no ListenDSN: dispatcher polls only", slog.Duration("poll_interval", cfg.PollInterval))
	}
	bg.Add(2)
	go func() { defer bg.Done(); e.heartbeat(bgCtx) }()
	go func() { defer bg.Done(); e.maintain(ctx) }()
	stopCompleter := make(chan struct{})
	completerDone := make(chan struct{})
	go func() { defer close(completerDone); e.complete(bgCtx, stopCompleter) }()

	e.log.InfoContext(ctx, "dispatcher started", slog.Any("handlers", e.methods), slog.Bool("webhooks", cfg.Webhooks != nil),
		slog.Int("workers", cfg.Workers))
	e.fetchLoop(ctx, bgCtx, handlerCtx)

	// Shutdown: let running deliveries finish, then cut them off.
	done := make(chan struct{})
	go func() { e.workers.Wait(); close(done) }()
	timer := time.NewTimer(cfg.ShutdownTimeout)
	select {
	case <-done:
		timer.Stop()
	case <-timer.C:
		e.log.WarnContext(ctx, "shutdown timeout: cancelling running handlers", slog.Int("running", int(e.busy.Load())))
		cancelHandlers()
		<-done
	}
	close(stopCompleter)
	<-completerDone
	cancelBg()
	bg.Wait()
	e.log.InfoContext(ctx, "dispatcher stopped")
}

func (e *Engine) fetchLoop(ctx, bgCtx, handlerCtx context.Context) {
	cfg := e.cfg
	poll := time.NewTimer(0)
	defer poll.Stop()
	wakes := newWakeups()
	defer wakes.timer.Stop()
	backlog := false // the last claim was full: more rows are likely due
	errDelay := claimRetryMin
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
		free = cfg.Workers - int(e.busy.Load())
		threshold = 1
		if backlog {
			// Claim in batches when rows are waiting: a claim per freed slot
			// would cost a statement per row.
			threshold = max(1, min(cfg.BatchSize, cfg.Workers)/2)
		}
		if free >= threshold {
			limit := min(free, cfg.BatchSize)
			n, err := e.claim(bgCtx, handlerCtx, limit)
			if err != nil {
				e.log.ErrorContext(ctx, "claim failed", slog.Any("error", err))
				// Look again after a short, capped wait, or as soon as the
				// database is heard from: every wake follows a statement
				// that succeeded (the listener reconnected, an outcome
				// write, a rescue), and a notification was sent through
				// it. An outage then costs about one claimRetryMax after
				// the database is back, not a PollInterval.
				wait := time.NewTimer(jitter(errDelay))
				select {
				case <-ctx.Done():
					wait.Stop()
					return
				case <-wait.C:
					errDelay = min(errDelay*2, claimRetryMax, cfg.PollInterval)
				case <-e.wake:
					wait.Stop()
					// The database answered: a failure now (a pooled
					// connection the outage cut) is worth only a short wait.
					errDelay = claimRetryMin
				case <-e.notified:
					wait.Stop()
					errDelay = claimRetryMin
				}
				continue
			}
			errDelay = claimRetryMin
			backlog = n == limit
			if backlog && cfg.Workers-int(e.busy.Load()) >= threshold {
				continue
			}
		}
	wait:
		select {
		case <-ctx.Done():
			return
		case <-poll.C:
			poll.Reset(cfg.PollInterval)
		case <-e.wake:
		case t := <-e.notified:
			// Trailing fetch: an event whose own NOTIFY was suppressed by
			// the enqueuer's cooldown commits within one cooldown of the
			// notify we saw.
			if cfg.NotifyCooldown > 0 {
				wakes.add(t.Add(cfg.NotifyCooldown))
			}
		case <-wakes.timer.C:
			wakes.fired()
		case at := <-e.due:
			// A retry scheduled here falls due before the next poll: look
			// again then rather than a whole poll interval later.
			if time.Until(at) < cfg.PollInterval {
				wakes.add(at)
			}
		case <-e.freed:
			// A worker finished: claim again only if rows were waiting
			// when we last looked; otherwise wait for a reason to look.
			if !backlog {
				skip = true
			}
		}
	}
}

// claimRetryMax caps the wait after a failed claim, and the listener's
// wait between two attempts to reconnect: once the database is back, a
// dispatcher claims again within about this long (sooner when its listener
// reconnects first), whatever the outage's length.
const claimRetryMax = time.Second

// claimRetryMin is the wait after a first failed claim; it doubles with each
// further failure, up to claimRetryMax.
const claimRetryMin = 100 * time.Millisecond

// jitter returns a random duration in [d/2, d], so that dispatchers that
// lost the database together do not retry in step.
func jitter(d time.Duration) time.Duration {
	if d <= 1 {
		return d
	}
	return d/2 + mrand.N(d/2+1)
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
func (e *Engine) claim(bgCtx, handlerCtx context.Context, limit int) (int, error) {
	cfg := e.cfg
	token := newToken(cfg.Name)
	ctx, cancel := context.WithTimeout(bgCtx, 30*time.Second)
	defer cancel()
	rows, err := e.st.Stmt(nil, e.st.Queue.Claim).Query(ctx, e.st.NowArg(), pq.Array(e.methods), cfg.Webhooks != nil,
		limit, token, cfg.LeaseDuration.Microseconds())
	if err != nil {
		return 0, err
	}
	defer rows.Close()
	// Deliveries start only once the claim has committed (the last Next
	// reads the commit's acknowledgement): an outcome written while the
	// claim is still uncommitted would not see the row as claimed and be
	// lost.
	var claimed []*Row
	for rows.Next() {
		c := &Row{Token: token}
		var payload, metadata string
		dl := &c.Delivery
		if err := rows.Scan(&dl.ID, &dl.EventID, &dl.SubscriptionID, &dl.Subscription, &c.CallbackMethod,
			&c.WebhookURL, &c.configJSON, &c.subUpdatedAt, &dl.Topic, &payload, &metadata,
			&c.RetryCount, &dl.MaxRetries, &dl.CreatedAt, &c.Keyed); err != nil {
			return 0, err
		}
		dl.Payload = json.RawMessage(payload)
		dl.Attempt = c.RetryCount + 1
		if metadata != "" {
			if err := json.Unmarshal([]byte(metadata), &dl.Metadata); err != nil {
				e.log.Warn("unreadable event metadata", slog.String("event_id", dl.EventID.String()), slog.Any("error", err))
			}
		}
		claimed = append(claimed, c)
	}
	if err := rows.Err(); err != nil {
		return 0, err
	}
	e.mu.Lock()
	for _, c := range claimed {
		e.inflight[c.Delivery.ID] = token
	}
	e.mu.Unlock()
	for _, c := range claimed {
		e.busy.Add(1)
		e.workers.Add(1)
		go e.process(handlerCtx, bgCtx, c)
	}
	return len(claimed), nil
}

// process hands one row to its target and its outcome to the completer.
func (e *Engine) process(handlerCtx, bgCtx context.Context, c *Row) {
	defer func() {
		e.mu.Lock()
		delete(e.inflight, c.Delivery.ID)
		e.mu.Unlock()
		e.busy.Add(-1)
		e.workers.Done()
		select {
		case e.freed <- struct{}{}:
		default:
		}
	}()
	c.Config = e.subscriptionConfig(c)
	log := rowLogger{e.log, &c.Delivery}
	var target Target
	if c.WebhookURL != "" {
		if e.cfg.Webhooks == nil {
			// The subscription became a webhook after the claim read it:
			// leave the row to a dispatcher that delivers webhooks.
			e.submit(outcome{id: c.Delivery.ID, token: c.Token, status: StatusPending, keepPlace: true})
			return
		}
		target = e.cfg.Webhooks
	} else if target = e.cfg.Targets[c.CallbackMethod]; target == nil {
		err := fmt.Errorf("outbox: no handler registered for %q", c.CallbackMethod)
		e.settle(bgCtx, log, decide(c, e.cfg.Backoff, err), err)
		return
	}
	res := target.Deliver(handlerCtx, c)
	switch {
	case res.Skip > 0:
		// Nothing was attempted: the row waits a little, no attempt counted.
		log.DebugContext(bgCtx, "endpoint busy; row deferred", slog.Duration("retry_in", res.Skip))
		e.submit(outcome{id: c.Delivery.ID, token: c.Token, status: StatusPending, delay: res.Skip})
		e.dueIn(res.Skip)
	case res.Completed:
		log.DebugContext(bgCtx, "delivered", res.Attrs...)
		if c.Keyed {
			e.poke()
		}
	case res.Err != nil && handlerCtx.Err() != nil:
		e.release(bgCtx, log, c, res.Err, res.Attempt)
	default:
		oc := decide(c, e.cfg.Backoff, res.Err)
		oc.attempt = res.Attempt
		e.settle(bgCtx, log, oc, res.Err, res.Attrs...)
	}
}

// release gives back a row whose attempt was cut off by shutdown, without
// counting the attempt and at its place in line (the due time it was
// claimed at), so that it goes ahead of the rows enqueued after it; a, if
// set, records the attempt all the same.
func (e *Engine) release(ctx context.Context, log rowLogger, c *Row, err error, a *intrecord.Record) {
	log.WarnContext(ctx, "attempt cut off by shutdown; row released", slog.Any("error", err))
	e.submit(outcome{id: c.Delivery.ID, token: c.Token, status: StatusPending, keepPlace: true,
		reason: TruncateReason("released at shutdown: " + err.Error()), attempt: a})
}

// settle logs an attempt's outcome, looks again when a retry falls due
// before the next poll, and hands the outcome to the completer. attrs are
// added to the log record.
func (e *Engine) settle(ctx context.Context, log rowLogger, oc outcome, err error, attrs ...any) {
	switch oc.status {
	case StatusCompleted:
		log.DebugContext(ctx, "delivered", attrs...)
	case StatusFailed:
		log.WarnContext(ctx, "delivery failed for good", append(attrs, slog.Any("error", err))...)
	default:
		log.InfoContext(ctx, "delivery failed; will retry", append(attrs, slog.Any("error", err), slog.Duration("retry_in", oc.delay))...)
		e.dueIn(oc.delay)
	}
	e.submit(oc)
}

func (e *Engine) submit(oc outcome) { e.outcomes <- oc }

// dueIn tells the fetch loop that a row this engine released falls due
// after delay.
func (e *Engine) dueIn(delay time.Duration) {
	select {
	case e.due <- time.Now().Add(delay + dueSlack):
	default:
	}
}

// dueSlack is added to a retry's delay before looking for it: the outcome,
// and so next_retry_at, is written a little after the delivery returns.
const dueSlack = 20 * time.Millisecond

func (e *Engine) poke() {
	select {
	case e.wake <- struct{}{}:
	default:
	}
}

// subscriptionConfig parses a claimed row's subscription config, cached per
// subscription until the subscription changes.
func (e *Engine) subscriptionConfig(c *Row) (cfg subconfig.Config) {
	id := c.Delivery.SubscriptionID
	e.cfgMu.Lock()
	defer e.cfgMu.Unlock()
	// The config text is compared too: sealing and rotating secrets rewrite
	// it without touching updated_at (endpoint health counts from that).
	if cc, ok := e.cfgCache[id]; ok && cc.updatedAt.Equal(c.subUpdatedAt) && cc.raw == c.configJSON {
		return cc.cfg
	}
	if c.configJSON != "" {
		if err := json.Unmarshal([]byte(c.configJSON), &cfg); err != nil {
			e.log.Warn("unreadable subscription_config; using defaults", slog.String("subscription", c.Delivery.Subscription), slog.Any("error", err))
		}
	}
	e.cfgCache[id] = cachedConfig{updatedAt: c.subUpdatedAt, raw: c.configJSON, cfg: cfg}
	return cfg
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

func newToken(name string) string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return name + "/" + hex.EncodeToString(b[:])
}
