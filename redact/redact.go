// Package redact removes secrets from what outboxkit's logs store: HTTP
// headers, URLs, bodies (JSON, forms, multipart, XML, text), JSON documents
// and free text. It redacts by name (values under sensitive names) and by
// shape (card numbers, provider tokens, JWTs, private keys, credentials in
// URLs), then cuts what is too long, never leaving part of a secret at a
// cut. The integration log, the security log and the webhook attempt
// records all redact through a Redactor; applications can use one for their
// own records too. docs/redaction.md lists the rules and their measured
// false-positive rates.
package redact

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"strings"
	"unicode/utf8"

	"github.com/outboxkit/outbox/internal/jsontext"
	engine "github.com/outboxkit/outbox/internal/redact"
)

// Redaction defaults and markers.
const (
	// MaxBodyBytesDefault is the largest HTTP body (or other request or
	// response value built by a recorder) stored whole: 64 KiB. A larger one
	// is stored as a JSON string of its first MaxBodyBytes bytes followed by
	// TruncatedMarker.
	MaxBodyBytesDefault = 64 << 10
	// Marker replaces every redacted value.
	Marker = "[REDACTED]"
	// TruncatedMarker ends a body that was cut at the size limit.
	TruncatedMarker = "…[TRUNCATED]"
)

// Rules extends the built-in redaction rules. The zero value means
// the built-in rules only, PII redacted, with MaxBodyBytesDefault.
//
// Built in, a name is sensitive when, normalised (NFKD with the marks
// dropped, so passwörd is password; look-alike Cyrillic, Greek and other
// letters folded to Latin; lower-cased; stripped of everything but letters
// and digits), it contains one of password, passwd, passphrase, passcode,
// secret, token, apikey, accesskey, privatekey, privkey, authorization,
// authorisation, bearer, cookie, signature, credential, csrf, cardnumber,
// creditcard, cvc, cvv, iban, sessionid, jwt, hmac, connectionstring (and
// more: docs/redaction.md), or equals key, or has one of pwd, pw, pass,
// pin, pan, sig, otp, totp, auth, creds, jwt, hmac or dsn as a whole word
// (words split at anything but letters and digits and at case changes), or
// ends in the word session or sid (X-Session, connect.sid), or ends in the
// word key (X-Functions-Key, Ocp-Apim-Subscription-Key) unless an ordinary
// one (Idempotency-Key, sort_key, public_key). A weaker set of names
// (containing access, api, key, auth or the name of a provider such as
// datadog or twilio) loses its value when that looks like a credential: a
// run of 10 or more token characters with a digit and high entropy. In
// query strings, fragments and forms, code, oauth_verifier, SAMLResponse
// and ticket are sensitive too. The lists are measured against those of
// Sentry, gitleaks, detect-secrets and the OWASP Logging Cheat Sheet. The
// rules apply to HTTP header names, JSON object keys at any depth, URL
// query parameters and path segments, form and multipart fields, XML
// elements and attributes and "name=value", "name: value", "name is value"
// or "name": "value" pairs inside text.
type Rules struct {
	// Keys are extra sensitive names, matched like the built-in contained
	// terms: "tenant" also redacts X-Tenant and tenant_id.
	Keys []string
	// Patterns are extra regular expressions; every match inside a stored
	// string is replaced by Marker.
	Patterns []*regexp.Regexp
	// MaxBodyBytes caps each stored body. Default MaxBodyBytesDefault.
	MaxBodyBytes int
	// KeepPII stops redacting values by the names of personal data:
	// national identity numbers (ssn, social_security_number, national_id,
	// tax_id, passport, driving licence), dates of birth and IP addresses
	// (ip_address, X-Forwarded-For, X-Real-Ip, remote_addr). By default
	// (false) they are redacted. Secrets of every other kind are redacted
	// either way.
	KeepPII bool
}

// A Redactor removes secrets from what the recorders store. It parses what
// it can (JSON, also cut short or invalid; forms; multipart bodies; XML;
// URLs anywhere in text) and redacts by name — values under sensitive
// names — and by shape wherever a value stands: card numbers (13 to 19
// digits with a card network's prefix and length passing the Luhn check,
// grouped by spaces, dashes or dots, or as JSON numbers in any notation),
// JWTs, about 170 provider token formats following gitleaks' rules
// (payment, cloud, source hosting, chat, mail and AI APIs), webhook
// secrets, PEM private keys, credentials after an authorization scheme,
// user:password@host with or without a scheme, and the application's
// extra patterns. Bodies are redacted whole first and cut
// after. Redaction is idempotent: redacting a redacted value changes
// nothing. A Redactor is immutable and safe for concurrent use.
// docs/redaction.md lists the rules and their false-positive rates.
type Redactor struct {
	eng     *engine.Engine
	maxBody int
}

// ErrInvalidRules reports Rules that cannot be used; the error is a
// *RuleError naming the field.
var ErrInvalidRules = errors.New("redact: invalid rules")

