// Package redact is the redaction engine behind the recorders: it removes
// secrets from text, URLs, headers and HTTP bodies before they are stored.
//
// It parses what it can — JSON (complete, truncated or invalid, with a
// tolerant tokenizer that knows which key every value sits under), forms,
// multipart bodies, XML elements, URLs anywhere in text — and redacts by
// name (values under sensitive keys, headers, fields, elements, parameters)
// and by value shape (card numbers, JWTs, cloud and SaaS tokens, private
// keys), then truncates, never leaving part of a secret at a cut. Text it
// cannot parse is scanned for both names and shapes.
//
// The package never imports the root package: the root's Redactor wraps an
// Engine.
package redact

import (
	"regexp"
	"strings"
)

// Marker replaces every redacted value.
const Marker = "[REDACTED]"

// TruncatedMarker ends a body that was cut at the size limit.
const TruncatedMarker = "…[TRUNCATED]"

// An Engine redacts with the built-in rules extended by an application's
// names and patterns. It is immutable and safe for concurrent use.
type Engine struct {
	contains [256][]string // normalised terms a sensitive name contains, by first byte
	patterns []*regexp.Regexp
	maxBody  int
}

// Built-in name rules. A name is normalised (NFKC, look-alike letters
// folded to Latin, lower-cased, only letters and digits kept) before it is
// matched.
var (
	// BuiltinContains are terms a sensitive name contains.
	BuiltinContains = []string{"password", "passwd", "passphrase", "passcode", "secret", "token", "apikey", "accesskey",
		"privatekey", "authorization", "cookie", "signature", "credential", "cardnumber", "creditcard", "ccnumber",
		"cvc", "cvv", "iban", "sessionid", "jwt", "hmac", "securitycode", "accountnumber", "routingnumber",
		"codeverifier", "mnemonic", "seedphrase", "recoveryphrase", "recoverycode", "backupcode", "subscriptionkey",
		"functionskey", "masterkey", "encryptionkey", "signingkey", "sessionkey", "connectionstring", "clientassertion"}
	// BuiltinWords are sensitive as a whole word of a name (words split at
	// anything but letters and digits, and at lower-to-upper case changes).
	BuiltinWords = map[string]bool{"pwd": true, "pw": true, "pass": true, "pin": true, "pan": true, "ssn": true,
		"sig": true, "otp": true, "auth": true, "jwt": true, "hmac": true, "dsn": true, "totp": true}
	// keyNotSecret are words before a final "key" that make an ordinary
	// name: Idempotency-Key, sort_key, public_key.
	keyNotSecret = map[string]bool{"idempotency": true, "sort": true, "primary": true, "foreign": true, "partition": true,
		"cache": true, "public": true, "routing": true, "object": true, "dedup": true, "dedupe": true, "lookup": true,
		"unique": true, "composite": true, "map": true, "hash": true, "range": true, "row": true, "group": true,
		"message": true, "event": true, "i18n": true, "translation": true, "label": true, "index": true}
)

// New returns an Engine with the built-in rules, the extra normalised
// contained terms keys, the extra patterns and the body limit maxBody.
func New(keys []string, patterns []*regexp.Regexp, maxBody int) *Engine {
	e := &Engine{maxBody: maxBody}
	for _, k := range append(append([]string(nil), BuiltinContains...), keys...) {
		e.contains[k[0]] = append(e.contains[k[0]], k)
	}
	e.patterns = append([]*regexp.Regexp(nil), patterns...)
	return e
}

// MaxBody returns the body limit.
func (e *Engine) MaxBody() int { return e.maxBody }

// SensitiveKey reports whether values under the name k (a header, JSON key,
// query parameter, form field, XML element or text pair) are redacted.
func (e *Engine) SensitiveKey(k string) bool {
	words, n := keyWords(k)
	if n == "" {
		return false
	}
	if n == "key" || BuiltinWords[n] {
		return true
	}
	for i, w := range words {
		if BuiltinWords[w] {
			return true
		}
		if w == "key" && i == len(words)-1 && i > 0 && !keyNotSecret[words[i-1]] {
			return true
		}
	}
	for i := 0; i < len(n); i++ {
		for _, c := range e.contains[n[i]] {
			if strings.HasPrefix(n[i:], c) {
				return true
			}
		}
	}
	return false
}

// NormalizeKey returns k as names are matched: NFKC, look-alikes folded,
// lower-cased, only ASCII letters and digits.
func NormalizeKey(k string) string {
	_, n := keyWords(k)
	return n
}
