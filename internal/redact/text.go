package redact

import (
	"net/url"
	"sort"
	"strings"
	"unicode/utf8"
)

// span is a byte range of a string to replace: by repl, or by Marker when
// repl is empty.
type span struct {
	start, end int
	repl       string
}

// Text returns s (already clean of control characters) with every secret
// it finds replaced: URLs anywhere, with a scheme or relative (user info,
// sensitive parameters, segments after sensitive ones), private key
// blocks, values of sensitive XML elements and of sensitive "name=value",
// "name: value", "name": "value" and "name is value" pairs (a pair's value
// runs to the end of its line, its quotes or the next pair; in prose it is
// one password-like word), credential-like values of weak names and of
// code's assignments, user:password@host, credentials after an
// authorization scheme or in a curl command, secret-shaped tokens, card
// numbers, and matches of the extra patterns.
func (e *Engine) Text(s string) string { return e.text(s, true) }

func (e *Engine) text(s string, urls bool) string {
	f := scan(s)
	if urls && f&hasColon != 0 && strings.Contains(s, "://") {
		s = e.urlsInText(s)
		f = scan(s)
	}
	if urls && f&hasQuery != 0 {
		s = e.relativeURLs(s)
		f = scan(s)
	}
	var spans []span
	spans = elementSpans(e, s, spans)
	if f&(hasAssign|hasColon|hasIs) != 0 {
		spans = pairSpans(e, s, spans)
	}
	spans = schemeSpans(s, spans)
	if f&hasAt != 0 && f&hasColon != 0 {
		spans = userinfoSpans(s, spans)
	}
	if f&hasDash != 0 {
		spans = curlSpans(s, spans)
	}
	spans = shapeSpans(s, spans)
	spans = cardSpans(s, spans)
	for _, p := range e.patterns {
		for _, m := range p.FindAllStringIndex(s, -1) {
			if m[1] > m[0] {
				spans = append(spans, span{m[0], m[1], ""})
			}
		}
	}
	return apply(s, spans)
}

// Bytes of s that let the finders below skip it, in one scan.
const (
	hasColon  = 1 << iota // ':'
	hasAssign             // = > | , (assignment operators)
	hasQuery              // ? #
	hasAt                 // @
	hasDash               // - (curl's options)
	hasIs                 // a blank before i or I (" is")
)

var scanTable = func() (t [256]uint8) {
	t[':'] = hasColon
	for _, c := range "=>|," {
		t[c] = hasAssign
	}
	t['?'], t['#'], t['@'], t['-'] = hasQuery, hasQuery, hasAt, hasDash
	return t
}()

// scan returns which of the bytes above s has.
func scan(s string) uint8 {
	var f uint8
	for i := 0; i < len(s); i++ {
		c := s[i]
		f |= scanTable[c]
		if c == ' ' && i+1 < len(s) && s[i+1]|0x20 == 'i' {
			f |= hasIs
		}
	}
	return f
}

// apply replaces the spans of s, merging overlapping ones into one marker.
func apply(s string, spans []span) string {
	if len(spans) == 0 {
		return s
	}
	sort.Slice(spans, func(i, j int) bool {
		if spans[i].start != spans[j].start {
			return spans[i].start < spans[j].start
		}
		return spans[i].end > spans[j].end
	})
	var b strings.Builder
	b.Grow(len(s))
	last := 0
	for i := 0; i < len(spans); i++ {
		sp := spans[i]
		if sp.end <= last && i > 0 {
			continue
		}
		start := max(sp.start, last)
		end := sp.end
		repl := sp.repl
		for i+1 < len(spans) && spans[i+1].start < end {
			end = max(end, spans[i+1].end)
			repl = ""
			i++
		}
		if start != sp.start {
			repl = ""
		}
		if repl == "" {
			// A marker next to a marker is one marker.
			if strings.HasSuffix(b.String(), Marker) && start == last && last > 0 {
				last = end
				continue
			}
			repl = Marker
		}
		b.WriteString(s[last:start])
		b.WriteString(repl)
		last = end
	}
	b.WriteString(s[last:])
	return b.String()
}

