package redact

import (
	"encoding/json"
	"errors"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"unicode/utf8"

	redactengine "github.com/outboxkit/outbox/internal/redact"

	"github.com/outboxkit/outbox/internal/jsontext"
)

func TestRedactSensitiveKey(t *testing.T) {
	t.Parallel()
	r := Default()
	for _, k := range []string{"password", "Password", "PASSWD", "user_password", "client_secret", "access_token",
		"refreshToken", "api_key", "X-Api-Key", "apiKey", "Authorization", "Proxy-Authorization", "Cookie", "Set-Cookie",
		"Stripe-Signature", "X-Hub-Signature-256", "Webhook-Signature", "card_number", "cardNumber", "cvc", "CVV2",
		"iban", "IBAN", "pin", "ssn", "key", "sig", "private_key", "session_id"} {
		if !r.SensitiveKey(k) {
			t.Errorf("SensitiveKey(%q) = false", k)
		}
	}
	for _, k := range []string{"username", "email", "amount", "currency", "id", "Content-Type", "status", "keyboard", "description", "", "---"} {
		if r.SensitiveKey(k) {
			t.Errorf("SensitiveKey(%q) = true", k)
		}
	}
	custom, err := New(Rules{Keys: []string{"Mothers-Maiden-Name"}})
	if err != nil {
		t.Fatal(err)
	}
	if !custom.SensitiveKey("mothers_maiden_name") || !custom.SensitiveKey("x-mothers-maiden-name") || !custom.SensitiveKey("password") {
		t.Error("custom key not applied on top of the built-ins")
	}
	if Default().SensitiveKey("mothers_maiden_name") {
		t.Error("custom rules leaked into the default redactor")
	}
}

func TestRedactString(t *testing.T) {
	t.Parallel()
	r := Default()
	cases := []struct{ in, want string }{
		{"card 4242424242424242 ok", "card [REDACTED] ok"},
		{"card 4242 4242 4242 4242, exp 12/30", "card [REDACTED], exp 12/30"},
		{"card 4242-4242-4242-4242", "card [REDACTED]"},
		{"amex 378282246310005.", "amex [REDACTED]."},
		{"not luhn 4242424242424241", "not luhn 4242424242424241"},
		{"too long 42424242424242424242424", "too long 42424242424242424242424"},
		{"short 424242424242", "short 424242424242"},
		{"password=hunter2&user=bob", "password=[REDACTED]&user=bob"},
		{`{"api_key": "sk_live_abc", "x": 1}`, `{"api_key": "[REDACTED]", "x": 1}`},
		{`{"password": "two words"}`, `{"password": "[REDACTED]"}`},
		{`{\"token\":\"abc\"}`, `{\"token\":\"[REDACTED]\"}`},
		{"Authorization: Bearer abc.def-ghi", "Authorization: [REDACTED]"},
		{"use Bearer abc.def-ghi now", "use Bearer [REDACTED] now"},
		{"line1\nline2\x00\x1b[31m", "line1\nline2[31m"},
		{"bad \xff utf8", "bad \uFFFD utf8"},
		{"nothing to see", "nothing to see"},
	}
	for _, c := range cases {
		got := r.String(c.in)
		if got != c.want {
			t.Errorf("String(%q) = %q, want %q", c.in, got, c.want)
		}
		if again := r.String(got); again != got {
			t.Errorf("String is not idempotent on %q: %q", got, again)
		}
	}
	if got := r.String("Authorization: Basic dXNlcjpwYXNz"); strings.Contains(got, "dXNlcjpwYXNz") {
		t.Errorf("basic credentials survived: %q", got)
	}
}

