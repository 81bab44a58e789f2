package redact

import (
	"mime"
	"strings"
	"unicode/utf8"
)

// Body is a redacted HTTP body.
type Body struct {
	// JSON is the body as a JSON document when it was one, complete and
	// within maxDepth; else nil.
	JSON string
	// Text is the redacted body as text when JSON is nil.
	Text string
	// Truncated reports that Text was cut (it ends in TruncatedMarker).
	Truncated bool
}

// Body redacts an HTTP body of the given content type (sniffed when it says
// nothing useful), structure first, and cuts it after: a result over the
// body limit (or the prefix of a larger body, partial) becomes text cut on
// a token boundary, ending in TruncatedMarker. The incomplete last token of
// a partial body is dropped before redaction, so that no part of a secret
// survives at the cut. b must be valid UTF-8 (a partial body's cut
// character excepted).
func (e *Engine) Body(b string, contentType string, partial bool, maxDepth int) Body {
	if partial {
		b = dropTail(b)
	}
	var out Body
	switch kind(b, contentType) {
	case "json":
		s, ok, depth := e.json(b, partial)
		if ok && !partial && depth <= maxDepth && !strings.Contains(s, "\n") {
			out.JSON = s
		} else {
			out.Text = s
		}
	case "form":
		out.Text = e.Query(clean(b), true)
	case "multipart":
		out.Text = e.multipart(b, contentType, maxDepth)
	default:
		out.Text = e.Text(clean(b))
	}
	if out.JSON != "" && len(out.JSON) > e.maxBody {
		out.Text, out.JSON = out.JSON, ""
	}
	if out.JSON == "" && (partial || len(out.Text) > e.maxBody) {
		out.Text = Cut(out.Text, e.maxBody) + TruncatedMarker
		out.Truncated = true
	}
	return out
}

// Cut cuts redacted text to at most n bytes, on a token boundary.
func Cut(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return dropTail(s[:n])
}

// dropTail removes the last, possibly incomplete, token of a prefix: the
// trailing run up to a delimiter (a quote, bracket, line break, '&', '=',
// ':', ';', ',' or '<' '>'), or, when that run is long, the last word and
// any digits and separators before it. An incomplete character goes too.
func dropTail(s string) string {
	for i := len(s) - 1; i >= 0 && i >= len(s)-utf8.UTFMax; i-- {
		if utf8.RuneStart(s[i]) {
			if !utf8.FullRuneInString(s[i:]) {
				s = s[:i]
			}
			break
		}
	}
	const long = 512
	i := len(s)
	for i > 0 && len(s)-i <= long && !strings.ContainsRune("\"'{}[]\n\r&=:;,<>", rune(s[i-1])) {
		i--
	}
	if len(s)-i <= long {
		return s[:i]
	}
	i = strings.LastIndexAny(s, " \t")
	if i < 0 {
		return ""
	}
	s = s[:i]
	j := len(s)
	for j > 0 && (isDigit(s[j-1]) || s[j-1] == ' ' || s[j-1] == '-' || s[j-1] == '.') {
		j--
	}
	return s[:j]
}

// kind names how a body is parsed: by its content type, else by sniffing.
func kind(b, contentType string) string {
	mt, _, _ := mime.ParseMediaType(contentType)
	mt = strings.ToLower(mt)
	switch {
	case strings.HasPrefix(mt, "multipart/"):
		return "multipart"
	case mt == "application/x-www-form-urlencoded":
		return "form"
	}
	t := strings.TrimLeft(b, " \t\r\n\ufeff")
	switch {
	case t == "":
		return "text"
	case t[0] == '{' || t[0] == '[' || t[0] == '"':
		return "json"
	case strings.HasSuffix(mt, "json") || strings.HasSuffix(mt, "+json"):
		return "json"
	case strings.HasPrefix(t, "--") && strings.Contains(t[:min(len(t), 200)], "Content-Disposition"):
		return "multipart"
	case mt == "" && looksLikeForm(t):
		return "form"
	}
	return "text"
}

