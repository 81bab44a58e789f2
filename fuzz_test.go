package outbox

// Fuzz targets for hostile input (issue 5). Seed corpora are in
// testdata/fuzz/<FuzzName>; run one for a while with, for example,
//
//	go test -run XXX -fuzz FuzzMatchTopic -fuzztime 30s .
//
// Targets that compare with PostgreSQL (FuzzMatchTopic, FuzzPayload) need the
// test database, like every database test.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"regexp"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/outboxkit/outbox/internal/jsontext"
)

var (
	topicOracle   = regexp.MustCompile(`^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$`)
	patternOracle = regexp.MustCompile(`^([A-Za-z0-9_-]+|\*|#)(\.([A-Za-z0-9_-]+|\*|#))*$`)
)

func FuzzValidTopic(f *testing.F) {
	for _, s := range []string{"", "a", "order.created", "a..b", ".a", "a.", "a.*", "#", "é", "a b",
		"a\x00b", "\xff", strings.Repeat("a", 100), strings.Repeat("a", 101), "'; DROP TABLE x; --"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		want := len(s) <= maxTopicLength && topicOracle.MatchString(s)
		if got := ValidTopic(s); got != want {
			t.Fatalf("ValidTopic(%q) = %v, want %v", s, got, want)
		}
		if ValidTopic(s) && !ValidPattern(s) {
			t.Fatalf("topic %q is not a valid pattern", s)
		}
		if ValidTopic(s) && !MatchTopic(s, s) {
			t.Fatalf("topic %q does not match itself", s)
		}
	})
}

func FuzzValidPattern(f *testing.F) {
	for _, s := range []string{"#", "*", "a.*.b", "a.#", "#.#", "a*", "a.**", "a.#b", "", ".", "*.", strings.Repeat("*.", 50) + "a", "%", "_"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		want := len(s) <= maxTopicLength && patternOracle.MatchString(s)
		if got := ValidPattern(s); got != want {
			t.Fatalf("ValidPattern(%q) = %v, want %v", s, got, want)
		}
	})
}

// refMatch is an independent reference for AMQP topic matching: plain
// recursion over segments.
func refMatch(p, t []string) bool {
	if len(p) == 0 {
		return len(t) == 0
	}
	switch p[0] {
	case "#":
		for i := 0; i <= len(t); i++ {
			if refMatch(p[1:], t[i:]) {
				return true
			}
		}
		return false
	case "*":
		return len(t) > 0 && refMatch(p[1:], t[1:])
	default:
		return len(t) > 0 && p[0] == t[0] && refMatch(p[1:], t[1:])
	}
}

// squash maps arbitrary fuzz input onto a small alphabet, so that most
// inputs are valid patterns and topics that share segments.
func squash(s, alphabet string) string {
	var b strings.Builder
	for i := 0; i < len(s) && b.Len() < maxTopicLength; i++ {
		b.WriteByte(alphabet[int(s[i])%len(alphabet)])
	}
	return b.String()
}

// FuzzMatchTopic checks that Go's MatchTopic, a reference implementation
// and the database's topic_matches agree on every valid pair.
func FuzzMatchTopic(f *testing.F) {
	for _, c := range [][2]string{
		{"#", "a"}, {"a.#", "a"}, {"a.#.b", "a.b"}, {"a.#.b", "a.x.y.b"}, {"*.b", "a.b"}, {"*", "a.b"},
		{"#.#", "a"}, {"a.*.#", "a"}, {"#.a.#.a", "a.a.a"}, {"a-b_c", "a-b_c"}, {"A", "a"},
	} {
		f.Add(c[0], c[1], false)
	}
	f.Add("ab*#.", "ab.", true)
	b := setup(f, nil)
	stmt, err := b.db.Prepare(`SELECT "` + b.schema + `".topic_matches($1, $2)`)
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { _ = stmt.Close() })
	f.Fuzz(func(t *testing.T, pattern, topic string, squashed bool) {
		if squashed {
			pattern, topic = squash(pattern, "ab*#."), squash(topic, "ab.")
		}
		if !ValidPattern(pattern) || !ValidTopic(topic) {
			if MatchTopic(pattern, topic) {
				t.Fatalf("MatchTopic(%q, %q) = true on invalid input", pattern, topic)
			}
			return
		}
		got := MatchTopic(pattern, topic)
		if want := refMatch(strings.Split(pattern, "."), strings.Split(topic, ".")); got != want {
			t.Fatalf("MatchTopic(%q, %q) = %v, reference says %v", pattern, topic, got, want)
		}
		var inSQL bool
		if err := stmt.QueryRowContext(context.Background(), pattern, topic).Scan(&inSQL); err != nil {
			t.Fatalf("topic_matches(%q, %q): %v", pattern, topic, err)
		}
		if got != inSQL {
			t.Fatalf("MatchTopic(%q, %q) = %v but SQL topic_matches = %v", pattern, topic, got, inSQL)
		}
	})
}

