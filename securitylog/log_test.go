package securitylog_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/outboxkit/outbox"
	"github.com/outboxkit/outbox/redact"
	"github.com/outboxkit/outbox/securitylog"
)

func TestRecordTypesAndDefaults(t *testing.T) {
	t.Parallel()
	b := setupClock(t, nil)
	s := newLog(t, b, securitylog.Config{})
	ctx := ctxT(t)
	user := uuid.New()

	fl, err := s.RecordFailedLogin(ctx, b.db, securitylog.FailedLogin{UserID: user, Username: "Bob\n", IP: "::ffff:192.0.2.7",
		UserAgent: "curl/8\r\nX-Injected: 1" + strings.Repeat("é", 600), Reason: "bad_password", Method: "password"})
	if err != nil {
		t.Fatal(err)
	}
	ev := fl.Event
	if ev.Type != securitylog.EventFailedLogin || ev.Severity != securitylog.SeverityMedium || ev.RequiresReview || ev.IP != "192.0.2.7" || ev.UserID != user ||
		!ev.OccurredAt.Equal(b.clock.Now()) || len(fl.Escalations) != 0 {
		t.Fatalf("failed login: %+v", fl)
	}
	if strings.ContainsAny(ev.UserAgent, "\r\n") || len([]rune(ev.UserAgent)) != 500 { // user_agent is VARCHAR(500)
		t.Errorf("user agent not cleaned and cut: %q (%d)", ev.UserAgent, len([]rune(ev.UserAgent)))
	}
	var d map[string]string
	if err := json.Unmarshal(ev.Details, &d); err != nil || d["username"] != "Bob " || d["reason"] != "bad_password" ||
		d["account"] != "user:"+user.String() {
		t.Errorf("details: %s %v", ev.Details, err)
	}
	pd, err := s.RecordPermissionDenied(ctx, b.db, securitylog.PermissionDenied{UserID: user, IP: "2001:DB8::0:1", Resource: "invoice:42",
		Action: "delete", Permission: "invoices.delete"})
	if err != nil {
		t.Fatal(err)
	}
	if pd.Severity != securitylog.SeverityHigh || !pd.RequiresReview || pd.IP != "2001:db8::1" {
		t.Errorf("permission denied: %+v", pd)
	}
	sa, err := s.RecordSuspiciousActivity(ctx, b.db, securitylog.SuspiciousActivity{IP: "198.51.100.1", Kind: "impossible_travel",
		Description: "two countries in a minute", Data: map[string]any{"from": "FR", "to": "JP", "session_token": "st"},
		Severity: securitylog.SeverityLow})
	if err != nil {
		t.Fatal(err)
	}
	if sa.Severity != securitylog.SeverityLow || sa.RequiresReview || strings.Contains(string(sa.Details), `"st"`) {
		t.Errorf("suspicious activity: %+v %s", sa, sa.Details)
	}
	gen, err := s.Record(ctx, b.db, securitylog.Input{IP: "192.0.2.10", Type: securitylog.EventSuspiciousActivity, Severity: securitylog.SeverityCritical,
		RequiresReview: ptr(false), Details: []string{"a\x00b", "line\nbreak"}, OccurredAt: b.clock.Now().Add(-time.Minute)})
	if err != nil {
		t.Fatal(err)
	}
	if gen.RequiresReview || gen.Severity != securitylog.SeverityCritical || string(gen.Details) != `["ab","line break"]` ||
		!gen.OccurredAt.Equal(b.clock.Now().Add(-time.Minute)) {
		t.Errorf("generic: %+v %s", gen, gen.Details)
	}
	// event_details is NOT NULL: no details is the empty object, as
	// recorded and as read back.
	bare, err := s.Record(ctx, b.db, securitylog.Input{Type: securitylog.EventPermissionDenied, IP: "192.0.2.11"})
	if err != nil {
		t.Fatal(err)
	}
	if string(bare.Details) != `{}` {
		t.Errorf("no details recorded as %q, want {}", bare.Details)
	}
	if back, err := s.Get(ctx, bare.ID); err != nil || string(back.Details) != `{}` {
		t.Errorf("no details read back as %q (%v), want {}", back.Details, err)
	}
	got, err := s.Get(ctx, pd.ID)
	if err != nil || got.ID != pd.ID || got.IP != pd.IP || !got.OccurredAt.Equal(pd.OccurredAt) {
		t.Errorf("Get: %+v %v", got, err)
	}
	if _, err := s.Get(ctx, uuid.New()); !errors.Is(err, outbox.ErrNotFound) {
		t.Errorf("Get unknown: %v", err)
	}
}

