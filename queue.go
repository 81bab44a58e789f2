package outbox

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"
	"github.com/lib/pq"

	"github.com/outboxkit/outbox/internal/store"
	"github.com/outboxkit/outbox/subconfig"
)

// Status is the delivery state of a queue row.
type Status string

// The states of a queue row (the event_status enum).
const (
	StatusPending    Status = "PENDING"    // waiting to be claimed, at or after next_retry_at
	StatusProcessing Status = "PROCESSING" // claimed by a dispatcher, under its lease
	StatusCompleted  Status = "COMPLETED"  // delivered
	StatusFailed     Status = "FAILED"     // dead-lettered: retries spent or failed permanently
)

// EnqueueResult describes an enqueued event.
type EnqueueResult struct {
	// EventID identifies the event (system_event.id). Handlers and webhook
	// receivers see the same id on every attempt.
	EventID uuid.UUID
	// Deliveries is the number of subscriptions the event fanned out to
	// (0 for a duplicate).
	Deliveries int
	// Duplicate reports that an event with the same idempotency key already
	// existed: nothing was inserted and EventID is that event's id.
	Duplicate bool
}

// EnqueueOptions tunes one Enqueue call, or one event of EnqueueBatch. A nil
// *EnqueueOptions, like the zero value, means the defaults: claimable at
// once, the subscriptions' max_retries, no metadata, no keys.
type EnqueueOptions struct {
	// Delay makes the event's rows claimable only once it has passed.
	// It must not be negative; set at most one of Delay and RunAt.
	Delay time.Duration
	// RunAt makes the event's rows claimable only from this time on.
	RunAt time.Time
	// MaxRetries, when non-nil, overrides the subscriptions' max_retries for
	// this event: each of its rows gets at most *MaxRetries+1 attempts
	// (0 to 1000).
	MaxRetries *int
	// Metadata is string metadata (trace context, correlation ids) stored
	// with the event; handlers read it from Delivery.Metadata.
	Metadata map[string]string
	// OrderingKey, when set, delivers the event, per subscription, strictly
	// after every earlier event with the same key: a row is not claimed
	// while an earlier row of its key is PENDING (even waiting for a
	// retry), PROCESSING, or FAILED (unless the subscription sets
	// skip_failed). Rows without a key and rows of other keys flow in
	// parallel. Earlier means enqueued earlier: for events enqueued by
	// concurrent transactions, the order in which their Enqueue statements
	// ran (docs/guide.md, "Ordering keys"). At most 255 characters.
	OrderingKey string
	// IdempotencyKey, when set, makes the enqueue idempotent: if an event
	// with the same key exists (for as long as events are retained),
	// nothing is inserted and the result reports Duplicate with the first
	// event's id. Two transactions racing with the same key both succeed;
	// one event is created. At most 255 characters.
	IdempotencyKey string
}

// maxKeyLength is the longest ordering or idempotency key, in characters.
const maxKeyLength = 255

func checkKey(field, key string) error {
	switch {
	case utf8.RuneCountInString(key) > maxKeyLength:
		return invalid(ErrInvalidConfig, field, "must be at most %d characters", maxKeyLength)
	case !utf8.ValidString(key):
		return invalid(ErrInvalidConfig, field, "is not valid UTF-8")
	case strings.IndexByte(key, 0) >= 0:
		return invalid(ErrInvalidConfig, field, "holds a NUL byte")
	}
	return nil
}

// Event is one event of an EnqueueBatch call.
type Event struct {
	Topic   string
	Payload any
	Options *EnqueueOptions // nil for the defaults
}

