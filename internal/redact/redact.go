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
	"math"
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
	contains terms  // normalised terms a sensitive name contains
	single   string // the one-letter ones
	words    map[string]bool
	patterns []*regexp.Regexp
	maxBody  int
}

// Built-in name rules. A name is normalised (NFKD, marks dropped,
// look-alike letters folded to Latin, lower-cased, only letters and digits
// kept) before it is matched. The lists are anchored on the scrubbers
// people already use (Sentry's SDK and server-side scrubber, gitleaks,
// detect-secrets, the OWASP Logging Cheat Sheet): redact/lists_test.go
// records each of their lists and checks every name in every place.
var (
	// BuiltinContains are terms a sensitive name contains.
	BuiltinContains = []string{"password", "passwd", "passphrase", "passcode", "secret", "token", "apikey", "accesskey",
		"privatekey", "authorization", "authorisation", "cookie", "signature", "credential", "cardnumber", "creditcard",
		"ccnumber", "cvc", "cvv", "iban", "sessionid", "sessid", "jwt", "hmac", "securitycode", "accountnumber",
		"routingnumber", "bankaccount", "codeverifier", "mnemonic", "seedphrase", "recoveryphrase", "recoverycode",
		"backupcode", "subscriptionkey", "functionskey", "masterkey", "encryptionkey", "signingkey", "sessionkey",
		"connectionstring", "databaseurl", "clientassertion", "bearer", "csrf", "xsrf", "twofactor", "privkey",
		"authkey", "servicekey", "accountkey", "clientkey", "dbkey", "databasekey", "dbpass", "databasepass", "keypass",
		"contrasena", "contrasenya", "forwardedfor"}
	// BuiltinWords are sensitive as a whole word of a name (words split at
	// anything but letters and digits, and at lower-to-upper case changes).
	BuiltinWords = map[string]bool{"pwd": true, "pw": true, "pass": true, "pin": true, "pan": true, "sig": true,
		"otp": true, "auth": true, "jwt": true, "hmac": true, "dsn": true, "totp": true, "creds": true}
	// finalWords are sensitive as the last word of a name (X-Session,
	// user_session, connect.sid) but not before another (session_count).
	finalWords = map[string]bool{"session": true, "sid": true}
	// exactNames are sensitive as the whole normalised name only: cookie
	// names that are ordinary words.
	exactNames = map[string]bool{"symfony": true}
	// keyNotSecret are words before a final "key" that make an ordinary
	// name: Idempotency-Key, sort_key, public_key.
	keyNotSecret = map[string]bool{"idempotency": true, "sort": true, "primary": true, "foreign": true, "partition": true,
		"cache": true, "public": true, "routing": true, "object": true, "dedup": true, "dedupe": true, "lookup": true,
		"unique": true, "composite": true, "map": true, "hash": true, "range": true, "row": true, "group": true,
		"message": true, "event": true, "i18n": true, "translation": true, "label": true, "index": true}

	// PIIContains and PIIWords name personal data (national identity
	// numbers, dates of birth, passports, driving licences, IP addresses;
	// X-Forwarded-For is in BuiltinContains, as in Sentry's security list),
	// redacted unless the rules keep PII.
	PIIContains = []string{"socialsecurity", "nationalid", "nationalidentity", "nationalinsurance", "passport",
		"dateofbirth", "birthdate", "birthday", "driverslicense", "driverlicense", "driverslicence", "drivinglicense",
		"drivinglicence", "taxpayerid", "taxid", "personnummer", "aadhaar", "pesel", "cardholder", "ipaddress",
		"remoteaddr", "realip", "clientip"}
	PIIWords = map[string]bool{"ssn": true, "dob": true, "cpf": true, "nin": true}

	// urlNames are sensitive as query, fragment and form parameters only,
	// where they carry OAuth authorization codes and similar one-time
	// credentials; elsewhere (an error's "code") they are ordinary.
	urlNames = map[string]bool{"code": true, "oauthverifier": true, "verifier": true, "samlresponse": true,
		"samlart": true, "ticket": true}

	// weakContains are terms (gitleaks' generic keywords and the provider
	// names of its keyword rules, five letters or more) that make a name
	// sensitive when its value looks like a credential: access_id=AKc9…,
	// DATADOG_APP=9f8e…. weakWordStart are shorter provider names that
	// must start a word of the name (LOB_KEY, but not global_id).
	weakContains = []string{"access", "api", "key", "auth", "creds", "adafruit", "adobe", "airtable", "algolia",
		"alibaba", "asana", "atlassian", "confluence", "beamer", "bitbucket", "bittrex", "meraki", "cloudflare",
		"codecov", "cohere", "coinbase", "confluent", "contentful", "datadog", "dnkey", "discord", "droneci",
		"dropbox", "facebook", "fastly", "finicity", "finnhub", "flickr", "freshbooks", "gitter", "gocardless",
		"heroku", "hubspot", "intercom", "jfrog", "artifactory", "bintray", "kraken", "kucoin", "launchdarkly",
		"linear", "linkedin", "looker", "mailchimp", "mailgun", "mapbox", "mattermost", "messagebird", "netlify",
		"newrelic", "nytimes", "newyorktimes", "privateai", "rapidapi", "sendbird", "sentry", "contribsys", "sidekiq",
		"squarespace", "telegr", "travis", "twitch", "twitter", "typeform", "yandex", "zendesk", "sendgrid", "stripe",
		"github", "gitlab", "slack", "shopify", "twilio", "openai", "anthropic", "sonar"}
	weakWordStart = []string{"etsy", "jira", "lob", "okta", "plaid", "snyk", "sumo", "xray"}
)

