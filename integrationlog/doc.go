// Package integrationlog records calls to and from third parties (API
// calls made, webhooks received, data synchronisations) in the
// integration_log table of an outbox handle's schema, redacted, and serves
// them back by filter and as per-integration statistics.
//
// A [Log] is made from an outbox handle by [New] (which sends no SQL) and
// shares the handle's database, schema, clock, logger and payload limit.
// The table is part of the outbox schema:
// [github.com/outboxkit/outbox.Outbox.Migrate] creates it. The webhook
// deliveries of the outbox's dispatcher are recorded in the same table,
// as API_CALL_MADE records named after their subscription.
//
//	il, err := integrationlog.New(ob, integrationlog.Config{})
//	stripe := &http.Client{Transport: il.Transport("stripe", nil,
//		&integrationlog.HTTPOptions{ExternalID: integrationlog.ExternalIDFromJSON("id")})}
//	defer il.Close(shutdownCtx)
//
// # Recording in your transaction
//
// [Log.RecordAPICall], [Log.RecordWebhookReceived], [Log.RecordDataSync]
// and the generic [Log.Record] and [Log.RecordBatch] write through any
// [github.com/outboxkit/outbox.Querier] (*sql.Tx, *sqlx.Tx, *sql.DB, ...):
// the record exists if and only if the transaction commits. Every input is
// validated before any SQL is sent, so a rejected record (an
// [ErrInvalidRecord] *outbox.ValidationError naming the column) inserts
// nothing and leaves the transaction usable; a batch with one invalid
// record sends nothing and names its index. Data is sanitised on purpose
// rather than refused, so that a record of what a third party sent is never
// lost to a bad byte: invalid UTF-8 becomes U+FFFD, control characters are
// removed, error messages are kept on one line and cut at 2,000
// characters.
//
// # Recording HTTP calls
//
// [Log.Transport] wraps an http.RoundTripper and records every call of an
// http.Client as an API_CALL_MADE; [Log.Middleware] wraps an http.Handler
// and records every request it serves as a WEBHOOK_RECEIVED. Method, URL,
// headers and bodies of both sides are kept (bodies up to the body limit,
// captured while they stream: the caller and the next handler see them
// intact), with the status, the duration and the error. [HTTPOptions]
// chooses the headers kept, how the external id is found
// ([ExternalIDFromJSON]) and where the records are written.
//
// # What the HTTP recorders guarantee
//
// Recording never stalls a call: on the request path, Transport and
// Middleware only copy what they captured and hand it to a bounded
// in-memory buffer. A call never waits on the database, whatever the
// database does (down, slow, its pool exhausted, or never answering); under
// the default [DropWhenFull] it does not wait at all, under [BlockWhenFull]
// at most [Config].BlockTimeout for room. A failure to record never fails
// the call, nor reaches the sender of a webhook.
//
// A background writer redacts each record once, validates it, and writes
// batches in one INSERT per destination (the handle's pool, or an
// [HTTPOptions].DB). Each destination is written and retried on its own:
// one that fails or hangs holds back no other destination's records. A
// batch whose write fails is retried with backoff and written once, even
// when an attempt's outcome was unknown. A destination's records are given
// up once its writes have failed for [Config].MaxRetryTime, or at once when
// the database refuses them for good (bad data, a finished transaction).
//
// What can be lost, and only this: records still buffered when the process
// crashes or when Close's context ends; records dropped because the buffer
// was full, or made after Close; records rejected by validation; records
// given up. [Log.BufferStats] counts each kind, drops and failed writes
// are logged at Warn at most once every 10 seconds, and [Log.Flush] and
// [Log.Close] report the records they could not write with an error
// wrapping [ErrRecordsNotWritten].
//
// [Log.Flush] writes what was recorded before the call, at once, and
// returns when each record is stored, rejected or given up; the log goes on
// recording, so that a test or a dashboard can read back with [Log.List]
// what was just recorded. [Log.Close] writes what is still buffered and
// stops the writer: every application that uses Transport or Middleware
// must call it at shutdown, after its HTTP servers and clients have
// stopped, with a context that bounds the wait.
//
// # Redaction
//
// Request and response data, error messages and external ids are redacted
// before they are stored, whoever built the record: credentials, tokens,
// card numbers and sensitive keys never reach the table
// ([github.com/outboxkit/outbox/redact] has the rules). [Config].Redaction
// extends the built-in rules and sets the body limit. A body over the limit
// is stored cut, with body_truncated set.
//
// # Reading
//
// [Log.List] returns the records a [Filter] selects (integration,
// operation, success, external id, a time range), newest first, with keyset
// pagination that stays stable while records arrive. [Log.Stats]
// aggregates a [Window] per integration: calls, failures, success rate,
// median and 95th percentile duration.
//
// # Errors
//
// Validation errors are *outbox.ValidationError values wrapping
// [ErrInvalidRecord], or the outbox package's classes where one fits:
// outbox.ErrInvalidPayload and outbox.ErrPayloadTooLarge for request and
// response data that jsonb refuses or that is over the handle's
// MaxPayloadBytes, outbox.ErrInvalidFilter for a [Filter] or [Window],
// outbox.ErrInvalidConfig for a [Config].
package integrationlog
