package outbox

import (
	"encoding/json"
	"fmt"
	"unicode/utf8"
)

// MaxJSONDepth is the deepest nesting of arrays and objects a payload or
// metadata value may have.
const MaxJSONDepth = 512

// encodeJSON turns v into JSON that PostgreSQL's jsonb accepts, checking it
// before any SQL is sent: []byte and json.RawMessage are taken as JSON text,
// anything else is marshalled. field names the input in errors.
func encodeJSON(v any, field string, limit int) ([]byte, error) {
	var b []byte
	switch x := v.(type) {
	case nil:
		return nil, invalid(ErrInvalidPayload, field, "is nil")
	case json.RawMessage:
		b = x
	case []byte:
		b = x
	default:
		var err error
		if b, err = json.Marshal(v); err != nil {
			return nil, &ValidationError{Field: field, Reason: "does not marshal to JSON: " + err.Error(), Err: ErrInvalidPayload}
		}
	}
	if limit > 0 && len(b) > limit {
		return nil, &ValidationError{Field: field, Reason: fmt.Sprintf("is %d bytes, over the limit of %d", len(b), limit), Err: ErrPayloadTooLarge}
	}
	if err := checkJSON(b); err != nil {
		return nil, &ValidationError{Field: field, Reason: err.Error(), Err: ErrInvalidPayload}
	}
	return b, nil
}

// checkJSON reports why b is not JSON that jsonb stores: invalid syntax or
// UTF-8, nesting deeper than MaxJSONDepth, a \u0000 escape, or a lone UTF-16
// surrogate escape (PostgreSQL rejects the last two).
func checkJSON(b []byte) error {
	if !utf8.Valid(b) {
		return fmt.Errorf("is not valid UTF-8")
	}
	if !json.Valid(b) {
		return fmt.Errorf("is not valid JSON")
	}
	depth := 0
	for i := 0; i < len(b); i++ {
		switch b[i] {
		case '[', '{':
			depth++
			if depth > MaxJSONDepth {
				return fmt.Errorf("nests deeper than %d levels", MaxJSONDepth)
			}
		case ']', '}':
			depth--
		case '"':
			end, err := scanString(b, i+1)
			if err != nil {
				return err
			}
			i = end
		}
	}
	return nil
}

// scanString checks the escapes of the JSON string starting at b[i] (after
// its opening quote) and returns the index of its closing quote. b is
// already known to be valid JSON.
func scanString(b []byte, i int) (int, error) {
	pendingHigh := false
	for ; i < len(b); i++ {
		c := b[i]
		if c == '"' {
			if pendingHigh {
				return 0, fmt.Errorf("holds a lone UTF-16 surrogate escape")
			}
			return i, nil
		}
		if c != '\\' {
			if pendingHigh {
				return 0, fmt.Errorf("holds a lone UTF-16 surrogate escape")
			}
			continue
		}
		i++
		if b[i] != 'u' {
			if pendingHigh {
				return 0, fmt.Errorf("holds a lone UTF-16 surrogate escape")
			}
			continue
		}
		r := hex4(b[i+1 : i+5])
		i += 4
		switch {
		case r == 0:
			return 0, fmt.Errorf("holds a \\u0000 escape, which PostgreSQL's jsonb rejects")
		case r >= 0xD800 && r < 0xDC00:
			if pendingHigh {
				return 0, fmt.Errorf("holds a lone UTF-16 surrogate escape")
			}
			pendingHigh = true
		case r >= 0xDC00 && r < 0xE000:
			if !pendingHigh {
				return 0, fmt.Errorf("holds a lone UTF-16 surrogate escape")
			}
			pendingHigh = false
		default:
			if pendingHigh {
				return 0, fmt.Errorf("holds a lone UTF-16 surrogate escape")
			}
		}
	}
	return i, nil
}

func hex4(h []byte) rune {
	var r rune
	for _, c := range h {
		r <<= 4
		switch {
		case c >= '0' && c <= '9':
			r |= rune(c - '0')
		case c >= 'a' && c <= 'f':
			r |= rune(c - 'a' + 10)
		case c >= 'A' && c <= 'F':
			r |= rune(c - 'A' + 10)
		}
	}
	return r
}