// weakIndex indexes weakContains.
var weakIndex terms

func init() {
	for _, w := range weakContains {
		weakIndex.add(w)
	}
}

// terms indexes terms (of two bytes or more) by their first two bytes, to
// find those a name contains.
type terms struct {
	by   [256][]string
	pair [256][4]uint64
}

func (t *terms) add(term string) {
	t.by[term[0]] = append(t.by[term[0]], term)
	t.pair[term[0]][term[1]>>6] |= 1 << (term[1] & 63)
}

// in returns the first term that n contains at i or after, or "".
func (t *terms) in(n string, from int) (string, int) {
	for i := from; i+1 < len(n); i++ {
		if t.pair[n[i]][n[i+1]>>6]&(1<<(n[i+1]&63)) == 0 {
			continue
		}
		for _, c := range t.by[n[i]] {
			if strings.HasPrefix(n[i:], c) {
				return c, i
			}
		}
	}
	return "", -1
}

// New returns an Engine with the built-in rules, the extra normalised
// contained terms keys, the extra patterns and the body limit maxBody.
// PII names are sensitive unless keepPII.
func New(keys []string, patterns []*regexp.Regexp, maxBody int, keepPII bool) *Engine {
	e := &Engine{maxBody: maxBody, words: BuiltinWords}
	list := append([]string(nil), BuiltinContains...)
	if !keepPII {
		list = append(list, PIIContains...)
		e.words = make(map[string]bool, len(BuiltinWords)+len(PIIWords))
		for w := range BuiltinWords {
			e.words[w] = true
		}
		for w := range PIIWords {
			e.words[w] = true
		}
	}
	for _, k := range append(list, keys...) {
		if len(k) == 1 {
			e.single += k
			continue
		}
		e.contains.add(k)
	}
	e.patterns = append([]*regexp.Regexp(nil), patterns...)
	return e
}

// MaxBody returns the body limit.
func (e *Engine) MaxBody() int { return e.maxBody }

// SensitiveKey reports whether values under the name k (a header, JSON key,
// query parameter, form field, XML element or text pair) are redacted
// whatever they are.
func (e *Engine) SensitiveKey(k string) bool {
	f := keyWords(k)
	return e.sensitive(&f)
}

// sensitive is SensitiveKey on a folded name.
func (e *Engine) sensitive(f *folded) bool {
	n := f.n
	if n == "" {
		return false
	}
	if n == "key" || e.words[n] || exactNames[n] {
		return true
	}
	for i := 0; i < f.cnt; i++ {
		w := f.word(i)
		if e.words[w] {
			return true
		}
		if i == f.cnt-1 && i > 0 && (w == "key" && !keyNotSecret[f.word(i-1)] || finalWords[w]) {
			return true
		}
	}
	if f.cnt == 1 && finalWords[n] {
		return true
	}
	c, _ := e.contains.in(n, 0)
	return c != "" || e.single != "" && strings.ContainsAny(n, e.single)
}

