package securitylog_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"math/rand"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/outboxkit/outbox/integrationlog"
	"github.com/outboxkit/outbox/internal/testutil"
	"github.com/outboxkit/outbox/redact"
	"github.com/outboxkit/outbox/securitylog"
)

// The adversarial redaction corpus: secrets of every known leak class are
// planted at random places of random structures, stored through every
// recorder path against PostgreSQL, and every column of every row of every
// table of the schema is then scanned for them. Run with -redact.seed=N to
// reproduce or vary a run; the seed is logged.
var redactSeed = flag.Int64("redact.seed", 20261129, "seed of the adversarial redaction corpus")

// corpusLimit is the body limit of the corpus's recorders: small, so that
// many bodies sit around it.
const corpusLimit = 2048

// A planted secret: its class, where it went, and its distinctive cores (a
// leak is any 12-character window of a core found in stored text; cards are
// matched on digits only).
type planted struct {
	class, path string
	cores       []string
	card        string
}

// A secret to plant: a name it stands under (sensitive or ordinary), its
// text, and, for cards planted as JSON numbers, the raw number.
type secretSpec struct {
	class  string
	name   string
	value  string
	number string // a JSON number literal, when planted as a number
	asKey  bool   // planted as a JSON object key
	deep   any    // an object or array planted under a sensitive name
	cores  []string
	card   string
}

type corpusGen struct {
	rnd    *rand.Rand
	plants []planted
}

const markerAlphabet = "abcdefghijkmnpqrstuvwxyz23456789"

func (g *corpusGen) marker(n int, alphabet string) string {
	b := make([]byte, n)
	for i := range b {
		b[i] = alphabet[g.rnd.Intn(len(alphabet))]
	}
	return string(b)
}

func (g *corpusGen) pick(xs []string) string { return xs[g.rnd.Intn(len(xs))] }

// sensitiveNames are names whose values must be redacted, in the spellings
// services use, with look-alike forms added by confusable.
var sensitiveNames = []string{"password", "passwd", "client_secret", "access_token", "refreshToken", "api_key",
	"X-Api-Key", "apiKey", "card_number", "cvv", "iban", "pin", "ssn", "private_key", "session_id", "jwt",
	"passcode", "security_code", "account_number", "routing_number", "code_verifier", "mnemonic", "seed_phrase",
	"Ocp-Apim-Subscription-Key", "X-Functions-Key", "X-Shopify-Hmac-Sha256", "otp", "auth", "x-auth-token",
	"webhook_secret", "credentials", "signature"}

var ordinaryNames = []string{"note", "message", "description", "detail", "data", "value", "comment", "ref", "info", "text"}

// confusable spells name with look-alike characters: Cyrillic, Greek,
// fullwidth or mathematical letters.
func (g *corpusGen) confusable(name string) string {
	cyr := map[rune]rune{'a': 'а', 'e': 'е', 'o': 'о', 'p': 'р', 'c': 'с', 'x': 'х', 'y': 'у', 'i': 'і', 's': 'ѕ'}
	grk := map[rune]rune{'o': 'ο', 'i': 'ι', 'k': 'κ', 'n': 'η', 'v': 'ν', 't': 'τ', 'p': 'ρ'}
	style := g.rnd.Intn(4)
	var b strings.Builder
	for _, c := range name {
		switch {
		case style == 0 && cyr[c] != 0:
			b.WriteRune(cyr[c])
		case style == 1 && grk[c] != 0:
			b.WriteRune(grk[c])
		case style == 2 && c >= 'a' && c <= 'z':
			b.WriteRune(c - 'a' + 'ａ')
		case style == 3 && c >= 'a' && c <= 'z':
			b.WriteRune(c - 'a' + '𝐚')
		default:
			b.WriteRune(c)
		}
	}
	return b.String()
}

func (g *corpusGen) sensitiveName() string {
	n := g.pick(sensitiveNames)
	if g.rnd.Intn(5) == 0 {
		n = g.confusable(strings.ToLower(n))
	}
	return n
}

