// Package handle carries what an outbox handle shares with the product
// packages built from it (integrationlog, securitylog): its database, its
// statements rendered for its schema, its logger and its limits,
// without adding any of it to the root package's API.
//
// The root's Outbox embeds a Ref in an unexported field; Ref's unexported
// method makes every *outbox.Outbox a Holder, which only this package can
// name or call. A product package takes an *outbox.Outbox and calls Of.
package handle

import (
	"database/sql"
	"log/slog"

	"github.com/outboxkit/outbox/internal/store"
)

// Core is the machinery of one outbox handle.
type Core struct {
	DB     *sql.DB
	Store  *store.Store // every statement, rendered for the handle's schema
	Schema string
	Logger *slog.Logger
	// MaxPayloadBytes caps a JSON value the handle writes (Config.MaxPayloadBytes).
	MaxPayloadBytes int
}

// Ref points at a Core; the root embeds it.
type Ref struct{ c *Core }

// NewRef returns a Ref to c.
func NewRef(c *Core) Ref { return Ref{c: c} }

func (r Ref) core() *Core { return r.c }

// Holder is a value that embeds a Ref: an *outbox.Outbox.
type Holder interface{ core() *Core }

// Of returns h's Core.
func Of(h Holder) *Core { return h.core() }
