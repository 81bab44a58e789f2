package outbox

import (
	"context"
	"errors"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/outboxkit/outbox/subconfig"
)

func TestSubscriptionLifecycle(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	ctx := ctxT(t)
	retries := 5
	s, err := b.ob.Subscribe(ctx, Subscription{
		Name: "mailer", TopicPattern: "order.*", CallbackMethod: "send_mail",
		Config: subconfig.Config{MaxRetries: &retries, BackoffInitial: subconfig.Duration(time.Second)},
	})
	if err != nil {
		t.Fatal(err)
	}
	if !s.Active || s.ID.Version() != 7 || s.CreatedAt.IsZero() || *s.Config.MaxRetries != 5 {
		t.Fatalf("created = %+v", s)
	}
	// Same name: an update, not a second subscription.
	s2, err := b.ob.Subscribe(ctx, Subscription{Name: "mailer", TopicPattern: "order.#", WebhookURL: "https://example.com/hook"})
	if err != nil {
		t.Fatal(err)
	}
	if s2.ID != s.ID || s2.TopicPattern != "order.#" || s2.CallbackMethod != "" || s2.WebhookURL != "https://example.com/hook" ||
		s2.Config.MaxRetries != nil || s2.UpdatedAt.Before(s.UpdatedAt) {
		t.Fatalf("updated = %+v", s2)
	}
	if _, err := b.ob.PauseSubscription(ctx, "mailer"); err != nil {
		t.Fatal(err)
	}
	got, err := b.ob.GetSubscription(ctx, "mailer")
	if err != nil || got.Active {
		t.Fatalf("after pause: %+v, %v", got, err)
	}
	// Paused subscriptions get no rows; resumed ones do.
	if res := b.enqueue(t, "order.x", 1); res.Deliveries != 0 {
		t.Fatal("paused subscription received a row")
	}
	if _, err := b.ob.ResumeSubscription(ctx, "mailer"); err != nil {
		t.Fatal(err)
	}
	if res := b.enqueue(t, "order.x", 1); res.Deliveries != 1 {
		t.Fatal("resumed subscription received no row")
	}
	up, err := b.ob.UpdateSubscriptionConfig(ctx, "mailer", subconfig.Config{Timeout: subconfig.Duration(3 * time.Second), Headers: map[string]string{"X-Env": "test"}})
	if err != nil || time.Duration(up.Config.Timeout) != 3*time.Second || up.Config.Headers["X-Env"] != "test" {
		t.Fatalf("UpdateConfig = %+v, %v", up, err)
	}
	b.subscribe(t, "audit", "#", "audit")
	all, err := b.ob.ListSubscriptions(ctx)
	if err != nil || len(all) != 2 || all[0].Name != "audit" || all[1].Name != "mailer" {
		t.Fatalf("Subscriptions = %+v, %v", all, err)
	}
	if _, err := b.ob.GetSubscription(ctx, "nobody"); !errors.Is(err, ErrSubscriptionNotFound) {
		t.Fatalf("missing subscription: %v", err)
	}
	if _, err := b.ob.PauseSubscription(ctx, "nobody"); !errors.Is(err, ErrSubscriptionNotFound) {
		t.Fatalf("pause missing subscription: %v", err)
	}
}