// card returns a Luhn-valid card number with a real issuer prefix.
func (g *corpusGen) card() string {
	prefixes := []struct {
		p string
		n int
	}{{"4", 16}, {"4", 13}, {"4", 19}, {"51", 16}, {"55", 16}, {"2221", 16}, {"34", 15}, {"37", 15}, {"6011", 16}, {"65", 16}, {"3530", 16}, {"36", 14}, {"62", 19}}
	p := prefixes[g.rnd.Intn(len(prefixes))]
	d := []byte(p.p)
	for len(d) < p.n-1 {
		d = append(d, byte('0'+g.rnd.Intn(10)))
	}
	d = append(d, '0')
	for c := byte('0'); c <= '9'; c++ {
		d[len(d)-1] = c
		if luhnRef(string(d)) {
			break
		}
	}
	return string(d)
}

func luhnRef(s string) bool {
	sum, dbl := 0, false
	for i := len(s) - 1; i >= 0; i-- {
		d := int(s[i] - '0')
		if dbl {
			if d *= 2; d > 9 {
				d -= 9
			}
		}
		sum += d
		dbl = !dbl
	}
	return sum%10 == 0
}

// secret makes one secret of a random class, for a context that can hold
// JSON numbers and keys (json) or only text.
func (g *corpusGen) secret(json bool) secretSpec {
	classes := []string{"named", "named", "freetext", "shape", "shape", "card", "url"}
	switch c := g.pick(classes); c {
	case "named":
		m := g.marker(20, markerAlphabet)
		s := secretSpec{class: "named", name: g.sensitiveName(), value: m, cores: []string{m}}
		switch g.rnd.Intn(4) {
		case 0:
			s.value = "correct horse battery " + m
		case 1:
			if json {
				s.deep = map[string]any{"v": m, "list": []any{m, 1}}
				s.class = "named-structure"
			}
		}
		return s
	case "freetext":
		m := g.marker(20, markerAlphabet)
		tmpl := []string{"card declined: password=%s", "password: correct horse battery %s", "error: api_key: %s, retry later",
			"see https://cb.example.com/return?token=%s&state=1", "Authorization: Bearer %s", `payload was {"password":"%s"}`,
			"login failed (user=bob, pin=%s)", "<password>%s</password>", "upstream said: client_secret=%s; giving up",
			`config: {\"secret\": \"%s\"}`, "query failed: passcode %s", "redirect to https://x.example.com/cb#access_token=%s"}
		t := g.pick(tmpl)
		if t == "query failed: passcode %s" {
			// A bare word before a value is no pair: use the pair form.
			t = "query failed: passcode=%s"
		}
		return secretSpec{class: "freetext", name: g.pick(ordinaryNames), value: fmt.Sprintf(t, m), cores: []string{m}}
	case "shape":
		return g.shape()
	case "card":
		return g.cardSpec(json)
	default:
		return g.urlSpec()
	}
}

func (g *corpusGen) shape() secretSpec {
	const b64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
	s := secretSpec{class: "shape", name: g.pick(ordinaryNames)}
	m := g.marker(20, markerAlphabet)
	switch g.rnd.Intn(11) {
	case 0:
		s.value = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIx" + m + "In0." + g.marker(43, b64)
	case 1:
		m = g.marker(16, "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567")
		s.value = g.pick([]string{"AKIA", "ASIA"}) + m
	case 2:
		s.value = g.pick([]string{"sk_live_", "rk_live_", "sk_test_"}) + g.marker(4, b64) + m + g.marker(6, b64)
	case 3:
		s.value = "whsec_" + m + g.marker(12, b64)
	case 4:
		s.value = "ghp_" + m + g.marker(16, b64)
	case 5:
		s.value = "github_pat_11ABCDEFG0" + m + "_" + g.marker(40, b64)
	case 6:
		s.value = "xoxb-123456789012-1234567890123-" + m + "abcd"
	case 7:
		s.value = "AIza" + m + g.marker(15, b64)
	case 8:
		kind := g.pick([]string{"RSA ", "EC ", "OPENSSH ", ""})
		s.value = "-----BEGIN " + kind + "PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAAS" + m + "\n" + g.marker(64, b64) + "\n-----END " + kind + "PRIVATE KEY-----"
	case 9:
		s.value = "SG." + g.marker(2, b64) + m + "." + g.marker(43, b64)
	default:
		s.value = "glpat-" + m
	}
	s.cores = []string{m}
	if g.rnd.Intn(3) == 0 {
		s.value = "value is " + s.value + " (rotated)"
	}
	return s
}

