// Package store holds every SQL statement outboxkit sends, one file per table.
//
// Statements are templates in which {s} stands for the quoted schema name;
// Render fills it in once, when a handle is built, so runtime SQL is always
// schema-qualified and never depends on search_path.
package store

import (
	"regexp"
	"strings"
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

// RenderAll renders every statement that ptrs point to, in place.
func RenderAll(schema string, ptrs ...*string) {
	for _, p := range ptrs {
		*p = Render(schema, *p)
	}
}
