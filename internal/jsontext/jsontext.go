// Package jsontext holds the JSON and text helpers that several packages
// share: the depth limit and its check, marshalling without HTML escaping,
// and the cleaning and UTF-8-safe cutting of strings before they are
// stored. Each helper lives here once.
package jsontext

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"unicode/utf8"
)

// MaxDepth is the deepest nesting of arrays and objects accepted in a
// payload, metadata value or recorded JSON document.
const MaxDepth = 512

// CheckDepth rejects invalid JSON and nesting deeper than MaxDepth before
// b is decoded.
func CheckDepth(b []byte) error {
	if !json.Valid(b) {
		return fmt.Errorf("is not valid JSON")
	}
	depth, inString := 0, false
	for i := 0; i < len(b); i++ {
		c := b[i]
		switch {
		case inString && c == '\\':
			i++
		case c == '"':
			inString = !inString
		case inString:
		case c == '[' || c == '{':
			if depth++; depth > MaxDepth {
				return DepthError()
			}
		case c == ']' || c == '}':
			depth--
		}
	}
	return nil
}

// DepthError is the error of a document nested deeper than MaxDepth.
func DepthError() error { return fmt.Errorf("nests deeper than %d levels", MaxDepth) }

// Decode decodes JSON text keeping numbers exact, after CheckDepth.
func Decode(b []byte) (any, error) {
	if err := CheckDepth(b); err != nil {
		return nil, err
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, err
	}
	if dec.More() {
		return nil, fmt.Errorf("trailing data after the JSON value")
	}
	return v, nil
}

// Marshal marshals a value without HTML escaping.
func Marshal(v any) (json.RawMessage, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimRight(buf.Bytes(), "\n"), nil
}

// String is s, cleaned by Clean, as a JSON string.
func String(s string) json.RawMessage {
	b, _ := Marshal(Clean(s))
	return b
}

// Clean makes s safe to store: invalid UTF-8 becomes U+FFFD and control
// characters (C0 except tab and newline, DEL, C1) are removed. A lone
// surrogate cannot occur in a Go string that is valid UTF-8.
func Clean(s string) string {
	if utf8.ValidString(s) && !hasStripped(s, true) {
		return s
	}
	s = strings.ToValidUTF8(s, "\uFFFD")
	return stripControls(s, true)
}

// CleanLine is Clean that also turns tabs, newlines and carriage returns
// into spaces: one stored line per value (no log injection).
func CleanLine(s string) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	if !hasStripped(s, false) {
		return s
	}
	var b strings.Builder
	for _, c := range s {
		switch {
		case c == '\t' || c == '\n' || c == '\r':
			b.WriteByte(' ')
		case isControl(c):
		default:
			b.WriteRune(c)
		}
	}
	return b.String()
}

// CutRunes cuts s to at most n characters.
func CutRunes(s string, n int) string {
	i := 0
	for pos := range s {
		if i == n {
			return s[:pos]
		}
		i++
	}
	return s
}

// CutBytes cuts s to at most n bytes without splitting a UTF-8 sequence.
func CutBytes(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

// HasControl reports whether s holds a control character (C0, DEL or C1;
// tab and newline included): names that must be one clean line refuse them.
func HasControl(s string) bool {
	for _, c := range s {
		if isControl(c) {
			return true
		}
	}
	return false
}

func isControl(c rune) bool { return c < 0x20 || c == 0x7f || (c >= 0x80 && c < 0xa0) }

func hasStripped(s string, keepWS bool) bool {
	for _, c := range s {
		if isControl(c) && !(keepWS && (c == '\t' || c == '\n')) {
			return true
		}
	}
	return false
}

func stripControls(s string, keepWS bool) string {
	var b strings.Builder
	b.Grow(len(s))
	for _, c := range s {
		if isControl(c) && !(keepWS && (c == '\t' || c == '\n')) {
			continue
		}
		b.WriteRune(c)
	}
	return b.String()
}