// Enqueue records an event on topic with payload through tx, the caller's
// transaction: the event exists if and only if tx commits. It inserts the
// event and one queue row per active subscription whose pattern matches, in
// a single statement. payload is marshalled to JSON ([]byte and
// json.RawMessage are taken as JSON text). Data is never changed silently:
// a string that is not valid UTF-8, in the payload or in EnqueueOptions.Metadata's keys
// and values, is an ErrInvalidPayload rather than stored with U+FFFD in its
// place (a real U+FFFD is stored as it is). Strings produced inside a
// MarshalJSON method are that method's own: only its output is checked.
//
// Every input is validated before any SQL is sent, so an ErrInvalidTopic,
// ErrInvalidPayload, ErrPayloadTooLarge or ErrInvalidConfig leaves tx usable.
// A handle whose schema does not admit this release (the version fence,
// docs/schema.md) returns a *SchemaFenceError (ErrSchemaFenced) and
// writes nothing: the first Enqueue of a handle reads the fence through tx
// (unless Migrate or a dispatcher of the handle just did), and a later one
// again once that reading is 30 s old.
func (o *Outbox) Enqueue(ctx context.Context, tx Querier, topic string, payload any, opts *EnqueueOptions) (EnqueueResult, error) {
	ev, err := o.prepareEvent(topic, payload, opts)
	if err != nil {
		return EnqueueResult{}, err
	}
	if err := o.allow(ctx, tx, "enqueue "+topic); err != nil {
		return EnqueueResult{}, err
	}
	stmt := o.st.Queue.EnqueueOne
	if o.takeNotify() {
		stmt = o.st.Queue.EnqueueOneNotify
	}
	var n, inserted int
	var notified sql.NullString
	rows, err := o.st.Stmt(tx, stmt).Query(ctx, ev.id, ev.topic, ev.payload, ev.metadata, o.nowArg(), ev.maxRetries,
		ev.runAt, ev.delayUS, ev.orderKey, ev.idemKey)
	if err == nil {
		err = store.ScanOne(rows, &n, &inserted, &notified)
	}
	if err != nil {
		return EnqueueResult{}, fmt.Errorf("outbox: enqueue %s: %w", topic, err)
	}
	if inserted == 0 {
		ids, err := o.eventsByKey(ctx, tx, []string{*ev.idemKey})
		if err != nil {
			return EnqueueResult{}, err
		}
		return EnqueueResult{EventID: ids[*ev.idemKey], Duplicate: true}, nil
	}
	return EnqueueResult{EventID: ev.id, Deliveries: n}, nil
}

// eventsByKey returns the ids of the events holding the given idempotency
// keys, read through q so that the caller's own uncommitted events count.
func (o *Outbox) eventsByKey(ctx context.Context, q Querier, keys []string) (map[string]uuid.UUID, error) {
	rows, err := q.QueryContext(ctx, o.st.Queue.EventsByIdempotencyKey, pq.Array(keys))
	if err != nil {
		return nil, fmt.Errorf("outbox: find duplicate event: %w", err)
	}
	defer rows.Close()
	out := make(map[string]uuid.UUID, len(keys))
	for rows.Next() {
		var k string
		var id uuid.UUID
		if err := rows.Scan(&k, &id); err != nil {
			return nil, fmt.Errorf("outbox: find duplicate event: %w", err)
		}
		out[k] = id
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("outbox: find duplicate event: %w", err)
	}
	for _, k := range keys {
		if _, ok := out[k]; !ok {
			// The conflicting event is not visible: the caller's
			// transaction runs at REPEATABLE READ or above.
			return nil, fmt.Errorf("outbox: event with idempotency key %q exists but is not visible to this transaction", k)
		}
	}
	return out, nil
}

