package redact

import (
	"strconv"
	"strings"
	"unicode/utf16"
	"unicode/utf8"
)

// jsonWriter redacts JSON text token by token, with a tolerant tokenizer
// that knows which key every value sits under: values under sensitive keys
// (objects and arrays whole) become Marker, strings (keys too) pass through
// Text, numbers that are card numbers become Marker. It writes compact JSON
// keeping the keys' order. Input that ends early (a captured prefix) loses
// its incomplete last token; input that stops being JSON is redacted as
// text from there on.
type jsonWriter struct {
	e   *Engine
	in  string
	pos int
	out strings.Builder
	// depth is the deepest nesting seen.
	depth int
	// partial: the input is a prefix, so a number at its end may be cut.
	partial bool
	// strStart and strEnd delimit the last string read.
	strStart, strEnd int
}

// JSON redacts JSON text. It returns the redacted text, whether the input
// was one or more complete JSON values (ok), and the deepest nesting.
func (e *Engine) JSON(in string) (out string, ok bool, depth int) { return e.json(in, false) }

func (e *Engine) json(in string, partial bool) (out string, ok bool, depth int) {
	w := &jsonWriter{e: e, in: in, partial: partial}
	w.out.Grow(len(in) + 16)
	ok = true
	values := 0
	for {
		w.skipWS()
		if w.pos >= len(w.in) {
			break
		}
		if values > 0 {
			w.out.WriteByte('\n')
		}
		if !w.value(1) {
			ok = false
			break
		}
		values++
	}
	if w.pos < len(w.in) {
		// Not JSON from here on: redact the rest as text, from the string
		// just before when nothing but blanks is between (it may be the
		// name of a pair: "api_key": "…" outside an object).
		from := w.pos
		if w.strEnd > 0 && w.strEnd <= w.pos && strings.TrimSpace(w.in[w.strEnd:w.pos]) == "" {
			from = w.strStart
		}
		w.out.WriteString(e.Text(clean(w.in[from:])))
		ok = false
	}
	return w.out.String(), ok && values > 0, w.depth
}

func (w *jsonWriter) skipWS() {
	for w.pos < len(w.in) {
		switch w.in[w.pos] {
		case ' ', '\t', '\n', '\r':
			w.pos++
		default:
			return
		}
	}
}

// value redacts one value; false when the input ended or broke inside it.
func (w *jsonWriter) value(depth int) bool {
	w.skipWS()
	if w.pos >= len(w.in) {
		return false
	}
	w.depth = max(w.depth, depth)
	switch c := w.in[w.pos]; {
	case c == '{':
		return w.object(depth)
	case c == '[':
		return w.array(depth)
	case c == '"':
		s, ok := w.str()
		if !ok {
			return false
		}
		writeString(&w.out, w.e.Text(s))
		return true
	case c == '-' || isDigit(c):
		start := w.pos
		for w.pos < len(w.in) && strings.IndexByte("+-0123456789.eE", w.in[w.pos]) >= 0 {
			w.pos++
		}
		lit := w.in[start:w.pos]
		if w.pos >= len(w.in) && w.partial {
			// A number at the end of a prefix may be cut: drop it.
			w.pos = start
			return false
		}
		if !validNumber(lit) {
			w.pos = start
			return false
		}
		if IsCardNumber(lit) {
			writeString(&w.out, Marker)
		} else {
			w.out.WriteString(lit)
		}
		return true
	default:
		for _, lit := range []string{"true", "false", "null"} {
			if strings.HasPrefix(w.in[w.pos:], lit) {
				w.pos += len(lit)
				w.out.WriteString(lit)
				return true
			}
		}
		return false
	}
}