// RuleError describes one rejected field of Rules. It wraps ErrInvalidRules.
type RuleError struct {
	Field  string // "max_body_bytes", "keys" or "patterns"
	Reason string
}

// Error names the field and the reason.
func (e *RuleError) Error() string { return "redact: invalid rules: " + e.Field + ": " + e.Reason }

// Unwrap returns ErrInvalidRules.
func (e *RuleError) Unwrap() error { return ErrInvalidRules }

func ruleError(field, format string, args ...any) error {
	return &RuleError{Field: field, Reason: fmt.Sprintf(format, args...)}
}

// defaultRedactor applies the built-in rules.
var defaultRedactor = mustRedactor(Rules{})

// DefaultRedactor returns a Redactor with the built-in rules only.
func Default() *Redactor { return defaultRedactor }

// NewRedactor returns a Redactor with the built-in rules extended by rules.
func New(rules Rules) (*Redactor, error) {
	if rules.MaxBodyBytes < 0 {
		return nil, ruleError("max_body_bytes", "must not be negative, got %d", rules.MaxBodyBytes)
	}
	maxBody := rules.MaxBodyBytes
	if maxBody == 0 {
		maxBody = MaxBodyBytesDefault
	}
	var keys []string
	for _, k := range rules.Keys {
		n := engine.NormalizeKey(k)
		if n == "" {
			return nil, ruleError("keys", "key %q has no letter or digit", k)
		}
		keys = append(keys, n)
	}
	for i, p := range rules.Patterns {
		if p == nil {
			return nil, ruleError("patterns", "pattern %d is nil", i)
		}
		if p.MatchString("") {
			return nil, ruleError("patterns", "pattern %q matches the empty string", p.String())
		}
	}
	return &Redactor{eng: engine.New(keys, rules.Patterns, maxBody, rules.KeepPII), maxBody: maxBody}, nil
}

func mustRedactor(rules Rules) *Redactor {
	r, err := New(rules)
	if err != nil {
		panic(err)
	}
	return r
}

// MaxBodyBytes returns the body size limit of r.
func (r *Redactor) MaxBodyBytes() int { return r.maxBody }

// SensitiveKey reports whether values under the name k (a header, JSON key,
// query parameter, form field or XML element) are redacted whatever they
// are. Weak names (api_id, X-Access) are not: their values are redacted
// only when they look like credentials.
func (r *Redactor) SensitiveKey(k string) (sensitive bool) {
	defer func() {
		if recover() != nil {
			sensitive = true // a bug in the engine errs on the side of redacting
		}
	}()
	return r.eng.SensitiveKey(k)
}

// sensitiveValue is the engine's SensitiveValue, erring on the side of
// redacting when the engine fails.
func (r *Redactor) sensitiveValue(k, v string) (sensitive bool) {
	defer func() {
		if recover() != nil {
			sensitive = true
		}
	}()
	return r.eng.SensitiveValue(k, v)
}

// Headers returns h as a map from canonical header name to its values joined
// by ", ", with the values of sensitive headers (and of weakly named ones,
// such as X-Access or X-Datadog-App, when the value looks like a
// credential) replaced by Marker and the other values passed through
// String (so URLs in Location, Content-Location or Link, absolute or
// relative, are redacted too). When only is non-empty, only the headers it names are
// kept.
func (r *Redactor) Headers(h http.Header, only []string) map[string]string {
	if len(h) == 0 {
		return nil
	}
	var keep map[string]bool
	if len(only) > 0 {
		keep = make(map[string]bool, len(only))
		for _, k := range only {
			keep[http.CanonicalHeaderKey(k)] = true
		}
	}
	out := make(map[string]string, len(h))
	for k, vs := range h {
		ck := http.CanonicalHeaderKey(k)
		if keep != nil && !keep[ck] {
			continue
		}
		name := r.String(ck)
		v := strings.Join(vs, ", ")
		// The name as sent too: canonical form loses a camel case's words
		// (userSession becomes Usersession).
		if r.sensitiveValue(ck, v) || k != ck && r.sensitiveValue(k, v) {
			out[name] = Marker
			continue
		}
		out[name] = r.String(v)
	}
	return out
}

// URL returns raw with its user info password (or its user name when it
// stands alone, as in https://sk_live_…:@host), the values of sensitive
// query and fragment parameters (OAuth's code, oauth_verifier,
// SAMLResponse and ticket among them), path segments after a sensitive
// segment (/reset/token/…) and any secret String finds replaced.
func (r *Redactor) URL(raw string) (out string) {
	defer func() {
		if recover() != nil {
			out = Marker // a bug in the engine never stores the input
		}
	}()
	return r.eng.URL(jsontext.Clean(raw))
}

