package redact

import "strings"

// Secret shapes: credentials recognised by their form wherever they stand,
// under any name or none. The prefixes and lengths follow the public rule
// sets of secret scanners (gitleaks) for the formats the providers
// document; a match covers the whole token.
type shape struct {
	prefix  string
	charset uint8 // which bytes continue the token
	min     int   // fewest bytes after the prefix
}

// indexedShape is a shape with whether its prefix is distinctive enough
// (it has punctuation) to be found inside a word, as in "0sk_live_…";
// other shapes start a word.
type indexedShape struct {
	shape
	glued bool
}

// Character sets of token bodies.
const (
	csAlnum  uint8 = iota // A-Z a-z 0-9
	csB64URL              // A-Z a-z 0-9 _ -
	csB64                 // A-Z a-z 0-9 + / = _ -
	csAWS                 // A-Z 2-7 (exactly 16)
	csToken               // A-Z a-z 0-9 _ - .
)

var shapes = []shape{
	{"sk_live_", csAlnum, 10}, {"sk_test_", csAlnum, 10}, {"rk_live_", csAlnum, 10}, {"rk_test_", csAlnum, 10},
	{"sk_prod_", csAlnum, 10}, {"whsec_", csB64, 10}, {"whsk_", csB64, 10},
	{"ghp_", csAlnum, 30}, {"gho_", csAlnum, 30}, {"ghu_", csAlnum, 30}, {"ghs_", csAlnum, 30}, {"ghr_", csAlnum, 30},
	{"github_pat_", csB64URL, 30},
	{"glpat-", csB64URL, 20}, {"gldt-", csB64URL, 20}, {"glptt-", csB64URL, 20}, {"GR1348941", csB64URL, 20},
	{"xoxb-", csB64URL, 10}, {"xoxp-", csB64URL, 10}, {"xoxa-", csB64URL, 10}, {"xoxo-", csB64URL, 10},
	{"xoxs-", csB64URL, 10}, {"xoxr-", csB64URL, 10}, {"xoxe-", csB64URL, 10}, {"xoxe.", csB64URL, 10}, {"xapp-", csB64URL, 10},
	{"AIza", csB64URL, 30}, {"ya29.", csB64URL, 20}, {"GOCSPX-", csB64URL, 20},
	{"SG.", csToken, 40}, {"npm_", csAlnum, 30}, {"pypi-AgE", csB64URL, 50}, {"dop_v1_", csAlnum, 40}, {"doo_v1_", csAlnum, 40},
	{"shpat_", csAlnum, 30}, {"shpca_", csAlnum, 30}, {"shppa_", csAlnum, 30}, {"shpss_", csAlnum, 30},
	{"sk-ant-", csB64URL, 30}, {"sk-proj-", csB64URL, 30}, {"sk-svcacct-", csB64URL, 30}, {"sk-admin-", csB64URL, 30},
	{"sq0atp-", csB64URL, 20}, {"sq0csp-", csB64URL, 20}, {"EAAA", csB64URL, 56}, {"key-", csAlnum, 32},
	{"hf_", csAlnum, 30}, {"pat", csAlnum, 0}, // pat: Airtable personal tokens checked below
	{"AKIA", csAWS, 16}, {"ASIA", csAWS, 16}, {"ABIA", csAWS, 16}, {"ACCA", csAWS, 16}, {"A3T", csAWS, 17},
	{"AGPA", csAWS, 16}, {"AIDA", csAWS, 16}, {"AROA", csAWS, 16}, {"AIPA", csAWS, 16}, {"ANPA", csAWS, 16},
	{"ANVA", csAWS, 16}, {"APKA", csAWS, 16},
	{"eyJ", csToken, 20}, // JWT, JWS, JWE: checked below
	{"hooks.slack.com/services/", csToken, 20}, {"hooks.slack.com/workflows/", csToken, 20},
	{"discord.com/api/webhooks/", csToken, 20}, {"discordapp.com/api/webhooks/", csToken, 20},
	{"outlook.office.com/webhook/", csToken, 20}, {"webhook.office.com/webhookb2/", csToken, 20},
	{"AccountKey=", csB64, 20}, {"SharedAccessKey=", csB64, 20}, {"SharedAccessSignature=", csB64, 20},
}

// shapeFirst marks the bytes that start a shape, for a cheap prefilter;
// shapesBy lists the shapes by their first byte.
var (
	shapeFirst [256]bool
	shapesBy   [256][]indexedShape
	// gluedPair marks the first two bytes of the glued shapes.
	gluedPair [256][256]bool
)

