package testutil

import (
	"fmt"
	"testing"
	"time"
)

// Timing bounds that hold on a busy machine
//
// A test that asserts how long something took compares it with a Bound
// made of what the behaviour allows (a lease, a timeout, a retry cap) and
// of what this machine did in the same test: a multiple of a calibration
// measured beside the measured operation (a timer's lateness, a database
// round trip, the time per delivery of the process under test). A loaded
// machine then widens the bound by what it is measured to cost, not by a
// guessed constant, while a behaviour that is wrong by more than that (a
// stall that grows with a backlog, a wait for the next poll) still fails.
// A generous deadline that only stops a broken test from running forever
// is a hang guard, not a Bound.

// Bound is a time bound made of named parts, so that a test's log and
// failure say what the bound is relative to.
type Bound struct {
	total time.Duration
	parts string
}

// Plus adds d, called what, to the bound.
func (b Bound) Plus(what string, d time.Duration) Bound {
	return b.add("+", d, fmt.Sprintf("%s %s", what, round(d)))
}

// PlusTimes adds k times d, a measured duration called what, to the bound.
func (b Bound) PlusTimes(k int, what string, d time.Duration) Bound {
	return b.add("+", time.Duration(k)*d, fmt.Sprintf("%d × %s %s", k, what, round(d)))
}

// MinusTimes takes k times d, a measured duration called what, from the
// bound: for a lower bound that a loaded machine lowers.
func (b Bound) MinusTimes(k int, what string, d time.Duration) Bound {
	return b.add("−", -time.Duration(k)*d, fmt.Sprintf("%d × %s %s", k, what, round(d)))
}

func (b Bound) add(op string, d time.Duration, part string) Bound {
	b.total += d
	if b.parts == "" {
		b.parts = part
	} else {
		b.parts += " " + op + " " + part
	}
	return b
}

// Duration returns the bound.
func (b Bound) Duration() time.Duration { return b.total }

// String returns the bound and its parts: "1.5s = lease 1s + 10 × round trip 50ms".
func (b Bound) String() string {
	return fmt.Sprintf("%s = %s", round(b.total), b.parts)
}

// Within logs, in one line that begins with "timing:", what was measured
// against its bound, and fails t (Errorf) when got exceeds it. It returns
// whether got was within the bound.
func Within(t testing.TB, what string, got time.Duration, b Bound) bool {
	t.Helper()
	t.Logf("timing: %s: measured %s, bound %s", what, round(got), b)
	if got > b.total {
		t.Errorf("%s took %s, over its bound of %s", what, round(got), b)
		return false
	}
	return true
}

// AtLeast is Within for a lower bound: it logs the "timing:" line and
// fails t (Errorf) when got is below the bound.
func AtLeast(t testing.TB, what string, got time.Duration, b Bound) bool {
	t.Helper()
	t.Logf("timing: %s: measured %s, lower bound %s", what, round(got), b)
	if got < b.total {
		t.Errorf("%s took %s, under its lower bound of %s", what, round(got), b)
		return false
	}
	return true
}

// TimerLag returns how late this machine wakes a goroutine whose timer has
// fired: the largest overshoot of n sleeps of d. A wait that ends on a timer
// (a context deadline, a shutdown or block timeout, a retry's backoff) ends
// that much later on a loaded machine.
func TimerLag(n int, d time.Duration) time.Duration {
	var lag time.Duration
	for range n {
		start := time.Now()
		time.Sleep(d)
		lag = max(lag, time.Since(start)-d)
	}
	return lag
}

// Slowest returns the longest of n runs of f: a calibration of an
// operation on the machine as it is now, its worst case rather than its
// average, since a bound must hold for the worst of the operations it
// limits.
func Slowest(n int, f func()) time.Duration {
	var worst time.Duration
	for range n {
		start := time.Now()
		f()
		worst = max(worst, time.Since(start))
	}
	return worst
}

func round(d time.Duration) time.Duration {
	switch {
	case d >= time.Second:
		return d.Round(time.Millisecond)
	case d >= time.Millisecond:
		return d.Round(10 * time.Microsecond)
	default:
		return d.Round(time.Microsecond)
	}
}
