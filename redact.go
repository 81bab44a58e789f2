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
// Built in, a name is sensitive when, lower-cased and stripped of everything
// but letters and digits, it contains one of password, passwd, passphrase,
// secret, token, apikey, accesskey, privatekey, authorization, cookie,
// signature, credential, cardnumber, creditcard, ccnumber, cvc, cvv, iban or
// sessionid, or equals key, or has one of pwd, pin, pan, ssn, sig, otp or
// auth as a whole word (words split at anything but letters and digits). The
// rule applies to HTTP header names (so Authorization, Cookie, Set-Cookie,
// Proxy-Authorization, X-Api-Key and every *-Signature header are covered),
// JSON object keys at any depth, URL query parameters, form fields and
// "name=value" or "name: value" pairs inside text.
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

// A Redactor removes secrets from what the recorders store: header values,
// JSON values under sensitive keys, URL query secrets and user info, card
// numbers (13 to 19 digits that pass the Luhn check, optionally grouped by
// single spaces or dashes) inside strings and JSON numbers, bearer and basic
// credentials, and the application's extra patterns. Redaction is idempotent:
// redacting a redacted value changes nothing. A Redactor is immutable and
// safe for concurrent use.
type Redactor struct {
	contains []string
	patterns []*regexp.Regexp
	maxBody  int
}

var (
	builtinContains = []string{"password", "passwd", "passphrase", "secret", "token", "apikey", "accesskey",
		"privatekey", "authorization", "cookie", "signature", "credential", "cardnumber", "creditcard",
		"ccnumber", "cvc", "cvv", "iban", "sessionid"}
	builtinExact = map[string]bool{"pwd": true, "pin": true, "pan": true, "ssn": true, "sig": true, "otp": true,
		"auth": true, "key": true}

	// defaultRedactor applies the built-in rules.
	defaultRedactor = mustRedactor(RedactionRules{})

	// pairRE finds name=value and "name": "value" pairs in free text.
	// The value is a quoted string, or a run up to a delimiter, possibly
	// after an escaped quote (JSON text inside a JSON string).
	pairRE = regexp.MustCompile(`([A-Za-z0-9_.\-]+)(\\?["']?[ \t]*[:=][ \t]*)("(?:[^"\\\n]|\\.)*"|'[^'\n]*'|\\?["']?[^\s"'&,;}\]\)<>\\]+)`)
	// schemeRE finds HTTP authorization credentials in free text.
	schemeRE = regexp.MustCompile(`(?i)\b(bearer|basic|digest|token)([ \t]+)([A-Za-z0-9\-._~+/]+=*)`)
)

// DefaultRedactor returns a Redactor with the built-in rules only.
func DefaultRedactor() *Redactor { return defaultRedactor }

// NewRedactor returns a Redactor with the built-in rules extended by rules.
func NewRedactor(rules RedactionRules) (*Redactor, error) {
	if rules.MaxBodyBytes < 0 {
		return nil, invalid(ErrInvalidConfig, "max_body_bytes", "must not be negative, got %d", rules.MaxBodyBytes)
	}
	r := &Redactor{contains: append([]string(nil), builtinContains...), maxBody: rules.MaxBodyBytes}
	if r.maxBody == 0 {
		r.maxBody = MaxBodyBytesDefault
	}
	for _, k := range rules.Keys {
		n := normalizeKey(k)
		if n == "" {
			return nil, invalid(ErrInvalidConfig, "redaction_keys", "key %q has no letter or digit", k)
		}
		r.contains = append(r.contains, n)
	}
	for i, p := range rules.Patterns {
		if p == nil {
			return nil, invalid(ErrInvalidConfig, "redaction_patterns", "pattern %d is nil", i)
		}
		if p.MatchString("") {
			return nil, invalid(ErrInvalidConfig, "redaction_patterns", "pattern %q matches the empty string", p.String())
		}
	}
	r.patterns = append([]*regexp.Regexp(nil), rules.Patterns...)
	return r, nil
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
// query parameter or form field) are redacted.
func (r *Redactor) SensitiveKey(k string) bool {
	n := normalizeKey(k)
	if n == "" {
		return false
	}
	if builtinExact[n] {
		return true
	}
	// A short term also counts as one word of a longer name:
	// Paypal-Transmission-Sig, X-Auth, pin_code.
	for _, w := range strings.FieldsFunc(k, func(c rune) bool {
		return !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9')
	}) {
		if w = strings.ToLower(w); w != "key" && builtinExact[w] {
			return true
		}
	}
	for _, c := range r.contains {
		if strings.Contains(n, c) {
			return true
		}
	}
	return false
}

// Headers returns h as a map from canonical header name to its values joined
// by ", ", with the values of sensitive headers replaced by RedactedMarker
// and the other values passed through String. When only is non-empty, only
// the headers it names are kept.
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
		name := cleanString(ck)
		if r.SensitiveKey(ck) {
			out[name] = RedactedMarker
			continue
		}
		out[name] = r.String(strings.Join(vs, ", "))
	}
	return out
}

