package dispatch

import (
	"testing"
	"time"
)

// The wait after a failed claim is spread over [d/2, d].
func TestJitter(t *testing.T) {
	t.Parallel()
	for _, d := range []time.Duration{0, 1, 2, claimRetryMin, claimRetryMax} {
		lo, hi := d, time.Duration(0)
		for range 1000 {
			got := jitter(d)
			if got < d/2 || got > d {
				t.Fatalf("jitter(%s) = %s, want within [%s, %s]", d, got, d/2, d)
			}
			lo, hi = min(lo, got), max(hi, got)
		}
		if d >= claimRetryMin && hi-lo < d/4 {
			t.Fatalf("jitter(%s) spread only over [%s, %s]", d, lo, hi)
		}
	}
}
