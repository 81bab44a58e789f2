package reredact

import (
	"database/sql"
	"strings"
	"testing"

	"github.com/outboxkit/outbox/redact"
)

func TestRedactValues(t *testing.T) {
	t.Parallel()
	red, err := redact.New(redact.Rules{Keys: []string{"internal_ref"}})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		in      sql.NullString
		json    bool
		changed bool
		want    string
	}{
		{sql.NullString{}, true, false, ""},
		// jsonb's layout is not a change.
		{sql.NullString{String: `{"a": 1, "b": [true, null, "x"]}`, Valid: true}, true, false, `{"a": 1, "b": [true, null, "x"]}`},
		{sql.NullString{String: `{"a": 1, "internal_ref": {"x": "zq"}}`, Valid: true}, true, true, `{"a":1,"internal_ref":"[REDACTED]"}`},
		{sql.NullString{String: `"see https://h.example/cb?internal_ref=zq"`, Valid: true}, true, true, `"see https://h.example/cb?internal_ref=[REDACTED]"`},
		{sql.NullString{String: "declined: internal_ref=zq", Valid: true}, false, true, "declined: internal_ref=[REDACTED]"},
		{sql.NullString{String: "plain", Valid: true}, false, false, "plain"},
		{sql.NullString{String: "", Valid: true}, false, false, ""},
	} {
		var got sql.NullString
		var changed bool
		if c.json {
			got, changed = redactJSON(red, c.in)
		} else {
			got, changed = redactText(red, c.in, 255)
		}
		if changed != c.changed || got.Valid != c.in.Valid || got.String != c.want {
			t.Errorf("%q -> %q (changed %v), want %q (changed %v)", c.in.String, got.String, changed, c.want, c.changed)
		}
	}
	// Text is cut where the recorders cut it, and made one line.
	got, changed := redactText(red, sql.NullString{String: "a\nb" + strings.Repeat("é", 300), Valid: true}, 10)
	if !changed || got.String != "a b"+strings.Repeat("é", 7) {
		t.Errorf("cut: %q", got.String)
	}
}

func TestParallelVisitsEachOnce(t *testing.T) {
	t.Parallel()
	for _, n := range []int{1, 2, 7, 500} {
		seen := make([]int32, n)
		parallel(n, func(i int) { seen[i]++ })
		for i, s := range seen {
			if s != 1 {
				t.Fatalf("n=%d: index %d visited %d times", n, i, s)
			}
		}
	}
}
