package outbox

import (
	"context"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/outboxkit/outbox/internal/testutil"
	"github.com/outboxkit/outbox/subconfig"
)

// A stored form this release does not know (a key a newer release added,
// at the top of subscription_config or inside its sealed block) is never
// read as "no secrets": the row is not sent, its failure_reason and an
// Error log say why, it is retried, and RotateSubscriptionSecrets refuses
// to write such a config back. Once the form is one this release reads,
// the row goes out signed (docs/schema.md, "Stored formats").
func TestUnreadableConfigFailsClosed(t *testing.T) {
	t.Parallel()
	var logs testutil.LockedBuffer
	b := setup(t, &Config{Logger: slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelWarn}))})
	recv := newRefReceiver(t)
	secret := newSecret(t)
	for _, name := range []string{"top", "inner"} {
		recv.expect(name, secret)
		b.subscribeWebhook(t, name, "order.*", recv.url(name), subconfig.Config{Secrets: []string{secret},
			Headers: map[string]string{"Authorization": "Bearer t0ken"}})
	}
	b.subscribe(t, "handler", "order.*", "handler")
	plant := map[string]string{
		// A newer stored form beside the one this release reads.
		"top": `subscription_config || '{"encrypted_v2": {"kid": "2031-01", "dek": "AAAA"}}'::jsonb`,
		// A field of the sealed block this release does not know.
		"inner": `jsonb_set(subscription_config, '{encrypted,alg}', '"aes-256-siv"')`,
		// A setting a newer release added.
		"handler": `subscription_config || '{"handler_concurrency": 3}'::jsonb`,
	}
	for name, expr := range plant {
		if _, err := b.db.Exec(`UPDATE "`+b.schema+`".event_subscription SET subscription_config = `+expr+` WHERE subscriber_name = $1`, name); err != nil {
			t.Fatal(err)
		}
	}
	b.enqueue(t, "order.created", map[string]any{"id": 1})
	d := whDispatcher(t, b, nil)
	var calls atomic.Int32
	d.Handle("handler", func(context.Context, *Delivery) error { calls.Add(1); return nil })
	stop := startDispatcher(t, d)
	waitFor(t, "an attempt on every row", func() bool { return b.count(t, "retry_count >= 1") == 3 })
	stop()
	for name, field := range map[string]string{"top": "encrypted_v2", "inner": "alg", "handler": "handler_concurrency"} {
		r := b.whRow(t, name)
		if r.status != "PENDING" || !strings.Contains(r.reason.String, "not readable by this release") || !strings.Contains(r.reason.String, field) {
			t.Errorf("%s: row %s, failure_reason %q", name, r.status, r.reason.String)
		}
	}
	if recv.verifiedCount("top")+recv.verifiedCount("inner") != 0 || recv.bad.Load() != 0 || calls.Load() != 0 {
		t.Fatalf("delivered: %d verified, %d unverified webhooks, %d handler calls", recv.verifiedCount("top")+recv.verifiedCount("inner"),
			recv.bad.Load(), calls.Load())
	}
	if out := logs.String(); !strings.Contains(out, "level=ERROR") || !strings.Contains(out, "subscription config unreadable") ||
		strings.Contains(out, "t0ken") {
		t.Fatalf("log does not say so at Error, or shows the credential:\n%s", out)
	}
	res, err := b.ob.RotateSubscriptionSecrets(ctxT(t))
	if err == nil || len(res.Failed) != 3 {
		t.Fatalf("RotateSubscriptionSecrets over unknown forms = %+v, %v", res, err)
	}
	if n := countRows(t, b.db, `SELECT count(*) FROM "`+b.schema+`".event_subscription WHERE subscription_config ? 'encrypted_v2'`); n != 1 {
		t.Fatal("rotation dropped the unknown form")
	}

	// The forms this release reads: delivered, signed, with the credential.
	for name, key := range map[string]string{"top": "{encrypted_v2}", "inner": "{encrypted,alg}", "handler": "{handler_concurrency}"} {
		if _, err := b.db.Exec(`UPDATE "`+b.schema+`".event_subscription SET subscription_config = subscription_config #- $2 WHERE subscriber_name = $1`, name, key); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := b.db.Exec(`UPDATE "` + b.schema + `".event_queue SET next_retry_at = NULL`); err != nil {
		t.Fatal(err)
	}
	d = whDispatcher(t, b, nil)
	d.Handle("handler", func(context.Context, *Delivery) error { calls.Add(1); return nil })
	startDispatcher(t, d)
	waitFor(t, "deliveries", func() bool { return b.count(t, "status = 'COMPLETED'") == 3 })
	if recv.verifiedCount("top") != 1 || recv.verifiedCount("inner") != 1 || recv.bad.Load() != 0 ||
		recv.header("top").Get("Authorization") != "Bearer t0ken" {
		t.Fatalf("webhooks: %d, %d verified, %d not", recv.verifiedCount("top"), recv.verifiedCount("inner"), recv.bad.Load())
	}
}