func TestSubscriptionDelete(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	ctx := ctxT(t)
	b.subscribe(t, "busy", "#", "busy")
	b.subscribe(t, "idle", "nothing", "idle")
	b.enqueue(t, "x", 1)
	b.enqueue(t, "y", 2)
	if err := b.ob.DeleteSubscription(ctx, "busy", nil); !errors.Is(err, ErrSubscriptionBusy) || !strings.Contains(err.Error(), "2 PENDING") {
		t.Fatalf("Delete busy = %v, want ErrSubscriptionBusy naming 2 rows", err)
	}
	if n := b.count(t, "status = 'PENDING'"); n != 2 {
		t.Fatalf("refused Delete touched rows: %d pending", n)
	}
	if err := b.ob.DeleteSubscription(ctx, "busy", &DeleteOptions{DiscardUndelivered: true}); err != nil {
		t.Fatal(err)
	}
	if n := b.count(t, "status = 'FAILED' AND subscription_id IS NULL AND failure_reason = 'subscription busy deleted' AND processed_at IS NOT NULL"); n != 2 {
		t.Fatalf("discarded rows = %d, want 2 FAILED with reason", n)
	}
	if err := b.ob.DeleteSubscription(ctx, "idle", nil); err != nil {
		t.Fatal(err)
	}
	if err := b.ob.DeleteSubscription(ctx, "idle", nil); !errors.Is(err, ErrSubscriptionNotFound) {
		t.Fatalf("second Delete = %v", err)
	}
	// Rows of a deleted subscription are no longer retried, but can be discarded.
	if n, err := b.ob.DiscardFailed(ctx, failedIDs(t, b)...); err != nil || n != 2 {
		t.Fatalf("DiscardFailed = %d, %v", n, err)
	}
}

func failedIDs(t *testing.T, b *bundle) []uuid.UUID {
	rows, err := b.ob.ListFailed(ctxT(t), FailedFilter{})
	if err != nil {
		t.Fatal(err)
	}
	var ids []uuid.UUID
	for _, r := range rows {
		ids = append(ids, r.ID)
	}
	return ids
}

func TestSubscriptionValidation(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	ctx := ctxT(t)
	ok := Subscription{Name: "n", TopicPattern: "a.*", CallbackMethod: "m"}
	cases := []struct {
		name  string
		edit  func(*Subscription)
		field string
		class error
	}{
		{"empty name", func(s *Subscription) { s.Name = "" }, "subscriber_name", ErrInvalidSubscription},
		{"long name", func(s *Subscription) { s.Name = strings.Repeat("é", 101) }, "subscriber_name", ErrInvalidSubscription},
		{"control in name", func(s *Subscription) { s.Name = "a\nb" }, "subscriber_name", ErrInvalidSubscription},
		{"bad pattern", func(s *Subscription) { s.TopicPattern = "a.b*" }, "topic_pattern", ErrInvalidPattern},
		{"empty pattern", func(s *Subscription) { s.TopicPattern = "" }, "topic_pattern", ErrInvalidPattern},
		{"no target", func(s *Subscription) { s.CallbackMethod = "" }, "webhook_url", ErrInvalidSubscription},
		{"two targets", func(s *Subscription) { s.WebhookURL = "https://x.example" }, "webhook_url", ErrInvalidSubscription},
		{"ftp url", func(s *Subscription) { s.CallbackMethod, s.WebhookURL = "", "ftp://x.example/" }, "webhook_url", ErrInvalidSubscription},
		{"no host", func(s *Subscription) { s.CallbackMethod, s.WebhookURL = "", "https:///path" }, "webhook_url", ErrInvalidSubscription},
		{"long url", func(s *Subscription) {
			s.CallbackMethod, s.WebhookURL = "", "https://x.example/"+strings.Repeat("a", 500)
		}, "webhook_url", ErrInvalidSubscription},
		{"negative retries", func(s *Subscription) { n := -1; s.Config.MaxRetries = &n }, "subscription_config.max_retries", ErrInvalidSubscription},
		{"bad secret", func(s *Subscription) { s.Config.Secrets = []string{"whsec_???"} }, "subscription_config.secrets", ErrInvalidSubscription},
		{"bad header", func(s *Subscription) { s.Config.Headers = map[string]string{"Bad Name": "v"} }, "subscription_config.headers", ErrInvalidSubscription},
	}
	for _, c := range cases {
		s := ok
		c.edit(&s)
		_, err := b.ob.Subscribe(ctx, s)
		var ve *ValidationError
		if !errors.Is(err, c.class) || !errors.As(err, &ve) || ve.Field != c.field {
			t.Errorf("%s: err = %v, want %v on %s", c.name, err, c.class, c.field)
		}
	}
	if subs, err := b.ob.ListSubscriptions(ctx); err != nil || len(subs) != 0 {
		t.Fatalf("rejected subscriptions were stored: %v %v", subs, err)
	}
}

