package dispatch

import (
	"math"
	"time"
)

// Jitter scales d by a factor in [lo, hi), picked by r in [0, 1) (from
// math/rand/v2's Float64, or fixed in tests): lo + (hi-lo)·r. Waits and
// retries that started together then do not stay in step. A result too
// long for a Duration saturates rather than wrapping to a negative one.
//
// The engine spreads retry delays by ±BackoffJitter (lo 0.8, hi 1.2) and
// the wait after a failed claim over [d/2, d) (lo 0.5, hi 1), which never
// exceeds its cap.
func Jitter(d time.Duration, lo, hi, r float64) time.Duration {
	f := float64(d) * (lo + (hi-lo)*r)
	if f >= math.MaxInt64 {
		return math.MaxInt64
	}
	return time.Duration(f)
}