// urlsInText redacts every URL inside s.
func (e *Engine) urlsInText(s string) string {
	var spans []span
	for off := 0; ; {
		k := strings.Index(s[off:], "://")
		if k < 0 {
			break
		}
		k += off
		start := k
		for start > 0 && isSchemeByte(s[start-1]) {
			start--
		}
		end := k + 3
		for end < len(s) && !urlStop(s[end]) {
			end++
		}
		if start < k {
			if r := e.URL(s[start:end]); r != s[start:end] {
				spans = append(spans, span{start, end, r})
			}
		}
		off = end
	}
	return applyRepl(s, spans)
}

// relativeURLs redacts the query and fragment of every URL without a
// scheme inside s: a path (/callback?code=…) or a bare query (?code=…) as
// a Location, Content-Location or Link header or a redirect in text
// carries them.
func (e *Engine) relativeURLs(s string) string {
	var spans []span
	last := 0
	for off := 0; off < len(s); {
		k := strings.IndexAny(s[off:], "?#")
		if k < 0 {
			break
		}
		k += off
		start := k
		for start > last && !urlStop(s[start-1]) && s[start-1] != '(' && s[start-1] != '=' && s[start-1] != ',' {
			start--
		}
		end := k + 1
		for end < len(s) && !urlStop(s[end]) {
			end++
		}
		off = end
		tok := s[start:end]
		// A path or a bare query whose query or fragment has a name=value
		// pair: "?-----BEGIN" is no URL, and rewriting it would hide the
		// private key that follows.
		if tok[0] != '/' && tok[0] != '?' || strings.Contains(tok, "://") || end-k < 3 ||
			strings.IndexByte(s[k:end], '=') < 0 {
			continue
		}
		if r := e.URL(tok); r != tok {
			spans = append(spans, span{start, end, r})
		}
		last = end
	}
	return applyRepl(s, spans)
}

// applyRepl replaces non-overlapping spans, in order, by their repl.
func applyRepl(s string, spans []span) string {
	if len(spans) == 0 {
		return s
	}
	var b strings.Builder
	last := 0
	for _, sp := range spans {
		b.WriteString(s[last:sp.start])
		b.WriteString(sp.repl)
		last = sp.end
	}
	b.WriteString(s[last:])
	return b.String()
}

func isSchemeByte(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '+' || c == '.' || c == '-'
}

func urlStop(c byte) bool {
	return c <= ' ' || c == '"' || c == '\'' || c == '<' || c == '>' || c == '`' || c == '\\' || c == '{' || c == '}' || c == '|' || c == '^'
}

// URL returns raw with its user info (the password, or the user name when
// it stands alone, as in https://sk_live_…:@host), the values of
// sensitive query and fragment parameters, path segments after a sensitive
// segment, and any secret Text finds replaced.
func (e *Engine) URL(raw string) string {
	scheme, rest, hasScheme := strings.Cut(raw, "://")
	if !hasScheme {
		scheme, rest = "", raw
	}
	authEnd := strings.IndexAny(rest, "/?#")
	if authEnd < 0 || !hasScheme {
		if hasScheme {
			authEnd = len(rest)
		} else {
			authEnd = 0
		}
	}
	auth, tail := rest[:authEnd], rest[authEnd:]
	if at := strings.LastIndexByte(auth, '@'); at >= 0 {
		user, pass, hasPass := strings.Cut(auth[:at], ":")
		switch {
		case hasPass && pass != "" && pass != "REDACTED":
			if e.text(user, false) != user {
				user = "REDACTED"
			}
			auth = user + ":REDACTED" + auth[at:]
		case hasPass && pass == "REDACTED":
		case user != "" && user != "REDACTED":
			// A user name alone (or with an empty password) is the key.
			auth = "REDACTED" + auth[at:]
			if hasPass {
				auth = "REDACTED:" + auth[len("REDACTED"):]
			}
		}
	}
	path, query, frag := tail, "", ""
	hasQuery, hasFrag := false, false
	if i := strings.IndexByte(path, '#'); i >= 0 {
		path, frag, hasFrag = path[:i], path[i+1:], true
	}
	if i := strings.IndexByte(path, '?'); i >= 0 {
		path, query, hasQuery = path[:i], path[i+1:], true
	}
	path = e.pathSegments(path)
	var b strings.Builder
	b.Grow(len(raw) + 16)
	if hasScheme {
		b.WriteString(scheme)
		b.WriteString("://")
	}
	b.WriteString(auth)
	b.WriteString(path)
	if hasQuery {
		b.WriteByte('?')
		b.WriteString(e.Query(query, false))
	}
	if hasFrag {
		// OAuth's implicit flow puts tokens in the fragment.
		b.WriteByte('#')
		b.WriteString(e.Query(frag, false))
	}
	return e.text(b.String(), false)
}

