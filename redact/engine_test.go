package redact

import (
	"encoding/json"
	"flag"
	"fmt"
	"math/rand"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/outboxkit/outbox/internal/jsontext"
)

// TestRedactLeakClasses pins one example of every leak class of issue 12.
func TestRedactLeakClasses(t *testing.T) {
	t.Parallel()
	r := Default()
	const m = "zq7marker7secret7value"
	for _, c := range []struct{ class, in string }{
		{"word before pair", "card declined: password=" + m},
		{"multi-word value", "password: correct horse battery " + m},
		{"value after comma", "api_key: x, " + m},
		{"URL first param", "see https://cb.example.com/r?token=" + m + "&x=1"},
		{"URL user as key", "https://sk_live_" + m + ":@api.stripe.com/v1"},
		{"URL path segment", "https://api.example.com/reset/token/" + m},
		{"Link header", `<https://api.example.com/x?access_token=` + m + `>; rel="next"`},
		{"XML element", "<req><ns:password>" + m + "</ns:password></req>"},
		{"escaped XML", "&lt;password&gt;" + m + "&lt;/password&gt;"},
		{"JSON in text", `body {"client_secret": "` + m + `"}`},
		{"escaped JSON in text", `{\"token\":\"` + m + `\"}`},
		{"JWT", "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIx" + m + ".c2ln"},
		{"AWS", "id AKIAIOSFODNN7EXAMPLE"},
		{"Stripe", "sk_live_" + m},
		{"whsec", "whsec_" + m},
		{"GitHub", "ghp_" + m + "0123456789abcd"},
		{"Slack", "xoxb-1234-5678-" + m},
		{"PEM", "-----BEGIN RSA PRIVATE KEY-----\nMIIE" + m + "\n-----END RSA PRIVATE KEY-----"},
		{"PEM cut", "-----BEGIN PRIVATE KEY-----\nMIIE" + m},
		{"Cyrillic key", "pаsswоrd=" + m},
		{"fullwidth key", "ｐａｓｓｗｏｒｄ=" + m},
		{"math key", "𝐩𝐚𝐬𝐬𝐰𝐨𝐫𝐝: " + m},
		{"zero-width key", "pass\u200bword=" + m},
		{"new names", "passcode=" + m},
		{"Bearer", "Authorization: Bearer " + m},
	} {
		got := r.String(c.in)
		if strings.Contains(got, m) || strings.Contains(got, "AKIAIOSFODNN7EXAMPLE") {
			t.Errorf("%s: %q -> %q", c.class, c.in, got)
		}
		if again := r.String(got); again != got {
			t.Errorf("%s: not idempotent: %q -> %q", c.class, got, again)
		}
	}
	for _, n := range []string{"Ocp-Apim-Subscription-Key", "X-Functions-Key", "X-Shopify-Hmac-Sha256", "jwt", "passcode",
		"security_code", "account_number", "routing_number", "code_verifier", "mnemonic", "seed_phrase", "AccountKey",
		"pаsswоrd", "ｔｏｋｅｎ", "ѕecret"} {
		if !r.SensitiveKey(n) {
			t.Errorf("SensitiveKey(%q) = false", n)
		}
	}
	for _, n := range []string{"Idempotency-Key", "sort_key", "public_key", "keyboard", "passenger", "company", "spinner", "author"} {
		if r.SensitiveKey(n) {
			t.Errorf("SensitiveKey(%q) = true", n)
		}
	}
	// Cards in every notation, and as keys.
	for _, doc := range []string{`{"n":-4242424242424242}`, `{"n":4242424242424242.0}`, `{"n":4.242424242424242e15}`,
		`{"4242424242424242":1}`, `{"n":"4242.4242.4242.4242"}`, `{"n":"4242  4242  4242  4242"}`} {
		out, err := r.JSON([]byte(doc))
		if err != nil || strings.Contains(strings.NewReplacer(".", "", " ", "").Replace(string(out)), "4242424242424242") {
			t.Errorf("card survived: %s -> %s (%v)", doc, out, err)
		}
	}
}

