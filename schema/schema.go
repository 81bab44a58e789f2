// Package schema holds outboxkit's SQL migrations, embedded for golang-migrate.
//
// The files are plain SQL with unqualified names: run them with search_path set
// to the target schema. outbox.(*Outbox).Migrate does exactly that.
package schema

import "embed"

// FS holds the numbered up and down migrations (golang-migrate's file naming).
//
//go:embed *.sql
var FS embed.FS