// pathSegments redacts the path segment after a sensitive one
// (/reset/token/<token>, /api_key/<key>).
func (e *Engine) pathSegments(p string) string {
	if strings.Count(p, "/") < 2 {
		return p
	}
	segs := strings.Split(p, "/")
	changed := false
	for i := 1; i < len(segs); i++ {
		name, _, _ := strings.Cut(segs[i-1], ";")
		if dec, err := url.PathUnescape(name); err == nil {
			name = dec
		}
		if segs[i] != "" && segs[i] != Marker && len(name) > 1 && e.SensitiveKey(name) {
			segs[i] = Marker
			changed = true
		}
	}
	if !changed {
		return p
	}
	return strings.Join(segs, "/")
}

// Query redacts a raw query string or form body, keeping the parameters'
// order and encoding: values of sensitive names (and of the one-time
// credentials of URLs: OAuth's code, oauth_verifier, SAMLResponse, ticket)
// become Marker, other values are decoded, redacted as text and re-encoded
// when that changed them. form decodes '+' as a space.
func (e *Engine) Query(raw string, form bool) string {
	if raw == "" {
		return ""
	}
	parts := strings.Split(raw, "&")
	for i, p := range parts {
		k, v, hasValue := strings.Cut(p, "=")
		name := unescape(k, form)
		if !hasValue {
			if t := e.Text(name); t != name {
				parts[i] = escape(t)
			}
			continue
		}
		if t := e.Text(name); t != name {
			k = escape(t)
		}
		// '+' is a blank in forms and most query strings: decode it to
		// look (the value is re-encoded only when redacted).
		dv := unescape(v, true)
		if c := e.classifyParam(name); c == Sensitive || c == Weak && CredentialLike(dv) {
			parts[i] = k + "=" + Marker
			continue
		}
		if t := e.Text(dv); t != dv {
			v = escape(t)
		}
		parts[i] = k + "=" + v
	}
	return strings.Join(parts, "&")
}

func unescape(s string, form bool) string {
	if !strings.ContainsAny(s, "%+") {
		return s
	}
	if form {
		s = strings.ReplaceAll(s, "+", " ")
	}
	if d, err := url.PathUnescape(s); err == nil {
		return d
	}
	return s
}

// escape query-escapes s but keeps the marker's brackets readable.
func escape(s string) string {
	return strings.ReplaceAll(strings.ReplaceAll(url.QueryEscape(s), "%5B", "["), "%5D", "]")
}

