// Package store holds every SQL statement outboxkit sends, one file per table.
//
// Statements are templates in which {s} stands for the quoted schema name;
// Render fills it in once, when a handle is built, so runtime SQL is always
// schema-qualified and never depends on search_path.
package store

import (
	"database/sql"
	"errors"
	"fmt"
	"hash/fnv"
	"reflect"
	"regexp"
	"strings"
	"sync"
	"time"
)

var identRE = regexp.MustCompile(`^[a-z_][a-z0-9_]{0,62}$`)

// ValidSchema reports whether name is usable as outboxkit's schema: a
// lower-case PostgreSQL identifier of at most 63 bytes.
func ValidSchema(name string) bool { return identRE.MatchString(name) }

// QuoteIdent quotes a PostgreSQL identifier.
func QuoteIdent(name string) string {
	return `"` + strings.ReplaceAll(name, `"`, `""`) + `"`
}

// Render replaces {s} in tmpl with the quoted schema name.
func Render(schema, tmpl string) string {
	return strings.ReplaceAll(tmpl, "{s}", QuoteIdent(schema))
}

// Channel is the LISTEN/NOTIFY channel of a schema.
func Channel(schema string) string {
	c := "outboxkit_" + schema
	if len(c) > 63 {
		c = c[:63]
	}
	return c
}

// AdvisoryKey maps a name to the bigint key of a PostgreSQL advisory lock
// (FNV-1a, 64 bits). Processes of every release take the same lock for the
// same name, so the mapping never changes.
func AdvisoryKey(name string) int64 {
	h := fnv.New64a()
	_, _ = h.Write([]byte(name))
	return int64(h.Sum64())
}

// Scanner is one result row: a *sql.Row or the current row of *sql.Rows,
// for the scan functions that read both.
type Scanner interface{ Scan(dest ...any) error }

// Options tune a Store.
type Options struct {
	// Clock, when set, supplies the time parameter of runtime statements
	// (NowArg) and Now; nil means the database's now().
	Clock func() time.Time
	// NoPreparedStatements sends every statement as text.
	NoPreparedStatements bool
}

// Store is one handle's statements, rendered once for its schema, and the
// runner that sends them (see Stmt). It is safe for concurrent use.
type Store struct {
	DB      *sql.DB
	Schema  string
	Channel string // the LISTEN/NOTIFY channel

	Queue        QueueStatements
	Subscription SubscriptionStatements
	Webhook      WebhookStatements
	Integration  IntegrationStatements
	Security     SecurityStatements
	Fence        FenceStatements
	Reredact     ReredactStatements

	clock     func() time.Time
	noPrepare bool

	stmtMu sync.Mutex
	stmts  map[string]*sql.Stmt // statements prepared on DB, by text
}

// QueueStatements are the event_queue and system_event statements.
type QueueStatements struct {
	EnqueueOne, EnqueueOneNotify, EnqueueBatch, EnqueueBatchNotify string
	Claim, Heartbeat, Outcomes, CompleteMany, CompleteOne, Rescue  string
	DeleteFinished, DeleteEvents                                   string
	StatsByStatus, OldestClaimable, ListFailed                     string
	EventsByIdempotencyKey, BlockedKeys                            string
	NeedsFirstAnalyze, Analyze                                     string
	RetryFailed, DiscardFailed                                     string
}

// SubscriptionStatements are the event_subscription statements.
type SubscriptionStatements struct {
	Upsert, Get, List, SetActive, SetConfig, LockForDelete, FailUndelivered, DetachRows, Delete string
	Readers, TransactionsOpen                                                                   string
	// Secrets at rest: sealing, the dispatcher's re-read, rotation.
	SetSealed, ConfigByID, LockConfigByID, IDsAfter string
}

// WebhookStatements are the endpoint-health statements of webhook delivery.
type WebhookStatements struct{ FailureRun, Pause string }

// ReredactStatements rewrite the logs' rows under new redaction rules
// (see reredact.go).
type ReredactStatements struct{ IntegrationBatch, IntegrationUpdate, SecurityBatch, SecurityUpdate string }

// FenceStatements read the version fence (see fence.go).
type FenceStatements struct{ Tables, Read, Migrations string }

// IntegrationStatements are the integration_log statements.
type IntegrationStatements struct{ Insert, InsertOnce, List, Stats string }

// SecurityStatements are the security_event statements.
type SecurityStatements struct{ Insert, Lock, BruteForce, Review, Get, List string }

