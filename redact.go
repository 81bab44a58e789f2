package outbox

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/outboxkit/outbox/internal/redact"
)

// Redaction defaults and markers.
const (
	// MaxBodyBytesDefault is the largest HTTP body (or other request or
	// response value built by a recorder) stored whole: 64 KiB. A larger one
	// is stored as a JSON string of its first MaxBodyBytes bytes followed by
	// TruncatedMarker.
	MaxBodyBytesDefault = 64 << 10
	// RedactedMarker replaces every redacted value.
	RedactedMarker = "[REDACTED]"
	// TruncatedMarker ends a body that was cut at the size limit.
	TruncatedMarker = "…[TRUNCATED]"
)

// RedactionRules extends the built-in redaction rules. The zero value means
// the built-in rules only, with MaxBodyBytesDefault.
//
// Built in, a name is sensitive when, normalised (NFKC, look-alike
// Cyrillic, Greek and other letters folded to Latin, lower-cased, stripped
// of everything but letters and digits), it contains one of password,
// passwd, passphrase, passcode, secret, token, apikey, accesskey,
// privatekey, authorization, cookie, signature, credential, cardnumber,
// creditcard, ccnumber, cvc, cvv, iban, sessionid, jwt, hmac, securitycode,
// accountnumber, routingnumber, codeverifier, mnemonic, seedphrase (and a
// few more: docs/redaction.md), or equals key, or has one of pwd, pw, pass,
// pin, pan, ssn, sig, otp, totp, auth, jwt, hmac or dsn as a whole word
// (words split at anything but letters and digits and at case changes), or
// ends in the word key (X-Functions-Key, Ocp-Apim-Subscription-Key) unless
// an ordinary one (Idempotency-Key, sort_key, public_key). The rule applies
// to HTTP header names, JSON object keys at any depth, URL query
// parameters and path segments, form and multipart fields, XML elements
// and "name=value", "name: value" or "name": "value" pairs inside text.
type RedactionRules struct {
	// Keys are extra sensitive names, matched like the built-in contained
	// terms: "session" also redacts X-Session and session_key.
	Keys []string
	// Patterns are extra regular expressions; every match inside a stored
	// string is replaced by RedactedMarker.
	Patterns []*regexp.Regexp
	// MaxBodyBytes caps each stored body. Default MaxBodyBytesDefault.
	MaxBodyBytes int
}

// A Redactor removes secrets from what the recorders store. It parses what
// it can (JSON, also cut short or invalid; forms; multipart bodies; XML;
// URLs anywhere in text) and redacts by name — values under sensitive
// names — and by shape wherever a value stands: card numbers (13 to 19
// digits with a card network's prefix and length passing the Luhn check,
// grouped by spaces, dashes or dots, or as JSON numbers in any notation),
// JWTs, AWS access key ids, Stripe, GitHub, GitLab, Slack, Google,
// SendGrid and other provider tokens, webhook secrets, PEM private keys,
// credentials after an authorization scheme, URL user info, and the
// application's extra patterns. Bodies are redacted whole first and cut
// after. Redaction is idempotent: redacting a redacted value changes
// nothing. A Redactor is immutable and safe for concurrent use.
// docs/redaction.md lists the rules and their false-positive rates.
type Redactor struct {
	eng     *redact.Engine
	maxBody int
}

// defaultRedactor applies the built-in rules.
var defaultRedactor = mustRedactor(RedactionRules{})

// DefaultRedactor returns a Redactor with the built-in rules only.
func DefaultRedactor() *Redactor { return defaultRedactor }

