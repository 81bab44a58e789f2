// Package dispatch is the delivery engine: it claims due queue rows, hands
// each one to its Target on a bounded pool of workers, turns the result
// into an outcome under the retry policy, and writes outcomes in batches.
// Beside that run the lease heartbeat, maintenance (lease rescue, retention
// cleanup, the first analyze) and the LISTEN listener that wakes the fetch
// loop.
//
// Where a claimed row goes: fetch.go (the fetch loop: when to look for due
// rows) → claim.go (the claim statement) → process.go (a worker: the row's
// Target, handler.go for Go handlers or package webhooksend for webhooks;
// then retry.go's decide, the next status and retry delay; then the
// hand-off of the outcome) → completer.go (the batched, lease-fenced
// write). engine.go builds an engine and runs it; maintenance.go and
// listener.go run beside the fetch loop.
//
// The package never imports the root package: the root hands it a store,
// a logger, its targets and an attempt sink.
package dispatch

import (
	"context"
	"log/slog"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"

	"github.com/outboxkit/outbox/internal/store"
)

// Config configures an Engine: its settings and what the root wires in.
type Config struct {
	// Settings are as Settings.WithDefaults returned them.
	Settings
	Store  *store.Store
	Logger *slog.Logger
	// Targets are the targets by callback method: the engine claims the
	// rows of the subscriptions whose callback_method is among them.
	Targets map[string]Target
	// Webhooks, when set, delivers the rows of webhook subscriptions,
	// which the engine then claims too.
	Webhooks Target
	// Fence, when set, is the schema's version fence: the engine runs
	// only while it admits this process (see Fence).
	Fence Fence
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

	fenceWake      chan struct{} // a migration's NOTIFY: read the fence now
	fenceOnce      sync.Once
	fenceErr       error              // the verdict that stopped the engine (read once every goroutine ended)
	stopFetch      context.CancelFunc // ends the fetch loop, the listener and maintenance
	cancelHandlers context.CancelFunc // cancels the running deliveries
}

// New returns an engine for one Run. cfg.Settings must come from
// Settings.WithDefaults.
func New(cfg Config) *Engine {
	methods := make([]string, 0, len(cfg.Targets))
	for m := range cfg.Targets {
		methods = append(methods, m)
	}
	sort.Strings(methods)
	return &Engine{
		cfg: cfg, st: cfg.Store, log: cfg.Logger, methods: methods,
		cfgCache:  map[uuid.UUID]cachedConfig{},
		wake:      make(chan struct{}, 1),
		notified:  make(chan time.Time, 1),
		freed:     make(chan struct{}, 1),
		due:       make(chan time.Time, 16),
		outcomes:  make(chan outcome, cfg.Workers+cfg.BatchSize),
		inflight:  map[uuid.UUID]string{},
		fenceWake: make(chan struct{}, 1),
	}
}

// Run drains the queue until ctx ends. Then it stops claiming, lets running
// deliveries finish for up to ShutdownTimeout, cancels the contexts of those
// still running (their rows go back to PENDING without counting an
// attempt), writes every outcome, and returns nil once all its goroutines
// have ended. When the Fence refuses this process, Run stops at once
// instead: it cancels the running deliveries, writes nothing more, and
// returns the fence's verdict once its goroutines have ended. An Engine
// runs once.
func (e *Engine) Run(ctx context.Context) error {
	cfg := e.cfg
	if e.cfg.Webhooks == nil && len(e.methods) == 0 {
		e.log.WarnContext(ctx, "dispatcher has no handlers and does not deliver webhooks; it will claim nothing")
	}
	base := context.WithoutCancel(ctx)
	handlerCtx, cancelHandlers := context.WithCancel(base)
	defer cancelHandlers()
	bgCtx, cancelBg := context.WithCancel(base)
	defer cancelBg()
	// ctx, from here on, also ends when the fence refuses this process.
	ctx, stopFetch := context.WithCancel(ctx)
	defer stopFetch()
	e.stopFetch, e.cancelHandlers = stopFetch, cancelHandlers

	var bg sync.WaitGroup
	if cfg.ListenDSN != "" && !cfg.PollOnly {
		bg.Add(1)
		go func() { defer bg.Done(); e.listen(ctx) }()
	} else if !cfg.PollOnly {
		e.log.InfoContext(ctx, "no ListenDSN: dispatcher polls only", slog.Duration("poll_interval", cfg.PollInterval))
	}
	if cfg.Fence != nil {
		bg.Add(1)
		go func() { defer bg.Done(); e.watchFence(ctx) }()
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

	// Shutdown: let running deliveries finish, then cut them off (at once
	// when the fence stopped the engine: their outcomes would not be
	// written).
	done := make(chan struct{})
	go func() { e.workers.Wait(); close(done) }()
	timer := time.NewTimer(cfg.ShutdownTimeout)
	select {
	case <-done:
		timer.Stop()
	case <-handlerCtx.Done():
		timer.Stop()
		<-done
	case <-timer.C:
		e.log.WarnContext(ctx, "shutdown timeout: cancelling running handlers", slog.Int("running", int(e.busy.Load())))
		cancelHandlers()
		<-done
	}
	close(stopCompleter)
	<-completerDone
	cancelBg()
	bg.Wait()
	if e.fenceErr != nil {
		return e.fenceErr
	}
	e.log.InfoContext(ctx, "dispatcher stopped")
	return nil
}
