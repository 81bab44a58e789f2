package store

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"time"

	"github.com/jmoiron/sqlx"
	"github.com/lib/pq"
)

// Querier is what statements run through: *sql.Tx, *sql.DB, *sql.Conn,
// *sqlx.Tx and *sqlx.DB all satisfy it.
type Querier interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// Statement runs one SQL text through a Querier (nil: the store's pool), as
// a statement prepared once per pool when it can: one round trip instead of
// lib/pq's two for an unnamed statement with parameters.
type Statement struct {
	s    *Store
	q    Querier // nil for the pool
	text string
}

// Stmt returns query bound to q (nil for the store's pool). The store's own
// *sql.DB (or an *sqlx.DB over it) counts as the pool, so autocommit calls
// through it use the prepared statement too.
func (s *Store) Stmt(q Querier, query string) Statement {
	switch v := q.(type) {
	case *sql.DB:
		if v == s.DB {
			q = nil
		}
	case *sqlx.DB:
		if v.DB == s.DB {
			q = nil
		}
	}
	return Statement{s: s, q: q, text: query}
}

// Query runs the statement and returns its rows.
func (st Statement) Query(ctx context.Context, args ...any) (*sql.Rows, error) {
	if p, inTx := st.prepared(ctx); p != nil {
		rows, err := p.QueryContext(ctx, args...)
		if !inTx || !textFallback(ctx, err) {
			return rows, err
		}
	}
	return st.plain().QueryContext(ctx, st.text, args...)
}

// Exec runs the statement.
func (st Statement) Exec(ctx context.Context, args ...any) (sql.Result, error) {
	if p, inTx := st.prepared(ctx); p != nil {
		res, err := p.ExecContext(ctx, args...)
		if !inTx || !textFallback(ctx, err) {
			return res, err
		}
	}
	return st.plain().ExecContext(ctx, st.text, args...)
}

// textFallback reports whether a prepared attempt in a caller's transaction
// failed in a way that sending the text instead may fix: the transaction
// belongs to another pool than the store's (database/sql then refuses the
// statement with a plain error before anything is sent), and only then.
//
// The fallback can never run the statement twice. Inside a transaction the
// server runs statements one after another on one connection, so the
// prepared attempt can only have reached the server if:
//   - the server answered: success (no fallback) or a *pq.Error, after which
//     the transaction is aborted and would refuse any further statement
//     anyway; *pq.Error is never retried;
//   - the connection broke during or after the send: lib/pq marks the
//     connection bad, so a second send on it fails before reaching the
//     server (driver.ErrBadConn, never retried, is what it returns for a
//     connection it already knows is bad);
//   - the context ended (a cancelled statement): never retried.
//
// Every other error (another pool's statement, a closed statement or
// transaction, an argument that does not convert) is raised by database/sql
// before any byte is sent, and the text form either works or fails the same
// way.
func textFallback(ctx context.Context, err error) bool {
	if err == nil || ctx.Err() != nil || errors.Is(err, driver.ErrBadConn) {
		return false
	}
	var pqErr *pq.Error
	return !errors.As(err, &pqErr)
}

// prepared returns the prepared form of the statement, or nil when it is to
// be sent as text: NoPreparedStatements, the Querier is not a transaction
// (nor the pool), or no connection was free to prepare on. inTx reports
// that the statement runs in a caller's transaction.
func (st Statement) prepared(ctx context.Context) (p *sql.Stmt, inTx bool) {
	if st.s.noPrepare {
		return nil, false
	}
	var tx *sql.Tx
	if st.q != nil {
		if tx = SQLTx(st.q); tx == nil {
			return nil, false
		}
	}
	p, err := st.s.prepare(ctx, st.text)
	if err != nil {
		return nil, false
	}
	if tx != nil {
		return tx.StmtContext(ctx, p), true
	}
	return p, false
}

func (st Statement) plain() Querier {
	if st.q == nil {
		return st.s.DB
	}
	return st.q
}

// ScanOne scans the first row of rows into dest and closes them; no row is
// sql.ErrNoRows.
func ScanOne(rows *sql.Rows, dest ...any) error {
	defer rows.Close()
	if !rows.Next() {
		if err := rows.Err(); err != nil {
			return err
		}
		return sql.ErrNoRows
	}
	if err := rows.Scan(dest...); err != nil {
		return err
	}
	return rows.Close()
}

// SQLTx returns the *sql.Tx behind q, or nil when q is not a transaction.
func SQLTx(q Querier) *sql.Tx {
	switch v := q.(type) {
	case *sql.Tx:
		return v
	case *sqlx.Tx:
		return v.Tx
	}
	return nil
}

// RowsAffected is the row count of an UPDATE's or DELETE's result.
func RowsAffected(res sql.Result, err error) (int, error) {
	if err != nil {
		return 0, err
	}
	n, err := res.RowsAffected()
	return int(n), err
}

// PrepareWait bounds how long a statement waits for a pool connection to be
// prepared on.
const PrepareWait = 50 * time.Millisecond

// ErrPoolBusy reports that no pool connection was free to prepare on.
var ErrPoolBusy = errors.New("outbox: no free connection to prepare a statement on")

// prepare returns query prepared on the store's pool, preparing it once.
// Its caller may hold one of the pool's connections (a transaction), so it
// must never wait for another: with every connection held by a transaction
// in Enqueue, that wait would never end. When the pool is full, or no
// connection comes within PrepareWait, it returns an error and the caller
// sends the statement unprepared; a later call prepares it.
func (s *Store) prepare(ctx context.Context, query string) (*sql.Stmt, error) {
	s.stmtMu.Lock()
	st, ok := s.stmts[query]
	s.stmtMu.Unlock()
	if ok {
		return st, nil
	}
	if stats := s.DB.Stats(); stats.MaxOpenConnections > 0 && stats.InUse >= stats.MaxOpenConnections {
		return nil, ErrPoolBusy
	}
	pctx, cancel := context.WithTimeout(ctx, PrepareWait)
	defer cancel()
	st, err := s.DB.PrepareContext(pctx, query)
	if err != nil {
		return nil, err
	}
	s.stmtMu.Lock()
	defer s.stmtMu.Unlock()
	if prev, ok := s.stmts[query]; ok {
		_ = st.Close() // prepared concurrently by another call
		return prev, nil
	}
	if s.stmts == nil {
		s.stmts = map[string]*sql.Stmt{}
	}
	s.stmts[query] = st
	return st, nil
}