func (g *corpusGen) cardSpec(json bool) secretSpec {
	c := g.card()
	s := secretSpec{class: "card", name: g.pick(ordinaryNames), card: c}
	group := func(sep string) string {
		var parts []string
		r := c
		for len(r) > 4 {
			parts = append(parts, r[:4])
			r = r[4:]
		}
		return strings.Join(append(parts, r), sep)
	}
	forms := []string{c, group(" "), group("-"), group("."), group("  "), "card " + c + " declined"}
	s.value = g.pick(forms)
	if json {
		switch g.rnd.Intn(6) {
		case 0:
			s.number = "-" + c
		case 1:
			s.number = c + ".0"
		case 2:
			s.number = c[:1] + "." + c[1:] + "e" + fmt.Sprint(len(c)-1)
		case 3:
			s.asKey = true
		}
	}
	return s
}

func (g *corpusGen) urlSpec() secretSpec {
	m := g.marker(20, markerAlphabet)
	const b64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
	forms := []string{
		"https://sk_live_" + m + ":@api.stripe.example/v1/charges",
		"https://bob:" + m + "@db.example.com/x",
		"https://api.example.com/callback?access_token=" + m + "&page=2",
		"https://api.example.com/v1/keys/sk_live_" + m,
		"https://hooks.slack.com/services/T0000000/B0000000/" + m[:12] + strings.ToUpper(m[12:]),
		"https://api.example.com/reset/token/" + m,
		"https://api.example.com/x?next=%2Fa&client_secret=" + m,
		"https://h.example/p;jsessionid=" + m,
		"https://api.example.com/v1/files/" + g.marker(4, b64) + "?X-Amz-Signature=" + m + "&X-Amz-Credential=abc",
	}
	return secretSpec{class: "url", name: g.pick(ordinaryNames), value: g.pick(forms), cores: []string{m}}
}

// text renders s for a free-text field: a named secret as a pair.
func (g *corpusGen) text(s secretSpec) string {
	if s.class != "named" && s.class != "named-structure" {
		return s.value
	}
	f := g.pick([]string{"%s=%s", "%s: %s", `"%s": "%s"`, `%s="%s"`, "failed (%s=%s)"})
	return fmt.Sprintf(f, s.name, s.value)
}

func (g *corpusGen) record(s secretSpec, path string) {
	g.plants = append(g.plants, planted{class: s.class, path: path, cores: s.cores, card: s.card})
}

// filler returns ordinary, non-secret text of about n bytes.
func (g *corpusGen) filler(n int) string {
	words := []string{"order", "shipped", "customer", "invoice", "paid", "the", "amount", "currency", "EUR", "status", "active", "2026-11-29", "12.50", "id"}
	var b strings.Builder
	for b.Len() < n {
		if b.Len() > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(g.pick(words))
	}
	return b.String()
}

// jsonValue plants s in a JSON value: a random structure of random depth.
func (g *corpusGen) jsonValue(s secretSpec, size int) map[string]any {
	var leaf map[string]any
	switch {
	case s.asKey:
		leaf = map[string]any{s.value: "x"}
	case s.number != "":
		leaf = map[string]any{s.name: json.Number(s.number)}
	case s.deep != nil:
		leaf = map[string]any{s.name: s.deep}
	default:
		leaf = map[string]any{s.name: s.value}
	}
	var v any = leaf
	for d := g.rnd.Intn(6); d > 0; d-- {
		if g.rnd.Intn(2) == 0 {
			v = []any{g.filler(10), v, 3}
		} else {
			v = map[string]any{"n" + fmt.Sprint(d): v, "k": g.filler(8)}
		}
	}
	root := map[string]any{"id": "obj_" + fmt.Sprint(g.rnd.Intn(1e6)), "z": v}
	// Fillers before and after in key order, so the secret lands anywhere.
	pad := size - 100
	if pad > 0 {
		before := g.rnd.Intn(pad + 1)
		root["a_pad"] = g.filler(before)
		root["zz_pad"] = g.filler(pad - before)
	}
	return root
}