// EnqueueBatch enqueues many events through tx in one statement and one
// round trip, with Enqueue's guarantees. Results are in the order of events.
// If any event is invalid, nothing is sent and the error names its index.
func (o *Outbox) EnqueueBatch(ctx context.Context, tx Querier, events []Event) ([]EnqueueResult, error) {
	if len(events) == 0 {
		return nil, nil
	}
	var (
		n          = len(events)
		cols       = newBatchColumns(n)
		results    = make([]EnqueueResult, n)
		index      = make(map[uuid.UUID]int, n) // event id -> index in events
		firstOfKey = map[string]int{}           // idempotency key -> index of its first event
		keyAt      = map[int]string{}           // index -> its idempotency key
		dupOf      = map[int]int{}              // index -> index of the earlier event with its key
	)
	for i, e := range events {
		ev, err := o.prepareEvent(e.Topic, e.Payload, e.Options)
		if err != nil {
			return nil, fmt.Errorf("event %d: %w", i, err)
		}
		if ev.idemKey != nil {
			if first, seen := firstOfKey[*ev.idemKey]; seen {
				// The same key twice in one batch: the second is a
				// duplicate of the first, and is not sent.
				dupOf[i] = first
				continue
			}
			firstOfKey[*ev.idemKey] = i
			keyAt[i] = *ev.idemKey
		}
		results[i].EventID = ev.id
		index[ev.id] = i
		cols.add(ev)
	}
	if err := o.allow(ctx, tx, "enqueue batch"); err != nil {
		return nil, err
	}
	existing, err := o.insertBatch(ctx, tx, cols, func(id uuid.UUID, inserted bool, deliveries int) string {
		i := index[id]
		results[i].Deliveries = deliveries
		if inserted {
			return ""
		}
		results[i].Duplicate = true
		return keyAt[i]
	})
	if err != nil {
		return nil, err
	}
	if len(existing) > 0 {
		found, err := o.eventsByKey(ctx, tx, existing)
		if err != nil {
			return nil, err
		}
		for k, id := range found {
			results[firstOfKey[k]].EventID = id
		}
	}
	for i, first := range dupOf {
		results[i] = EnqueueResult{EventID: results[first].EventID, Duplicate: true}
	}
	return results, nil
}

