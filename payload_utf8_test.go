package outbox

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

// badText marshals to text that is not UTF-8: encoding/json would write it
// as a string with U+FFFD in place of the bad byte.
type badText struct{}

func (badText) MarshalText() ([]byte, error) { return []byte("a\xffb"), nil }

// escapedFFFD writes a \ufffd escape of its own: a real U+FFFD, meant.
type escapedFFFD struct{}

func (escapedFFFD) MarshalJSON() ([]byte, error) { return []byte(`"x\ufffdy"`), nil }

type utf8Item struct {
	Name string `json:"name"`
	Skip string `json:"-"` // never encoded: not checked either
}

type utf8Payload struct {
	ID    int        `json:"id"`
	Note  string     `json:"note"`
	Items []utf8Item `json:"items"`
	Tags  map[string]any
	Ptr   *string
}

// TestEnqueueRefusesInvalidUTF8 checks every entry point: a payload or
// metadata string that is not valid UTF-8 is an ErrInvalidPayload before any
// SQL (encoding/json would have stored U+FFFD in its place), while a real
// U+FFFD is stored unchanged. The caller's transaction stays usable.
func TestEnqueueRefusesInvalidUTF8(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	b.subscribe(t, "s", "#", "h")
	ctx := ctxT(t)
	bad := "a\xffb"
	refused := map[string]struct {
		payload any
		opts    *EnqueueOptions
	}{
		"string in map":        {payload: map[string]string{"a": "\xff"}},
		"map key":              {payload: map[string]int{bad: 1}},
		"struct field":         {payload: utf8Payload{Note: bad}},
		"nested slice":         {payload: utf8Payload{Items: []utf8Item{{Name: "ok"}, {Name: bad}}}},
		"any in map in struct": {payload: utf8Payload{Tags: map[string]any{"t": []any{"ok", bad}}}},
		"pointer":              {payload: utf8Payload{Ptr: &bad}},
		"text marshaler":       {payload: map[string]any{"t": badText{}}},
		"raw message":          {payload: json.RawMessage("{\"a\":\"\xff\"}")},
		"raw in struct":        {payload: struct{ R json.RawMessage }{R: json.RawMessage("\"\xff\"")}},
		"bytes":                {payload: []byte("[\"\xfe\"]")},
		"string payload":       {payload: bad},
		"with a real FFFD too": {payload: []string{"\uFFFD", bad}},
		"metadata value":       {payload: 1, opts: &EnqueueOptions{Metadata: map[string]string{"trace": bad}}},
		"metadata key":         {payload: 1, opts: &EnqueueOptions{Metadata: map[string]string{bad: "x"}}},
	}
	accepted := map[string]struct {
		payload any
		stored  string // the payload as jsonb prints it
	}{
		"real FFFD":          {payload: map[string]string{"a": "\uFFFD"}, stored: "{\"a\": \"\uFFFD\"}"},
		"FFFD in raw JSON":   {payload: json.RawMessage(`{"a":"\ufffd"}`), stored: "{\"a\": \"\uFFFD\"}"},
		"FFFD by Marshaler":  {payload: []any{escapedFFFD{}}, stored: "[\"x\uFFFDy\"]"},
		"skipped bad field":  {payload: utf8Item{Name: "\uFFFD", Skip: bad}, stored: "{\"name\": \"\uFFFD\"}"},
		"bytes are base64ed": {payload: map[string][]byte{"b": []byte("\xff")}, stored: `{"b": "/w=="}`},
	}

	tx, err := b.db.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = tx.Rollback() }()
	for name, c := range refused {
		_, err := b.ob.Enqueue(ctx, tx, "t", c.payload, c.opts)
		var ve *ValidationError
		if !errors.Is(err, ErrInvalidPayload) || !errors.As(err, &ve) {
			t.Errorf("Enqueue, %s: %v, want an ErrInvalidPayload *ValidationError", name, err)
		}
		_, err = b.ob.EnqueueBatch(ctx, tx, []Event{{Topic: "t", Payload: 1}, {Topic: "t", Payload: c.payload, Options: c.opts}})
		if !errors.Is(err, ErrInvalidPayload) || !strings.Contains(err.Error(), "event 1") {
			t.Errorf("EnqueueBatch, %s: %v, want an ErrInvalidPayload naming event 1", name, err)
		}
	}
	// No SQL was sent: the transaction still works and holds nothing.
	if n := countRows(t, tx, `SELECT count(*) FROM "`+b.schema+`".system_event`); n != 0 {
		t.Fatalf("%d events after refusals", n)
	}
	ids := map[string]EnqueueResult{}
	for name, c := range accepted {
		res, err := b.ob.Enqueue(ctx, tx, "t", c.payload, nil)
		if err != nil {
			t.Fatalf("Enqueue, %s: %v", name, err)
		}
		ids[name] = res
	}
	batch, err := b.ob.EnqueueBatch(ctx, tx, []Event{{Topic: "t", Payload: accepted["real FFFD"].payload,
		Options: &EnqueueOptions{Metadata: map[string]string{"\uFFFD": "\uFFFD"}}}})
	if err != nil {
		t.Fatalf("EnqueueBatch with a real U+FFFD: %v", err)
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	for name, c := range accepted {
		var payload string
		if err := b.db.QueryRowContext(ctx, `SELECT payload::text FROM "`+b.schema+`".system_event WHERE id = $1`,
			ids[name].EventID).Scan(&payload); err != nil {
			t.Fatal(err)
		}
		if payload != c.stored {
			t.Errorf("%s: stored %q, want %q", name, payload, c.stored)
		}
	}
	var md string
	if err := b.db.QueryRowContext(ctx, `SELECT metadata::text FROM "`+b.schema+`".system_event WHERE id = $1`,
		batch[0].EventID).Scan(&md); err != nil {
		t.Fatal(err)
	}
	if md != "{\"\uFFFD\": \"\uFFFD\"}" {
		t.Errorf("metadata with a real U+FFFD stored as %q", md)
	}
}

// TestEncodeJSONFFFDOnlyWalksWhenNeeded: a payload without a \ufffd escape
// in its JSON is not walked (no second pass), and the escape alone does not
// refuse it.
func TestEncodeJSONFFFDOnlyWalksWhenNeeded(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		v       any
		refused bool
	}{
		{map[string]string{"a": "plain"}, false},
		{map[string]any{"a": json.RawMessage(`"\ufffd"`)}, false},
		{map[string]any{"a": json.RawMessage(`"\uFFFD"`), "b": "\x80"}, true},
		{[]any{escapedFFFD{}, "\xc3"}, true},
	} {
		_, err := encodeJSON(c.v, "payload", 0)
		if got := errors.Is(err, ErrInvalidPayload); got != c.refused {
			t.Errorf("%#v: %v, refused %v", c.v, err, c.refused)
		}
	}
}