// pairSpans finds "name=value", "name: value", "name": "value",
// name="value" and "name is value" pairs whose name is sensitive (or weak,
// with a value that looks like a credential), at every word of s, and
// returns their values. Text calls it only when s has a separator. A name may be several words ("Social Security
// Number: …", "API KEY = …").
func pairSpans(e *Engine, s string, spans []span) []span {
	prevWords := [3]int{-1, -1, -1} // starts of the words before, separated by one blank
	for i := 0; i < len(s); {
		c, w := utf8.DecodeRuneInString(s[i:])
		if !isKeyRune(c) {
			if c != ' ' && c != '\t' {
				prevWords = [3]int{-1, -1, -1}
			}
			i += w
			continue
		}
		k0 := i
		for i < len(s) {
			c, w = utf8.DecodeRuneInString(s[i:])
			if !isKeyRune(c) {
				break
			}
			i += w
		}
		k1 := i
		before := prevWords
		if k0 > 0 && (s[k0-1] == ' ' || s[k0-1] == '\t') && (k0 < 2 || s[k0-2] != ' ' && s[k0-2] != '\t') {
			prevWords = [3]int{k0, prevWords[0], prevWords[1]}
		} else {
			prevWords = [3]int{k0, -1, -1}
		}
		j := i
		// An optional closing quote (or escaped quote), blanks, a separator.
		if j < len(s) && s[j] == '\\' && j+1 < len(s) && s[j+1] == '"' {
			j += 2
		} else if j < len(s) && (s[j] == '"' || s[j] == '\'') {
			j++
		}
		for j < len(s) && (s[j] == ' ' || s[j] == '\t') {
			j++
		}
		prose := false
		switch {
		case j >= len(s):
			continue
		case s[j] == ':' && strings.HasPrefix(s[j:], "://"):
			continue
		case s[j] == '=' || s[j] == ':':
		case j > i && isWord(s, j, "is"):
			prose = true
		default:
			// Assignments of code and configuration (key := value,
			// key ?= 'value', key => value, key || value, key, value):
			// only a value that looks like a credential goes.
			if start, end, ok := assignedValue(s, k1); ok {
				if pairClass(e, s, k0, k1, before) != Ordinary {
					spans = append(spans, span{start, end, ""})
				}
			}
			continue
		}
		class := pairClass(e, s, k0, k1, before)
		if class == Ordinary {
			continue
		}
		if prose {
			start, end, ok := proseValue(s, j+2)
			if ok && (class == Sensitive && passwordLike(s[start:end]) || CredentialLike(s[start:end])) {
				spans = append(spans, span{start, end, ""})
			}
			continue
		}
		if class == Weak {
			if start, end, ok := assignedValue(s, k1); ok {
				spans = append(spans, span{start, end, ""})
			}
			continue
		}
		// =, :, =>, :=, ::=, :::=
		for j < len(s) && s[j] == ':' {
			j++
		}
		if j < len(s) && s[j] == '=' {
			j++
		}
		if j < len(s) && s[j] == '>' && s[j-1] == '=' {
			j++
		}
		// Blanks, and the further = and backquotes of key == `value`.
		for j < len(s) && (s[j] == ' ' || s[j] == '\t' || s[j] == '=' || s[j] == '`') {
			j++
		}
		if start, end, ok := assignedValue(s, k1); ok {
			// A credential after quotes and more operators than pairValue
			// reads (password =>='"…).
			spans = append(spans, span{start, end, ""})
		}
		if start, end, ok := pairValue(s, j); ok {
			spans = append(spans, span{start, end, ""})
			i = start // a value may hold further pairs
		}
	}
	return spans
}

// assignOps are the assignment operators of code and configuration
// files, longest first (the set secret scanners such as gitleaks accept).
var assignOps = []string{":::=", "::=", ":=", "=>", "?=", "||", "=", ":", ">", ","}