// New returns the store of schema on db, every statement rendered. The
// schema must be a valid identifier (ValidSchema). It sends no SQL.
func New(db *sql.DB, schema string, opts *Options) (*Store, error) {
	if db == nil {
		return nil, errors.New("db is nil")
	}
	if !ValidSchema(schema) {
		return nil, fmt.Errorf("schema %q is not a lower-case identifier of at most 63 bytes", schema)
	}
	var o Options
	if opts != nil {
		o = *opts
	}
	s := &Store{DB: db, Schema: schema, Channel: Channel(schema), clock: o.Clock, noPrepare: o.NoPreparedStatements}
	notify := fmt.Sprintf("pg_notify('%s', '')::text", s.Channel)
	s.Queue = QueueStatements{
		EnqueueOne:         fmt.Sprintf(EnqueueOne, "NULL::text"),
		EnqueueOneNotify:   fmt.Sprintf(EnqueueOne, notify),
		EnqueueBatch:       fmt.Sprintf(EnqueueBatch, "NULL::text"),
		EnqueueBatchNotify: fmt.Sprintf(EnqueueBatch, "min("+notify+")"),
		Claim:              Claim, Heartbeat: Heartbeat, Outcomes: Outcomes,
		CompleteMany: CompleteMany, CompleteOne: CompleteOne, Rescue: Rescue,
		DeleteFinished: DeleteFinished, DeleteEvents: DeleteEvents,
		StatsByStatus: StatsByStatus, OldestClaimable: OldestClaimable, ListFailed: ListFailed,
		EventsByIdempotencyKey: EventsByIdempotencyKey, BlockedKeys: BlockedKeys,
		NeedsFirstAnalyze: NeedsFirstAnalyze, Analyze: Analyze,
		RetryFailed: RetryFailed, DiscardFailed: DiscardFailed,
	}
	s.Subscription = SubscriptionStatements{
		Upsert: SubscriptionUpsert, Get: SubscriptionGet, List: SubscriptionList,
		SetActive: SubscriptionSetActive, SetConfig: SubscriptionSetConfig,
		LockForDelete: SubscriptionLockForDelete, FailUndelivered: SubscriptionFailUndelivered,
		DetachRows: SubscriptionDetachRows, Delete: SubscriptionDelete,
		Readers: SubscriptionReaders, TransactionsOpen: TransactionsOpen,
		SetSealed: SubscriptionSetSealed, ConfigByID: SubscriptionConfigByID,
		LockConfigByID: SubscriptionLockConfigByID, IDsAfter: SubscriptionIDsAfter,
	}
	s.Webhook = WebhookStatements{FailureRun: WebhookFailureRun, Pause: WebhookPause}
	s.Fence = FenceStatements{Tables: FenceTables, Read: FenceRead, Migrations: FenceMigrations}
	s.Reredact = ReredactStatements{IntegrationBatch: ReredactIntegrationBatch, IntegrationUpdate: ReredactIntegrationUpdate,
		SecurityBatch: ReredactSecurityBatch, SecurityUpdate: ReredactSecurityUpdate}
	s.Integration = IntegrationStatements{Insert: IntegrationInsert, InsertOnce: IntegrationInsertOnce, List: IntegrationList, Stats: IntegrationStats}
	s.Security = SecurityStatements{Insert: SecurityInsert, Lock: SecurityLock, BruteForce: SecurityBruteForce,
		Review: SecurityReview, Get: SecurityGet, List: SecurityList}
	for _, p := range s.statements() {
		*p = Render(schema, *p)
	}
	return s, nil
}

// Statements returns every rendered statement by a name of the form
// "Queue.Claim" (for tests that check them all).
func (s *Store) Statements() map[string]string {
	out := map[string]string{}
	for _, group := range []any{&s.Queue, &s.Subscription, &s.Webhook, &s.Integration, &s.Security, &s.Fence, &s.Reredact} {
		v := reflect.ValueOf(group).Elem()
		for i := range v.NumField() {
			out[v.Type().Name()+"."+v.Type().Field(i).Name] = v.Field(i).String()
		}
	}
	return out
}

// statements points at every statement field.
func (s *Store) statements() []*string {
	var out []*string
	for _, group := range []any{&s.Queue, &s.Subscription, &s.Webhook, &s.Integration, &s.Security, &s.Fence, &s.Reredact} {
		v := reflect.ValueOf(group).Elem()
		for i := range v.NumField() {
			out = append(out, v.Field(i).Addr().Interface().(*string))
		}
	}
	return out
}

// NowArg is the time parameter runtime SQL compares against: the clock's
// time, or nil so that the statement uses the database's now().
func (s *Store) NowArg() any {
	if s.clock == nil {
		return nil
	}
	return s.clock().UTC()
}

// Now is the store's notion of the current time, for values computed in Go.
func (s *Store) Now() time.Time {
	if s.clock == nil {
		return time.Now()
	}
	return s.clock()
}

// HasClock reports whether the store has a clock of its own (Options.Clock).
func (s *Store) HasClock() bool { return s.clock != nil }
