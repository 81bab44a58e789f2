package dispatch

import (
	"errors"
	"math"
	mrand "math/rand/v2"
	"time"

	"github.com/cenkalti/backoff/v4"

	"github.com/outboxkit/outbox/subconfig"
)

// BackoffJitter is the randomization factor of retry delays (±20 %).
const BackoffJitter = 0.2

// Backoff is the dispatcher's exponential backoff, used when a
// subscription's config does not shape its own.
type Backoff struct {
	Initial, Max time.Duration
	Multiplier   float64
}

// WebhookRetrySchedule returns the default delays between webhook attempts,
// the Standard Webhooks schedule: after the first (immediate) attempt, retry
// n waits the n-th entry, ±20 % jitter.
func WebhookRetrySchedule() []subconfig.Duration {
	return []subconfig.Duration{
		subconfig.Duration(5 * time.Second), subconfig.Duration(5 * time.Minute), subconfig.Duration(30 * time.Minute),
		subconfig.Duration(2 * time.Hour), subconfig.Duration(5 * time.Hour), subconfig.Duration(10 * time.Hour),
		subconfig.Duration(14 * time.Hour), subconfig.Duration(20 * time.Hour), subconfig.Duration(24 * time.Hour),
	}
}

// decide turns a delivery's error into the row's outcome.
func decide(c *Row, b Backoff, err error) outcome {
	oc := outcome{id: c.Delivery.ID, token: c.Token, keyed: c.Keyed}
	if err == nil {
		oc.status = StatusCompleted
		return oc
	}
	oc.inc = 1
	oc.reason = TruncateReason(err.Error())
	var perm *permanentError
	if errors.As(err, &perm) || c.RetryCount+1 > c.Delivery.MaxRetries {
		oc.status = StatusFailed
		return oc
	}
	oc.status = StatusPending
	sub := c.Config
	var ra *retryAfterError
	switch {
	case errors.As(err, &ra):
		oc.delay = max(ra.delay, 0)
	case c.WebhookURL != "" && len(sub.RetrySchedule) == 0 && sub.BackoffInitial == 0 && sub.BackoffMax == 0 &&
		sub.BackoffMultiplier == 0:
		// A webhook subscription that sets no retry settings of its own
		// follows the Standard Webhooks schedule.
		oc.delay = WebhookRetryDelay(c.RetryCount+1, nil, nil)
	default:
		oc.delay = retryDelay(c.RetryCount+1, sub, b)
	}
	return oc
}

// retryDelay is the delay before retry n (1-based) under the subscription's
// settings, falling back to the dispatcher's.
func retryDelay(n int, sub subconfig.Config, b Backoff) time.Duration {
	if len(sub.RetrySchedule) > 0 {
		return scheduleDelay(n, sub.RetrySchedule, mrand.Float64)
	}
	initial, maxDelay, mult := b.Initial, b.Max, b.Multiplier
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

// WebhookRetryDelay is the delay before webhook retry n (1-based: retry 1
// follows the first attempt) under schedule, or WebhookRetrySchedule when
// schedule is empty. The last entry repeats. The delay is the entry scaled by
// a factor in [0.8, 1.2), drawn from rnd (uniform in [0, 1); nil means
// math/rand/v2).
func WebhookRetryDelay(retry int, schedule []subconfig.Duration, rnd func() float64) time.Duration {
	if len(schedule) == 0 {
		schedule = WebhookRetrySchedule()
	}
	if rnd == nil {
		rnd = mrand.Float64
	}
	return scheduleDelay(retry, schedule, rnd)
}

// scheduleDelay is the delay before retry n (1-based; the last entry
// repeats) of a fixed schedule, jittered with rnd (in [0, 1)).
func scheduleDelay(n int, schedule []subconfig.Duration, rnd func() float64) time.Duration {
	n = min(max(n, 1), len(schedule))
	return Jitter(time.Duration(schedule[n-1]), 1-BackoffJitter, 1+BackoffJitter, rnd())
}