// assignedValue returns the value assigned to the name ending at s[k]
// when it looks like a credential: after blanks and quotes, an operator
// of assignOps, up to five blanks, quotes, backquotes or '=', a run of
// token characters that is CredentialLike.
func assignedValue(s string, k int) (int, int, bool) {
	j := k
	for n := 0; n < 24 && j < len(s) && strings.IndexByte(" \t'\"", s[j]) >= 0; n++ {
		j++
	}
	if j >= len(s) || strings.IndexByte(":=>?|,", s[j]) < 0 {
		return 0, 0, false
	}
	op := ""
	for _, o := range assignOps {
		if strings.HasPrefix(s[j:], o) {
			op = o
			break
		}
	}
	if op == "" || op == ":" && strings.HasPrefix(s[j:], "://") {
		return 0, 0, false
	}
	j += len(op)
	for n := 0; n < 5 && j < len(s) && strings.IndexByte(" \t'\"`=", s[j]) >= 0; n++ {
		j++
	}
	end := j
	for end < len(s) && isCredentialByte(s[end]) {
		end++
	}
	if !CredentialLike(s[j:end]) {
		return 0, 0, false
	}
	return j, end, true
}

// pairClass classifies the name s[k0:k1] of a pair, or, when it is
// ordinary, the name it ends together with up to three words before it
// (starting at before[0], before[1], before[2]).
func pairClass(e *Engine, s string, k0, k1 int, before [3]int) Class {
	name := func(from int) string {
		key := s[from:k1]
		if strings.IndexByte(key, '%') >= 0 {
			key = unescape(key, true)
		}
		return strings.Trim(key, "-_.")
	}
	if c := e.Classify(name(k0)); c != Ordinary {
		return c
	}
	for _, b := range before {
		if b < 0 {
			break
		}
		if c := e.Classify(name(b)); c != Ordinary {
			return c
		}
	}
	return Ordinary
}

// isWord reports whether the word w, then a blank, a colon or the end,
// stands at s[j:] (case-insensitively).
func isWord(s string, j int, w string) bool {
	if len(s)-j < len(w) || !strings.EqualFold(s[j:j+len(w)], w) {
		return false
	}
	k := j + len(w)
	return k == len(s) || s[k] == ' ' || s[k] == '\t' || s[k] == ':'
}

// passwordLike reports whether a word after "password is" in prose looks
// like a password rather than a word: it has a digit, a symbol or a
// capital letter after the first, or 20 characters or more.
func passwordLike(w string) bool {
	for i := 0; i < len(w); i++ {
		c := w[i]
		if isDigit(c) || strings.IndexByte("._~+/=-:!#$%&*?@^", c) >= 0 || i > 0 && c >= 'A' && c <= 'Z' {
			return true
		}
	}
	return len(w) >= 20
}

// proseStop are words that follow "password is" in prose without being
// the password.
var proseStop = map[string]bool{"not": true, "no": true, "a": true, "an": true, "the": true, "too": true, "very": true,
	"now": true, "still": true, "being": true, "been": true, "required": true, "invalid": true, "incorrect": true,
	"wrong": true, "expired": true, "missing": true, "empty": true, "correct": true, "valid": true, "weak": true,
	"strong": true, "short": true, "long": true, "set": true, "unset": true, "changed": true, "reset": true,
	"updated": true, "sent": true, "same": true, "different": true, "case": true, "used": true, "needed": true,
	"optional": true, "mandatory": true, "generated": true, "stored": true, "shown": true, "hidden": true,
	"below": true, "above": true, "following": true, "attached": true, "ready": true, "active": true,
	"inactive": true, "disabled": true, "enabled": true, "revoked": true, "available": true, "unavailable": true,
	"null": true, "nil": true, "none": true, "unknown": true, "blank": true, "only": true, "at": true, "in": true,
	"on": true, "of": true, "for": true, "to": true, "and": true, "or": true, "as": true, "also": true, "then": true,
	"that": true, "this": true, "it": true, "your": true, "my": true, "our": true, "their": true, "his": true,
	"her": true, "its": true, "about": true, "going": true, "due": true, "sent.": true, "encrypted": true,
	"hashed": true, "redacted": true}