// insertBatch runs the batch statement over cols and reports each returned
// event to row, which returns the idempotency key of an event that was
// already stored ("" otherwise); insertBatch returns those keys.
func (o *Outbox) insertBatch(ctx context.Context, tx Querier, cols *batchColumns,
	row func(id uuid.UUID, inserted bool, deliveries int) string) (existing []string, err error) {
	stmt := o.st.Queue.EnqueueBatch
	if o.takeNotify() {
		stmt = o.st.Queue.EnqueueBatchNotify
	}
	rows, err := o.st.Stmt(tx, stmt).Query(ctx, cols.args(o.nowArg())...)
	if err != nil {
		return nil, fmt.Errorf("outbox: enqueue batch: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var id uuid.UUID
		var inserted bool
		var deliveries int
		var notified sql.NullString
		if err := rows.Scan(&id, &inserted, &deliveries, &notified); err != nil {
			return nil, fmt.Errorf("outbox: enqueue batch: %w", err)
		}
		if k := row(id, inserted, deliveries); k != "" {
			existing = append(existing, k)
		}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("outbox: enqueue batch: %w", err)
	}
	return existing, nil
}

// batchColumns are the column arrays of one EnqueueBatch statement.
type batchColumns struct {
	ids, topics                          []string
	payloads                             []byte // one JSON array
	metadata, runAt, orderKeys, idemKeys []sql.NullString
	maxRetries, delays                   []sql.NullInt64
}

func newBatchColumns(n int) *batchColumns {
	return &batchColumns{
		ids: make([]string, 0, n), topics: make([]string, 0, n), payloads: make([]byte, 0, 256*n),
		metadata: make([]sql.NullString, 0, n), runAt: make([]sql.NullString, 0, n),
		orderKeys: make([]sql.NullString, 0, n), idemKeys: make([]sql.NullString, 0, n),
		maxRetries: make([]sql.NullInt64, 0, n), delays: make([]sql.NullInt64, 0, n),
	}
}

// add appends one prepared event.
func (c *batchColumns) add(ev preparedEvent) {
	nullString := func(p *string) sql.NullString { return sql.NullString{String: deref(p), Valid: p != nil} }
	c.ids, c.topics = append(c.ids, ev.id.String()), append(c.topics, ev.topic)
	if len(c.payloads) == 0 {
		c.payloads = append(c.payloads, '[')
	} else {
		c.payloads = append(c.payloads, ',')
	}
	c.payloads = append(c.payloads, ev.payload...)
	c.metadata = append(c.metadata, sql.NullString{String: string(ev.metadata), Valid: ev.metadata != nil})
	c.orderKeys, c.idemKeys = append(c.orderKeys, nullString(ev.orderKey)), append(c.idemKeys, nullString(ev.idemKey))
	var mr, delay sql.NullInt64
	var at sql.NullString
	if ev.maxRetries != nil {
		mr = sql.NullInt64{Int64: int64(*ev.maxRetries), Valid: true}
	}
	if t, ok := ev.runAt.(time.Time); ok {
		at = sql.NullString{String: t.UTC().Format(time.RFC3339Nano), Valid: true}
	}
	if d, ok := ev.delayUS.(int64); ok {
		delay = sql.NullInt64{Int64: d, Valid: true}
	}
	c.maxRetries, c.runAt, c.delays = append(c.maxRetries, mr), append(c.runAt, at), append(c.delays, delay)
}

// args are the statement's parameters, in order.
func (c *batchColumns) args(now any) []any {
	return []any{pq.Array(c.ids), pq.Array(c.topics), string(append(c.payloads, ']')),
		pq.Array(c.metadata), now, pq.Array(c.maxRetries), pq.Array(c.runAt), pq.Array(c.delays),
		pq.Array(c.orderKeys), pq.Array(c.idemKeys)}
}

func deref(p *string) string {
	if p == nil {
		return ""
	}
	return *p
}

// preparedEvent is an event validated and encoded for SQL.
type preparedEvent struct {
	id         uuid.UUID
	topic      string
	payload    []byte
	metadata   []byte // nil for none
	maxRetries *int
	runAt      any // time.Time or nil
	delayUS    any // int64 or nil
	orderKey   *string
	idemKey    *string
}

func (o *Outbox) prepareEvent(topic string, payload any, opts *EnqueueOptions) (preparedEvent, error) {
	if why := checkTopic(topic, false); why != "" {
		return preparedEvent{}, &ValidationError{Field: "topic", Reason: why, Err: ErrInvalidTopic}
	}
	var eo EnqueueOptions
	if opts != nil {
		eo = *opts
	}
	if err := eo.validate(); err != nil {
		return preparedEvent{}, err
	}
	body, err := encodeJSON(payload, "payload", o.cfg.MaxPayloadBytes)
	if err != nil {
		return preparedEvent{}, err
	}
	id, err := uuid.NewV7()
	if err != nil {
		return preparedEvent{}, fmt.Errorf("outbox: event id: %w", err)
	}
	ev := preparedEvent{id: id, topic: topic, payload: body, maxRetries: eo.MaxRetries,
		orderKey: nonEmpty(eo.OrderingKey), idemKey: nonEmpty(eo.IdempotencyKey)}
	if eo.Metadata != nil {
		if ev.metadata, err = encodeJSON(eo.Metadata, "metadata", o.cfg.MaxPayloadBytes); err != nil {
			return preparedEvent{}, err
		}
	}
	switch {
	case !eo.RunAt.IsZero():
		ev.runAt = eo.RunAt.UTC()
	case eo.Delay > 0 && o.cfg.Test.Clock != nil:
		ev.runAt = o.cfg.Test.Clock().Add(eo.Delay).UTC()
	case eo.Delay > 0:
		ev.delayUS = eo.Delay.Microseconds()
	}
	return ev, nil
}

// validate checks the options before any SQL is sent.
func (eo *EnqueueOptions) validate() error {
	switch {
	case eo.Delay < 0:
		return invalid(ErrInvalidConfig, "delay", "must not be negative, got %s", eo.Delay)
	case eo.Delay != 0 && !eo.RunAt.IsZero():
		return invalid(ErrInvalidConfig, "delay", "set Delay or RunAt, not both")
	case eo.MaxRetries != nil && (*eo.MaxRetries < 0 || *eo.MaxRetries > subconfig.MaxRetriesLimit):
		return invalid(ErrInvalidConfig, "max_retries", "must be between 0 and %d, got %d", subconfig.MaxRetriesLimit, *eo.MaxRetries)
	}
	if err := checkKey("ordering_key", eo.OrderingKey); err != nil {
		return err
	}
	return checkKey("idempotency_key", eo.IdempotencyKey)
}

func nonEmpty(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

// takeNotify reports whether this Enqueue should send a NOTIFY: at most one
// per NotifyCooldown per handle (DESIGN §4).
func (o *Outbox) takeNotify() bool {
	if o.cfg.NotifyCooldown < 0 {
		return false
	}
	now := time.Now().UnixNano()
	last := o.lastNotify.Load()
	if now-last < int64(o.cfg.NotifyCooldown) {
		return false
	}
	return o.lastNotify.CompareAndSwap(last, now)
}

// Stats is a snapshot of the queue.
type Stats struct {
	// ByStatus counts rows per status.
	ByStatus map[Status]int64
	// BySubscription counts rows per subscriber name and status; rows of
	// deleted subscriptions are under "".
	BySubscription map[string]map[Status]int64
	// OldestClaimableAge is how long the oldest claimable PENDING row has
	// been due (0 when none is).
	OldestClaimableAge time.Duration
	// BlockedKeys counts the ordering keys (per subscription) whose pending
	// rows wait behind a FAILED row; retry or discard that row to unblock.
	BlockedKeys int64
	// OldestBlockedAge is the age of the oldest row waiting behind a FAILED
	// row of its key (0 when none is).
	OldestBlockedAge time.Duration
}

// Stats counts the queue's rows. It reads the whole table: call it from
// dashboards and alerts, not per event.
func (o *Outbox) Stats(ctx context.Context) (Stats, error) {
	st := Stats{ByStatus: map[Status]int64{}, BySubscription: map[string]map[Status]int64{}}
	rows, err := o.db.QueryContext(ctx, o.st.Queue.StatsByStatus)
	if err != nil {
		return Stats{}, fmt.Errorf("outbox: stats: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var name string
		var status Status
		var n int64
		if err := rows.Scan(&name, &status, &n); err != nil {
			return Stats{}, fmt.Errorf("outbox: stats: %w", err)
		}
		st.ByStatus[status] += n
		if st.BySubscription[name] == nil {
			st.BySubscription[name] = map[Status]int64{}
		}
		st.BySubscription[name][status] = n
	}
	if err := rows.Err(); err != nil {
		return Stats{}, fmt.Errorf("outbox: stats: %w", err)
	}
	var oldest sql.NullTime
	if err := o.db.QueryRowContext(ctx, o.st.Queue.OldestClaimable, o.nowArg()).Scan(&oldest); err != nil {
		return Stats{}, fmt.Errorf("outbox: stats: %w", err)
	}
	if oldest.Valid {
		st.OldestClaimableAge = max(o.now().Sub(oldest.Time), 0)
	}
	var blockedSince sql.NullTime
	if err := o.db.QueryRowContext(ctx, o.st.Queue.BlockedKeys).Scan(&st.BlockedKeys, &blockedSince); err != nil {
		return Stats{}, fmt.Errorf("outbox: stats: %w", err)
	}
	if blockedSince.Valid {
		st.OldestBlockedAge = max(o.now().Sub(blockedSince.Time), 0)
	}
	return st, nil
}

// FailedRow is a dead-lettered queue row.
type FailedRow struct {
	ID            uuid.UUID
	EventID       uuid.UUID
	Subscription  string // "" when the subscription was deleted
	Topic         string
	Payload       []byte
	RetryCount    int
	MaxRetries    int
	FailureReason string
	CreatedAt     time.Time
	ProcessedAt   time.Time
}

// FailedFilter selects FAILED rows for ListFailed. The zero value lists the
// newest 100 of every subscription.
type FailedFilter struct {
	Subscription string    // only this subscriber's rows, if set
	After        uuid.UUID // continue after this row id (keyset pagination)
	Limit        int       // at most this many rows (default 100, at most 1000)
}

// ListFailed lists FAILED rows, newest first, with their failure reasons.
func (o *Outbox) ListFailed(ctx context.Context, f FailedFilter) ([]FailedRow, error) {
	limit := f.Limit
	if limit <= 0 {
		limit = 100
	}
	limit = min(limit, 1000)
	var after any
	if f.After != uuid.Nil {
		after = f.After
	}
	rows, err := o.db.QueryContext(ctx, o.st.Queue.ListFailed, f.Subscription, after, limit)
	if err != nil {
		return nil, fmt.Errorf("outbox: list failed: %w", err)
	}
	defer rows.Close()
	var out []FailedRow
	for rows.Next() {
		var r FailedRow
		var payload string
		var processed sql.NullTime
		if err := rows.Scan(&r.ID, &r.EventID, &r.Subscription, &r.Topic, &payload, &r.RetryCount, &r.MaxRetries,
			&r.FailureReason, &r.CreatedAt, &processed); err != nil {
			return nil, fmt.Errorf("outbox: list failed: %w", err)
		}
		r.Payload, r.ProcessedAt = []byte(payload), processed.Time
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("outbox: list failed: %w", err)
	}
	return out, nil
}

// RetryFailed puts the given FAILED rows back to PENDING with their retry
// count reset, due at once. Rows that are not FAILED, or whose subscription
// was deleted, are left alone. It returns how many rows it re-queued.
func (o *Outbox) RetryFailed(ctx context.Context, ids ...uuid.UUID) (int64, error) {
	if len(ids) == 0 {
		return 0, nil
	}
	return o.execCount(ctx, "retry failed", o.st.Queue.RetryFailed, o.nowArg(), pq.Array(uuidStrings(ids)), "")
}

// RetrySubscriptionFailed re-queues every FAILED row of a subscription (bulk
// re-drive of its dead letters).
func (o *Outbox) RetrySubscriptionFailed(ctx context.Context, name string) (int64, error) {
	if name == "" {
		return 0, invalid(ErrInvalidSubscription, "subscriber_name", "is empty")
	}
	return o.execCount(ctx, "retry subscription", o.st.Queue.RetryFailed, o.nowArg(), nil, name)
}

// DiscardFailed deletes the given FAILED rows; other rows are left alone.
func (o *Outbox) DiscardFailed(ctx context.Context, ids ...uuid.UUID) (int64, error) {
	if len(ids) == 0 {
		return 0, nil
	}
	return o.execCount(ctx, "discard failed", o.st.Queue.DiscardFailed, pq.Array(uuidStrings(ids)), "")
}

// DiscardSubscriptionFailed deletes every FAILED row of a subscription.
func (o *Outbox) DiscardSubscriptionFailed(ctx context.Context, name string) (int64, error) {
	if name == "" {
		return 0, invalid(ErrInvalidSubscription, "subscriber_name", "is empty")
	}
	return o.execCount(ctx, "discard failed", o.st.Queue.DiscardFailed, nil, name)
}

func (o *Outbox) execCount(ctx context.Context, op, stmt string, args ...any) (int64, error) {
	res, err := o.db.ExecContext(ctx, stmt, args...)
	if err != nil {
		return 0, fmt.Errorf("outbox: %s: %w", op, err)
	}
	n, err := store.RowsAffected(res, nil)
	if err != nil {
		return 0, fmt.Errorf("outbox: %s: %w", op, err)
	}
	return int64(n), nil
}

func uuidStrings(ids []uuid.UUID) []string {
	out := make([]string, len(ids))
	for i, id := range ids {
		out[i] = id.String()
	}
	return out
}