func (w *jsonWriter) object(depth int) bool {
	w.pos++ // {
	w.out.WriteByte('{')
	for first := true; ; first = false {
		w.skipWS()
		if w.pos >= len(w.in) {
			return false
		}
		if w.in[w.pos] == '}' {
			w.pos++
			w.out.WriteByte('}')
			return true
		}
		if !first {
			if w.in[w.pos] != ',' {
				return false
			}
			w.pos++
			w.skipWS()
			if w.pos >= len(w.in) {
				return false
			}
		}
		if w.in[w.pos] != '"' {
			return false
		}
		mark := w.pos
		key, ok := w.str()
		if !ok {
			return false
		}
		w.skipWS()
		if w.pos >= len(w.in) || w.in[w.pos] != ':' {
			w.pos = mark
			return false
		}
		w.pos++
		if !first {
			w.out.WriteByte(',')
		}
		writeString(&w.out, w.e.Text(key))
		w.out.WriteByte(':')
		class := w.e.Classify(key)
		if class == Weak && w.credentialNext() {
			class = Sensitive
		}
		if class == Sensitive {
			writeString(&w.out, Marker)
			if !w.skipValue() {
				w.pos = len(w.in)
				return false
			}
			continue
		}
		before := w.out.Len()
		if !w.value(depth + 1) {
			if w.out.Len() == before {
				// The value was cut before anything was written.
				writeString(&w.out, "")
			}
			return false
		}
	}
}

func (w *jsonWriter) array(depth int) bool {
	w.pos++ // [
	w.out.WriteByte('[')
	for first := true; ; first = false {
		w.skipWS()
		if w.pos >= len(w.in) {
			return false
		}
		if w.in[w.pos] == ']' {
			w.pos++
			w.out.WriteByte(']')
			return true
		}
		if !first {
			if w.in[w.pos] != ',' {
				return false
			}
			w.pos++
			w.out.WriteByte(',')
		}
		if !w.value(depth + 1) {
			return false
		}
	}
}

// credentialNext reports whether the next value is a string or number that
// looks like a credential (CredentialLike), without consuming it.
func (w *jsonWriter) credentialNext() bool {
	w.skipWS()
	if w.pos >= len(w.in) {
		return false
	}
	save, s0, s1 := w.pos, w.strStart, w.strEnd
	defer func() { w.pos, w.strStart, w.strEnd = save, s0, s1 }()
	switch c := w.in[w.pos]; {
	case c == '"':
		s, ok := w.str()
		return ok && CredentialLike(s)
	case c == '-' || isDigit(c):
		end := w.pos
		for end < len(w.in) && strings.IndexByte("+-0123456789.eE", w.in[end]) >= 0 {
			end++
		}
		return CredentialLike(w.in[w.pos:end])
	}
	return false
}

// skipValue skips one value of any kind, tolerantly; false when the input
// ends inside it.
func (w *jsonWriter) skipValue() bool {
	w.skipWS()
	if w.pos >= len(w.in) {
		return false
	}
	switch c := w.in[w.pos]; {
	case c == '"':
		// A skipped string is never redacted text: it may not be re-read.
		s0, s1 := w.strStart, w.strEnd
		_, ok := w.str()
		w.strStart, w.strEnd = s0, s1
		return ok
	case c == '{' || c == '[':
		end := matchBracket(w.in, w.pos)
		if end >= len(w.in) && (end == w.pos || (w.in[end-1] != '}' && w.in[end-1] != ']')) {
			return false
		}
		w.pos = end
		return true
	default:
		for w.pos < len(w.in) && strings.IndexByte(",}] \t\r\n", w.in[w.pos]) < 0 {
			w.pos++
		}
		return w.pos < len(w.in)
	}
}

// str reads a JSON string at w.pos and returns it decoded and cleaned
// (invalid UTF-8 and lone surrogates as U+FFFD, control characters other
// than tab and newline removed); false when it does not end.
func (w *jsonWriter) str() (string, bool) {
	start := w.pos + 1
	k := start
	simple := true
	for k < len(w.in) {
		c := w.in[k]
		if c == '"' {
			break
		}
		if c == '\\' {
			simple = false
			k++
		} else if c < 0x20 || c >= 0x7f {
			simple = false
		}
		k++
	}
	if k >= len(w.in) {
		return "", false
	}
	raw := w.in[start:k]
	w.pos = k + 1
	w.strStart, w.strEnd = start-1, w.pos
	if simple {
		return raw, true
	}
	return clean(unquote(raw)), true
}