// TestRedactStructureBeforeCut: a body over the limit is redacted whole
// first, so objects under sensitive keys and secrets at the cut do not
// survive; a captured prefix loses its incomplete last token.
func TestRedactStructureBeforeCut(t *testing.T) {
	t.Parallel()
	r := mustRedactor(Rules{MaxBodyBytes: 64})
	const m = "zq7marker7secret7value"
	body := `{"pad":"` + strings.Repeat("x", 20) + `","secret":{"a":"` + m + `","b":[1,2]},"z":"` + strings.Repeat("y", 100) + `"}`
	v, truncated := r.Body([]byte(body), "application/json")
	if !truncated || strings.Contains(string(v), m) || strings.Contains(string(v), "[1,2]") {
		t.Errorf("long JSON: %s (%v)", v, truncated)
	}
	// A prefix that ends inside a card number and inside a sensitive value.
	for _, prefix := range []string{`{"note":"paid with 4242 4242 4242 42`, `{"password":{"a":"` + m[:14], `{"deep":` +
		strings.Repeat(`[`, jsontext.MaxDepth+2) + `{"token":"` + m + `"}`} {
		v, truncated := r.body([]byte(prefix), "application/json", true)
		if !truncated || strings.Contains(string(v), "4242 4242 4242") || strings.Contains(string(v), m[:12]) {
			t.Errorf("prefix %q stored as %s (%v)", prefix, v, truncated)
		}
	}
	// Invalid and over-deep JSON keep their structure.
	for _, b := range []string{`{"token":"` + m + `", "x": tru}`, strings.Repeat(`[`, jsontext.MaxDepth+2) + `{"api_key":{"k":"` + m + `"}}`} {
		if v, _ := Default().Body([]byte(b), "application/json"); strings.Contains(string(v), m) {
			t.Errorf("%q stored as %s", b, v)
		}
	}
}

// TestRedactFalsePositives measures how often generated values that are not
// secrets are redacted (docs/redaction.md reports the rates), and bounds
// them.
func TestRedactFalsePositives(t *testing.T) {
	t.Parallel()
	seed := *engineSeed
	rnd := rand.New(rand.NewSource(seed))
	r := Default()
	digits := func(n int, first string) string {
		b := []byte(first)
		for len(b) < n {
			b = append(b, byte('0'+rnd.Intn(10)))
		}
		return string(b)
	}
	words := strings.Fields("the order was shipped to the customer on time and the invoice was paid in full by card " +
		"please contact support if the package does not arrive within five business days thank you for your purchase " +
		"key points token of thanks a secret garden passport number pending")
	const n = 20000
	kinds := []struct {
		name  string
		gen   func() string
		limit float64 // highest acceptable rate
	}{
		{"epoch-ms timestamp", func() string {
			return fmt.Sprint(time.Date(2015, 1, 1, 0, 0, 0, 0, time.UTC).Add(time.Duration(rnd.Int63n(int64(20 * 365 * 24 * time.Hour)))).UnixMilli())
		}, 0},
		{"epoch-µs timestamp", func() string { return fmt.Sprint(1_600_000_000_000_000 + rnd.Int63n(300_000_000_000_000)) }, 0},
		{"UUID", func() string { return uuid.New().String() }, 0.002},
		{"snowflake id (19 digits)", func() string { return fmt.Sprint(1_000_000_000_000_000_000 + rnd.Int63n(900_000_000_000_000_000)) }, 0},
		{"random 19-digit id", func() string { return digits(19, string(rune('1'+rnd.Intn(9)))) }, 0.05},
		{"random 13-16-digit number", func() string { return digits(13+rnd.Intn(4), string(rune('1'+rnd.Intn(9)))) }, 0.05},
		{"order number", func() string { return fmt.Sprintf("ORD-%d-%06d", 2020+rnd.Intn(7), rnd.Intn(1e6)) }, 0},
		{"price", func() string { return fmt.Sprintf("%d.%02d", rnd.Intn(100000), rnd.Intn(100)) }, 0},
		{"ISO date-time", func() string {
			return time.Unix(rnd.Int63n(2e9), rnd.Int63n(1e9)).UTC().Format(time.RFC3339Nano)
		}, 0},
		{"phone number", func() string {
			return fmt.Sprintf("+1 %03d %03d %04d", rnd.Intn(1000), rnd.Intn(1000), rnd.Intn(10000))
		}, 0},
		{"English text", func() string {
			var b strings.Builder
			for i := 0; i < 12; i++ {
				b.WriteString(words[rnd.Intn(len(words))])
				b.WriteByte(' ')
			}
			return b.String()
		}, 0},
		// Sentences of the same words joined by "is" a third of the time:
		// the "your password is X" rule redacts the word after a
		// sensitive name and "is" only when it looks like a password (a
		// digit, a symbol, an inner capital).
		{"English text with \"is\"", func() string {
			var b strings.Builder
			for i := 0; i < 12; i++ {
				b.WriteString(words[rnd.Intn(len(words))])
				if rnd.Intn(3) == 0 {
					b.WriteString(" is ")
				} else {
					b.WriteByte(' ')
				}
			}
			return b.String()
		}, 0},
	}
	for _, k := range kinds {
		hit := 0
		for i := 0; i < n; i++ {
			v := k.gen()
			redacted := r.String(v) != v
			if !redacted && isNumeric(v) {
				out, _ := r.JSON([]byte(`{"v":` + v + `}`))
				redacted = string(out) != `{"v":`+v+`}`
			}
			if redacted {
				hit++
			}
		}
		rate := float64(hit) / n
		t.Logf("false positives (seed %d): %-26s %6.3f%% (%d of %d)", seed, k.name, 100*rate, hit, n)
		if rate > k.limit {
			t.Errorf("%s: %.3f%% redacted, over %.3f%%", k.name, 100*rate, 100*k.limit)
		}
	}
}