func TestRedactJSON(t *testing.T) {
	t.Parallel()
	r := Default()
	in := `{"user":"bob","password":"hunter2","nested":{"deeper":[{"Api-Key":"k1"},{"card":{"number":"4242424242424242","cvc":"123"}}]},
		"amount":1000,"pan":4000056655665556,"big":12345678901234567890123,"note":"<b>&</b>","secret":{"a":[1,2]},"token":null}`
	out, err := r.JSON([]byte(in))
	if err != nil {
		t.Fatal(err)
	}
	var got map[string]any
	if err := json.Unmarshal(out, &got); err != nil {
		t.Fatal(err)
	}
	for _, secret := range []string{"hunter2", "k1", "4242424242424242", `"123"`, "4000056655665556", `[1,2]`} {
		if strings.Contains(string(out), secret) {
			t.Errorf("secret %s survived: %s", secret, out)
		}
	}
	for _, kept := range []string{`"user":"bob"`, `"amount":1000`, `"big":12345678901234567890123`, `"note":"<b>&</b>"`} {
		if !strings.Contains(string(out), kept) {
			t.Errorf("%s lost: %s", kept, out)
		}
	}
	if again, _ := r.JSON(out); string(again) != string(out) {
		t.Errorf("JSON is not idempotent:\n%s\n%s", out, again)
	}
	if _, err := r.JSON([]byte(`{"a":`)); err == nil {
		t.Error("invalid JSON accepted")
	}
	deep := strings.Repeat("[", jsontext.MaxDepth+1) + strings.Repeat("]", jsontext.MaxDepth+1)
	if _, err := r.JSON([]byte(deep)); err == nil {
		t.Error("over-deep JSON accepted")
	}
	// NUL escapes decode to NUL, which jsonb rejects: they are removed.
	out, err = r.JSON([]byte(`{"a\u0000":"x\u0000y"}`))
	if err != nil || jsontext.Check(out) != nil || string(out) != `{"a":"xy"}` {
		t.Errorf("NUL handling: %s %v", out, err)
	}
}

func TestRedactHeadersAndURL(t *testing.T) {
	t.Parallel()
	r := Default()
	h := http.Header{
		"Authorization": {"Bearer sk_live_1"}, "Cookie": {"sid=abc"}, "Set-Cookie": {"sid=abc; HttpOnly"},
		"X-Api-Key": {"k"}, "Stripe-Signature": {"t=1,v1=ff"}, "Content-Type": {"application/json"},
		"X-Multi": {"a", "b"},
	}
	got := r.Headers(h, nil)
	for _, k := range []string{"Authorization", "Cookie", "Set-Cookie", "X-Api-Key", "Stripe-Signature"} {
		if got[k] != Marker {
			t.Errorf("header %s = %q", k, got[k])
		}
	}
	if got["Content-Type"] != "application/json" || got["X-Multi"] != "a, b" {
		t.Errorf("headers: %v", got)
	}
	only := r.Headers(h, []string{"content-type", "authorization"})
	if len(only) != 2 || only["Authorization"] != Marker {
		t.Errorf("chosen headers: %v", only)
	}
	for _, c := range []struct{ in, want string }{
		{"https://api.example.com/v1/x?api_key=abc&limit=10&token=t", "https://api.example.com/v1/x?api_key=[REDACTED]&limit=10&token=[REDACTED]"},
		{"https://user:pa55@example.com/", "https://user:REDACTED@example.com/"},
		{"https://example.com/cards/4242424242424242", "https://example.com/cards/[REDACTED]"},
		{"/hook?sig=abc", "/hook?sig=[REDACTED]"},
		{"https://example.com/#access_token=abc", "https://example.com/#access_token=[REDACTED]"},
	} {
		if got := r.URL(c.in); got != c.want {
			t.Errorf("URL(%q) = %q, want %q", c.in, got, c.want)
		}
	}
}

func TestRedactBody(t *testing.T) {
	t.Parallel()
	r, err := New(Rules{MaxBodyBytes: 64, Patterns: []*regexp.Regexp{regexp.MustCompile(`acct_[0-9A-Za-z]+`)}})
	if err != nil {
		t.Fatal(err)
	}
	check := func(name string, got []byte, truncated bool, want string, wantTrunc bool) {
		t.Helper()
		if string(got) != want || truncated != wantTrunc {
			t.Errorf("%s: got %s (truncated %v), want %s (%v)", name, got, truncated, want, wantTrunc)
		}
		if got != nil && jsontext.Check(got) != nil {
			t.Errorf("%s: stored value is not jsonb: %s", name, got)
		}
	}
	b, tr := r.Body(nil, "")
	check("empty", b, tr, "", false)
	b, tr = r.Body([]byte(`{"password":"x","id":"acct_123"}`), "application/json")
	check("json", b, tr, `{"password":"[REDACTED]","id":"[REDACTED]"}`, false)
	b, tr = r.Body([]byte("user=bob&password=hunter+2&pin=1234"), "application/x-www-form-urlencoded; charset=utf-8")
	check("form", b, tr, `"user=bob&password=[REDACTED]&pin=[REDACTED]"`, false)
	b, tr = r.Body([]byte("plain text"), "text/plain")
	check("text", b, tr, `"plain text"`, false)
	b, tr = r.Body([]byte{0xff, 0xfe, 0}, "application/octet-stream")
	check("binary", b, tr, `"[binary body: 3 bytes]"`, false)
	long := `{"password":"` + strings.Repeat("s", 100) + `","z":"` + strings.Repeat("é", 40) + `"}`
	b, tr = r.Body([]byte(long), "application/json")
	var s string
	if err := json.Unmarshal(b, &s); err != nil || !tr || !strings.HasSuffix(s, TruncatedMarker) ||
		len(s) > 64+len(TruncatedMarker) || strings.Contains(s, "sss") || !utf8.ValidString(s) {
		t.Errorf("long JSON: %s (truncated %v)", b, tr)
	}
	if _, err := New(Rules{Patterns: []*regexp.Regexp{regexp.MustCompile(`x*`)}}); !errors.Is(err, ErrInvalidRules) {
		t.Errorf("pattern matching empty: %v", err)
	}
	if _, err := New(Rules{Keys: []string{"--"}}); !errors.Is(err, ErrInvalidRules) {
		t.Errorf("key without letters: %v", err)
	}
	if _, err := New(Rules{MaxBodyBytes: -1}); !errors.Is(err, ErrInvalidRules) {
		t.Errorf("negative limit: %v", err)
	}
}