func TestRejectsInvalidAndTxStaysUsable(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	s := newLog(t, b, securitylog.Config{Publish: true})
	ctx := ctxT(t)
	tx, err := b.db.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback()
	for name, c := range map[string]struct {
		in    securitylog.Input
		field string
		class error
	}{
		"type":         {securitylog.Input{IP: "192.0.2.10", Type: "LOGIN"}, "event_type", securitylog.ErrInvalidEvent},
		"severity":     {securitylog.Input{IP: "192.0.2.10", Type: securitylog.EventPermissionDenied, Severity: "SEVERE"}, "severity", securitylog.ErrInvalidEvent},
		"host name":    {securitylog.Input{Type: securitylog.EventPermissionDenied, IP: "example.com"}, "ip_address", securitylog.ErrInvalidEvent},
		"ip with port": {securitylog.Input{Type: securitylog.EventPermissionDenied, IP: "1.2.3.4:80"}, "ip_address", securitylog.ErrInvalidEvent},
		"cidr":         {securitylog.Input{Type: securitylog.EventPermissionDenied, IP: "10.0.0.0/8"}, "ip_address", securitylog.ErrInvalidEvent},
		"details":      {securitylog.Input{IP: "192.0.2.10", Type: securitylog.EventPermissionDenied, Details: func() {}}, "event_details", securitylog.ErrInvalidEvent},
		"login array":  {securitylog.Input{IP: "192.0.2.10", Type: securitylog.EventFailedLogin, Details: []int{1}}, "event_details", securitylog.ErrInvalidEvent},
		"no ip":        {securitylog.Input{Type: securitylog.EventPermissionDenied}, "ip_address", securitylog.ErrInvalidEvent},
		"ip v4 any":    {securitylog.Input{Type: securitylog.EventPermissionDenied, IP: "0.0.0.0"}, "ip_address", securitylog.ErrInvalidEvent},
		"ip v6 any":    {securitylog.Input{Type: securitylog.EventPermissionDenied, IP: "::"}, "ip_address", securitylog.ErrInvalidEvent},
		"too large":    {securitylog.Input{IP: "192.0.2.10", Type: securitylog.EventPermissionDenied, Details: strings.Repeat("x", redact.MaxBodyBytesDefault)}, "event_details", outbox.ErrPayloadTooLarge},
	} {
		_, err := s.Record(ctx, tx, c.in)
		var ve *outbox.ValidationError
		if !errors.As(err, &ve) || !errors.Is(err, c.class) || ve.Field != c.field {
			t.Errorf("%s: got %v, want %v on %s", name, err, c.class, c.field)
		}
	}
	if _, err := s.RecordFailedLogin(ctx, tx, securitylog.FailedLogin{IP: "300.1.1.1"}); !errors.Is(err, securitylog.ErrInvalidEvent) {
		t.Errorf("bad IP on a failed login: %v", err)
	}
	for _, ip := range []string{"", "0.0.0.0", "::", "::ffff:0.0.0.0"} {
		_, err := s.RecordFailedLogin(ctx, tx, securitylog.FailedLogin{Username: "alice", IP: ip})
		var ve *outbox.ValidationError
		if !errors.As(err, &ve) || !errors.Is(err, securitylog.ErrInvalidEvent) || ve.Field != "ip_address" {
			t.Errorf("failed login with IP %q: %v, want an ErrInvalidEvent on ip_address", ip, err)
		}
	}
	if _, err := s.MarkReviewed(ctx, tx, uuid.New(), uuid.Nil); !errors.Is(err, securitylog.ErrInvalidEvent) {
		t.Errorf("nil reviewer: %v", err)
	}
	if _, err := s.RecordFailedLogin(ctx, tx, securitylog.FailedLogin{Username: "alice", IP: "192.0.2.1"}); err != nil {
		t.Fatalf("tx unusable after rejections: %v", err)
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	if n := b.countRows(t, "security_event", ""); n != 1 {
		t.Fatalf("%d events, want 1", n)
	}
	for _, bad := range []securitylog.Config{
		{BruteForce: securitylog.BruteForceConfig{Rules: []securitylog.BruteForceRule{{Name: "a", Scope: securitylog.ScopeIP, Threshold: 0, Window: time.Minute}}}},
		{BruteForce: securitylog.BruteForceConfig{Rules: []securitylog.BruteForceRule{{Name: "a", Scope: "X", Threshold: 1, Window: time.Minute}}}},
		{BruteForce: securitylog.BruteForceConfig{Rules: []securitylog.BruteForceRule{{Name: "a", Scope: securitylog.ScopeIP, Threshold: 1, Window: time.Millisecond}}}},
		{BruteForce: securitylog.BruteForceConfig{Rules: []securitylog.BruteForceRule{{Name: "a", Scope: securitylog.ScopeIP, Threshold: 1, Window: time.Minute}, {Name: "a", Scope: securitylog.ScopeAccount, Threshold: 1, Window: time.Minute}}}},
		{BruteForce: securitylog.BruteForceConfig{Rules: []securitylog.BruteForceRule{{Scope: securitylog.ScopeIP, Threshold: 1, Window: time.Minute}}}},
		{Redaction: redact.Rules{MaxBodyBytes: -1}},
	} {
		if _, err := securitylog.New(b.ob, bad); !errors.Is(err, outbox.ErrInvalidConfig) {
			t.Errorf("config %+v: %v", bad, err)
		}
	}
	if _, err := securitylog.New(nil, securitylog.Config{}); !errors.Is(err, outbox.ErrInvalidConfig) {
		t.Errorf("nil handle: %v", err)
	}
}

func TestReviewOnce(t *testing.T) {
	t.Parallel()
	b := setupClock(t, nil)
	s := newLog(t, b, securitylog.Config{})
	ctx := ctxT(t)
	ev, err := s.RecordPermissionDenied(ctx, b.db, securitylog.PermissionDenied{IP: "192.0.2.10", Resource: "admin"})
	if err != nil {
		t.Fatal(err)
	}
	reviewers := make([]uuid.UUID, 8)
	for i := range reviewers {
		reviewers[i] = uuid.New()
	}
	b.clock.Advance(time.Hour)
	// Concurrent reviews, each in its own transaction: exactly one wins.
	var wg sync.WaitGroup
	results := make([]error, len(reviewers))
	for i, r := range reviewers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tx, err := b.db.BeginTx(ctx, nil)
			if err != nil {
				results[i] = err
				return
			}
			_, results[i] = s.MarkReviewed(ctx, tx, ev.ID, r)
			if err := tx.Commit(); err != nil && results[i] == nil {
				results[i] = err
			}
		}()
	}
	wg.Wait()
	winner := -1
	for i, err := range results {
		var are *securitylog.AlreadyReviewedError
		switch {
		case err == nil:
			if winner >= 0 {
				t.Fatalf("reviews %d and %d both succeeded", winner, i)
			}
			winner = i
		case errors.As(err, &are) && errors.Is(err, securitylog.ErrAlreadyReviewed):
		default:
			t.Fatalf("review %d: %v", i, err)
		}
	}
	if winner < 0 {
		t.Fatal("no review succeeded")
	}
	got, err := s.Get(ctx, ev.ID)
	if err != nil || got.ReviewedBy != reviewers[winner] || !got.ReviewedAt.Equal(b.clock.Now()) {
		t.Fatalf("after review: %+v %v", got, err)
	}
	// A later review changes nothing and reports the first one.
	b.clock.Advance(time.Hour)
	_, err = s.MarkReviewed(ctx, b.db, ev.ID, uuid.New())
	var are *securitylog.AlreadyReviewedError
	if !errors.As(err, &are) || are.ReviewedBy != reviewers[winner] || !are.ReviewedAt.Equal(got.ReviewedAt) {
		t.Fatalf("second review: %v", err)
	}
	if again, _ := s.Get(ctx, ev.ID); again.ReviewedBy != got.ReviewedBy || !again.ReviewedAt.Equal(got.ReviewedAt) {
		t.Fatalf("second review changed the event: %+v", again)
	}
	if _, err := s.MarkReviewed(ctx, b.db, uuid.New(), uuid.New()); !errors.Is(err, outbox.ErrNotFound) {
		t.Fatalf("unknown event: %v", err)
	}
	// The pair constraint holds for every row.
	if n := b.countRows(t, "security_event", "(reviewed_by IS NULL) <> (reviewed_at IS NULL)"); n != 0 {
		t.Fatalf("%d rows with half a review", n)
	}
}