// looksLikeForm reports whether t is name=value pairs joined by '&'
// without blanks.
func looksLikeForm(t string) bool {
	if !strings.Contains(t, "=") || strings.ContainsAny(t, " \t\n<>{}\"") {
		return false
	}
	for _, p := range strings.Split(t, "&") {
		if k, _, ok := strings.Cut(p, "="); !ok || k == "" {
			return false
		}
	}
	return true
}

// multipart redacts a multipart body part by part: a part whose field name
// is sensitive loses its content; other parts are redacted by their own
// content type. A body cut short (a missing closing boundary, a part
// without the end of its headers) is redacted as far as it goes.
func (e *Engine) multipart(b, contentType string, maxDepth int) string {
	_, params, _ := mime.ParseMediaType(contentType)
	boundary := params["boundary"]
	if boundary == "" {
		t := strings.TrimLeft(b, "\r\n")
		if strings.HasPrefix(t, "--") {
			line, _, _ := strings.Cut(t[2:], "\n")
			boundary = strings.TrimRight(line, "\r")
		}
	}
	if boundary == "" {
		return e.Text(clean(b))
	}
	delim := "--" + boundary
	pieces := strings.Split(b, delim)
	var out strings.Builder
	out.WriteString(e.Text(clean(pieces[0])))
	for _, p := range pieces[1:] {
		out.WriteString(delim)
		if strings.HasPrefix(p, "--") {
			out.WriteString(e.Text(clean(p)))
			continue
		}
		sep := "\r\n\r\n"
		hEnd := strings.Index(p, sep)
		if hEnd < 0 {
			sep = "\n\n"
			hEnd = strings.Index(p, sep)
		}
		if hEnd < 0 {
			out.WriteString(e.Text(clean(p)))
			continue
		}
		head, content := p[:hEnd], p[hEnd+len(sep):]
		trail := ""
		if strings.HasSuffix(content, "\r\n") {
			content, trail = content[:len(content)-2], "\r\n"
		} else if strings.HasSuffix(content, "\n") {
			content, trail = content[:len(content)-1], "\n"
		}
		name, ctype := partHeaders(head)
		out.WriteString(e.Text(clean(head)))
		out.WriteString(sep)
		switch {
		case content == "":
		case e.SensitiveValue(name, content):
			out.WriteString(Marker)
		case !utf8.ValidString(content):
			out.WriteString("[binary content]")
		default:
			r := e.Body(content, ctype, false, maxDepth)
			if r.JSON != "" {
				out.WriteString(r.JSON)
			} else {
				out.WriteString(r.Text)
			}
		}
		out.WriteString(trail)
	}
	return out.String()
}

// partHeaders returns a part's field name and content type.
func partHeaders(head string) (name, contentType string) {
	for _, line := range strings.Split(head, "\n") {
		k, v, ok := strings.Cut(strings.TrimSpace(line), ":")
		if !ok {
			continue
		}
		switch strings.ToLower(strings.TrimSpace(k)) {
		case "content-disposition":
			if _, params, err := mime.ParseMediaType(strings.TrimSpace(v)); err == nil {
				name = params["name"]
			} else if i := strings.Index(v, `name="`); i >= 0 {
				name, _, _ = strings.Cut(v[i+6:], `"`)
			}
		case "content-type":
			contentType = strings.TrimSpace(v)
		}
	}
	return name, contentType
}

// clean makes s safe to store: invalid UTF-8 becomes U+FFFD and control
// characters (C0 except tab and newline, DEL, C1) are removed.
func clean(s string) string {
	ok := utf8.ValidString(s)
	if ok {
		for i := 0; i < len(s); i++ {
			if c := s[i]; c < 0x20 && c != '\t' && c != '\n' || c == 0x7f || c == 0xc2 {
				ok = false
				break
			}
		}
	}
	if ok {
		return s
	}
	s = strings.ToValidUTF8(s, "\uFFFD")
	var b strings.Builder
	b.Grow(len(s))
	for _, c := range s {
		if c < 0x20 && c != '\t' && c != '\n' || c == 0x7f || c >= 0x80 && c < 0xa0 {
			continue
		}
		b.WriteRune(c)
	}
	return b.String()
}

// Clean is clean for the root package.
func Clean(s string) string { return clean(s) }