func TestRedactLuhn(t *testing.T) {
	t.Parallel()
	for _, n := range []string{"4242424242424242", "5555555555554444", "378282246310005", "6011111111111117", "4000056655665556"} {
		if !redactengine.Luhn(n) || !redactengine.IsCard(n) {
			t.Errorf("%s should be a card number", n)
		}
	}
	for _, n := range []string{"4242424242424241", "12345", "42424242424242424242", "4242.424242424242"} {
		if redactengine.IsCard(n) {
			t.Errorf("%s should not be a card number", n)
		}
	}
}

// FuzzRedact feeds arbitrary text through every redaction entry point: no
// panic, stored values are always jsonb-clean, bodies respect the limit, and
// redaction is idempotent.
func FuzzRedact(f *testing.F) {
	for _, s := range []string{"", "{}", `{"password":"x"}`, "4242 4242 4242 4242", "a=b&token=c", "\x00\xff",
		`{"a":[1,{"secret":2}]}`, "Bearer abc", `"\ud800"`, strings.Repeat("9", 30), "https://u:p@h/?key=v#f"} {
		f.Add([]byte(s), "application/json")
		f.Add([]byte(s), "application/x-www-form-urlencoded")
	}
	r := mustRedactor(Rules{MaxBodyBytes: 256})
	f.Fuzz(func(t *testing.T, body []byte, contentType string) {
		b, truncated := r.Body(body, contentType)
		if len(body) == 0 {
			if b != nil {
				t.Fatalf("empty body stored as %s", b)
			}
			return
		}
		if err := jsontext.Check(b); err != nil {
			t.Fatalf("Body(%q) = %s: %v", body, b, err)
		}
		if len(b) > 2*256+64 && !truncated {
			// JSON string escaping can grow the text; the text itself is cut.
			var s string
			if json.Unmarshal(b, &s) == nil && len(s) > 256+len(TruncatedMarker) {
				t.Fatalf("body of %d bytes stored whole", len(s))
			}
		}
		s := r.String(string(body))
		if r.String(s) != s {
			t.Fatalf("String not idempotent: %q -> %q -> %q", body, s, r.String(s))
		}
		if !utf8.ValidString(s) || strings.ContainsRune(s, 0) {
			t.Fatalf("String(%q) = %q is not clean", body, s)
		}
		if out, err := r.JSON(body); err == nil {
			if err := jsontext.Check(out); err != nil {
				t.Fatalf("JSON(%q) = %s: %v", body, out, err)
			}
			if again, err := r.JSON(out); err != nil || string(again) != string(out) {
				t.Fatalf("JSON not idempotent: %s -> %s (%v)", out, again, err)
			}
		}
		if u := r.URL(string(body)); !utf8.ValidString(u) || strings.ContainsRune(u, 0) {
			t.Fatalf("URL(%q) = %q is not clean", body, u)
		}
	})
}