// Class is how a name decides its value's fate.
type Class uint8

const (
	// Ordinary names keep their values (which are still redacted by shape).
	Ordinary Class = iota
	// Sensitive names lose their values whatever they are.
	Sensitive
	// Weak names lose their values when these look like credentials
	// (CredentialLike): api_id, DATADOG_APP, X-Access.
	Weak
)

// Classify returns the class of the name k.
func (e *Engine) Classify(k string) Class {
	f := keyWords(k)
	switch {
	case e.sensitive(&f):
		return Sensitive
	case weak(&f):
		return Weak
	}
	return Ordinary
}

// classifyParam is Classify for a query, fragment or form parameter.
func (e *Engine) classifyParam(k string) Class {
	f := keyWords(k)
	switch {
	case e.sensitive(&f) || urlNames[f.n]:
		return Sensitive
	case weak(&f):
		return Weak
	}
	return Ordinary
}

func weak(f *folded) bool {
	n := f.n
	for from := 0; ; {
		c, i := weakIndex.in(n, from)
		if c == "" {
			break
		}
		if !(c == "auth" && strings.HasPrefix(n[i:], "author")) {
			return true
		}
		from = i + 1
	}
	for _, p := range weakWordStart {
		if strings.HasPrefix(n, p) {
			return true
		}
		for i := 1; i < f.cnt; i++ {
			if strings.HasPrefix(f.word(i), p) {
				return true
			}
		}
	}
	return false
}

// SensitiveValue reports whether the value v under the name k is redacted
// by name: k is sensitive, or weak and v looks like a credential.
func (e *Engine) SensitiveValue(k, v string) bool {
	switch e.Classify(k) {
	case Sensitive:
		return true
	case Weak:
		return CredentialLike(v)
	}
	return false
}

// CredentialLike reports whether v looks like a key or token rather than
// a word, a number of ordinary size or a date: one run of 10 to 1,000
// token characters (letters, digits, _ - . + / = ~ %, and one colon with
// eight or more after it, as in a bot token) with a digit or one of + / =
// among them (or, letters only, 12 or more in random case: a quarter or
// more upper case, which CamelCaseWords are not), and a Shannon entropy of 3 bits a character or more (2 from
// 16 characters on, so that 16 random digits qualify). Quotes around
// v are ignored.
func CredentialLike(v string) bool {
	v = strings.TrimSpace(v)
	if len(v) >= 2 && (v[0] == '"' || v[0] == '\'') && v[len(v)-1] == v[0] {
		v = v[1 : len(v)-1]
	}
	if len(v) < 10 || len(v) > 1000 {
		return false
	}
	var counts [256]uint16
	mixed := false
	colon := -1
	upper, lower := 0, 0
	for i := 0; i < len(v); i++ {
		c := v[i]
		switch {
		case !isCredentialByte(c):
			return false
		case c == ':':
			if colon >= 0 {
				return false
			}
			colon = i
		case c >= '0' && c <= '9', c == '+', c == '/', c == '=':
			mixed = true
		case c >= 'A' && c <= 'Z':
			upper++
		case c >= 'a' && c <= 'z':
			lower++
		}
		counts[c]++
	}
	if colon >= 0 && len(v)-colon-1 < 8 {
		return false
	}
	if !mixed {
		// Letters only: random case (a quarter of the letters upper case,
		// unlike CamelCaseWords) from 12 letters on.
		if len(v) < 12 || upper < 3 || lower < 3 || 4*upper < upper+lower {
			return false
		}
	}
	h := 0.0
	for _, n := range counts {
		if n > 0 {
			p := float64(n) / float64(len(v))
			h -= p * math.Log2(p)
		}
	}
	return h >= 3 || len(v) >= 16 && h >= 2
}

// isCredentialByte reports whether c may be part of a credential's token.
func isCredentialByte(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' ||
		strings.IndexByte("_-.~+/=%:", c) >= 0
}

// NormalizeKey returns k as names are matched: NFKD, marks dropped,
// look-alikes folded, lower-cased, only ASCII letters and digits.
func NormalizeKey(k string) string {
	return keyWords(k).n
}