// proseValue returns the word after "is" (and an optional colon) at s[j:]
// in "your new password is hunter2": up to the next blank, without
// closing punctuation; false for a word of prose ("is incorrect").
func proseValue(s string, j int) (int, int, bool) {
	if j < len(s) && s[j] == ':' {
		j++
	}
	for j < len(s) && (s[j] == ' ' || s[j] == '\t') {
		j++
	}
	k := j
	for k < len(s) && s[k] != ' ' && s[k] != '\t' && s[k] != '\n' && s[k] != '\r' {
		k++
	}
	for k > j && strings.IndexByte(".,;:!?)]}\"'", s[k-1]) >= 0 {
		k--
	}
	for j < k && (s[j] == '"' || s[j] == '\'') {
		j++
	}
	if k == j || strings.HasPrefix(s[j:], Marker) || proseStop[strings.ToLower(s[j:k])] {
		return 0, 0, false
	}
	return j, k, true
}

// pairValue returns the extent of a pair's value starting at s[j]: a
// quoted string, a bracketed structure, or unquoted text up to the end of
// the line, a '&' or ';', a quote, a '<', or the next name=value pair.
func pairValue(s string, j int) (int, int, bool) {
	if j >= len(s) {
		return 0, 0, false
	}
	if strings.HasPrefix(s[j:], Marker) {
		return 0, 0, false
	}
	switch {
	case strings.HasPrefix(s[j:], `\"`):
		start := j + 2
		end := strings.Index(s[start:], `\"`)
		if end < 0 {
			return start, lineEnd(s, start), true
		}
		if strings.HasPrefix(s[start:], Marker+`\"`) {
			return 0, 0, false
		}
		return start, start + end, start+end > start
	case s[j] == '"' || s[j] == '\'':
		q := s[j]
		start := j + 1
		k := start
		for k < len(s) && s[k] != q && s[k] != '\n' {
			if s[k] == '\\' && q == '"' {
				k++
			}
			k++
		}
		k = min(k, len(s))
		if strings.HasPrefix(s[start:], Marker) && start+len(Marker) == k {
			return 0, 0, false
		}
		return start, k, k > start
	case s[j] == '{' || s[j] == '[':
		return j, matchBracket(s, j), true
	}
	k := j
	for k < len(s) {
		c := s[k]
		if c == '\n' || c == '\r' || c == '&' || c == ';' || c == '"' || c == '<' || c == '\'' ||
			c == '\\' && k+1 < len(s) && (s[k+1] == '"' || s[k+1] == 'n') {
			break
		}
		if (c == ' ' || c == ',') && nextPair(s, k+1) {
			break
		}
		k++
	}
	// Trailing blanks and closing punctuation stay.
	for k > j && (s[k-1] == ' ' || s[k-1] == '\t') {
		k--
	}
	if k == j {
		return 0, 0, false
	}
	return j, k, true
}

// nextPair reports whether a name=value pair with a value starts at s[i:]
// (after blanks).
func nextPair(s string, i int) bool {
	for i < len(s) && s[i] == ' ' {
		i++
	}
	k := i
	for k < len(s) && isWordByte(s[k]) || k < len(s) && (s[k] == '-' || s[k] == '.') {
		k++
	}
	// The next pair has a value: "abc=" or "abc==" ends a base64 secret.
	return k > i && k+1 < len(s) && s[k] == '=' && s[k+1] != '=' && s[k+1] != ' ' && s[k+1] != '\n' && s[k+1] != '&'
}

func lineEnd(s string, i int) int {
	if k := strings.IndexByte(s[i:], '\n'); k >= 0 {
		return i + k
	}
	return len(s)
}

// matchBracket returns the end of the bracketed structure at s[j], or
// len(s) when it is not closed.
func matchBracket(s string, j int) int {
	depth := 0
	inStr := false
	for k := j; k < len(s); k++ {
		c := s[k]
		switch {
		case inStr && c == '\\':
			k++
		case c == '"':
			inStr = !inStr
		case inStr:
		case c == '{' || c == '[':
			depth++
		case c == '}' || c == ']':
			if depth--; depth == 0 {
				return k + 1
			}
		}
	}
	return len(s)
}