func TestAwaitingReviewFiltersAndPages(t *testing.T) {
	t.Parallel()
	b := setupClock(t, nil)
	s := newLog(t, b, securitylog.Config{BruteForce: securitylog.BruteForceConfig{Disabled: true}})
	ctx := ctxT(t)
	alice, bob := uuid.New(), uuid.New()
	start := b.clock.Now()
	var ids []uuid.UUID
	for i := range 12 {
		b.clock.Advance(time.Minute)
		user := alice
		if i%2 == 1 {
			user = bob
		}
		sev := securitylog.SeverityHigh
		if i%3 == 0 {
			sev = securitylog.SeverityCritical
		}
		ev, err := s.RecordPermissionDenied(ctx, b.db, securitylog.PermissionDenied{UserID: user, IP: fmt.Sprintf("10.0.0.%d", i%4), Severity: sev})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, ev.ID)
	}
	if _, err := s.RecordFailedLogin(ctx, b.db, securitylog.FailedLogin{IP: "192.0.2.10", UserID: alice}); err != nil { // MEDIUM: not awaiting review
		t.Fatal(err)
	}
	if _, err := s.MarkReviewed(ctx, b.db, ids[0], uuid.New()); err != nil {
		t.Fatal(err)
	}
	collect := func(f securitylog.Filter) []securitylog.Event {
		t.Helper()
		var out []securitylog.Event
		for {
			page, err := s.AwaitingReview(ctx, f)
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, page.Events...)
			if page.Next == "" {
				return out
			}
			f.Cursor = page.Next
		}
	}
	all := collect(securitylog.Filter{Limit: 5})
	if len(all) != 11 || all[0].ID != ids[11] || all[10].ID != ids[1] {
		t.Fatalf("awaiting review: %d events", len(all))
	}
	for _, c := range []struct {
		f    securitylog.Filter
		want int
	}{
		{securitylog.Filter{UserID: alice}, 5},
		{securitylog.Filter{UserID: bob, Limit: 2}, 6},
		{securitylog.Filter{MinSeverity: securitylog.SeverityCritical}, 3},
		{securitylog.Filter{Type: securitylog.EventFailedLogin}, 0},
		{securitylog.Filter{IP: "::ffff:10.0.0.1"}, 3},
		{securitylog.Filter{Since: start.Add(6 * time.Minute)}, 7},
		{securitylog.Filter{Since: start.Add(2 * time.Minute), Until: start.Add(4 * time.Minute)}, 2},
	} {
		if got := collect(c.f); len(got) != c.want {
			t.Errorf("filter %+v: %d events, want %d", c.f, len(got), c.want)
		}
	}
	everything, err := s.List(ctx, securitylog.Filter{})
	if err != nil || len(everything.Events) != 13 {
		t.Fatalf("List: %d %v", len(everything.Events), err)
	}
	for field, f := range map[string]securitylog.Filter{"ip_address": {IP: "nope"}, "event_type": {Type: "X"},
		"severity": {MinSeverity: "X"}, "cursor": {Cursor: "!"}, "limit": {Limit: -1}} {
		var ve *outbox.ValidationError
		if _, err := s.List(ctx, f); !errors.Is(err, outbox.ErrInvalidFilter) || !errors.As(err, &ve) || ve.Field != field {
			t.Errorf("filter %+v: %v, want an ErrInvalidFilter on %s", f, err, field)
		}
	}
}

