package dispatch

import (
	"fmt"
	"os"
	"time"
)

// Defaults of the Settings left at their zero value. The root's
// DispatcherConfig documents each value in its field comment.
const (
	workersDefault            = 100
	batchSizeDefault          = 100
	pollIntervalDefault       = time.Second
	leaseDurationDefault      = 30 * time.Second
	shutdownTimeoutDefault    = 10 * time.Second
	rescueIntervalDefault     = 5 * time.Second
	cleanupIntervalDefault    = time.Minute
	completedRetentionDefault = 24 * time.Hour
	failedRetentionDefault    = 7 * 24 * time.Hour
	backoffInitialDefault     = time.Second
	backoffMaxDefault         = time.Hour
	backoffMultiplierDefault  = 2.0
)

// maxNameBytes caps Settings.Name: the claim token (locked_by,
// varchar(100)) is the name, a slash and 16 hex digits.
const maxNameBytes = 60

// Settings are the engine's tunables, what the root's DispatcherConfig
// sets. The zero value of a field means its default; WithDefaults checks
// the values and applies the defaults, and New takes only settings that
// went through it.
type Settings struct {
	// Name goes into claim tokens (locked_by) and logs. Default: host name
	// and process id. It is made valid UTF-8 without NUL and cut to 60
	// bytes on a character boundary.
	Name string
	// Workers bounds the deliveries running at once. Default 100.
	Workers int
	// BatchSize bounds the rows one claim takes. Default 100.
	BatchSize int
	// PollInterval is how often the engine looks for due rows without a
	// wake-up. Default 1 s.
	PollInterval time.Duration
	// LeaseDuration is how long a claim holds a row without a heartbeat.
	// Default 30 s.
	LeaseDuration time.Duration
	// HeartbeatInterval is how often running rows' leases are extended;
	// it must be shorter than LeaseDuration. Default LeaseDuration/3.
	HeartbeatInterval time.Duration
	// ShutdownTimeout bounds the wait for running deliveries once Run's
	// context ends. Default 10 s.
	ShutdownTimeout time.Duration
	// RescueInterval is how often expired leases are looked for. Default
	// 5 s.
	RescueInterval time.Duration
	// CleanupInterval is how often finished rows past their retention are
	// deleted. Default 1 min.
	CleanupInterval time.Duration
	// CompletedRetention and FailedRetention say how long finished rows
	// are kept; negative keeps them forever. Defaults 24 h and 7 days.
	CompletedRetention time.Duration
	FailedRetention    time.Duration
	// Backoff shapes retry delays when a subscription's config does not.
	// Defaults: Initial 1 s, Max 1 h, Multiplier 2 (at least 1).
	Backoff Backoff
	// ListenDSN is the LISTEN connection's DSN; empty or PollOnly: poll
	// only.
	ListenDSN string
	PollOnly  bool
	// NotifyCooldown is the enqueuers' cooldown between NOTIFYs: a notify
	// is followed by a trailing fetch one cooldown later. Zero or
	// negative: none.
	NotifyCooldown time.Duration
}

// FieldError reports a setting that cannot be used; the root turns it
// into its *ValidationError.
type FieldError struct {
	Field  string // the setting in snake_case, such as "batch_size"
	Reason string
}

// Error names the setting and says why it was refused.
func (e *FieldError) Error() string { return e.Field + ": " + e.Reason }

// WithDefaults checks s and returns it with every default applied. A value
// that cannot be used is a *FieldError: a negative size or duration
// (negative retentions excepted: they keep rows forever), a backoff
// multiplier below 1, or a heartbeat not shorter than the lease.
func (s Settings) WithDefaults() (Settings, error) {
	if err := s.check(); err != nil {
		return Settings{}, err
	}
	s = s.withDefaults()
	if s.HeartbeatInterval >= s.LeaseDuration {
		return Settings{}, fieldError("heartbeat_interval", "must be shorter than the lease duration (%s), got %s",
			s.LeaseDuration, s.HeartbeatInterval)
	}
	return s, nil
}

// check refuses the values no default can mend.
func (s Settings) check() error {
	for _, f := range []struct {
		field string
		v     int
	}{{"workers", s.Workers}, {"batch_size", s.BatchSize}} {
		if f.v < 0 {
			return fieldError(f.field, "must not be negative, got %d", f.v)
		}
	}
	for _, f := range []struct {
		field string
		v     time.Duration
	}{
		{"poll_interval", s.PollInterval}, {"lease_duration", s.LeaseDuration},
		{"heartbeat_interval", s.HeartbeatInterval}, {"shutdown_timeout", s.ShutdownTimeout},
		{"rescue_interval", s.RescueInterval}, {"cleanup_interval", s.CleanupInterval},
		{"backoff_initial", s.Backoff.Initial}, {"backoff_max", s.Backoff.Max},
	} {
		if f.v < 0 {
			return fieldError(f.field, "must not be negative, got %s", f.v)
		}
	}
	if m := s.Backoff.Multiplier; m != 0 && !(m >= 1) {
		return fieldError("backoff_multiplier", "must be at least 1, got %g", m)
	}
	return nil
}

// withDefaults fills in the unset fields and makes the name fit a claim
// token.
func (s Settings) withDefaults() Settings {
	if s.Name == "" {
		host, _ := os.Hostname()
		s.Name = fmt.Sprintf("%s-%d", host, os.Getpid())
	}
	s.Name = TruncateUTF8(SanitizeText(s.Name), maxNameBytes)
	if s.Workers == 0 {
		s.Workers = workersDefault
	}
	if s.BatchSize == 0 {
		s.BatchSize = batchSizeDefault
	}
	if s.PollInterval == 0 {
		s.PollInterval = pollIntervalDefault
	}
	if s.LeaseDuration == 0 {
		s.LeaseDuration = leaseDurationDefault
	}
	if s.HeartbeatInterval == 0 {
		s.HeartbeatInterval = s.LeaseDuration / 3
	}
	if s.ShutdownTimeout == 0 {
		s.ShutdownTimeout = shutdownTimeoutDefault
	}
	if s.RescueInterval == 0 {
		s.RescueInterval = rescueIntervalDefault
	}
	if s.CleanupInterval == 0 {
		s.CleanupInterval = cleanupIntervalDefault
	}
	if s.CompletedRetention == 0 {
		s.CompletedRetention = completedRetentionDefault
	}
	if s.FailedRetention == 0 {
		s.FailedRetention = failedRetentionDefault
	}
	s.Backoff = s.Backoff.withDefaults()
	return s
}

// withDefaults fills in the backoff's unset fields.
func (b Backoff) withDefaults() Backoff {
	if b.Initial == 0 {
		b.Initial = backoffInitialDefault
	}
	if b.Max == 0 {
		b.Max = backoffMaxDefault
	}
	if b.Multiplier == 0 {
		b.Multiplier = backoffMultiplierDefault
	}
	return b
}

func fieldError(field, format string, args ...any) *FieldError {
	return &FieldError{Field: field, Reason: fmt.Sprintf(format, args...)}
}