// unquote decodes the body of a JSON string like encoding/json.
func unquote(raw string) string {
	var b strings.Builder
	b.Grow(len(raw))
	for i := 0; i < len(raw); {
		c := raw[i]
		if c != '\\' {
			if c < utf8.RuneSelf {
				b.WriteByte(c)
				i++
				continue
			}
			r, n := utf8.DecodeRuneInString(raw[i:])
			b.WriteRune(r) // RuneError for invalid bytes
			i += n
			continue
		}
		if i+1 >= len(raw) {
			break
		}
		switch raw[i+1] {
		case 'b':
			b.WriteByte('\b')
		case 'f':
			b.WriteByte('\f')
		case 'n':
			b.WriteByte('\n')
		case 'r':
			b.WriteByte('\r')
		case 't':
			b.WriteByte('\t')
		case 'u':
			r, n := hex4(raw, i+2)
			if n == 0 {
				b.WriteRune(utf8.RuneError)
				i += 2
				continue
			}
			i += 6
			if utf16.IsSurrogate(r) {
				r2, n2 := rune(-1), 0
				if i+1 < len(raw) && raw[i] == '\\' && raw[i+1] == 'u' {
					r2, n2 = hex4(raw, i+2)
				}
				if d := utf16.DecodeRune(r, r2); n2 > 0 && d != utf8.RuneError {
					b.WriteRune(d)
					i += 6
				} else {
					b.WriteRune(utf8.RuneError)
				}
				continue
			}
			b.WriteRune(r)
			continue
		default:
			b.WriteByte(raw[i+1])
		}
		i += 2
	}
	return b.String()
}

func hex4(s string, i int) (rune, int) {
	if i+4 > len(s) {
		return 0, 0
	}
	v, err := strconv.ParseUint(s[i:i+4], 16, 32)
	if err != nil {
		return 0, 0
	}
	return rune(v), 4
}

// writeString writes s as a JSON string the way encoding/json does
// without HTML escaping.
func writeString(b *strings.Builder, s string) {
	const hex = "0123456789abcdef"
	b.WriteByte('"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			b.WriteString(s[start:i])
			switch c {
			case '"', '\\':
				b.WriteByte('\\')
				b.WriteByte(c)
			case '\n':
				b.WriteString(`\n`)
			case '\r':
				b.WriteString(`\r`)
			case '\t':
				b.WriteString(`\t`)
			default:
				b.WriteString(`\u00`)
				b.WriteByte(hex[c>>4])
				b.WriteByte(hex[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, n := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && n == 1 {
			b.WriteString(s[start:i])
			b.WriteString(`\ufffd`)
			i += n
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			b.WriteString(s[start:i])
			b.WriteString(`\u202`)
			b.WriteByte(hex[r&0xf])
			i += n
			start = i
			continue
		}
		i += n
	}
	b.WriteString(s[start:])
	b.WriteByte('"')
}

// Quote returns s as a JSON string.
func Quote(s string) string {
	var b strings.Builder
	b.Grow(len(s) + 2)
	writeString(&b, s)
	return b.String()
}

// validNumber reports whether lit is a JSON number.
func validNumber(lit string) bool {
	i := 0
	digits := func() int {
		n := 0
		for i < len(lit) && isDigit(lit[i]) {
			i++
			n++
		}
		return n
	}
	if i < len(lit) && lit[i] == '-' {
		i++
	}
	if i < len(lit) && lit[i] == '0' {
		i++
	} else if digits() == 0 {
		return false
	}
	if i < len(lit) && lit[i] == '.' {
		i++
		if digits() == 0 {
			return false
		}
	}
	if i < len(lit) && (lit[i] == 'e' || lit[i] == 'E') {
		i++
		if i < len(lit) && (lit[i] == '+' || lit[i] == '-') {
			i++
		}
		if digits() == 0 {
			return false
		}
	}
	return i == len(lit)
}
