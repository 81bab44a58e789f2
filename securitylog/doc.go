// Package securitylog records security events (failed logins, permission
// denials, suspicious activity) in the security_event table of an outbox
// handle's schema, through the caller's transaction; it detects brute-force
// logins and serves a review workflow.
//
// A [Log] is made from an outbox handle by [New] (which sends no SQL) and
// shares the handle's database, schema, clock, logger and payload limit.
// The table is part of the outbox schema:
// [github.com/outboxkit/outbox.Outbox.Migrate] creates it.
//
//	sl, err := securitylog.New(ob, securitylog.Config{Publish: true})
//	res, err := sl.RecordFailedLogin(ctx, tx, securitylog.FailedLogin{
//		UserID: user.ID, Username: form.Username, IP: ips.ClientIP(r), UserAgent: r.UserAgent(),
//		Reason: "bad_password", Method: "password",
//	})
//
// # Recording in your transaction
//
// [Log.RecordFailedLogin], [Log.RecordPermissionDenied],
// [Log.RecordSuspiciousActivity] and the generic [Log.Record] write through
// any [github.com/outboxkit/outbox.Querier] (*sql.Tx, *sqlx.Tx, *sql.DB,
// ...): the event exists if and only if the transaction commits. Every
// input is validated before any SQL is sent, so a rejected event (an
// [ErrInvalidEvent] *outbox.ValidationError naming the column) inserts
// nothing and leaves the transaction usable.
//
// Severities default per type (FAILED_LOGIN MEDIUM, the others HIGH), and
// HIGH and CRITICAL events require review unless the caller says otherwise.
//
// # Input hygiene
//
// Every event needs a client IP address, stored in one canonical form
// ([ParseIP]: IPv4-mapped IPv6 as IPv4, IPv6 in RFC 5952 form, no zone);
// the unspecified address is refused. [ClientIPResolver] finds the client
// behind trusted reverse proxies and never trusts a forwarding header from
// anyone else. Client-controlled text is sanitised on purpose, never a
// reason to lose the event: invalid UTF-8 becomes U+FFFD, line breaks and
// tabs become spaces (no log injection), other control characters are
// removed, and the user agent is cut at 500 characters. Details and user
// agents are redacted ([github.com/outboxkit/outbox/redact]) before they
// are stored or published: passwords, tokens and card numbers never reach
// the table.
//
// # Brute-force detection
//
// Each failed login is counted, in the failed login's transaction, against
// the rules of [Config].BruteForce ([DefaultBruteForceRules] unless
// replaced). When a rule's threshold is reached within its window, one
// HIGH SUSPICIOUS_ACTIVITY event requiring review is recorded, at most once
// per rule and key per window, and returned in
// [FailedLoginResult].Escalations. Counting is exact under concurrent
// logins in READ COMMITTED: each call takes transaction-scoped advisory
// locks on its account and IP, so that failures of one account or IP queue
// until the previous transaction ends.
//
// # Review
//
// [Log.AwaitingReview] lists the events that require review and have none;
// [Log.List] lists all events with the same [Filter], newest first, with
// keyset pagination that stays stable while events arrive.
// [Log.MarkReviewed] sets reviewed_by and reviewed_at together, once: a
// second review, even a concurrent one, returns an [*AlreadyReviewedError]
// ([ErrAlreadyReviewed]) carrying the first and changes nothing.
//
// # Publication
//
// With [Config].Publish, every recorded event, escalations included, is
// also enqueued on the outbox bus in the same transaction, on topic
// [TopicPrefix] + the lower-cased type (security.failed_login, ...), so an
// alerting handler or webhook subscribed to "security.#" receives it.
//
// # Errors
//
// Validation errors are *outbox.ValidationError values wrapping
// [ErrInvalidEvent], or the outbox package's classes where one fits:
// outbox.ErrInvalidPayload and outbox.ErrPayloadTooLarge for details,
// outbox.ErrInvalidFilter for a [Filter], outbox.ErrInvalidConfig for a
// [Config] or [ClientIPConfig]. An unknown event id is outbox.ErrNotFound.
package securitylog