// body plants s in an HTTP body of a random format, about size bytes.
func (g *corpusGen) body(s secretSpec, size int) (body []byte, contentType, format string) {
	formats := []string{"json", "json", "problem+json", "vnd.api+json", "graphql", "ndjson", "form", "multipart", "xml", "text", "invalid-json"}
	format = g.pick(formats)
	if s.number != "" || s.asKey || s.deep != nil {
		format = g.pick([]string{"json", "problem+json", "ndjson", "invalid-json"})
	}
	pad := max(size-100, 0)
	before := g.rnd.Intn(pad + 1)
	switch format {
	case "json", "invalid-json":
		b, _ := json.Marshal(g.jsonValue(s, size))
		if format == "invalid-json" {
			b = append(b[:len(b)-1], []byte(`,"broken":tru`)...)
		}
		return b, "application/json", format
	case "problem+json":
		b, _ := json.Marshal(map[string]any{"type": "https://example.com/probs/x", "title": "Declined", "detail": g.filler(before),
			"errors": []any{g.jsonValue(s, pad-before)}})
		return b, "application/problem+json", format
	case "vnd.api+json":
		b, _ := json.Marshal(map[string]any{"data": map[string]any{"type": "users", "id": "1",
			"attributes": map[string]any{"bio": g.filler(before), s.name: s.value, "tail": g.filler(pad - before)}}})
		return b, "application/vnd.api+json", format
	case "graphql":
		q := "mutation { login(user: \"bob\", " + s.name + ": \"" + s.value + "\") { ok } }"
		vars := map[string]any{"input": map[string]any{s.name: s.value, "note": g.filler(pad)}}
		if g.rnd.Intn(2) == 0 {
			q = "mutation Login($input: LoginInput!) { login(input: $input) { ok } } # " + g.filler(before)
		}
		b, _ := json.Marshal(map[string]any{"query": q, "variables": vars})
		return b, "application/json", format
	case "ndjson":
		var buf bytes.Buffer
		for i := 0; buf.Len() < before; i++ {
			fmt.Fprintf(&buf, `{"line":%d,"msg":%q}`+"\n", i, g.filler(60))
		}
		b, _ := json.Marshal(g.jsonValue(s, 0))
		buf.Write(b)
		buf.WriteByte('\n')
		for buf.Len() < size {
			fmt.Fprintf(&buf, `{"msg":%q}`+"\n", g.filler(60))
		}
		return buf.Bytes(), "application/x-ndjson", format
	case "form":
		v := "a=" + url.QueryEscape(g.filler(before)) + "&" + url.QueryEscape(s.name) + "=" + url.QueryEscape(s.value) + "&z=" + url.QueryEscape(g.filler(pad-before))
		return []byte(v), "application/x-www-form-urlencoded", format
	case "multipart":
		var buf bytes.Buffer
		w := multipart.NewWriter(&buf)
		_ = w.WriteField("intro", g.filler(before))
		if g.rnd.Intn(3) == 0 {
			fw, _ := w.CreateFormFile(s.name, "secret.txt")
			fw.Write([]byte(s.value))
		} else {
			_ = w.WriteField(s.name, s.value)
		}
		_ = w.WriteField("outro", g.filler(pad-before))
		_ = w.Close()
		return buf.Bytes(), w.FormDataContentType(), format
	case "xml":
		name := strings.Map(func(r rune) rune {
			if r == ' ' {
				return '_'
			}
			return r
		}, s.name)
		x := "<?xml version=\"1.0\"?><req><intro>" + g.filler(before) + "</intro><ns:" + name + " type=\"s\">" + xmlEscape(s.value) +
			"</ns:" + name + "><outro>" + g.filler(pad-before) + "</outro></req>"
		return []byte(x), g.pick([]string{"application/xml", "text/xml", "application/soap+xml"}), format
	default:
		t := g.filler(before) + "\n" + s.name + ": " + s.value + "\n" + g.filler(pad-before)
		if s.class == "freetext" || s.class == "shape" || s.class == "card" || s.class == "url" {
			t = g.filler(before) + " " + s.value + " " + g.filler(pad-before)
		}
		return []byte(t), "text/plain; charset=utf-8", format
	}
}

