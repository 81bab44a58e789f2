package difftest

import (
	"encoding/json"
	"flag"
	"math/rand"
	"net/http"
	"os"
	"regexp/syntax"
	"sort"
	"strings"
	"testing"
	"unicode"

	"github.com/rs/zerolog"
	"github.com/zricethezav/gitleaks/v8/detect"
	"github.com/zricethezav/gitleaks/v8/logging"

	"github.com/outboxkit/outbox/redact"
)

var (
	samples = flag.Int("difftest.samples", 4, "inputs generated from each gitleaks rule")
	seed    = flag.Int64("difftest.seed", 20261204, "seed of the generated inputs")
	show    = flag.Bool("difftest.show", false, "log an example of each rule's stored findings")
)

// exceptions are the gitleaks rules whose findings the redaction may
// store, each with the reason; docs/redaction.md lists them too.
var exceptions = map[string]string{
	// The rule's keyword alternative is written new-york-times, with the
	// comma inside: it flags "new-york-times,x = value" where the name
	// before the operator is x, which is no sensitive name.
	"nytimes-access-token": "the rule reads a comma as part of its name",
}

// A context places a generated input where the recorders meet text: what
// gitleaks scans, and what the redaction stores of it.
type context struct {
	name   string
	scan   func(s string) string
	stored func(r *redact.Redactor, s string) string
}

var contexts = []context{
	{"error message", func(s string) string { return "upstream error: " + s + "\n" },
		func(r *redact.Redactor, s string) string { return r.String("upstream error: " + s + "\n") }},
	{"JSON body", func(s string) string { return jsonDoc(s) },
		func(r *redact.Redactor, s string) string {
			b, _ := r.Body([]byte(jsonDoc(s)), "application/json")
			return string(b)
		}},
	{"header", func(s string) string { return "X-Debug: " + s },
		func(r *redact.Redactor, s string) string {
			b, _ := json.Marshal(r.Headers(http.Header{"X-Debug": {s}}, nil))
			return string(b)
		}},
	{"text body", func(s string) string { return "line one\n" + s + "\nline three" },
		func(r *redact.Redactor, s string) string {
			b, _ := r.Body([]byte("line one\n"+s+"\nline three"), "text/plain")
			return string(b)
		}},
}

func jsonDoc(s string) string {
	b, _ := json.MarshalIndent(map[string]any{"status": "failed", "detail": s}, "", "  ")
	return string(b)
}

// leak is a value gitleaks flags and the redaction stores.
type leak struct {
	rule, context, input, secret, stored string
}