func TestPublishInSameTransaction(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	ctx := ctxT(t)
	if _, err := b.ob.Subscribe(ctx, outbox.Subscription{Name: "alerts", TopicPattern: "security.#", CallbackMethod: "alert"}); err != nil {
		t.Fatal(err)
	}
	s := newLog(t, b, securitylog.Config{Publish: true,
		BruteForce: securitylog.BruteForceConfig{Rules: []securitylog.BruteForceRule{{Name: "two", Scope: securitylog.ScopeAccount, Threshold: 2, Window: time.Hour}}}})
	tx, _ := b.db.BeginTx(ctx, nil)
	if _, err := s.RecordPermissionDenied(ctx, tx, securitylog.PermissionDenied{IP: "192.0.2.10", Resource: "x"}); err != nil {
		t.Fatal(err)
	}
	_ = tx.Rollback()
	if n := b.countRows(t, "event_queue", ""); n != 0 {
		t.Fatalf("%d queue rows after rollback", n)
	}
	tx, _ = b.db.BeginTx(ctx, nil)
	pd, err := s.RecordPermissionDenied(ctx, tx, securitylog.PermissionDenied{IP: "192.0.2.10", Resource: "x"})
	if err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if _, err := s.RecordFailedLogin(ctx, tx, securitylog.FailedLogin{Username: "eve", IP: "192.0.2.9"}); err != nil {
			t.Fatal(err)
		}
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	for topic, want := range map[string]int64{"security.permission_denied": 1, "security.failed_login": 2, "security.suspicious_activity": 1} {
		if n := b.countRows(t, "event_queue", "topic = $1", topic); n != want {
			t.Errorf("topic %s: %d rows, want %d", topic, n, want)
		}
	}
	var payload string
	if err := b.db.QueryRowContext(ctx, fmt.Sprintf(`SELECT payload::text FROM %q.event_queue WHERE topic = 'security.permission_denied'`, b.schema)).Scan(&payload); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(payload, pd.ID.String()) || !strings.Contains(payload, `"severity": "HIGH"`) {
		t.Errorf("payload %s", payload)
	}
}