// URL returns raw with its user info password, the values of sensitive query
// parameters and any secret that String finds replaced. A URL that does not
// parse is redacted as text.
func (r *Redactor) URL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return r.String(raw)
	}
	if u.User != nil {
		if _, has := u.User.Password(); has {
			u.User = url.UserPassword(u.User.Username(), "REDACTED")
		}
	}
	u.RawQuery = r.query(u.RawQuery)
	frag := u.EscapedFragment()
	u.Fragment, u.RawFragment = "", ""
	out := u.String()
	if frag != "" {
		// OAuth's implicit flow puts tokens in the fragment.
		out += "#" + r.query(frag)
	}
	return r.String(out)
}

// query redacts the values of sensitive parameters of a raw query string,
// keeping the parameters' order and encoding.
func (r *Redactor) query(raw string) string {
	if raw == "" {
		return ""
	}
	parts := strings.Split(raw, "&")
	for i, p := range parts {
		k, _, hasValue := strings.Cut(p, "=")
		name, err := url.QueryUnescape(k)
		if err != nil {
			name = k
		}
		if r.SensitiveKey(name) {
			if hasValue {
				parts[i] = k + "=" + RedactedMarker
			}
		}
	}
	return strings.Join(parts, "&")
}

// String returns s with card numbers, credentials after an authorization
// scheme (Bearer, Basic, ...), the values of sensitive name=value or
// "name": "value" pairs, and matches of the extra patterns replaced by
// RedactedMarker. Control characters other than tab and newline are
// removed, NUL included, and invalid UTF-8 becomes U+FFFD.
func (r *Redactor) String(s string) string {
	s = cleanString(s)
	s = redactCards(s)
	s = schemeRE.ReplaceAllString(s, "${1}${2}"+RedactedMarker)
	s = pairRE.ReplaceAllStringFunc(s, func(m string) string {
		sub := pairRE.FindStringSubmatch(m)
		if !r.SensitiveKey(sub[1]) {
			return m
		}
		v := sub[3]
		switch {
		case len(v) >= 2 && (v[0] == '"' || v[0] == '\'') && v[len(v)-1] == v[0] && !strings.HasPrefix(v, `\`):
			v = v[:1] + RedactedMarker + v[:1]
		default:
			prefix := ""
			if strings.HasPrefix(v, `\`) {
				prefix, v = `\`, v[1:]
			}
			if v != "" && (v[0] == '"' || v[0] == '\'') {
				prefix, v = prefix+v[:1], v[1:]
			}
			if strings.HasPrefix(RedactedMarker, v) {
				return m // already redacted: "[REDACTED" stops at ']'
			}
			v = prefix + RedactedMarker
		}
		return sub[1] + sub[2] + v
	})
	for _, p := range r.patterns {
		s = p.ReplaceAllLiteralString(s, RedactedMarker)
	}
	return s
}

// JSON redacts a JSON document: values under sensitive keys (at any depth)
// become RedactedMarker, every string passes through String, and numbers
// that look like card numbers become RedactedMarker. Object keys are cleaned
// of control characters. It sanitises on purpose: invalid UTF-8 inside b's
// strings becomes U+FFFD (as encoding/json decodes it) instead of being
// refused. It returns an error if b is not valid JSON.
func (r *Redactor) JSON(b []byte) (json.RawMessage, error) {
	v, err := decodeJSONValue(b)
	if err != nil {
		return nil, err
	}
	return marshalJSONValue(r.value(v))
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
// empty body; the redacted document for JSON; for a form
// (application/x-www-form-urlencoded) or other text, a JSON string redacted
// by String (form fields by name); for bytes that are not UTF-8, a string
// saying how many bytes there were. A value whose JSON is over
// MaxBodyBytes becomes a string of its first MaxBodyBytes bytes (cut on a
// character boundary, after redaction) followed by TruncatedMarker, and
// truncated is true.
func (r *Redactor) Body(b []byte, contentType string) (v json.RawMessage, truncated bool) {
	if len(b) == 0 {
		return nil, false
	}
	var text string
	switch {
	case utf8.Valid(b) && json.Valid(b):
		if out, err := r.JSON(b); err == nil {
			if len(out) <= r.maxBody {
				return out, false
			}
			text = string(out)
			break
		}
		text = r.String(string(b))
	case !utf8.Valid(b):
		return mustJSONString(fmt.Sprintf("[binary body: %d bytes]", len(b))), false
	case isForm(contentType):
		text = r.form(string(b))
	default:
		text = r.String(string(b))
	}
	if len(text) > r.maxBody {
		return mustJSONString(truncateUTF8(text, r.maxBody) + TruncatedMarker), true
	}
	return mustJSONString(text), false
}

// limitJSON applies MaxBodyBytes to an already redacted JSON value.
func (r *Redactor) limitJSON(b json.RawMessage) (json.RawMessage, bool) {
	if len(b) <= r.maxBody {
		return b, false
	}
	return mustJSONString(truncateUTF8(string(b), r.maxBody) + TruncatedMarker), true
}

func (r *Redactor) form(s string) string {
	parts := strings.Split(s, "&")
	for i, p := range parts {
		k, _, hasValue := strings.Cut(p, "=")
		name, err := url.QueryUnescape(strings.ReplaceAll(k, "+", " "))
		if err != nil {
			name = k
		}
		if hasValue && r.SensitiveKey(name) {
			parts[i] = k + "=" + RedactedMarker
		}
	}
	return r.String(strings.Join(parts, "&"))
}

func (r *Redactor) value(v any) any {
	switch x := v.(type) {
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, e := range x {
			ck := cleanString(k)
			if r.SensitiveKey(k) {
				out[ck] = RedactedMarker
				continue
			}
			out[ck] = r.value(e)
		}
		return out
	case []any:
		for i, e := range x {
			x[i] = r.value(e)
		}
		return x
	case string:
		return r.String(x)
	case json.Number:
		if isCardNumber(string(x)) {
			return RedactedMarker
		}
		return x
	default:
		return v
	}
}

// envelope builds a request or response object from head plus a body.
func (r *Redactor) envelope(field string, head map[string]any, body any) (json.RawMessage, error) {
	return r.envelopeKey(field, head, "body", body)
}

func (r *Redactor) envelopeKey(field string, head map[string]any, key string, body any) (json.RawMessage, error) {
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
	partial := total > int64(r.maxBody)
	if len(body) > r.maxBody {
		body = []byte(truncateUTF8(string(body), r.maxBody))
	}
	v, truncated := r.Body(body, contentType)
	if partial && !truncated {
		// Only a prefix was kept: store it as text ending in the marker.
		s, ok := jsonStringValue(v)
		if !ok {
			s = string(v)
		}
		v, truncated = mustJSONString(s+TruncatedMarker), true
	}
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

func jsonStringValue(v json.RawMessage) (string, bool) {
	var s string
	if json.Unmarshal(v, &s) != nil {
		return "", false
	}
	return s, true
}

func isForm(contentType string) bool {
	ct, _, _ := strings.Cut(contentType, ";")
	return strings.EqualFold(strings.TrimSpace(ct), "application/x-www-form-urlencoded")
}

// normalizeKey lower-cases k and keeps only its ASCII letters and digits.
func normalizeKey(k string) string {
	var b strings.Builder
	for i := 0; i < len(k); i++ {
		c := k[i]
		switch {
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9':
			b.WriteByte(c)
		case c >= 'A' && c <= 'Z':
			b.WriteByte(c + 'a' - 'A')
		}
	}
	return b.String()
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

// truncateUTF8 cuts s to at most n bytes on a character boundary.
func truncateUTF8(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
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

// redactCards replaces card numbers inside s: runs of 13 to 19 digits,
// optionally grouped by single spaces or dashes, that pass the Luhn check
// and are not part of a longer run of digits.
func redactCards(s string) string {
	if !hasLongDigitRun(s) {
		return s
	}
	type group struct{ start, end int } // byte offsets of one group of digits
	var out strings.Builder
	last := 0
	i := 0
	for i < len(s) {
		if !isDigit(s[i]) || (i > 0 && isDigit(s[i-1])) {
			i++
			continue
		}
		// Collect the groups of one run: digits separated by a single
		// space or dash.
		var groups []group
		j := i
		for {
			k := j
			for k < len(s) && isDigit(s[k]) {
				k++
			}
			groups = append(groups, group{j, k})
			if k+1 < len(s) && (s[k] == ' ' || s[k] == '-') && isDigit(s[k+1]) {
				j = k + 1
				continue
			}
			j = k
			break
		}
		// Find card numbers made of consecutive whole groups, longest first
		// from each starting group. off[x] is where group x starts in the
		// run's digits.
		var run strings.Builder
		off := make([]int, len(groups)+1)
		for x, gr := range groups {
			off[x] = run.Len()
			run.WriteString(s[gr.start:gr.end])
		}
		off[len(groups)] = run.Len()
		digits := run.String()
		g := 0
		for g < len(groups) {
			found := -1
			top := g
			for top+1 < len(groups) && off[top+2]-off[g] <= 19 {
				top++
			}
			for h := top; h >= g; h-- {
				n := off[h+1] - off[g]
				if n >= 13 && n <= 19 && luhn(digits[off[g]:off[h+1]]) {
					found = h
					break
				}
				if n < 13 {
					break
				}
			}
			if found < 0 {
				g++
				continue
			}
			out.WriteString(s[last:groups[g].start])
			out.WriteString(RedactedMarker)
			last = groups[found].end
			g = found + 1
		}
		i = j
	}
	if last == 0 {
		return s
	}
	out.WriteString(s[last:])
	return out.String()
}

func hasLongDigitRun(s string) bool {
	n := 0
	for i := 0; i < len(s); i++ {
		switch {
		case isDigit(s[i]):
			if n++; n >= 13 {
				return true
			}
		case (s[i] == ' ' || s[i] == '-') && n > 0:
		default:
			n = 0
		}
	}
	return false
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

// isCardNumber reports whether a JSON number is an integer of 13 to 19
// digits that passes the Luhn check.
func isCardNumber(n string) bool {
	if len(n) < 13 || len(n) > 19 {
		return false
	}
	for i := 0; i < len(n); i++ {
		if !isDigit(n[i]) {
			return false
		}
	}
	return luhn(n)
}

// luhn reports whether the digits pass the Luhn checksum.
func luhn(digits string) bool {
	sum := 0
	double := false
	for i := len(digits) - 1; i >= 0; i-- {
		d := int(digits[i] - '0')
		if double {
			if d *= 2; d > 9 {
				d -= 9
			}
		}
		sum += d
		double = !double
	}
	return sum%10 == 0
}