// TestDifferentialGitleaks generates inputs from every rule of gitleaks'
// default configuration (random strings its regular expression matches),
// keeps those gitleaks flags, places them in the recorders' contexts and
// fails on every flagged value the default Redactor stores, except the
// rules listed in exceptions.
func TestDifferentialGitleaks(t *testing.T) {
	logging.Logger = zerolog.Nop()
	d, err := detect.NewDetectorDefaultConfig()
	if err != nil {
		t.Fatal(err)
	}
	r := redact.Default()
	rnd := rand.New(rand.NewSource(*seed))
	ids := make([]string, 0, len(d.Config.Rules))
	for id := range d.Config.Rules {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	var leaks []leak
	flagged, rules := 0, 0
	perRule := map[string][2]int{} // flagged, stored
	for _, id := range ids {
		rule := d.Config.Rules[id]
		if rule.Regex == nil || rule.Path != nil {
			continue // a rule on file names, or only for some files
		}
		re, err := syntax.Parse(rule.Regex.String(), syntax.Perl)
		if err != nil {
			t.Fatalf("%s: %v", id, err)
		}
		re = re.Simplify()
		got := 0
		for try := 0; try < 40*(*samples) && got < *samples; try++ {
			var b strings.Builder
			generate(re, rnd, &b)
			in := b.String()
			if len(d.DetectString(in)) == 0 {
				continue // entropy, allowlists or stopwords: gitleaks does not flag it
			}
			got++
			for _, c := range contexts {
				stored := c.stored(r, in)
				for _, f := range d.DetectString(c.scan(in)) {
					if f.Secret == "" {
						continue
					}
					flagged++
					n := perRule[f.RuleID]
					n[0]++
					if storedSecret(stored, f.Secret) {
						n[1]++
						leaks = append(leaks, leak{f.RuleID, c.name, in, f.Secret, stored})
					}
					perRule[f.RuleID] = n
				}
			}
		}
		if got > 0 {
			rules++
		}
	}
	stored := 0
	for _, l := range leaks {
		if _, ok := exceptions[l.rule]; ok {
			continue
		}
		stored++
		if stored <= 10 {
			t.Errorf("%s in %s: gitleaks flags %q, stored: %s", l.rule, l.context, l.secret, cut(l.stored, 300))
		}
	}
	for _, id := range sortedKeys(perRule) {
		if n := perRule[id]; n[1] > 0 {
			t.Logf("%-40s flagged %3d, stored %3d (%s)", id, n[0], n[1], exceptionOr(id))
			if *show {
				for _, l := range leaks {
					if l.rule == id {
						t.Logf("    e.g. in %s: %q -> %s", l.context, l.input, cut(l.stored, 400))
						break
					}
				}
			}
		}
	}
	t.Logf("gitleaks v8.30.1: %d rules generated inputs; %d findings; %d stored (%d outside the exceptions)",
		rules, flagged, len(leaks), stored)
	if rules < 150 {
		t.Errorf("only %d rules generated an input gitleaks flags", rules)
	}
	// Every exception is documented.
	doc, err := os.ReadFile("../../docs/redaction.md")
	if err != nil {
		t.Fatal(err)
	}
	for id := range exceptions {
		if !strings.Contains(string(doc), "`"+id+"`") {
			t.Errorf("exception %s is not listed in docs/redaction.md", id)
		}
	}
}

// storedSecret reports whether the secret survives in the stored text,
// also JSON-escaped.
func storedSecret(stored, secret string) bool {
	if strings.Contains(stored, secret) {
		return true
	}
	q, _ := json.Marshal(secret)
	return strings.Contains(stored, string(q[1:len(q)-1]))
}

func exceptionOr(id string) string {
	if why, ok := exceptions[id]; ok {
		return "exception: " + why
	}
	return "NOT AN EXCEPTION"
}

func sortedKeys(m map[string][2]int) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func cut(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

// generate writes a random string that re matches: repetitions short
// (lazy ones at their minimum), classes drawn from printable ASCII.
func generate(re *syntax.Regexp, rnd *rand.Rand, b *strings.Builder) {
	switch re.Op {
	case syntax.OpLiteral:
		for _, c := range re.Rune {
			if re.Flags&syntax.FoldCase != 0 && rnd.Intn(2) == 0 {
				c = unicode.SimpleFold(c)
			}
			b.WriteRune(c)
		}
	case syntax.OpCharClass:
		b.WriteRune(pick(re.Rune, rnd))
	case syntax.OpAnyChar, syntax.OpAnyCharNotNL:
		b.WriteByte("abcdefghijklmnopqrstuvwxyz0123456789"[rnd.Intn(36)])
	case syntax.OpCapture:
		generate(re.Sub[0], rnd, b)
	case syntax.OpStar, syntax.OpPlus, syntax.OpQuest, syntax.OpRepeat:
		lo, hi := re.Min, re.Max
		switch re.Op {
		case syntax.OpStar:
			lo, hi = 0, 2
		case syntax.OpPlus:
			lo, hi = 1, 3
		case syntax.OpQuest:
			lo, hi = 0, 1
		}
		if hi < 0 {
			hi = lo + 8
		}
		n := lo
		if re.Flags&syntax.NonGreedy == 0 && hi > lo {
			n = lo + rnd.Intn(min(hi-lo, 12)+1)
		}
		for i := 0; i < n; i++ {
			generate(re.Sub[0], rnd, b)
		}
	case syntax.OpConcat:
		for _, s := range re.Sub {
			generate(s, rnd, b)
		}
	case syntax.OpAlternate:
		generate(re.Sub[rnd.Intn(len(re.Sub))], rnd, b)
	}
}

// pick draws a rune of a class (pairs of ranges), from printable ASCII
// when the class has any.
func pick(ranges []rune, rnd *rand.Rand) rune {
	var ascii []rune
	for i := 0; i+1 < len(ranges); i += 2 {
		for c := max(ranges[i], 0x20); c <= min(ranges[i+1], 0x7e); c++ {
			ascii = append(ascii, c)
		}
	}
	if len(ascii) > 0 {
		return ascii[rnd.Intn(len(ascii))]
	}
	if len(ranges) > 0 {
		return ranges[0]
	}
	return 'x'
}