func TestBruteForceDefaultsWithClock(t *testing.T) {
	t.Parallel()
	b := setupClock(t, nil)
	s := newLog(t, b, securitylog.Config{})
	ctx := ctxT(t)
	user := uuid.New()
	login := func(f securitylog.FailedLogin) securitylog.FailedLoginResult {
		t.Helper()
		res, err := s.RecordFailedLogin(ctx, b.db, f)
		if err != nil {
			t.Fatal(err)
		}
		return res
	}
	// account_ip: the 10th failure within 15 minutes escalates, once.
	for i := 1; i <= 12; i++ {
		res := login(securitylog.FailedLogin{UserID: user, IP: "203.0.113.5", UserAgent: "bot"})
		want := 0
		if i == 10 {
			want = 1
		}
		if len(res.Escalations) != want {
			t.Fatalf("failure %d: %d escalations", i, len(res.Escalations))
		}
		if i == 10 {
			esc := res.Escalations[0]
			var d map[string]any
			json.Unmarshal(esc.Details, &d)
			if esc.Type != securitylog.EventSuspiciousActivity || esc.Severity != securitylog.SeverityHigh || !esc.RequiresReview || esc.UserID != user ||
				esc.IP != "203.0.113.5" || d["rule"] != "account_ip" || d["failures"] != 10.0 || d["kind"] != "brute_force" {
				t.Fatalf("escalation: %+v %s", esc, esc.Details)
			}
		}
		b.clock.Advance(time.Minute)
	}
	// After the window, ten more failures escalate again; by now the
	// account also has 20 failures within the hour.
	b.clock.Advance(15 * time.Minute)
	var rules []string
	for range 10 {
		for _, e := range login(securitylog.FailedLogin{UserID: user, IP: "203.0.113.5"}).Escalations {
			var d map[string]any
			json.Unmarshal(e.Details, &d)
			rules = append(rules, d["rule"].(string))
		}
	}
	if strings.Join(rules, ",") != "account,account_ip" && strings.Join(rules, ",") != "account_ip,account" {
		t.Fatalf("second round escalations: %v", rules)
	}
	// ip_accounts: one IP failing against 10 accounts (by username) in 10
	// minutes.
	var got int
	for i := range 11 {
		got += len(login(securitylog.FailedLogin{Username: fmt.Sprintf("User%d", i), IP: "198.51.100.77"}).Escalations)
		if i == 8 && got != 0 {
			t.Fatal("escalated before 10 accounts")
		}
	}
	if got != 1 {
		t.Fatalf("ip_accounts: %d escalations", got)
	}
	// Usernames are case-insensitive account keys.
	s2 := newLog(t, b, securitylog.Config{BruteForce: securitylog.BruteForceConfig{Rules: []securitylog.BruteForceRule{{Name: "acct3", Scope: securitylog.ScopeAccount, Threshold: 3, Window: time.Hour}}}})
	n := 0
	for _, name := range []string{"Mallory", "mallory", "MALLORY"} {
		res, err := s2.RecordFailedLogin(ctx, b.db, securitylog.FailedLogin{IP: "192.0.2.10", Username: name})
		if err != nil {
			t.Fatal(err)
		}
		n += len(res.Escalations)
	}
	if n != 1 {
		t.Fatalf("case-insensitive usernames: %d escalations", n)
	}
	// Disabled detection records no escalation.
	off := newLog(t, b, securitylog.Config{BruteForce: securitylog.BruteForceConfig{Disabled: true}})
	for range 30 {
		res, err := off.RecordFailedLogin(ctx, b.db, securitylog.FailedLogin{UserID: user, IP: "203.0.113.5"})
		if err != nil || len(res.Escalations) != 0 {
			t.Fatalf("disabled: %v %v", res.Escalations, err)
		}
	}
}