func init() {
	for _, s := range shapes {
		glued := strings.ContainsAny(s.prefix, "_-./=") && s.prefix != "key-" && s.prefix != "SG."
		shapeFirst[s.prefix[0]] = true
		shapesBy[s.prefix[0]] = append(shapesBy[s.prefix[0]], indexedShape{s, glued})
		if glued {
			gluedPair[s.prefix[0]][s.prefix[1]] = true
		}
	}
	shapeFirst['-'] = true // PEM, anywhere
	gluedPair['-']['-'] = true
}

func inCharset(c byte, cs uint8) bool {
	alnum := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
	switch cs {
	case csAlnum:
		return alnum
	case csB64URL:
		return alnum || c == '_' || c == '-'
	case csB64:
		return alnum || c == '+' || c == '/' || c == '=' || c == '_' || c == '-'
	case csAWS:
		return c >= 'A' && c <= 'Z' || c >= '2' && c <= '7'
	default:
		return alnum || c == '_' || c == '-' || c == '.' || c == '/'
	}
}

func isWordByte(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_'
}

// shapeSpans returns the byte ranges of secret-shaped tokens in s.
func shapeSpans(s string, spans []span) []span {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !shapeFirst[c] {
			continue
		}
		inWord := i > 0 && isWordByte(s[i-1])
		if inWord && (i+1 >= len(s) || !gluedPair[c][s[i+1]]) {
			continue
		}
		if c == '-' {
			if end, ok := pemEnd(s, i); ok {
				spans = append(spans, span{i, end, ""})
				i = end - 1
			}
			continue
		}
		for _, sh := range shapesBy[c] {
			if inWord && !sh.glued || !strings.HasPrefix(s[i:], sh.prefix) {
				continue
			}
			j := i + len(sh.prefix)
			for j < len(s) && inCharset(s[j], sh.charset) {
				j++
			}
			n := j - i - len(sh.prefix)
			switch {
			case sh.prefix == "pat":
				// Airtable: pat + 14 alnum + . + 64 hex.
				if n != 14 || j >= len(s) || s[j] != '.' {
					continue
				}
				k := j + 1
				for k < len(s) && inCharset(s[k], csAlnum) {
					k++
				}
				if k-j-1 < 60 {
					continue
				}
				j = k
			case sh.prefix == "eyJ":
				// A JWT has two dots; tolerate a cut token with one.
				if strings.Count(s[i:j], ".") < 1 {
					continue
				}
			case sh.charset == csAWS:
				if n < sh.min || (j < len(s) && isWordByte(s[j])) {
					continue
				}
				spans = append(spans, span{i, i + len(sh.prefix) + sh.min, ""})
				i = j - 1
				goto next
			}
			if n < sh.min {
				continue
			}
			if strings.Contains(sh.prefix, "/") || strings.HasSuffix(sh.prefix, "=") {
				i += len(sh.prefix) // keep the host or the name
				spans = append(spans, span{i, j, ""})
			} else {
				spans = append(spans, span{i, j, ""})
			}
			i = j - 1
			goto next
		}
	next:
	}
	return spans
}

// pemEnd reports whether a PEM private key block begins at s[i:] and
// returns where it ends: after its END line, or at the end of s when cut.
func pemEnd(s string, i int) (int, bool) {
	const begin = "-----BEGIN "
	if !strings.HasPrefix(s[i:], begin) {
		return 0, false
	}
	rest := s[i+len(begin):]
	eol := strings.Index(rest, "-----")
	if eol < 0 || eol > 60 || !strings.Contains(rest[:eol], "PRIVATE KEY") && !strings.Contains(rest[:eol], "PGP PRIVATE") &&
		!strings.Contains(rest[:eol], "ENCRYPTED") {
		if eol < 0 && len(rest) < 60 && strings.HasPrefix("PRIVATE KEY", strings.TrimLeft(strings.TrimPrefix(rest, "RSA "), " ")) {
			return len(s), true // a header cut short
		}
		if eol >= 0 || len(rest) >= 60 || !strings.Contains(rest, "PRIVATE") {
			return 0, false
		}
		return len(s), true
	}
	endAt := strings.Index(rest[eol+5:], "-----END ")
	if endAt < 0 {
		return len(s), true
	}
	k := i + len(begin) + eol + 5 + endAt + len("-----END ")
	if e := strings.Index(s[k:], "-----"); e >= 0 && e < 60 {
		return k + e + 5, true
	}
	return len(s), true
}