func xmlEscape(s string) string {
	var b bytes.Buffer
	_ = xmlEscapeText(&b, s)
	return b.String()
}

func xmlEscapeText(w io.Writer, s string) error {
	r := strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;")
	_, err := io.WriteString(w, r.Replace(s))
	return err
}

// size returns a body size: small, around the limit, or far over it.
func (g *corpusGen) size() int {
	switch g.rnd.Intn(4) {
	case 0:
		return 200 + g.rnd.Intn(300)
	case 1, 2:
		return corpusLimit - 300 + g.rnd.Intn(600)
	default:
		return 2*corpusLimit + g.rnd.Intn(4*corpusLimit)
	}
}

// headerPlant puts s in a header: under its name when sensitive, else as
// the value of an ordinary or URL-carrying header.
func (g *corpusGen) headerPlant(h http.Header, s secretSpec) {
	switch {
	case s.class == "url":
		h.Set(g.pick([]string{"Location", "Content-Location", "X-Callback"}), s.value)
		if g.rnd.Intn(2) == 0 {
			h.Del("Location")
			h.Set("Link", "<"+s.value+">; rel=\"next\"")
		}
	case s.class == "named" || s.class == "named-structure":
		name := s.name
		if strings.ContainsAny(name, " ") || !isASCII(name) {
			name = "X-" + g.pick([]string{"Api-Key", "Auth-Token", "Functions-Key"})
		}
		h.Set(name, s.value)
	case s.card != "":
		h.Set("X-Note", s.value)
	default:
		h.Set("X-"+g.pick([]string{"Debug", "Note", "Upstream-Error", "Trace-Info"}), strings.ReplaceAll(s.value, "\n", " "))
	}
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}

// urlPlant returns a request URL (on base) carrying s.
func (g *corpusGen) urlPlant(base string, s secretSpec) string {
	switch {
	case s.class == "url" && strings.Contains(s.value, "hooks.slack.com"):
		// A webhook URL's path means nothing on another host.
		return base + "/hook?next=" + url.QueryEscape(s.value)
	case s.class == "url":
		u, _ := url.Parse(s.value)
		b, _ := url.Parse(base)
		u.Scheme, u.Host = b.Scheme, b.Host
		return u.String()
	case s.class == "named" || s.class == "named-structure":
		return base + "/hook?" + url.QueryEscape(s.name) + "=" + url.QueryEscape(s.value) + "&page=2"
	default:
		return base + "/hook?q=" + url.QueryEscape(s.value)
	}
}

