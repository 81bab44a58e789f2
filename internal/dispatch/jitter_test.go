package dispatch

import (
	"math"
	mrand "math/rand/v2"
	"testing"
	"time"
)

// Jitter keeps to [lo·d, hi·d), covers the range, and saturates.
func TestJitter(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		name   string
		lo, hi float64
	}{
		{"claim wait", 0.5, 1},
		{"retry", 1 - BackoffJitter, 1 + BackoffJitter},
	} {
		for _, d := range []time.Duration{0, 1, 2, claimRetryMin, claimRetryMax, time.Hour} {
			floor, ceil := time.Duration(float64(d)*c.lo), time.Duration(float64(d)*c.hi)
			least, most := time.Duration(math.MaxInt64), time.Duration(0)
			for range 1000 {
				got := Jitter(d, c.lo, c.hi, mrand.Float64())
				if got < floor || got > ceil {
					t.Fatalf("%s: Jitter(%s) = %s, want within [%s, %s]", c.name, d, got, floor, ceil)
				}
				least, most = min(least, got), max(most, got)
			}
			if d >= claimRetryMin && most-least < (ceil-floor)/2 {
				t.Fatalf("%s: Jitter(%s) spread only over [%s, %s]", c.name, d, least, most)
			}
		}
		if got := Jitter(math.MaxInt64, c.lo, c.hi, math.Nextafter(1, 0)); got <= 0 {
			t.Fatalf("%s: Jitter of the largest Duration = %s", c.name, got)
		}
	}
	if got := Jitter(time.Second, 0.5, 1, 0); got != 500*time.Millisecond {
		t.Fatalf("r = 0 gives %s, want lo·d", got)
	}
}