// schemes are the HTTP authorization schemes whose credential follows.
var schemes = map[string]bool{"bearer": true, "basic": true, "digest": true, "token": true, "negotiate": true,
	"ntlm": true, "bot": true, "apikey": true, "sso-key": true}

// schemeSpans finds credentials after an HTTP authorization scheme.
func schemeSpans(s string, spans []span) []span {
	var buf [16]byte
	for i := 0; i < len(s); i++ {
		if i > 0 && isWordByte(s[i-1]) || strings.IndexByte("bBdDtTnNaAsS", s[i]) < 0 {
			continue
		}
		j := i
		for j < len(s) && j-i < len(buf) && (isWordByte(s[j]) || s[j] == '-') {
			buf[j-i] = s[j] | 0x20
			j++
		}
		if j-i < 3 || j-i >= len(buf) || !schemes[string(buf[:j-i])] {
			i = j
			continue
		}
		scheme := string(buf[:j-i])
		k := j
		for k < len(s) && (s[k] == ' ' || s[k] == '\t') {
			k++
		}
		if k == j {
			i = j
			continue
		}
		start := k
		for k < len(s) && (isWordByte(s[k]) || strings.IndexByte("-.~+/=:", s[k]) >= 0) {
			k++
		}
		if k-start < 6 || strings.HasPrefix(s[start:], Marker) || !credentialLike(s[start:k]) {
			i = j
			continue
		}
		if scheme == "digest" || scheme == "ntlm" || scheme == "negotiate" {
			k = lineEnd(s, start)
		}
		spans = append(spans, span{start, k, ""})
		i = k
	}
	return spans
}

// curlSpans finds the user and password of a curl command line
// (curl -u user:password, --user=user:password) and the values of its
// key, token and authorization headers (-H "X-Api-Key: …"), and returns
// them.
func curlSpans(s string, spans []span) []span {
	if !strings.Contains(s, "curl") {
		return spans
	}
	for off := 0; off < len(s); {
		k := strings.IndexByte(s[off:], '-')
		if k < 0 {
			break
		}
		k += off
		off = k + 1
		if k == 0 || s[k-1] != ' ' && s[k-1] != '\t' && s[k-1] != '\n' {
			continue
		}
		var j int
		header := false
		switch {
		case strings.HasPrefix(s[k:], "-u"):
			j = k + 2
		case strings.HasPrefix(s[k:], "--user"):
			j = k + 6
		case strings.HasPrefix(s[k:], "-H"):
			j, header = k+2, true
		case strings.HasPrefix(s[k:], "--header"):
			j, header = k+8, true
		default:
			continue
		}
		if j < len(s) && s[j] == '=' {
			j++
		}
		for j < len(s) && (s[j] == ' ' || s[j] == '\t') {
			j++
		}
		end := j
		if j < len(s) && (s[j] == '"' || s[j] == '\'') {
			q := strings.IndexByte(s[j+1:], s[j])
			if q < 0 {
				end = lineEnd(s, j)
			} else {
				end = j + 1 + q + 1
			}
		}
		for end < len(s) && s[end] != ' ' && s[end] != '\t' && s[end] != '\n' {
			end++
		}
		if header {
			// -H "X-Api-Key: …": the value of a header named like a key,
			// a token or an authorization, in any case.
			h := strings.Trim(s[j:end], "\"'")
			name, v, ok := strings.Cut(h, ":")
			n := NormalizeKey(name)
			if ok && (strings.HasSuffix(n, "key") || strings.HasSuffix(n, "token") || strings.Contains(n, "authoriz")) {
				if at := strings.Index(s[j:end], v); at >= 0 && strings.TrimSpace(v) != "" {
					spans = append(spans, span{j + at, j + at + len(v), ""})
				}
			}
			continue
		}
		if end > j && !strings.HasPrefix(s[j:], Marker) {
			spans = append(spans, span{j, end, ""})
		}
	}
	return spans
}

// userinfoSchemes are URI schemes written without "//" whose
// "scheme:user@host" is no user and password.
var userinfoSchemes = map[string]bool{"mailto": true, "sip": true, "sips": true, "tel": true, "xmpp": true,
	"im": true, "pres": true, "acct": true}

