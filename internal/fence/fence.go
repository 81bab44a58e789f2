// Package fence reads the schema's version fence and judges whether this
// process may run against the schema.
//
// The fence is one row (table outboxkit_fence, migration 10): the schema's
// version, the number of the last migration applied, and the lowest
// release that may run against it. A release is counted by the number of
// the last migration it ships (v0.2 is 9, v0.3 is 10). A process is
// admitted when its release is at least the fence's min_release (it is
// not too old) and the schema's version is at least the lowest one its
// statements run against (it is not too new: the schema has every object
// it uses). A schema without the fence table (version 9, or 10 reverted)
// is judged by golang-migrate's history table alone.
//
// A Guard keeps one handle's verdict: read when the handle starts
// (Migrate, Dispatcher.Run, the first Enqueue), again every Interval by a
// running dispatcher and whenever a migration's NOTIFY arrives, and lazily,
// through the caller's transaction, by an Enqueue that finds it older than
// Interval. Reading it never fails a statement (a failed statement would
// abort the caller's transaction), and never happens per event.
package fence

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/outboxkit/outbox/internal/store"
)

const (
	// Release is this release as the fence counts it: the number of the
	// last migration it ships (a test keeps it so). A migration that
	// raises the fence's min_release above it fences this release off.
	Release = 10
	// MinSchema is the lowest schema version this release runs against:
	// its statements use nothing that migration 10 added (it reads the
	// fence only where there is one), so it runs on version 9 too, which
	// is what a rollback to v0.2 reverts to.
	MinSchema = 9
	// IntervalDefault is how often a running dispatcher re-reads the
	// fence besides the migration's NOTIFY, and how old a verdict Enqueue
	// trusts.
	IntervalDefault = 30 * time.Second
)

// ErrMigrating reports a schema whose golang-migrate history is dirty: a
// migration is running or failed half-way. It is not a verdict: the
// previous one stands, and the read is tried again.
var ErrMigrating = errors.New("outbox: a schema migration is running or failed half-way")

// State is what a schema says about the releases it admits.
type State struct {
	// Schema is the schema's version, the number of the last migration
	// applied: the fence's schema_version, or golang-migrate's history
	// where there is no fence; 0 when the schema has neither (not
	// migrated, or migrated by another tool before version 10).
	Schema int
	// MinRelease is the lowest release the fence admits; 0 when the
	// schema has no fence.
	MinRelease int
}

// Error reports a process outside the range of releases its schema
// admits. The root turns it into its SchemaFenceError.
type Error struct {
	Release   int // this process's release
	MinSchema int // the lowest schema version it runs against
	State         // what the schema says
}

// Error says which side of the range the process is on and what to do.
func (e *Error) Error() string { return Describe(e.Release, e.MinSchema, e.State) }

// Judge returns the verdict of a schema in state st on a process of
// release that runs against schema versions minSchema and later: nil when
// admitted, else an *Error.
func Judge(release, minSchema int, st State) error {
	if st.MinRelease > release || st.Schema < minSchema {
		return &Error{Release: release, MinSchema: minSchema, State: st}
	}
	return nil
}

// Describe is the text of an *Error (and of the root's SchemaFenceError).
func Describe(release, minSchema int, st State) string {
	const prefix = "outbox: schema fenced: "
	switch {
	case st.MinRelease > release:
		return fmt.Sprintf(prefix+"this process is release %d, and schema version %d admits releases %d and later "+
			"(a newer release's migration raised the fence): deploy that release here, or roll the schema back",
			release, st.Schema, st.MinRelease)
	case st.Schema == 0:
		return fmt.Sprintf(prefix+"this process is release %d, which needs schema version %d or later, and the schema "+
			"has no version (not migrated, or migrated by another tool without migration 10): apply the migrations first",
			release, minSchema)
	default:
		return fmt.Sprintf(prefix+"this process is release %d, which needs schema version %d or later, and the schema "+
			"is at version %d: apply the migrations first (Outbox.Migrate, or the files of package schema with your tool)",
			release, minSchema, st.Schema)
	}
}

// Read reads the fence of st's schema through q (nil: st's pool). It sends
// no statement that could fail on a schema without the fence table.
func Read(ctx context.Context, st *store.Store, q store.Querier) (State, error) {
	if q == nil {
		q = st.DB
	}
	var hasFence, hasHistory bool
	if err := q.QueryRowContext(ctx, st.Fence.Tables).Scan(&hasFence, &hasHistory); err != nil {
		return State{}, fmt.Errorf("outbox: read the version fence: %w", err)
	}
	var s State
	if hasFence {
		err := q.QueryRowContext(ctx, st.Fence.Read).Scan(&s.Schema, &s.MinRelease)
		if err == nil {
			return s, nil
		}
		if !errors.Is(err, sql.ErrNoRows) {
			return State{}, fmt.Errorf("outbox: read the version fence: %w", err)
		}
		// Only a hand-written DELETE empties it: judge by the history.
	}
	if !hasHistory {
		return State{}, nil
	}
	var dirty bool
	err := q.QueryRowContext(ctx, st.Fence.Migrations).Scan(&s.Schema, &dirty)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return State{}, nil // every migration reverted
	case err != nil:
		return State{}, fmt.Errorf("outbox: read the version fence: %w", err)
	case dirty:
		return State{}, fmt.Errorf("%w (golang-migrate marks version %d dirty)", ErrMigrating, s.Schema)
	}
	return s, nil
}

