package outbox

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/outboxkit/outbox/keys"
	"github.com/outboxkit/outbox/subconfig"
)

// switchKeys is a keys.Provider whose key set the test changes while a
// dispatcher uses it (a KMS whose policy changes under a running process).
type switchKeys struct{ p atomic.Pointer[keys.Provider] }

func newSwitchKeys(kp keys.Provider) *switchKeys {
	s := &switchKeys{}
	s.set(kp)
	return s
}

func (s *switchKeys) set(kp keys.Provider) { s.p.Store(&kp) }
func (s *switchKeys) get() keys.Provider   { return *s.p.Load() }
func (s *switchKeys) PrimaryKeyID() string {
	return s.get().PrimaryKeyID()
}
func (s *switchKeys) WrapKey(ctx context.Context, dk, aad []byte) (string, []byte, error) {
	return s.get().WrapKey(ctx, dk, aad)
}
func (s *switchKeys) UnwrapKey(ctx context.Context, kid string, w, aad []byte) ([]byte, error) {
	return s.get().UnwrapKey(ctx, kid, w, aad)
}

func mustKeys(t testing.TB, primary keys.Key, older ...keys.Key) keys.Provider {
	t.Helper()
	kp, err := keys.Static(primary, older...)
	if err != nil {
		t.Fatal(err)
	}
	return kp
}

// TestSecretsRotationUnderLoad rotates the key of sealed subscriptions
// while a dispatcher delivers their webhooks: key k1 only; then k2 primary
// with k1, while two rotations run several times each, concurrently with
// deliveries and with each other; then k2 only, the old key gone from
// every process. Every event reaches every subscription, verified by the
// Standard Webhooks reference library, and no delivery fails to verify.
func TestSecretsRotationUnderLoad(t *testing.T) {
	t.Parallel()
	k1, k2 := newTestKey(t, "k1"), newTestKey(t, "k2")
	keys := newSwitchKeys(mustKeys(t, k1))
	b := setup(t, &Config{Keys: keys})
	ctx := ctxT(t)
	recv := newRefReceiver(t)
	subs := []string{"s0", "s1", "s2", "s3"}
	for _, name := range subs {
		s := newSecret(t)
		recv.expect(name, s)
		b.subscribeWebhook(t, name, "load.*", recv.url(name), subconfig.Config{
			Secrets: []string{s}, Headers: map[string]string{"Authorization": "Bearer " + name}})
	}
	cfg := fastConfig()
	cfg.Workers = 8
	cfg.Webhooks = &WebhookOptions{AllowedNetworks: loopbackNetworks}
	d, err := b.ob.NewDispatcher(cfg)
	if err != nil {
		t.Fatal(err)
	}
	startDispatcher(t, d)

	var events []string
	enqueue := func(n int) {
		for i := 0; i < n; i++ {
			events = append(events, b.enqueue(t, "load.tick", map[string]any{"i": len(events)}).EventID.String())
		}
	}
	delivered := func(n int) func() bool {
		return func() bool {
			for _, s := range subs {
				if recv.verifiedCount(s) < n {
					return false
				}
			}
			return true
		}
	}

	enqueue(20)
	waitFor(t, "phase 1 deliveries", delivered(10))

	// Phase 2: k2 becomes primary everywhere; rotations run while events
	// are enqueued and delivered.
	keys.set(mustKeys(t, k2, k1))
	rot1, err := New(b.db, Config{Schema: b.schema, Keys: mustKeys(t, k2, k1), Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	rotErrs := make(chan error, 10)
	for _, ob := range []*Outbox{b.ob, rot1} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 3 {
				if _, err := ob.RotateSubscriptionSecrets(ctx); err != nil {
					rotErrs <- err
				}
			}
		}()
	}
	enqueue(30)
	wg.Wait()
	close(rotErrs)
	for err := range rotErrs {
		t.Fatalf("rotation: %v", err)
	}
	res, err := b.ob.RotateSubscriptionSecrets(ctx)
	if err != nil || res.Rotated != 0 || res.Current != len(subs) {
		t.Fatalf("a last rotation found work: %+v %v", res, err)
	}
	for _, s := range subs {
		if kid := b.storedConfig(t, s)["encrypted"].(map[string]any)["kid"]; kid != "k2" {
			t.Fatalf("%s sealed under %v after rotation", s, kid)
		}
	}

	// Phase 3: k1 is gone; the running dispatcher keeps delivering.
	keys.set(mustKeys(t, k2))
	enqueue(20)
	waitFor(t, "every event delivered to every subscription", delivered(len(events)))
	for _, s := range subs {
		for _, id := range events {
			if !recv.has(s, id) {
				t.Fatalf("event %s never verified at %s", id, s)
			}
		}
	}
	if n := recv.bad.Load(); n != 0 {
		t.Fatalf("%d deliveries did not verify", n)
	}
	waitFor(t, "every row COMPLETED", func() bool { return b.count(t, `status <> 'COMPLETED'`) == 0 })
	// A dispatcher started afresh with k2 alone reads the rotated form.
	fresh, err := New(b.db, Config{Schema: b.schema, Keys: mustKeys(t, k2)})
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range subs {
		if _, err := fresh.GetSubscriptionSecrets(ctx, s); err != nil {
			t.Fatalf("%s with k2 only: %v", s, err)
		}
	}
}