// NewRedactor returns a Redactor with the built-in rules extended by rules.
func NewRedactor(rules RedactionRules) (*Redactor, error) {
	if rules.MaxBodyBytes < 0 {
		return nil, invalid(ErrInvalidConfig, "max_body_bytes", "must not be negative, got %d", rules.MaxBodyBytes)
	}
	maxBody := rules.MaxBodyBytes
	if maxBody == 0 {
		maxBody = MaxBodyBytesDefault
	}
	var keys []string
	for _, k := range rules.Keys {
		n := redact.NormalizeKey(k)
		if n == "" {
			return nil, invalid(ErrInvalidConfig, "redaction_keys", "key %q has no letter or digit", k)
		}
		keys = append(keys, n)
	}
	for i, p := range rules.Patterns {
		if p == nil {
			return nil, invalid(ErrInvalidConfig, "redaction_patterns", "pattern %d is nil", i)
		}
		if p.MatchString("") {
			return nil, invalid(ErrInvalidConfig, "redaction_patterns", "pattern %q matches the empty string", p.String())
		}
	}
	return &Redactor{eng: redact.New(keys, rules.Patterns, maxBody), maxBody: maxBody}, nil
}

func mustRedactor(rules RedactionRules) *Redactor {
	r, err := NewRedactor(rules)
	if err != nil {
		panic(err)
	}
	return r
}

// MaxBodyBytes returns the body size limit of r.
func (r *Redactor) MaxBodyBytes() int { return r.maxBody }

// SensitiveKey reports whether values under the name k (a header, JSON key,
// query parameter, form field or XML element) are redacted.
func (r *Redactor) SensitiveKey(k string) (sensitive bool) {
	defer func() {
		if recover() != nil {
			sensitive = true // a bug in the engine errs on the side of redacting
		}
	}()
	return r.eng.SensitiveKey(k)
}

// Headers returns h as a map from canonical header name to its values joined
// by ", ", with the values of sensitive headers replaced by RedactedMarker
// and the other values passed through String (so URLs in Location or Link
// are redacted too). When only is non-empty, only the headers it names are
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
		if r.SensitiveKey(ck) {
			out[name] = RedactedMarker
			continue
		}
		out[name] = r.String(strings.Join(vs, ", "))
	}
	return out
}

// URL returns raw with its user info password (or its user name when it
// stands alone, as in https://sk_live_…:@host), the values of sensitive
// query and fragment parameters, path segments after a sensitive segment
// (/reset/token/…) and any secret String finds replaced.
func (r *Redactor) URL(raw string) (out string) {
	defer func() {
		if recover() != nil {
			out = RedactedMarker // a bug in the engine never stores the input
		}
	}()
	return r.eng.URL(cleanString(raw))
}

// String returns s with every secret it finds replaced by RedactedMarker:
// URLs redacted as by URL, the values of sensitive "name=value",
// "name: value", "name": "value" pairs (to the end of the line, the
// closing quote or the next pair) and XML elements, credentials after an
// authorization scheme (Bearer, Basic, ...), secret-shaped tokens, card
// numbers and matches of the extra patterns. Control characters other
// than tab and newline are removed, NUL included, and invalid UTF-8
// becomes U+FFFD.
func (r *Redactor) String(s string) (out string) {
	defer func() {
		if recover() != nil {
			out = RedactedMarker // a bug in the engine never stores the input
		}
	}()
	return r.eng.Text(cleanString(s))
}