func TestRedactionCorpus(t *testing.T) {
	t.Parallel()
	seed := *redactSeed
	t.Logf("redaction corpus seed %d (-redact.seed=%d reproduces it)", seed, seed)
	g := &corpusGen{rnd: rand.New(rand.NewSource(seed))}
	b := setup(t, nil)
	ctx := ctxT(t)
	l := newIntegrationLog(t, b, integrationlog.Config{Redaction: redact.Rules{MaxBodyBytes: corpusLimit}})
	sl := newLog(t, b, securitylog.Config{Publish: true, Redaction: redact.Rules{MaxBodyBytes: 8 * corpusLimit},
		BruteForce: securitylog.BruteForceConfig{Disabled: true}})
	const rounds = 40
	records := 0

	// Outbound calls through the recording Transport against a real server.
	type reply struct {
		header http.Header
		status int
		body   []byte
	}
	replies := make(chan reply, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		rp := <-replies
		for k, v := range rp.header {
			w.Header()[k] = v
		}
		w.WriteHeader(rp.status)
		_, _ = w.Write(rp.body)
	}))
	defer srv.Close()
	client := &http.Client{Transport: l.Transport("corpus-out", nil, &integrationlog.HTTPOptions{ExternalID: integrationlog.ExternalIDFromJSON("id")}),
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	for i := 0; i < rounds; i++ {
		s := []secretSpec{g.secret(false), g.secret(false), g.secret(true), g.secret(false), g.secret(true)}
		u := g.urlPlant(srv.URL, s[0])
		g.record(s[0], "transport/request-url")
		body, ct, format := g.body(s[2], g.size())
		g.record(s[2], "transport/request-body/"+format)
		req, err := http.NewRequestWithContext(ctx, "POST", u, bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", ct)
		g.headerPlant(req.Header, s[1])
		g.record(s[1], "transport/request-header")
		rh := http.Header{}
		g.headerPlant(rh, s[3])
		g.record(s[3], "transport/response-header")
		rbody, rct, rformat := g.body(s[4], g.size())
		g.record(s[4], "transport/response-body/"+rformat)
		rh.Set("Content-Type", rct)
		status := g.pick([]string{"200", "201", "302", "402", "500"})
		var st int
		fmt.Sscan(status, &st)
		replies <- reply{header: rh, status: st, body: rbody}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		records++
	}
	// External ids picked from responses: a shaped secret as the id.
	for i := 0; i < 10; i++ {
		s := g.shape()
		id := s.value
		g.record(s, "transport/external-id")
		b, _ := json.Marshal(map[string]any{"id": id, "ok": true})
		replies <- reply{header: http.Header{"Content-Type": {"application/json"}}, status: 200, body: b}
		req, _ := http.NewRequestWithContext(ctx, "GET", srv.URL+"/x", nil)
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		records++
	}

	// Inbound requests through the Middleware.
	var next reply
	mw := l.Middleware("corpus-in", &integrationlog.HTTPOptions{ExternalID: integrationlog.ExternalIDFromJSON("id")})
	in := httptest.NewServer(mw(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		for k, v := range next.header {
			w.Header()[k] = v
		}
		w.WriteHeader(next.status)
		_, _ = w.Write(next.body)
	})))
	defer in.Close()
	for i := 0; i < rounds; i++ {
		s := []secretSpec{g.secret(false), g.secret(false), g.secret(true), g.secret(false), g.secret(true)}
		u := g.urlPlant(in.URL, s[0])
		g.record(s[0], "middleware/request-url")
		body, ct, format := g.body(s[2], g.size())
		g.record(s[2], "middleware/request-body/"+format)
		req, _ := http.NewRequestWithContext(ctx, "POST", u, bytes.NewReader(body))
		req.Header.Set("Content-Type", ct)
		g.headerPlant(req.Header, s[1])
		g.record(s[1], "middleware/request-header")
		rh := http.Header{}
		g.headerPlant(rh, s[3])
		g.record(s[3], "middleware/response-header")
		rbody, rct, rformat := g.body(s[4], g.size())
		g.record(s[4], "middleware/response-body/"+rformat)
		rh.Set("Content-Type", rct)
		next = reply{header: rh, status: 200 + 100*g.rnd.Intn(3), body: rbody}
		if user := g.rnd.Intn(4); user == 0 {
			m := g.marker(20, markerAlphabet)
			req.SetBasicAuth("bob", m)
			g.plants = append(g.plants, planted{class: "named", path: "middleware/basic-auth",
				cores: []string{m, base64.StdEncoding.EncodeToString([]byte("bob:" + m))[8:28]}})
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		records++
	}
	// Transport and Middleware write through the log's buffer: flush it.
	if err := l.Close(ctx); err != nil {
		t.Fatalf("flushing the HTTP recorders: %v", err)
	}

	// The Record* methods.
	tx, err := b.db.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback()
	for i := 0; i < rounds; i++ {
		s := []secretSpec{g.secret(false), g.secret(true), g.secret(true), g.secret(false), g.shape()}
		g.record(s[0], "api-call/url")
		g.record(s[1], "api-call/request")
		g.record(s[2], "api-call/response")
		g.record(s[3], "api-call/error")
		g.record(s[4], "api-call/external-id")
		var reqV any = g.jsonValue(s[1], g.size())
		if g.rnd.Intn(2) == 0 {
			body, _, format := g.body(s[1], g.size())
			reqV = body
			g.plants[len(g.plants)-4].path += "/bytes/" + format
		}
		if _, err := l.RecordAPICall(ctx, tx, integrationlog.APICall{Integration: "corpus-api", Method: "POST", URL: g.urlPlant("https://api.example.com", s[0]),
			Request: reqV, Response: g.jsonValue(s[2], g.size()), HTTPStatus: 402, Error: g.text(s[3]), ExternalID: s[4].value}); err != nil {
			t.Fatalf("RecordAPICall: %v", err)
		}
		records++

		s = []secretSpec{g.secret(false), g.secret(true), g.secret(false), g.shape(), g.shape()}
		h := http.Header{}
		g.headerPlant(h, s[0])
		g.record(s[0], "webhook-received/header")
		g.record(s[1], "webhook-received/payload")
		g.record(s[2], "webhook-received/error")
		g.record(s[3], "webhook-received/external-id")
		g.record(s[4], "webhook-received/event-type")
		payload, _, format := g.body(s[1], g.size())
		g.plants[len(g.plants)-4].path += "/" + format
		if _, err := l.RecordWebhookReceived(ctx, tx, integrationlog.WebhookReceipt{Integration: "corpus-wh", EventType: s[4].value, Headers: h,
			Payload: payload, HTTPStatus: 200, Error: g.text(s[2]), ExternalID: s[3].value}); err != nil {
			t.Fatalf("RecordWebhookReceived: %v", err)
		}
		records++

		s = []secretSpec{g.secret(true), g.secret(false), g.shape(), g.shape()}
		g.record(s[0], "data-sync/details")
		g.record(s[1], "data-sync/error")
		g.record(s[2], "data-sync/external-id")
		g.record(s[3], "data-sync/entity")
		if _, err := l.RecordDataSync(ctx, tx, integrationlog.DataSyncRun{Integration: "corpus-sync", Entity: s[3].value, Direction: "import",
			Processed: 3, Details: g.jsonValue(s[0], g.size()), Error: g.text(s[1]), ExternalID: s[2].value}); err != nil {
			t.Fatalf("RecordDataSync: %v", err)
		}
		records++

		s = []secretSpec{g.secret(true), g.secret(true), g.secret(false), g.shape()}
		g.record(s[0], "record/request")
		g.record(s[1], "record/response")
		g.record(s[2], "record/error")
		g.record(s[3], "record/external-id")
		reqJ, _ := json.Marshal(g.jsonValue(s[0], g.size()))
		respJ, _ := json.Marshal(g.jsonValue(s[1], g.size()))
		if _, err := l.Record(ctx, tx, integrationlog.Record{Integration: "corpus-rec", Operation: integrationlog.OpAPICallMade, Request: reqJ,
			Response: respJ, Error: g.text(s[2]), ExternalID: s[3].value}); err != nil {
			t.Fatalf("Record: %v", err)
		}
		records++

		// Security events, published on the bus.
		s = []secretSpec{g.secret(true), g.secret(false), g.secret(false), g.shape(), g.shape()}
		g.record(s[0], "security/details")
		g.record(s[1], "security/suspicious-description")
		g.record(s[2], "security/permission-reason")
		g.record(s[3], "security/user-agent")
		g.record(s[4], "security/username")
		if _, err := sl.Record(ctx, tx, securitylog.Input{Type: securitylog.EventSuspiciousActivity, IP: "203.0.113.7",
			Details: g.jsonValue(s[0], g.size()), UserAgent: s[3].value}); err != nil {
			t.Fatalf("security Record: %v", err)
		}
		if _, err := sl.RecordSuspiciousActivity(ctx, tx, securitylog.SuspiciousActivity{IP: "203.0.113.8", Kind: "probe",
			Description: g.text(s[1]), Data: map[string]any{"n": 1}}); err != nil {
			t.Fatalf("RecordSuspiciousActivity: %v", err)
		}
		if _, err := sl.RecordPermissionDenied(ctx, tx, securitylog.PermissionDenied{IP: "203.0.113.9", Resource: "/admin",
			Reason: g.text(s[2])}); err != nil {
			t.Fatalf("RecordPermissionDenied: %v", err)
		}
		if _, err := sl.RecordFailedLogin(ctx, tx, securitylog.FailedLogin{UserID: uuid.New(), Username: s[4].value, IP: "198.51.100.4",
			Reason: "bad_password", Method: "password"}); err != nil {
			t.Fatalf("RecordFailedLogin: %v", err)
		}
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}

	// Every recorded exchange and call is there: the scan is not vacuous.
	if n := b.countRows(t, "integration_log", "true"); n != int64(records) {
		t.Fatalf("%d integration records stored, want %d", n, records)
	}
	if n := b.countRows(t, "system_event", "true"); n != 4*rounds {
		t.Fatalf("%d published security events, want %d", n, 4*rounds)
	}
	leaks := scanSchemaForPlants(t, b, g.plants)
	byClass, total := map[string]int{}, map[string]int{}
	for _, p := range g.plants {
		total[p.class]++
	}
	for _, lk := range leaks {
		byClass[lk.class]++
	}
	classes := make([]string, 0, len(total))
	for c := range total {
		classes = append(classes, c)
	}
	sort.Strings(classes)
	var summary strings.Builder
	for _, c := range classes {
		fmt.Fprintf(&summary, " %s %d/%d;", c, byClass[c], total[c])
	}
	t.Logf("redaction corpus (seed %d): %d secrets planted, %d stored in clear:%s", seed, len(g.plants), len(leaks), summary.String())
	for i, lk := range leaks {
		if i == 40 {
			t.Errorf("... and %d more", len(leaks)-40)
			break
		}
		t.Errorf("leak (seed %d): %s via %s: %s", seed, lk.class, lk.path, lk.context)
	}
}