// String returns s with every secret it finds replaced by Marker:
// URLs redacted as by URL (relative ones too: /callback?code=…), the
// values of sensitive "name=value", "name: value", "name": "value" pairs
// (to the end of the line, the closing quote or the next pair), of
// "name is value" in prose when the value looks like a password, and of
// XML elements, credential-like values assigned to weak names or by the
// operators of code (key := value), user:password@host, credentials after
// an authorization scheme (Bearer, Basic, ...) or in a curl command line,
// secret-shaped tokens, card numbers and matches of the extra patterns. Control characters other
// than tab and newline are removed, NUL included, and invalid UTF-8
// becomes U+FFFD.
func (r *Redactor) String(s string) (out string) {
	defer func() {
		if recover() != nil {
			out = Marker // a bug in the engine never stores the input
		}
	}()
	return r.eng.Text(jsontext.Clean(s))
}

// JSON redacts a JSON document: values under sensitive keys (at any depth,
// objects and arrays whole) become Marker, every string and object
// key passes through String, and numbers that are card numbers become
// Marker. The result is compact and keeps the keys' order. It
// sanitises on purpose: invalid UTF-8 inside b's strings becomes U+FFFD
// (as encoding/json decodes it) and control characters are removed instead
// of being refused. It returns an error if b is not valid JSON or nests
// deeper than jsontext.MaxDepth.
func (r *Redactor) JSON(b []byte) (json.RawMessage, error) {
	if err := jsontext.CheckDepth(b); err != nil {
		return nil, err
	}
	out, ok, _, err := r.safeJSON(b)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, fmt.Errorf("is not valid JSON")
	}
	return json.RawMessage(out), nil
}

// Value marshals v to JSON and redacts it like JSON. []byte and
// json.RawMessage are taken as JSON text. Like JSON it sanitises on
// purpose: invalid UTF-8 in v's strings becomes U+FFFD (encoding/json's
// behaviour), where Enqueue would refuse it.
func (r *Redactor) Value(v any) (json.RawMessage, error) {
	var b []byte
	switch x := v.(type) {
	case json.RawMessage:
		b = x
	case []byte:
		b = x
	default:
		var err error
		if b, err = json.Marshal(v); err != nil {
			return nil, err
		}
	}
	return r.JSON(b)
}

// Body turns an HTTP body into the JSON value a recorder stores: nil for an
// empty body; the redacted document for JSON (any +json type, sniffed when
// the content type says nothing); for anything else — a form, a multipart
// body, XML, NDJSON, text, JSON that is invalid or nests deeper than
// jsontext.MaxDepth — a JSON string of the body redacted in its own structure;
// for bytes that are not UTF-8, a string saying how many bytes there were.
// A body is redacted whole first and cut after: a result over MaxBodyBytes
// becomes a string of its first MaxBodyBytes bytes at most, cut on a token
// boundary, followed by TruncatedMarker, and truncated is true.
func (r *Redactor) Body(b []byte, contentType string) (v json.RawMessage, truncated bool) {
	return r.body(b, contentType, false)
}

// PartialBody is Body for b that is the first part of a larger body (a
// recorder kept only a prefix): its incomplete last token is dropped and
// the result is marked truncated.
func (r *Redactor) PartialBody(b []byte, contentType string) (v json.RawMessage, truncated bool) {
	return r.body(b, contentType, true)
}

// Limit applies MaxBodyBytes to a JSON value that is redacted already: a
// longer value becomes a JSON string of its first MaxBodyBytes bytes, cut on
// a token boundary, followed by TruncatedMarker, and truncated is true.
func (r *Redactor) Limit(b json.RawMessage) (v json.RawMessage, truncated bool) {
	if len(b) <= r.maxBody {
		return b, false
	}
	return jsontext.String(engine.Cut(string(b), r.maxBody) + TruncatedMarker), true
}

func (r *Redactor) body(b []byte, contentType string, partial bool) (json.RawMessage, bool) {
	if len(b) == 0 {
		return nil, false
	}
	valid := utf8.Valid(b)
	if !valid && partial {
		// The capture may have cut the last character.
		for i := len(b) - 1; i >= 0 && i >= len(b)-utf8.UTFMax; i-- {
			if utf8.RuneStart(b[i]) {
				valid = utf8.Valid(b[:i])
				break
			}
		}
	}
	if !valid {
		return jsontext.String(fmt.Sprintf("[binary body: %d bytes]", len(b))), false
	}
	out, err := r.safeBody(b, contentType, partial)
	if err != nil {
		return jsontext.String(Marker), false
	}
	if out.JSON != "" {
		return json.RawMessage(out.JSON), false
	}
	return jsontext.String(out.Text), out.Truncated
}

// safeJSON and safeBody turn a panic of the engine into an error, so a
// bug in redaction never fails the caller's HTTP call nor stores the input.
func (r *Redactor) safeJSON(b []byte) (out string, ok bool, depth int, err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("redaction failed: %v", p)
		}
	}()
	out, ok, depth = r.eng.JSON(string(b))
	return out, ok, depth, nil
}

func (r *Redactor) safeBody(b []byte, contentType string, partial bool) (out engine.Body, err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("redaction failed: %v", p)
		}
	}()
	return r.eng.Body(string(b), contentType, partial, jsontext.MaxDepth), nil
}
