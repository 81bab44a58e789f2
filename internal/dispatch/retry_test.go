package dispatch

import (
	"math"
	"testing"
	"time"

	"github.com/outboxkit/outbox/subconfig"
)

func TestWebhookRetryDelay(t *testing.T) {
	t.Parallel()
	def := WebhookRetrySchedule()
	want := []time.Duration{5 * time.Second, 5 * time.Minute, 30 * time.Minute, 2 * time.Hour, 5 * time.Hour,
		10 * time.Hour, 14 * time.Hour, 20 * time.Hour, 24 * time.Hour}
	if len(def) != len(want) || len(def) != 9 {
		t.Fatalf("default schedule %v", def)
	}
	for i := range want {
		if time.Duration(def[i]) != want[i] {
			t.Fatalf("default schedule %v", def)
		}
	}
	def[0] = 0 // callers get a copy
	if WebhookRetrySchedule()[0] == 0 {
		t.Fatal("WebhookRetrySchedule shares its slice")
	}
	fixed := func(v float64) func() float64 { return func() float64 { return v } }
	top := math.Nextafter(1, 0)
	for retry := 1; retry <= 12; retry++ {
		base := want[min(retry, len(want))-1]
		lo := WebhookRetryDelay(retry, nil, fixed(0))
		mid := WebhookRetryDelay(retry, nil, fixed(0.5))
		hi := WebhookRetryDelay(retry, nil, fixed(top))
		if lo != time.Duration(float64(base)*0.8) || mid != base || hi >= time.Duration(float64(base)*1.2)+1 || hi <= mid {
			t.Errorf("retry %d: delays %v %v %v around %v", retry, lo, mid, hi, base)
		}
	}
	if d := WebhookRetryDelay(0, nil, fixed(0.5)); d != 5*time.Second {
		t.Errorf("retry 0 = %v", d)
	}
	custom := []subconfig.Duration{subconfig.Duration(time.Second), subconfig.Duration(time.Minute)}
	for retry, base := range map[int]time.Duration{1: time.Second, 2: time.Minute, 3: time.Minute, 50: time.Minute} {
		if d := WebhookRetryDelay(retry, custom, fixed(0.5)); d != base {
			t.Errorf("custom retry %d = %v, want %v", retry, d, base)
		}
	}
	if d := WebhookRetryDelay(1, []subconfig.Duration{subconfig.Duration(math.MaxInt64)}, fixed(top)); d != math.MaxInt64 {
		t.Errorf("huge entry = %v, want saturation", d)
	}
	// The real random source stays in bounds.
	for range 1000 {
		d := WebhookRetryDelay(2, nil, nil)
		if d < 4*time.Minute || d >= 6*time.Minute {
			t.Fatalf("random delay %v out of [4m, 6m)", d)
		}
	}
}
