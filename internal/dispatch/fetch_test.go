package dispatch

import (
	"context"
	"testing"
	"time"
)

// newTestFetcher is a fetcher of an engine without a database, for the
// wake-up rules alone.
func newTestFetcher(t *testing.T, s Settings) *fetcher {
	t.Helper()
	e := New(Config{Settings: mustSettings(t, s), Logger: quietLogger()})
	f := &fetcher{e: e, poll: time.NewTimer(time.Hour), wakes: newWakeups(), errDelay: claimRetryMin}
	t.Cleanup(func() { f.poll.Stop(); f.wakes.timer.Stop() })
	return f
}

// Which wake-ups are reasons to look for rows, and which schedule a later
// look.
func TestFetcherWakeUps(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f := newTestFetcher(t, Settings{Workers: 4, BatchSize: 4, PollInterval: time.Minute, NotifyCooldown: 50 * time.Millisecond})
	e := f.e

	e.freed <- struct{}{}
	if f.wakeUp(ctx) {
		t.Error("a freed worker without a backlog is a reason to claim")
	}
	f.backlog = true
	e.freed <- struct{}{}
	if !f.wakeUp(ctx) {
		t.Error("a freed worker with a backlog is no reason to claim")
	}

	e.wake <- struct{}{}
	if !f.wakeUp(ctx) {
		t.Error("a poke is no reason to claim")
	}

	// A notification: look now, and once more one cooldown later.
	seen := time.Now()
	e.notified <- seen
	if !f.wakeUp(ctx) || len(f.wakes.at) != 1 || !f.wakes.at[0].Equal(seen.Add(50*time.Millisecond)) {
		t.Fatalf("notification: trailing fetches %v, want one at +50ms", f.wakes.at)
	}
	if !f.wakeUp(ctx) || len(f.wakes.at) != 0 {
		t.Fatalf("the trailing fetch did not fire (left %v)", f.wakes.at)
	}

	// A retry due before the next poll is looked for; one after it is left
	// to the poll.
	e.due <- time.Now().Add(time.Hour)
	if !f.wakeUp(ctx) || len(f.wakes.at) != 0 {
		t.Fatalf("a retry due after the next poll scheduled a fetch: %v", f.wakes.at)
	}
	e.due <- time.Now().Add(30 * time.Millisecond)
	if !f.wakeUp(ctx) || len(f.wakes.at) != 1 {
		t.Fatalf("a retry due before the next poll scheduled no fetch: %v", f.wakes.at)
	}
	if !f.wakeUp(ctx) {
		t.Fatal("the retry's fetch is no reason to claim")
	}

	// waitForReason passes over a freed worker without a backlog, returns
	// on a reason, and returns when ctx ends.
	f.backlog = false
	done := make(chan struct{})
	go func() { f.waitForReason(ctx); close(done) }()
	e.freed <- struct{}{}
	e.freed <- struct{}{} // taken into the buffer once the first was read
	select {
	case <-done:
		t.Fatal("waitForReason returned on a freed worker without a backlog")
	default:
	}
	e.poke()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("waitForReason did not return on a poke")
	}
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	f.waitForReason(cancelled)
}

// The wait after a failed claim doubles up to its cap (and never past the
// poll interval), and starts afresh when the database is heard from.
func TestFetcherFailedClaimWaits(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f := newTestFetcher(t, Settings{Workers: 1, BatchSize: 1, PollInterval: 300 * time.Millisecond})
	want := []time.Duration{200 * time.Millisecond, 300 * time.Millisecond, 300 * time.Millisecond}
	for _, w := range want {
		d, start := f.errDelay, time.Now()
		f.waitAfterFailure(ctx)
		if took := time.Since(start); took < d/2 {
			t.Fatalf("waited %s, want at least %s", took, d/2)
		}
		if f.errDelay != w {
			t.Fatalf("next wait %s, want %s", f.errDelay, w)
		}
	}
	for name, signal := range map[string]func(){
		"poke":         f.e.poke,
		"notification": func() { f.e.notified <- time.Now() },
	} {
		f.errDelay = claimRetryMax
		signal()
		start := time.Now()
		f.waitAfterFailure(ctx)
		if took := time.Since(start); took > claimRetryMax/2 || f.errDelay != claimRetryMin {
			t.Fatalf("%s: waited %s, next wait %s; want at once and %s", name, took, f.errDelay, claimRetryMin)
		}
	}
}