func isNumeric(s string) bool {
	if s == "" || s[0] == '0' {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// FuzzRedactPlanted plants a marker secret, under a sensitive name or in a
// secret's shape, in surroundings the fuzzer chooses and a body format it
// picks; the marker must not survive.
func FuzzRedactPlanted(f *testing.F) {
	f.Add("card declined: ", " retry", uint8(0), uint8(0), "abcdefghijkmnpqrstuvw")
	f.Add(`{"a":`, `}`, uint8(1), uint8(1), "zzzzzzzzzzzzzzzzzzzz")
	f.Add("<x>", "</x>", uint8(2), uint8(2), "m4rk3rm4rk3rm4rk3rm4")
	f.Add("see https://h/p?", "&b=1", uint8(3), uint8(3), "q1w2e3r4t5y6u7i8o9p0")
	f.Add("", "", uint8(4), uint8(4), "aaaaaaaaaaaaaaaaaaaa")
	f.Add("failed: ", " (retrying)", uint8(8), uint8(1), "q1w2e3r4t5y6u7i8o9p0")
	f.Add("pq: ", "", uint8(9), uint8(4), "m4rk3rm4rk3rm4rk3rm4")
	names := []string{"password", "api_key", "client_secret", "Authorization", "token", "passcode", "seed_phrase",
		"X-Functions-Key", "pаsswоrd", "ｓｅｃｒｅｔ", "jwt", "cvv", "X-Session", "passwörd", "Authorisation", "privkey",
		"bearer", "social_security_number"}
	r := mustRedactor(Rules{MaxBodyBytes: 512})
	f.Fuzz(func(t *testing.T, before, after string, style, format uint8, seed string) {
		m := alnum([]byte(seed), 20, 20)
		m = "zq" + m[2:]
		name := names[int(style)%len(names)]
		var secret string
		switch style % 10 {
		case 0:
			secret = name + "=" + m
		case 1:
			secret = `"` + name + `": "` + m + `"`
		case 2:
			secret = "<" + name + ">" + m + "</" + name + ">"
		case 3:
			secret = "eyJhbGciOiJub25lIn0.eyJ" + m + ".sig"
		case 4:
			secret = "sk_live_" + m
		case 5:
			secret = name + ": correct horse " + m
		case 6:
			secret = "https://" + "u:" + m + "@h.example/"
		case 7:
			secret = "-----BEGIN PRIVATE KEY-----\n" + m + "\n-----END PRIVATE KEY-----"
		case 8:
			secret = "your new " + name + " is " + m + "9!"
		default:
			secret = "dial tcp app:" + m + "@db.example:5432"
		}
		text := before + secret + after
		var outs []string
		outs = append(outs, r.String(text), r.URL(text))
		ct := []string{"application/json", "text/plain", "application/xml", "application/x-www-form-urlencoded", "", "multipart/form-data; boundary=b"}[int(format)%6]
		if v, _ := r.Body([]byte(text), ct); v != nil {
			outs = append(outs, string(v))
		}
		// The engine itself, whose panics the Redactor hides, and the path
		// of a captured prefix.
		for _, partial := range []bool{false, true} {
			b := r.eng.Body(jsontext.Clean(text), ct, partial, jsontext.MaxDepth)
			outs = append(outs, b.JSON+b.Text)
		}
		doc, _ := json.Marshal(map[string]any{"note": text, "list": []any{map[string]any{"x": text}}})
		if v, err := r.JSON(doc); err == nil {
			outs = append(outs, string(v))
		}
		for _, out := range outs {
			if strings.Contains(out, m[:12]) || strings.Contains(out, m[8:]) {
				// A quote, a control or a line break in the fuzzer's text may
				// end the pair before the secret: check it was not cut away
				// from its name.
				if strings.ContainsAny(before+after, "\"'<>\n\r&;\\\x00") || !cleanOK(before+after) {
					t.Skip()
				}
				t.Fatalf("marker %q survived in %q\nfrom %q (style %d, format %q)", m, out, text, style%10, ct)
			}
		}
	})
}

// cleanOK reports whether s is free of characters that a stored value
// loses (controls, invalid UTF-8), which could join a secret to its
// surroundings differently than planted.
func cleanOK(s string) bool {
	return jsontext.Clean(s) == s && !strings.ContainsRune(s, '\t')
}

// BenchmarkRedactJSONBody is the cost of redacting a 1 KB JSON body with
// the default rules through Redactor.Body.
func BenchmarkRedactJSONBody(b *testing.B) {
	body := []byte(`{"id":"ch_3NxYz2eZvKYlo2C81a2b3c4d","object":"charge","amount":2000,"amount_captured":2000,` +
		`"currency":"eur","customer":"cus_9s6XKzkNRiz8i3","description":"Order 12345 for customer bob@example.com",` +
		`"created":1732900000,"livemode":false,"paid":true,"status":"succeeded","receipt_url":"https://pay.example.com/receipts/acct_1/ch_3/rcpt_abc?s=ap",` +
		`"billing_details":{"address":{"city":"Berlin","country":"DE"},` +
		`"email":"bob@example.com","name":"Bob Example","phone":"+49 30 1234567"},"payment_method_details":{"card":{"brand":"visa",` +
		`"country":"US","exp_month":12,"exp_year":2030,"fingerprint":"Xt5EWLLDS7FJjR1c","funding":"credit","last4":"4242",` +
		`"number":"4242424242424242","cvc":"123","network":"visa"},"type":"card"},"metadata":{"order_id":"6735","note":` +
		`"card declined: password=hunter2 retry later","api_key":"sk_test_4eC39HqLyjWDarjtT1zdp7dc"},"refunds":{"object":"list",` +
		`"data":[],"has_more":false,"total_count":0,"url":"/v1/charges/ch_3NxYz2eZvKYlo2C81a2b3c4d/refunds"},"shipping":null,` +
		`"outcome":{"risk_level":"normal","risk_score":32,"type":"authorized"}}`)
	if len(body) < 1000 || len(body) > 1100 {
		b.Fatalf("body is %d bytes", len(body))
	}
	r := Default()
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		if v, _ := r.Body(body, "application/json"); len(v) == 0 {
			b.Fatal("empty")
		}
	}
}

var engineSeed = flag.Int64("redact.seed", 20261129, "seed of the generated redaction inputs")