// Options tune a Guard; the zero value means this release and
// IntervalDefault.
type Options struct {
	// Release and MinSchema are the release and lowest schema version the
	// guard judges for. Default Release and MinSchema (tests play a future
	// release with them).
	Release, MinSchema int
	// Interval is how often a dispatcher re-reads the fence and how old a
	// verdict Allow trusts. Default IntervalDefault.
	Interval time.Duration
}

// Guard keeps one handle's verdict. It is safe for concurrent use.
type Guard struct {
	st                 *store.Store
	log                *slog.Logger
	release, minSchema int
	interval           time.Duration

	mu      sync.Mutex
	known   bool      // a read succeeded
	at      time.Time // when the last read succeeded
	state   State
	fenced  error // the last verdict: nil or an *Error
	reading bool  // an Allow is reading a stale verdict again
}

// New returns a guard for the schema of st; log receives the verdict's
// changes. opts may be nil.
func New(st *store.Store, log *slog.Logger, opts *Options) *Guard {
	g := &Guard{st: st, log: log, release: Release, minSchema: MinSchema, interval: IntervalDefault}
	if opts != nil {
		if opts.Release > 0 {
			g.release, g.minSchema = opts.Release, opts.MinSchema
		}
		if opts.Interval > 0 {
			g.interval = opts.Interval
		}
	}
	return g
}

// Release returns the release the guard judges for.
func (g *Guard) Release() int { return g.release }

// Interval is how often a running dispatcher re-reads the fence.
func (g *Guard) Interval() time.Duration { return g.interval }

// Verdict returns the last verdict without SQL: known is false until a
// read succeeded; fenced is nil while the schema admits this process.
func (g *Guard) Verdict() (known bool, fenced error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.known, g.fenced
}

// Check reads the fence through q (nil: the pool) and records the verdict.
// fenced is the verdict (nil: admitted); err reports a fence that could
// not be read, and leaves the previous verdict in place.
func (g *Guard) Check(ctx context.Context, q store.Querier) (fenced, err error) {
	st, err := Read(ctx, g.st, q)
	if err != nil {
		return nil, err
	}
	return g.Record(ctx, st), nil
}

// Allow returns the verdict for a caller about to write (Enqueue):
// the last one while it is younger than Interval (or another caller is
// reading it again), else the verdict of a read through q, the caller's
// transaction. The error is the verdict, or the read's error.
func (g *Guard) Allow(ctx context.Context, q store.Querier) error {
	g.mu.Lock()
	if g.known && (g.reading || time.Since(g.at) < g.interval) {
		fenced := g.fenced
		g.mu.Unlock()
		return fenced
	}
	stale := g.known
	if stale {
		g.reading = true
	}
	g.mu.Unlock()
	fenced, err := g.Check(ctx, q)
	if stale {
		g.mu.Lock()
		g.reading = false
		g.mu.Unlock()
	}
	if err != nil {
		return err
	}
	return fenced
}

// Record judges a state read elsewhere (Migrate reads it on its own
// connection), records the verdict, logs a change, and returns it.
func (g *Guard) Record(ctx context.Context, st State) (fenced error) {
	fenced = Judge(g.release, g.minSchema, st)
	g.mu.Lock()
	was, wasKnown := g.fenced, g.known
	g.known, g.at, g.state, g.fenced = true, time.Now(), st, fenced
	g.mu.Unlock()
	switch {
	case fenced != nil && (was == nil || !wasKnown):
		g.log.ErrorContext(ctx, "this process may not run against the schema: it claims nothing, writes no outcome, "+
			"sends no webhook and refuses Enqueue until the schema admits it",
			slog.Int("release", g.release), slog.Int("needs_schema", g.minSchema), slog.Int("schema_version", st.Schema),
			slog.Int("min_release", st.MinRelease), slog.Any("error", fenced))
	case fenced == nil && was != nil && wasKnown:
		g.log.WarnContext(ctx, "the schema admits this process again", slog.Int("release", g.release),
			slog.Int("schema_version", st.Schema), slog.Int("min_release", st.MinRelease))
	}
	return fenced
}