// jsonDepth is the nesting depth of valid JSON text.
func jsonDepth(b []byte) int {
	dec := json.NewDecoder(bytes.NewReader(b))
	depth, deepest := 0, 0
	for {
		tok, err := dec.Token()
		if err != nil {
			return deepest
		}
		switch tok {
		case json.Delim('['), json.Delim('{'):
			depth++
			deepest = max(deepest, depth)
		case json.Delim(']'), json.Delim('}'):
			depth--
		}
	}
}

// FuzzPayload checks payload validation: what encodeJSON accepts is valid
// UTF-8 JSON within the limits that PostgreSQL's jsonb stores (so Enqueue
// never sends a payload whose statement would fail and abort the caller's
// transaction), and the size limit is exact.
func FuzzPayload(f *testing.F) {
	for _, s := range []string{`{}`, `[]`, `null`, `"x"`, `{"a":[1,2,{"b":null}]}`, `{"s":"\u0000"}`, `"\ud800"`,
		`"\ud83d\ude00"`, `"\udc00\ud800"`, "\"\xff\"", `1e999999`, `{"n":1e1000}`, `-0.0e-5`, `{"a":1}{"b":2}`,
		`  {"a" : 1 }  `, strings.Repeat("[", 513) + strings.Repeat("]", 513), strings.Repeat("[", 512) + strings.Repeat("]", 512),
		`"'; DROP TABLE event_queue; --"`, `{"\u00e9":"\\"}`} {
		f.Add([]byte(s), 64)
	}
	b := setup(f, nil)
	// printed is the size of JSON text with its numbers as PostgreSQL
	// prints them (1e3 as 1000), asked of PostgreSQL one number at a time.
	printed := func(t *testing.T, body []byte) int {
		size := len(body)
		for _, n := range jsonNumbers(body) {
			var l int
			if err := b.db.QueryRowContext(context.Background(), `SELECT length($1::numeric::text)`, n).Scan(&l); err != nil {
				t.Fatalf("number %.40q of %q: %v", n, truncateForLog(body), err)
			}
			size += l - len(n)
		}
		return size
	}
	f.Fuzz(func(t *testing.T, data []byte, limit int) {
		if limit < 0 {
			limit = -limit
		}
		limit %= 1 << 16
		body, err := encodeJSON(json.RawMessage(data), "payload", limit)
		switch {
		case err == nil:
			if limit > 0 && len(body) > limit {
				t.Fatalf("accepted %d bytes over the limit of %d", len(body), limit)
			}
			if !utf8.Valid(body) || !json.Valid(body) {
				t.Fatalf("accepted invalid JSON %q", body)
			}
			if d := jsonDepth(body); d > jsontext.MaxDepth {
				t.Fatalf("accepted depth %d", d)
			}
			// No ::text here: an unchecked payload could print to gigabytes.
			var ok bool
			if err := b.db.QueryRowContext(context.Background(), `SELECT $1::jsonb IS NOT NULL`, string(body)).Scan(&ok); err != nil {
				t.Fatalf("encodeJSON accepted %q but jsonb rejects it: %v", truncateForLog(body), err)
			}
			if p := printed(t, body); limit > 0 && p > limit {
				t.Fatalf("accepted %q: %d bytes, but %d with its numbers written out, over the limit of %d", truncateForLog(body), len(body), p, limit)
			}
		case errors.Is(err, ErrPayloadTooLarge):
			if limit == 0 {
				t.Fatalf("ErrPayloadTooLarge without a limit")
			}
			if len(data) <= limit && printed(t, data) <= limit {
				t.Fatalf("ErrPayloadTooLarge for %q, %d bytes, limit %d", truncateForLog(data), len(data), limit)
			}
		case errors.Is(err, ErrInvalidPayload):
			var ve *ValidationError
			if !errors.As(err, &ve) || ve.Field != "payload" {
				t.Fatalf("error %v is not a *ValidationError on payload", err)
			}
			if limit > 0 && len(data) > limit {
				t.Fatalf("%d bytes over the limit of %d reported as invalid, not too large", len(data), limit)
			}
		default:
			t.Fatalf("unexpected error class: %v", err)
		}
	})
}

// jsonNumbers returns the numbers of valid JSON text, as written.
func jsonNumbers(b []byte) []string {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var out []string
	for {
		tok, err := dec.Token()
		if err != nil {
			return out
		}
		if n, ok := tok.(json.Number); ok {
			out = append(out, string(n))
		}
	}
}

func truncateForLog(b []byte) string {
	if len(b) > 200 {
		return string(b[:200]) + "..."
	}
	return string(b)
}