// FuzzRedactSecrets plants secrets under sensitive names and card numbers
// in bodies, headers, URLs and text; none may survive.
func FuzzRedactSecrets(f *testing.F) {
	f.Add([]byte("hunter2hunter2"), "password", []byte("4242424242424242"), uint8(0))
	f.Add([]byte("sk_live_51H"), "X-Api-Key", []byte("378282246310005"), uint8(1))
	f.Add([]byte("abc"), "clientSecret", []byte("6011111111111117"), uint8(2))
	f.Add([]byte("t0k3n"), "access-token", []byte("5555555555554444"), uint8(3))
	f.Fuzz(func(t *testing.T, secretSeed []byte, keySeed string, cardSeed []byte, style uint8) {
		secret := "zq" + alnum(secretSeed, 6, 40)
		keys := []string{"password", "api_key", "client_secret", "access_token", "Authorization", "cvv", "iban", "card_number"}
		key := normalizeKeyForTest(keySeed) + keys[int(style)%len(keys)]
		card := cardFrom(cardSeed)
		r := Default()
		sep := []string{"", " ", "-"}[int(style)%3]
		cardText := groupDigits(card, sep)

		doc, _ := json.Marshal(map[string]any{key: secret, "list": []any{map[string]any{key: secret}},
			"note": "paid with " + cardText + " today", "n": json.Number(card)})
		out, err := r.JSON(doc)
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range []string{secret, card, cardText} {
			if strings.Contains(string(out), s) {
				t.Fatalf("%q survived JSON redaction: %s", s, out)
			}
		}
		body, _ := r.Body(doc, "application/json")
		form, _ := r.Body([]byte(key+"="+secret+"&a=b"), "application/x-www-form-urlencoded")
		text := r.String("x " + key + "=" + secret + " and " + key + `: "` + secret + `" card ` + cardText + ".")
		u := r.URL("https://example.com/p?" + key + "=" + secret + "&q=1")
		hdr := r.Headers(http.Header{http.CanonicalHeaderKey(keys[int(style)%len(keys)]): {secret}}, nil)
		hj, _ := json.Marshal(hdr)
		for _, got := range []string{string(body), string(form), text, u, string(hj)} {
			if strings.Contains(got, secret) || strings.Contains(got, card) || strings.Contains(got, cardText) {
				t.Fatalf("secret survived: %q (secret %q, card %q, key %q)", got, secret, cardText, key)
			}
		}
	})
}

// alnum maps seed bytes to a lower-case alphanumeric string of min..max
// characters.
func alnum(seed []byte, minLen, maxLen int) string {
	const chars = "abcdefghijklmnopqrstuvwxyz0123456789"
	var b strings.Builder
	for _, c := range seed {
		if b.Len() == maxLen {
			break
		}
		b.WriteByte(chars[int(c)%len(chars)])
	}
	for b.Len() < minLen {
		b.WriteByte('x')
	}
	return b.String()
}

// normalizeKeyForTest turns a fuzzed prefix into letters and underscores.
func normalizeKeyForTest(s string) string {
	var b strings.Builder
	for _, c := range []byte(s) {
		if b.Len() == 10 {
			break
		}
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c == '_' {
			b.WriteByte(c)
		}
	}
	if b.Len() > 0 {
		b.WriteByte('_')
	}
	return b.String()
}

// cardFrom makes a Luhn-valid number of 13 to 19 digits from seed bytes.
func cardFrom(seed []byte) string {
	n := 13
	if len(seed) > 0 {
		n += int(seed[0]) % 7
	}
	digits := make([]byte, n)
	digits[0] = '4'
	for i := 1; i < n-1; i++ {
		d := byte(i * 7)
		if i < len(seed) {
			d = seed[i]
		}
		digits[i] = '0' + d%10
	}
	for c := byte('0'); c <= '9'; c++ {
		digits[n-1] = c
		if redactengine.Luhn(string(digits)) {
			break
		}
	}
	return string(digits)
}

func groupDigits(s, sep string) string {
	if sep == "" {
		return s
	}
	var parts []string
	for len(s) > 4 {
		parts = append(parts, s[:4])
		s = s[4:]
	}
	return strings.Join(append(parts, s), sep)
}

// A long run of one lower-case letter is text, not a Twitter bearer token
// (whose prefix is upper-case A): it is stored as it is.
func TestRedactLetterRunKept(t *testing.T) {
	t.Parallel()
	s := strings.Repeat("a", 300)
	if got := Default().String(s); got != s {
		t.Fatalf("a run of 300 'a' redacted: %.40q", got)
	}
	if got := Default().String("sent " + strings.Repeat("A", 22) + strings.Repeat("x", 80) + " to the API"); strings.Contains(got, strings.Repeat("x", 80)) {
		t.Fatalf("a Twitter bearer token stored: %.60q", got)
	}
}