// userinfoSpans finds credentials written as user:password@host without
// a scheme (an error message's "connect user:pass@db.example:5432"), and
// returns the passwords.
func userinfoSpans(s string, spans []span) []span {
	if strings.IndexByte(s, '@') < 0 || strings.IndexByte(s, ':') < 0 {
		return spans
	}
	for off := 0; ; {
		k := strings.IndexByte(s[off:], '@')
		if k < 0 {
			return spans
		}
		k += off
		off = k + 1
		// The host: a name with a dot, or any name with a port.
		h := k + 1
		dot := false
		for h < len(s) && (isWordByte(s[h]) || s[h] == '-' || s[h] == '.') {
			dot = dot || s[h] == '.' && h+1 < len(s) && isWordByte(s[h+1])
			h++
		}
		if h == k+1 || !dot && !(h < len(s) && s[h] == ':' && h+1 < len(s) && isDigit(s[h+1])) && s[k+1:h] != "localhost" {
			continue
		}
		start := k
		for start > 0 && (isWordByte(s[start-1]) || strings.IndexByte(".~!$%+-*&:@", s[start-1]) >= 0) {
			start--
		}
		user, pass, ok := strings.Cut(s[start:k], ":")
		if !ok || pass == "" || pass == "REDACTED" || userinfoSchemes[strings.ToLower(user)] {
			continue
		}
		if start > 0 && s[start-1] == '/' {
			continue // a URL: redacted as one
		}
		spans = append(spans, span{k - len(pass), k, ""})
	}
}

// credentialLike reports whether a word after a scheme name looks like a
// credential rather than English ("basic information", "token of"): it has
// a digit, a punctuation character of base64 or tokens, or an upper-case
// letter after the first.
func credentialLike(w string) bool {
	for i := 0; i < len(w); i++ {
		c := w[i]
		if isDigit(c) || strings.IndexByte("._~+/=-:", c) >= 0 || i > 0 && c >= 'A' && c <= 'Z' {
			return true
		}
	}
	return len(w) >= 20
}

// elementSpans finds XML and HTML elements with sensitive names and
// returns their content, up to the closing tag or the end of s.
func elementSpans(e *Engine, s string, spans []span) []span {
	spans = elements(e, s, "<", ">", "</", spans)
	if strings.Contains(s, "&lt;") {
		// XML escaped inside XML or HTML.
		spans = elements(e, s, "&lt;", "&gt;", "&lt;/", spans)
	}
	return spans
}

func elements(e *Engine, s, lt, gt, closing string, spans []span) []span {
	for off := 0; ; {
		k := strings.Index(s[off:], lt)
		if k < 0 {
			return spans
		}
		k += off
		off = k + 1
		k += len(lt) - 1
		if k+1 >= len(s) || s[k+1] == '/' || s[k+1] == '!' || s[k+1] == '?' {
			continue
		}
		j := k + 1
		for j < len(s) {
			c, w := utf8.DecodeRuneInString(s[j:])
			if !isKeyRune(c) && c != ':' {
				break
			}
			j += w
		}
		name := s[k+1 : j]
		if i := strings.LastIndexByte(name, ':'); i >= 0 {
			name = name[i+1:]
		}
		class := Ordinary
		if name != "" {
			class = e.Classify(name)
		}
		if class == Ordinary {
			continue
		}
		g := strings.Index(s[j:], gt)
		if g < 0 {
			continue
		}
		g += j
		if s[g-1] == '/' {
			continue
		}
		start := g + len(gt)
		end := strings.Index(s[start:], closing)
		if end < 0 {
			end = len(s)
		} else {
			end += start
		}
		if end > start && s[start:end] != Marker && (class == Sensitive || CredentialLike(s[start:end])) {
			spans = append(spans, span{start, end, ""})
		}
		off = max(end, off)
	}
}