// JSON redacts a JSON document: values under sensitive keys (at any depth,
// objects and arrays whole) become RedactedMarker, every string and object
// key passes through String, and numbers that are card numbers become
// RedactedMarker. The result is compact and keeps the keys' order. It
// sanitises on purpose: invalid UTF-8 inside b's strings becomes U+FFFD
// (as encoding/json decodes it) and control characters are removed instead
// of being refused. It returns an error if b is not valid JSON or nests
// deeper than MaxJSONDepth.
func (r *Redactor) JSON(b []byte) (json.RawMessage, error) {
	if err := checkJSONSyntaxDepth(b); err != nil {
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
	b, _, err := jsonText(v)
	if err != nil {
		return nil, err
	}
	return r.JSON(b)
}

// Body turns an HTTP body into the JSON value a recorder stores: nil for an
// empty body; the redacted document for JSON (any +json type, sniffed when
// the content type says nothing); for anything else — a form, a multipart
// body, XML, NDJSON, text, JSON that is invalid or nests deeper than
// MaxJSONDepth — a JSON string of the body redacted in its own structure;
// for bytes that are not UTF-8, a string saying how many bytes there were.
// A body is redacted whole first and cut after: a result over MaxBodyBytes
// becomes a string of its first MaxBodyBytes bytes at most, cut on a token
// boundary, followed by TruncatedMarker, and truncated is true.
func (r *Redactor) Body(b []byte, contentType string) (v json.RawMessage, truncated bool) {
	return r.body(b, contentType, false)
}

// body is Body for a body that may be the prefix of a larger one
// (partial): its incomplete last token is dropped and it is stored
// truncated.
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
		return mustJSONString(fmt.Sprintf("[binary body: %d bytes]", len(b))), false
	}
	out, err := r.safeBody(b, contentType, partial)
	if err != nil {
		return mustJSONString(RedactedMarker), false
	}
	if out.JSON != "" {
		return json.RawMessage(out.JSON), false
	}
	return mustJSONString(out.Text), out.Truncated
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

func (r *Redactor) safeBody(b []byte, contentType string, partial bool) (out redact.Body, err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("redaction failed: %v", p)
		}
	}()
	return r.eng.Body(string(b), contentType, partial, MaxJSONDepth), nil
}

// limitJSON applies MaxBodyBytes to an already redacted JSON value.
func (r *Redactor) limitJSON(b json.RawMessage) (json.RawMessage, bool) {
	if len(b) <= r.maxBody {
		return b, false
	}
	return mustJSONString(redact.Cut(string(b), r.maxBody) + TruncatedMarker), true
}

// envelope builds a request or response object from head plus a body.
func (r *Redactor) envelope(field string, head map[string]any, body any) (json.RawMessage, error) {
	return r.envelopeKey(field, head, "body", body)
}

// envelopeKey builds a record's JSON: head's values, redacted (strings
// through String; maps and other values are the caller's, redacted
// already), with body, redacted, under key. The result needs no second
// redaction pass.
func (r *Redactor) envelopeKey(field string, head map[string]any, key string, body any) (json.RawMessage, error) {
	for k, v := range head {
		if s, ok := v.(string); ok {
			head[k] = r.String(s)
		}
	}
	if body != nil {
		v, truncated, err := r.anyBody(body)
		if err != nil {
			return nil, invalid(ErrInvalidRecord, field, "%v", err)
		}
		if v != nil {
			head[key] = v
		}
		if truncated {
			head[key+"_truncated"] = true
		}
	}
	if len(head) == 0 {
		return nil, nil
	}
	return marshalJSONValue(head)
}

// anyBody encodes a caller's request or response value: []byte and
// json.RawMessage as an HTTP body, anything else marshalled to JSON.
func (r *Redactor) anyBody(v any) (json.RawMessage, bool, error) {
	switch x := v.(type) {
	case []byte:
		b, t := r.Body(x, "")
		return b, t, nil
	case json.RawMessage:
		b, t := r.Body(x, "")
		return b, t, nil
	}
	b, err := r.Value(v)
	if err != nil {
		return nil, false, err
	}
	b, t := r.limitJSON(b)
	return b, t, nil
}

