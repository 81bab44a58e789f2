// Package outbox is a transactional outbox, an in-process event bus, webhook
// delivery, an integration-call log and a security-event log for Go services
// on PostgreSQL.
//
// # Enqueue inside your transaction
//
// Enqueue writes an event through the caller's transaction (any Querier:
// *sql.Tx, *sqlx.Tx, ...), in one statement that also fans the event out to
// every active subscription whose pattern matches. The event exists if and
// only if the transaction commits. EnqueueBatch does the same for many events
// in one round trip. Options set a delay or run-at time, max retries,
// metadata, an ordering key (per-key FIFO) and an idempotency key.
//
// # Subscriptions
//
// A Subscription routes topics (AMQP-style patterns: * is one segment, # zero
// or more) to a Go handler, named by its CallbackMethod, or to a webhook URL.
// Each subscription has its own queue rows, retries and dead letters.
//
// # Dispatcher
//
// A Dispatcher claims due rows with FOR UPDATE SKIP LOCKED, runs handlers on a
// bounded pool, and writes outcomes in batches. Errors retry with exponential
// backoff (Permanent fails at once, RetryAfter picks the delay) until a row's
// retries are spent and it becomes FAILED. Leases with a heartbeat return the
// rows of a crashed dispatcher to the queue; LISTEN/NOTIFY wakes dispatchers
// as events commit, with polling as the fallback. HandleTx gives
// exactly-once effects for handlers that write to the same database.
// Delivery is otherwise at least once: handlers must be idempotent, and can
// deduplicate on Delivery.EventID.
//
// # Recorders
//
// IntegrationLog records calls to and from third parties (with an
// http.RoundTripper and a middleware), redacted before storage. SecurityLog
// records failed logins, suspicious activity and permission denials, detects
// brute force, and supports a review workflow.
//
// # Schema
//
// Migrate applies the embedded migrations (package schema) to the configured
// PostgreSQL schema, "outbox" by default, with golang-migrate and its own
// history table.
package outbox
