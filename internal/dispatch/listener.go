package dispatch

import (
	"context"
	"log/slog"
	"time"

	"github.com/lib/pq"

	"github.com/outboxkit/outbox/internal/store"
)

// listen holds a LISTEN connection until ctx ends, turning notifications into
// fetches. lib/pq's Listener reconnects by itself, trying every 100 ms at
// first and then at most every claimRetryMax, so that an idle dispatcher
// (which claims nothing that could fail) hears of the database's return
// within about claimRetryMax. After a reconnect the engine fetches at once,
// since notifications may have been missed; that also cuts short the wait
// after a failed claim.
func (e *Engine) listen(ctx context.Context) {
	l := pq.NewListener(e.cfg.ListenDSN, 100*time.Millisecond, claimRetryMax, func(ev pq.ListenerEventType, err error) {
		switch ev {
		case pq.ListenerEventDisconnected:
			e.log.WarnContext(ctx, "listener disconnected", slog.Any("error", err))
		case pq.ListenerEventReconnected:
			e.log.InfoContext(ctx, "listener reconnected")
			e.poke()
		case pq.ListenerEventConnectionAttemptFailed:
			e.log.WarnContext(ctx, "listener connection attempt failed", slog.Any("error", err))
		}
	})
	closed := make(chan struct{})
	go func() {
		<-ctx.Done()
		_ = l.Close()
		close(closed)
	}()
	defer func() { <-closed }()
	if err := l.Listen(e.st.Channel); err != nil {
		if ctx.Err() == nil {
			e.log.ErrorContext(ctx, "LISTEN failed; dispatcher polls only", slog.Any("error", err))
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
				e.poke()
				e.wakeFence()
				continue
			}
			if n.Extra == store.FenceNotifyPayload {
				// A migration moved the version fence.
				e.wakeFence()
				continue
			}
			select {
			case e.notified <- time.Now():
			default:
			}
		case <-ping.C:
			go func() { _ = l.Ping() }()
		}
	}
}