// httpRecord builds a redacted record of one HTTP exchange. reqTotal and
// respTotal are the bodies' full sizes (the slices may hold a prefix).
func (r *Redactor) httpRecord(integration string, op Operation, req *http.Request, reqBody []byte, reqTotal int64,
	resp *http.Response, respBody []byte, respTotal int64, callErr error, duration time.Duration, only []string) IntegrationRecord {
	rec := IntegrationRecord{Integration: integration, Operation: op, Duration: max(duration, 0)}
	if req != nil {
		u := ""
		if req.URL != nil {
			u = req.URL.String()
			if req.URL.Host == "" && req.Host != "" {
				// A server request: rebuild the URL the sender used.
				scheme := "http"
				if req.TLS != nil {
					scheme = "https"
				}
				u = scheme + "://" + req.Host + req.URL.RequestURI()
			}
		}
		head := map[string]any{"method": req.Method, "url": r.URL(u)}
		if h := r.Headers(req.Header, only); h != nil {
			head["headers"] = h
		}
		r.putBody(head, reqBody, reqTotal, req.Header.Get("Content-Type"))
		rec.Request, _ = marshalJSONValue(head)
	}
	if resp != nil {
		rec.HTTPStatus = resp.StatusCode
		head := map[string]any{}
		if h := r.Headers(resp.Header, only); h != nil {
			head["headers"] = h
		}
		r.putBody(head, respBody, respTotal, resp.Header.Get("Content-Type"))
		if len(head) > 0 {
			rec.Response, _ = marshalJSONValue(head)
		}
	}
	switch {
	case callErr != nil:
		rec.Error = r.errorText(callErr)
	case resp == nil:
		rec.Error = "no response"
	case resp.StatusCode < 200 || resp.StatusCode > 299:
		rec.Error = fmt.Sprintf("HTTP %d %s", resp.StatusCode, http.StatusText(resp.StatusCode))
	default:
		rec.Success = true
	}
	if rec.HTTPStatus < 100 || rec.HTTPStatus > 599 {
		rec.HTTPStatus = 0
	}
	return rec
}

func (r *Redactor) putBody(head map[string]any, body []byte, total int64, contentType string) {
	if len(body) == 0 {
		return
	}
	total = max(total, int64(len(body)))
	v, truncated := r.body(body, contentType, total > int64(len(body)))
	head["body"] = v
	if truncated {
		head["body_truncated"] = true
		head["body_bytes"] = total
	}
}

// errorText renders a call error with the URL inside a *url.Error redacted.
func (r *Redactor) errorText(err error) string {
	var ue *url.Error
	if errors.As(err, &ue) {
		return fmt.Sprintf("%s %q: %s", ue.Op, r.URL(ue.URL), r.String(errString(ue.Err)))
	}
	return r.String(err.Error())
}

// decodeJSONValue decodes JSON text keeping numbers exact.
func decodeJSONValue(b []byte) (any, error) {
	if err := checkJSONSyntaxDepth(b); err != nil {
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

// checkJSONSyntaxDepth rejects invalid JSON and nesting deeper than
// MaxJSONDepth before it is decoded.
func checkJSONSyntaxDepth(b []byte) error {
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
			if depth++; depth > MaxJSONDepth {
				return fmt.Errorf("nests deeper than %d levels", MaxJSONDepth)
			}
		case c == ']' || c == '}':
			depth--
		}
	}
	return nil
}

// marshalJSONValue marshals a decoded value without HTML escaping.
func marshalJSONValue(v any) (json.RawMessage, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimRight(buf.Bytes(), "\n"), nil
}

func mustJSONString(s string) json.RawMessage {
	b, _ := marshalJSONValue(cleanString(s))
	return b
}

// cleanString makes s safe to store: invalid UTF-8 becomes U+FFFD and
// control characters (C0 except tab and newline, DEL, C1) are removed. A
// lone surrogate cannot occur in a Go string that is valid UTF-8.
func cleanString(s string) string {
	if utf8.ValidString(s) && !hasStripped(s, true) {
		return s
	}
	s = strings.ToValidUTF8(s, "\uFFFD")
	return stripControls(s, true)
}

// cleanLine is cleanString that also turns tabs, newlines and carriage
// returns into spaces: one stored line per value (no log injection).
func cleanLine(s string) string {
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

// truncateRunes cuts s to at most n characters.
func truncateRunes(s string, n int) string {
	i := 0
	for pos := range s {
		if i == n {
			return s[:pos]
		}
		i++
	}
	return s
}

// isCardNumber reports whether n (only digits) is a card number.
func isCardNumber(n string) bool { return redact.IsCard(n) }

// luhn reports whether the digits pass the Luhn checksum.
func luhn(digits string) bool { return redact.Luhn(digits) }
