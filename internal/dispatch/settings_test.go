package dispatch

import (
	"errors"
	"math"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

// mustSettings is Settings.WithDefaults for settings a test knows to be
// valid.
func mustSettings(t *testing.T, s Settings) Settings {
	t.Helper()
	s, err := s.WithDefaults()
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestSettingsDefaults(t *testing.T) {
	t.Parallel()
	s := mustSettings(t, Settings{})
	want := Settings{
		Name: s.Name, Workers: 100, BatchSize: 100, PollInterval: time.Second, LeaseDuration: 30 * time.Second,
		HeartbeatInterval: 10 * time.Second, ShutdownTimeout: 10 * time.Second, RescueInterval: 5 * time.Second,
		CleanupInterval: time.Minute, CompletedRetention: 24 * time.Hour, FailedRetention: 7 * 24 * time.Hour,
		Backoff: Backoff{Initial: time.Second, Max: time.Hour, Multiplier: 2},
	}
	if s != want {
		t.Fatalf("defaults:\n got %+v\nwant %+v", s, want)
	}
	if s.Name == "" || mustSettings(t, s) != s {
		t.Fatalf("defaults are not a fixed point: %+v", s)
	}
	// Set values are kept; the heartbeat follows a set lease.
	set := Settings{Name: "d1", Workers: 3, LeaseDuration: 9 * time.Second, CompletedRetention: -1,
		Backoff: Backoff{Multiplier: 1.5}}
	s = mustSettings(t, set)
	if s.Name != "d1" || s.Workers != 3 || s.HeartbeatInterval != 3*time.Second || s.CompletedRetention != -1 ||
		s.Backoff != (Backoff{Initial: time.Second, Max: time.Hour, Multiplier: 1.5}) {
		t.Fatalf("set values: %+v", s)
	}
	// The name fits a claim token: valid UTF-8, no NUL, at most 60 bytes.
	s = mustSettings(t, Settings{Name: "a\x00b\xff" + strings.Repeat("é", 40)})
	if len(s.Name) > maxNameBytes || !utf8.ValidString(s.Name) || strings.ContainsRune(s.Name, 0) || !strings.HasPrefix(s.Name, "ab\uFFFD") {
		t.Fatalf("name %q", s.Name)
	}
}

func TestSettingsRefused(t *testing.T) {
	t.Parallel()
	for field, s := range map[string]Settings{
		"workers":            {Workers: -1},
		"batch_size":         {BatchSize: -1},
		"poll_interval":      {PollInterval: -1},
		"lease_duration":     {LeaseDuration: -1},
		"heartbeat_interval": {LeaseDuration: time.Second, HeartbeatInterval: time.Second},
		"shutdown_timeout":   {ShutdownTimeout: -1},
		"rescue_interval":    {RescueInterval: -1},
		"cleanup_interval":   {CleanupInterval: -1},
		"backoff_initial":    {Backoff: Backoff{Initial: -1}},
		"backoff_max":        {Backoff: Backoff{Max: -1}},
		"backoff_multiplier": {Backoff: Backoff{Multiplier: 0.5}},
	} {
		_, err := s.WithDefaults()
		var fe *FieldError
		if !errors.As(err, &fe) || fe.Field != field || fe.Reason == "" {
			t.Errorf("%+v: err = %v, want a %s FieldError", s, err, field)
		}
	}
	if _, err := (Settings{Backoff: Backoff{Multiplier: math.NaN()}}).WithDefaults(); err == nil {
		t.Error("a NaN backoff multiplier accepted")
	}
	if _, err := (Settings{HeartbeatInterval: 40 * time.Second}).WithDefaults(); err == nil {
		t.Error("a heartbeat longer than the default lease accepted")
	}
}