// newIntegrationLog returns the integration log of b's handle, closed when
// the test ends (a second Close is a no-op).
func newIntegrationLog(t testing.TB, b *bundle, cfg integrationlog.Config) *integrationlog.Log {
	t.Helper()
	l, err := integrationlog.New(b.ob, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := l.Close(ctx); err != nil {
			t.Errorf("close: %v", err)
		}
	})
	return l
}

type leak struct {
	planted
	context string
}

// scanSchemaForPlants reads every row of every table of the schema as text
// and returns the plants found in it.
func scanSchemaForPlants(t *testing.T, b *bundle, plants []planted) []leak {
	t.Helper()
	ctx := ctxT(t)
	tables := testutil.Tables(t, b.db, b.schema)
	var texts []string
	for _, tb := range tables {
		rows, err := b.db.QueryContext(ctx, fmt.Sprintf(`SELECT t::text FROM %q.%q t`, b.schema, tb))
		if err != nil {
			t.Fatal(err)
		}
		for rows.Next() {
			var s string
			if err := rows.Scan(&s); err != nil {
				t.Fatal(err)
			}
			texts = append(texts, s)
		}
		rows.Close()
	}
	return findPlants(texts, plants)
}

// findPlants returns the plants any of texts holds: a 12-character window of
// a core, or 12 consecutive digits of a card among the text's digits.
func findPlants(texts []string, plants []planted) []leak {
	const w = 12
	windows := map[string]int{}
	cards := map[string]int{}
	for i, p := range plants {
		for _, c := range p.cores {
			for j := 0; j+w <= len(c); j++ {
				windows[c[j:j+w]] = i
			}
		}
		for j := 0; j+w <= len(p.card); j++ {
			cards[p.card[j:j+w]] = i
		}
	}
	found := map[int]string{}
	for _, s := range texts {
		// Alphanumeric runs for markers.
		for i := 0; i < len(s); {
			if !isAlnumByte(s[i]) {
				i++
				continue
			}
			j := i
			for j < len(s) && isAlnumByte(s[j]) {
				j++
			}
			for k := i; k+w <= j; k++ {
				if p, ok := windows[s[k:k+w]]; ok {
					if _, seen := found[p]; !seen {
						found[p] = excerpt(s, k)
					}
				}
			}
			i = j
		}
		// Digits only, for cards in any grouping or number form.
		var digits []byte
		var at []int
		for i := 0; i < len(s); i++ {
			if s[i] >= '0' && s[i] <= '9' {
				digits = append(digits, s[i])
				at = append(at, i)
			}
		}
		for k := 0; k+w <= len(digits); k++ {
			if p, ok := cards[string(digits[k:k+w])]; ok {
				if _, seen := found[p]; !seen {
					found[p] = excerpt(s, at[k])
				}
			}
		}
	}
	var out []leak
	for i, ctx := range found {
		out = append(out, leak{planted: plants[i], context: ctx})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].path < out[j].path })
	return out
}

func isAlnumByte(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
}

func excerpt(s string, i int) string {
	lo, hi := max(i-60, 0), min(i+60, len(s))
	return strings.ToValidUTF8(s[lo:hi], "?")
}