// TestSecretsNoKeyPolicy: without Config.Keys a config with secrets is
// refused (ErrKeyRequired), one without is accepted; AllowPlaintextSecrets
// stores them in clear with one warning; once a key is configured,
// RotateSubscriptionSecrets seals the clear rows (the upgrade step),
// leaving none in clear, and deliveries still verify. A subscription whose
// secrets do not open is reported, and the others are rotated all the same.
func TestSecretsNoKeyPolicy(t *testing.T) {
	t.Parallel()
	var logs bytes.Buffer
	var logMu sync.Mutex
	logger := slog.New(slog.NewTextHandler(lockedWriter{&logMu, &logs}, &slog.HandlerOptions{Level: slog.LevelWarn}))
	b := setup(t, &Config{AllowPlaintextSecrets: true, Logger: logger})
	ctx := ctxT(t)
	secret := newSecret(t)

	strict, err := New(b.db, Config{Schema: b.schema, WebhookAllowedNetworks: loopbackNetworks, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	_, err = strict.Subscribe(ctx, Subscription{Name: "x", TopicPattern: "#", WebhookURL: "http://127.0.0.1:1/x",
		Config: subconfig.Config{Secrets: []string{secret}}})
	if !errors.Is(err, ErrKeyRequired) || strings.Contains(err.Error(), secret) {
		t.Fatalf("Subscribe with a secret and no key: %v", err)
	}
	_, err = strict.Subscribe(ctx, Subscription{Name: "x", TopicPattern: "#", WebhookURL: "http://127.0.0.1:1/x",
		Config: subconfig.Config{Headers: map[string]string{"X-Api-Key": "k"}}})
	if !errors.Is(err, ErrKeyRequired) {
		t.Fatalf("Subscribe with a secret header and no key: %v", err)
	}
	if _, err := strict.Subscribe(ctx, Subscription{Name: "x", TopicPattern: "#", WebhookURL: "http://127.0.0.1:1/x",
		Config: subconfig.Config{Headers: map[string]string{"X-Tenant": "acme"}}}); err != nil {
		t.Fatalf("Subscribe without secrets and no key: %v", err)
	}
	if _, err := strict.RotateSubscriptionSecrets(ctx); !errors.Is(err, ErrKeyRequired) {
		t.Fatalf("rotate without key: %v", err)
	}

	// Plaintext opt-in: stored in clear, warned about once.
	recv := newRefReceiver(t)
	recv.expect("legacy", secret)
	b.subscribeWebhook(t, "legacy", "order.*", recv.url("legacy"), subconfig.Config{
		Secrets: []string{secret}, Headers: map[string]string{"Authorization": "Bearer legacy-token"}})
	broken := newSecret(t)
	b.subscribeWebhook(t, "broken", "order.*", recv.url("broken"), subconfig.Config{Secrets: []string{broken}})
	if _, err := b.ob.NewDispatcher(DispatcherConfig{Webhooks: &WebhookOptions{}}); err != nil {
		t.Fatal(err)
	}
	logMu.Lock()
	warned := strings.Count(logs.String(), "not encrypted at rest")
	logMu.Unlock()
	if warned != 1 {
		t.Fatalf("%d plaintext warnings, want 1: %s", warned, logs.String())
	}
	if got := b.storedConfig(t, "legacy"); got["secrets"] == nil {
		t.Fatalf("plaintext opt-in did not store in clear: %v", got)
	}

	// The upgrade: a key is configured, and one rotation seals the clear
	// rows. "broken" is sealed under a key this handle does not hold: it is
	// reported and left alone.
	key := newTestKey(t, "first")
	withKey, err := New(b.db, Config{Schema: b.schema, Keys: mustKeys(t, key), WebhookAllowedNetworks: loopbackNetworks})
	if err != nil {
		t.Fatal(err)
	}
	kb := &bundle{db: b.db, ob: withKey, schema: b.schema}
	foreign := setup(t, &Config{Keys: mustKeys(t, newTestKey(t, "elsewhere"))})
	foreign.subscribeWebhook(t, "broken", "#", recv.url("broken"), subconfig.Config{Secrets: []string{broken}})
	b.setStoredConfig(t, "broken", foreign.storedConfig(t, "broken"))

	res, err := withKey.RotateSubscriptionSecrets(ctx)
	var se *SecretsError
	if !errors.Is(err, keys.ErrKeyNotFound) || !errors.As(err, &se) || se.Subscription != "broken" || se.KeyID != "elsewhere" {
		t.Fatalf("rotation error = %v", err)
	}
	if res.Sealed != 1 || res.Current != 1 || fmt.Sprint(res.Failed) != "[broken]" {
		t.Fatalf("rotation = %+v", res)
	}
	kb.assertNowhere(t, append(secretForms(t, secret), "legacy-token"))
	sec, err := withKey.GetSubscriptionSecrets(ctx, "legacy")
	if err != nil || len(sec.Secrets) != 1 || sec.Secrets[0] != secret || sec.Headers["Authorization"] != "Bearer legacy-token" {
		t.Fatalf("sealed legacy secrets do not read back: %v", err)
	}
	startDispatcher(t, whDispatcher(t, kb, nil))
	ev := kb.enqueue(t, "order.created", map[string]any{"id": 1})
	waitFor(t, "legacy delivered", func() bool { return recv.has("legacy", ev.EventID.String()) })
	if recv.header("legacy").Get("Authorization") != "Bearer legacy-token" || recv.bad.Load() != 0 {
		t.Fatal("sealed legacy subscription did not deliver its credentials or signature")
	}
}

type lockedWriter struct {
	mu *sync.Mutex
	w  *bytes.Buffer
}

func (l lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// TestSecretsRotationReachesRunningDispatcher: a dispatcher deployed with
// the new key alone fails a subscription still sealed under the old key
// (rotation leaves updated_at alone, so the engine must notice the stored
// text itself); once another process rotates, the same running dispatcher reads the current
// sealed form and delivers, verified by the reference library.
func TestSecretsRotationReachesRunningDispatcher(t *testing.T) {
	t.Parallel()
	k1, k2 := newTestKey(t, "k1"), newTestKey(t, "k2")
	b := setup(t, &Config{Keys: mustKeys(t, k1)})
	recv := newRefReceiver(t)
	secret := newSecret(t)
	recv.expect("crm", secret)
	b.subscribeWebhook(t, "crm", "order.*", recv.url("crm"), subconfig.Config{Secrets: []string{secret}})

	onlyNew, err := New(b.db, Config{Schema: b.schema, Keys: mustKeys(t, k2), WebhookAllowedNetworks: loopbackNetworks,
		Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	nb := &bundle{db: b.db, ob: onlyNew, schema: b.schema}
	startDispatcher(t, whDispatcher(t, nb, nil))
	ev := b.enqueue(t, "order.created", map[string]any{"id": 1})
	waitFor(t, "attempt failed for want of k1", func() bool { return b.whRow(t, "crm").retries >= 1 })
	if r := b.whRow(t, "crm"); !strings.Contains(r.reason.String, `"k1"`) {
		t.Fatalf("failure_reason = %q", r.reason.String)
	}

	rotator, err := New(b.db, Config{Schema: b.schema, Keys: mustKeys(t, k2, k1)})
	if err != nil {
		t.Fatal(err)
	}
	if res, err := rotator.RotateSubscriptionSecrets(ctxT(t)); err != nil || res.Rotated != 1 {
		t.Fatalf("rotate: %+v %v", res, err)
	}
	if _, err := b.db.Exec(`UPDATE "` + b.schema + `".event_queue SET next_retry_at = NULL WHERE status = 'PENDING'`); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "delivered after rotation", func() bool { return recv.has("crm", ev.EventID.String()) })
	if recv.bad.Load() != 0 {
		t.Fatal("a delivery did not verify")
	}
}
