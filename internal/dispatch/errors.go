package dispatch

import (
	"errors"
	"fmt"
	"time"
	"unicode/utf8"
)

// MaxFailureReasonBytes caps failure_reason.
const MaxFailureReasonBytes = 4096

// permanentError marks a handler error that must not be retried.
type permanentError struct{ err error }

func (e *permanentError) Error() string { return "permanent: " + errString(e.err) }
func (e *permanentError) Unwrap() error { return e.err }

// Permanent wraps err so that the engine fails the row at once (status
// FAILED) instead of retrying it. A nil err still fails the row.
func Permanent(err error) error { return &permanentError{err: err} }

// retryAfterError asks for the next attempt after a given delay.
type retryAfterError struct {
	delay time.Duration
	err   error
}

func (e *retryAfterError) Error() string {
	return fmt.Sprintf("retry after %s: %s", e.delay, errString(e.err))
}
func (e *retryAfterError) Unwrap() error { return e.err }

// RetryAfter wraps err so that the next attempt of the row happens after d
// instead of the subscription's backoff. The attempt still counts against
// max_retries.
func RetryAfter(d time.Duration, err error) error { return &retryAfterError{delay: d, err: err} }

func errString(err error) string {
	if err == nil {
		return "<nil>"
	}
	return err.Error()
}

// TruncateReason caps s at MaxFailureReasonBytes on a rune boundary and
// makes it valid UTF-8 without NUL bytes (text columns reject them).
func TruncateReason(s string) string {
	s = SanitizeText(s)
	if len(s) <= MaxFailureReasonBytes {
		return s
	}
	const marker = " …[truncated]"
	return TruncateUTF8(s, MaxFailureReasonBytes-len(marker)) + marker
}

// SanitizeText makes s valid UTF-8 without NUL bytes.
func SanitizeText(s string) string {
	if utf8.ValidString(s) && !containsNUL(s) {
		return s
	}
	b := make([]rune, 0, len(s))
	for _, r := range s {
		if r != 0 {
			b = append(b, r) // invalid bytes became U+FFFD
		}
	}
	return string(b)
}

func containsNUL(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] == 0 {
			return true
		}
	}
	return false
}

// TruncateUTF8 cuts s to at most n bytes on a character boundary.
func TruncateUTF8(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

// IsPermanent reports whether err was wrapped by Permanent.
func IsPermanent(err error) bool {
	var p *permanentError
	return errors.As(err, &p)
}

// RetryAfterDelay returns the delay RetryAfter wrapped err with.
func RetryAfterDelay(err error) (time.Duration, bool) {
	var r *retryAfterError
	if errors.As(err, &r) {
		return r.delay, true
	}
	return 0, false
}