// TestBruteForceConcurrentLogins runs many failed logins for one account
// and IP at once, each in its own transaction: every rule escalates exactly
// once, no transaction fails, and nothing deadlocks.
func TestBruteForceConcurrentLogins(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	s := newLog(t, b, securitylog.Config{BruteForce: securitylog.BruteForceConfig{Rules: []securitylog.BruteForceRule{
		{Name: "account_ip", Scope: securitylog.ScopeAccountIP, Threshold: 5, Window: time.Hour},
		{Name: "account", Scope: securitylog.ScopeAccount, Threshold: 8, Window: time.Hour},
		{Name: "ip", Scope: securitylog.ScopeIP, Threshold: 12, Window: time.Hour},
		{Name: "ip_accounts", Scope: securitylog.ScopeIPAccounts, Threshold: 3, Window: time.Hour},
	}}})
	ctx := ctxT(t)
	user := uuid.New()
	const workers, perWorker = 12, 4
	var wg sync.WaitGroup
	errs := make(chan error, workers*perWorker)
	escalations := make(chan securitylog.Event, workers*perWorker*4)
	start := make(chan struct{})
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			for i := range perWorker {
				f := securitylog.FailedLogin{UserID: user, IP: "192.0.2.50"}
				if (w+i)%4 == 0 {
					f = securitylog.FailedLogin{Username: fmt.Sprintf("other%d", (w+i)%5), IP: "192.0.2.50"}
				}
				tx, err := b.db.BeginTx(ctx, nil)
				if err != nil {
					errs <- err
					return
				}
				res, err := s.RecordFailedLogin(ctx, tx, f)
				if err != nil {
					_ = tx.Rollback()
					errs <- err
					return
				}
				if err := tx.Commit(); err != nil {
					errs <- err
					return
				}
				for _, e := range res.Escalations {
					escalations <- e
				}
			}
		}()
	}
	close(start)
	wg.Wait()
	close(errs)
	close(escalations)
	for err := range errs {
		t.Fatalf("a caller's transaction failed: %v", err)
	}
	perRule := map[string]int{}
	for e := range escalations {
		var d map[string]any
		json.Unmarshal(e.Details, &d)
		perRule[d["rule"].(string)]++
	}
	for _, rule := range []string{"account_ip", "account", "ip", "ip_accounts"} {
		if perRule[rule] != 1 {
			t.Errorf("rule %s escalated %d times, want exactly 1 (all: %v)", rule, perRule[rule], perRule)
		}
	}
	if n := b.countRows(t, "security_event", "event_type = 'SUSPICIOUS_ACTIVITY'"); n != 4 {
		t.Errorf("%d escalations stored, want 4", n)
	}
	if n := b.countRows(t, "security_event", "event_type = 'FAILED_LOGIN'"); n != workers*perWorker {
		t.Errorf("%d failed logins stored, want %d", n, workers*perWorker)
	}
}