func TestSubscribeRefusesBlockedWebhookHosts(t *testing.T) {
	t.Parallel()
	b := setup(t, &Config{WebhookAllowedNetworks: []netip.Prefix{}}) // nothing allowed
	ctx := ctxT(t)
	for _, u := range []string{"http://127.0.0.1:8080/hook", "http://localhost:8080/hook", "https://10.1.2.3/hook",
		"http://[::1]/hook", "http://100.64.0.1/hook", "http://[::ffff:192.168.0.1]/hook"} {
		_, err := b.ob.Subscribe(ctx, Subscription{Name: "wh", TopicPattern: "#", WebhookURL: u})
		var ve *ValidationError
		if !errors.Is(err, ErrInvalidSubscription) || !errors.As(err, &ve) || ve.Field != "webhook_url" {
			t.Errorf("%s: err = %v, want a webhook_url validation error", u, err)
		}
	}
	// A public address, and loopback on a handle that allows it.
	if _, err := b.ob.Subscribe(ctx, Subscription{Name: "wh", TopicPattern: "#", WebhookURL: "https://93.184.215.14/hook"}); err != nil {
		t.Fatalf("public address refused: %v", err)
	}
	lb := setup(t, nil)
	if _, err := lb.ob.Subscribe(ctx, Subscription{Name: "wh", TopicPattern: "#", WebhookURL: "http://127.0.0.1:8080/hook"}); err != nil {
		t.Fatalf("allowed loopback refused: %v", err)
	}
}

// TestDeleteWaitsForOpenEnqueue: an Enqueue that fanned out to the
// subscription before Delete paused it, and commits while Delete runs, has
// its row discarded with the others instead of left PENDING for a
// subscription that no longer exists (never claimed).
func TestDeleteWaitsForOpenEnqueue(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	ctx := ctxT(t)
	sub := b.subscribe(t, "gone", "#", "m")
	tx, err := b.db.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback() //nolint:errcheck
	if res, err := b.ob.Enqueue(ctx, tx, "x", 1, nil); err != nil || res.Deliveries != 1 {
		t.Fatalf("enqueue: %+v, %v", res, err)
	}
	done := make(chan error, 1)
	go func() { done <- b.ob.DeleteSubscription(ctx, "gone", &DeleteOptions{DiscardUndelivered: true}) }()
	select {
	case err := <-done:
		t.Fatalf("Delete returned (%v) while a transaction that enqueued to the subscription was open", err)
	case <-time.After(300 * time.Millisecond):
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if n := b.count(t, "status IN ('PENDING', 'PROCESSING') OR subscription_id = $1", sub.ID); n != 0 {
		t.Fatalf("%d rows left undelivered or pointing at the deleted subscription", n)
	}
	if n := b.count(t, "status = 'FAILED' AND subscription_id IS NULL AND failure_reason LIKE '%deleted%'"); n != 1 {
		t.Fatalf("the late row was not discarded: %s", b.statusCounts(t))
	}
}

// TestDeleteWaitEndsWithContext: a transaction that stays open does not hold
// Delete past its context; the subscription is left paused.
func TestDeleteWaitEndsWithContext(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	ctx := ctxT(t)
	b.subscribe(t, "held", "#", "m")
	tx, err := b.db.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback() //nolint:errcheck
	if _, err := b.ob.Enqueue(ctx, tx, "x", 1, nil); err != nil {
		t.Fatal(err)
	}
	short, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel()
	if err := b.ob.DeleteSubscription(short, "held", &DeleteOptions{DiscardUndelivered: true}); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Delete with an open enqueuing transaction and a 300 ms context: %v", err)
	}
	s, err := b.ob.GetSubscription(ctx, "held")
	if err != nil || s.Active {
		t.Fatalf("subscription after the timed-out Delete: %+v, %v (want it kept, paused)", s, err)
	}
}
