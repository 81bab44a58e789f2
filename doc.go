// Package outbox is a transactional outbox, an in-process event bus and
// webhook delivery for Go services on PostgreSQL.
//
// A handle made by [New] on your *sql.DB owns the tables of one PostgreSQL
// schema. Call [Outbox.Migrate] at start-up, [Outbox.Subscribe] to route
// topics, [Outbox.Enqueue] inside your business transactions, and run a
// [Dispatcher] to deliver. The guides live in the repository's docs
// directory; docs/README.md is the index.
//
// # Enqueue inside your transaction
//
// [Outbox.Enqueue] writes an event through the transaction you pass (any
// [Querier]: *sql.Tx, *sqlx.Tx, *sql.DB, ...), in one statement that also
// fans it out to every active subscription whose pattern matches. The event
// exists if and only if the transaction commits: roll back and no trace of it
// remains. [Outbox.EnqueueBatch] writes many events in one round trip with
// the same guarantee. Per-call settings are an [EnqueueOptions] (nil for the
// defaults): a delay or run-at time, max retries, metadata, an ordering key
// and an idempotency key. Every input is validated before any SQL is sent,
// so a refused event leaves the transaction usable; data is never changed
// silently (a string that is not valid UTF-8 is [ErrInvalidPayload]).
//
// # Subscriptions
//
// A [Subscription] routes topics matching its TopicPattern (AMQP-style:
// * is one segment, # zero or more; see [MatchTopic]) either to a Go handler,
// named by its CallbackMethod, or to a webhook URL. Each subscription has its
// own queue rows, retries and dead letters, and its own
// [subconfig.Config]. Manage them with [Outbox.GetSubscription],
// [Outbox.ListSubscriptions], [Outbox.PauseSubscription],
// [Outbox.ResumeSubscription], [Outbox.UpdateSubscriptionConfig] and
// [Outbox.DeleteSubscription].
//
// # Dispatcher
//
// A [Dispatcher] made by [Outbox.NewDispatcher] claims due rows with
// FOR UPDATE SKIP LOCKED, runs the handlers registered with
// [Dispatcher.Handle] on a bounded pool, and writes outcomes in batches.
// Delivery is at least once: a handler may run again for the same event
// after a crash, so handlers must be idempotent, deduplicating on the event
// id of the [Delivery], which every attempt and every subscription sees.
// [Dispatcher.HandleTx] gives exactly-once effects within this database: the
// handler's writes and the row's completion commit in one transaction.
// [Typed] and [TypedTx] decode the payload into a Go type first.
//
// Leases with a heartbeat return the rows of a crashed dispatcher to the
// queue; LISTEN/NOTIFY wakes dispatchers as events commit, and polling
// guarantees progress without it. Any number of dispatchers, in any number
// of processes, drain one queue. [Dispatcher.Run] returns once its context
// ends, after the handlers in flight have finished (for up to
// [DispatcherConfig].ShutdownTimeout) and every outcome is written. See
// docs/reliability.md for each guarantee and the tests behind it, and
// docs/operations.md for configuration, PgBouncer and pool sizing.
//
// # Retries and dead letters
//
// A handler error schedules a retry with exponential backoff and jitter
// ([DispatcherConfig], or per subscription); once a row's retries are spent
// it becomes FAILED, a dead letter kept with its failure reason. Wrap an
// error with [Permanent] to fail the row at once, or with [RetryAfter] to
// choose the delay. A handler panic is recovered as a [PanicError]. List
// dead letters with [Outbox.ListFailed], re-drive them with
// [Outbox.RetryFailed] or [Outbox.RetrySubscriptionFailed], and drop them
// with [Outbox.DiscardFailed] or [Outbox.DiscardSubscriptionFailed].
//
// # Ordering and idempotency
//
// Events enqueued with the same [EnqueueOptions.OrderingKey] reach each
// subscription one at a time, in the order they were enqueued; a FAILED row
// blocks its key until it is retried or discarded (unless the subscription
// sets skip_failed), and other keys flow in parallel. An
// [EnqueueOptions.IdempotencyKey] makes a repeated enqueue insert nothing:
// [EnqueueResult].Duplicate reports it, with the first event's id. An empty
// key means no key. docs/guide.md details both.
//
// # Webhooks
//
// A subscription with a WebhookURL receives every event as a signed HTTP
// POST (Standard Webhooks: a JSON envelope, the webhook-id, webhook-timestamp
// and webhook-signature headers), from dispatchers whose
// [DispatcherConfig].Webhooks is set ([WebhookOptions]). An SSRF guard refuses
// private and internal addresses ([ErrWebhookBlocked]); failures retry on the
// schedule of [WebhookRetrySchedule], Retry-After is honoured, and an endpoint
// that fails for days is paused with a [WebhookEndpointDisabledTopic] event.
// Receivers verify deliveries with
// [github.com/outboxkit/outbox/webhook.Verifier], a package that needs no
// database. See docs/webhooks.md.
//
// # Related packages
//
// Packages of this module built on a handle, or used beside it:
// [github.com/outboxkit/outbox/integrationlog] records calls to and from
// third parties (explicitly, or around an http.Client or http.Handler) in
// the integration_log table; [github.com/outboxkit/outbox/securitylog]
// records security events with brute-force detection and a review
// workflow; [github.com/outboxkit/outbox/redact] holds the redaction rules
// both logs and the webhook attempt records apply ([Config].Redaction);
// [github.com/outboxkit/outbox/keys] provides the keys that seal
// subscription secrets ([Config].Keys); and
// [github.com/outboxkit/outbox/webhook] verifies deliveries on the
// receiving side. See docs/recorders.md for the logs.
//
// # Schema and migrations
//
// [Outbox.Migrate] applies the embedded migrations (package
// [github.com/outboxkit/outbox/schema]) to [Config].Schema, "outbox" by
// default, with golang-migrate and a history table of its own
// ([MigrationsTable]). It is idempotent and safe when several processes call
// it at once. Stop processes of an older version before migrating across a
// version that says so (docs/migrating-from-0.1.md); docs/schema.md describes
// the tables.
//
// The schema records which releases may run against it (the version fence,
// docs/schema.md). Migrate, [Dispatcher.Run] and Enqueue check it at start
// and while they run; a process the schema does not admit (older than a
// later release's migration allows, or newer than the migrations applied)
// stops with a [*SchemaFenceError] ([ErrSchemaFenced]) instead of working
// half-way. [Outbox.MigrateTo] moves the schema back for a rollback
// (docs/migrating-from-0.2.md), and [Outbox.Reredact] applies redaction
// rules changed to mask more to the rows the logs already hold.
//
// # Testing
//
// Test against a real PostgreSQL: give each test a schema of its own
// ([Config].Schema), Migrate it, and drop it afterwards. [TestConfig], set
// as [Config].Test, injects a clock so that tests move time forward instead
// of sleeping. To wait for a delivery, have the handler signal a channel and
// wait on it with a deadline; cancelling the context of [Dispatcher.Run]
// then returns once every outcome is written, so the queue can be inspected
// ([Outbox.Stats], [Outbox.ListFailed]). The examples of this package work
// that way.
package outbox
