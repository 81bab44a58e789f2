package outbox

import (
	"bytes"
	"encoding"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"reflect"
	"strings"
	"unicode/utf8"
)

// MaxJSONDepth is the deepest nesting of arrays and objects a payload or
// metadata value may have.
const MaxJSONDepth = 512

// encodeJSON turns v into JSON that PostgreSQL's jsonb accepts, checking it
// before any SQL is sent: []byte and json.RawMessage are taken as JSON text,
// anything else is marshalled. field names the input in errors.
func encodeJSON(v any, field string, limit int) ([]byte, error) {
	if v == nil {
		return nil, invalid(ErrInvalidPayload, field, "is nil")
	}
	b, marshalled, err := jsonText(v)
	if err != nil {
		return nil, &ValidationError{Field: field, Reason: "does not marshal to JSON: " + err.Error(), Err: ErrInvalidPayload}
	}
	if limit > 0 && len(b) > limit {
		return nil, &ValidationError{Field: field, Reason: fmt.Sprintf("is %d bytes, over the limit of %d", len(b), limit), Err: ErrPayloadTooLarge}
	}
	printed, replaced, err := scanJSON(b, !marshalled)
	if err != nil {
		return nil, &ValidationError{Field: field, Reason: err.Error(), Err: ErrInvalidPayload}
	}
	if marshalled && replaced {
		// encoding/json writes invalid UTF-8 in a Go string as \ufffd
		// without an error; a real U+FFFD it writes as itself. The escape
		// may still come from a MarshalJSON method, so the strings of v
		// decide.
		if err := checkStrings(reflect.ValueOf(v), 0); err != nil {
			return nil, &ValidationError{Field: field, Reason: err.Error(), Err: ErrInvalidPayload}
		}
	}
	if limit > 0 && printed > limit {
		// 1e100000 is 8 bytes of JSON but 100001 once PostgreSQL prints it.
		return nil, &ValidationError{Field: field, Reason: fmt.Sprintf("is %d bytes with its numbers written out, over the limit of %d", printed, limit), Err: ErrPayloadTooLarge}
	}
	return b, nil
}

// jsonText returns v as JSON text: []byte and json.RawMessage as they are,
// anything else marshalled by encoding/json (whose output is valid JSON
// syntax: it checks what MarshalJSON methods return).
func jsonText(v any) (b []byte, marshalled bool, err error) {
	switch x := v.(type) {
	case json.RawMessage:
		return x, false, nil
	case []byte:
		return x, false, nil
	default:
		b, err = json.Marshal(v)
		return b, true, err
	}
}

// checkJSON reports why b is not JSON that jsonb stores: invalid syntax or
// UTF-8, nesting deeper than MaxJSONDepth, a \u0000 escape or a lone UTF-16
// surrogate escape, or a number out of numeric's range (PostgreSQL rejects
// the last three).
func checkJSON(b []byte) error {
	_, err := checkJSONPrinted(b)
	return err
}

// checkJSONPrinted is checkJSON that also returns the size of b with its
// numbers written out as PostgreSQL prints them.
func checkJSONPrinted(b []byte) (int, error) {
	n, _, err := scanJSON(b, true)
	return n, err
}

// scanJSON is checkJSONPrinted; with checkSyntax false it trusts b to be
// valid JSON syntax (encoding/json's output) and skips that pass. UTF-8 is
// checked either way: a MarshalJSON method may return invalid UTF-8, which
// encoding/json passes through. replaced reports a \ufffd escape in a
// string, which is what encoding/json writes for invalid UTF-8.
func scanJSON(b []byte, checkSyntax bool) (printed int, replaced bool, err error) {
	if !utf8.Valid(b) {
		return 0, false, fmt.Errorf("is not valid UTF-8")
	}
	if checkSyntax && !json.Valid(b) {
		return 0, false, fmt.Errorf("is not valid JSON")
	}
	depth := 0
	printed = len(b)
	for i := 0; i < len(b); i++ {
		switch c := b[i]; {
		case c == '[' || c == '{':
			depth++
			if depth > MaxJSONDepth {
				return 0, false, fmt.Errorf("nests deeper than %d levels", MaxJSONDepth)
			}
		case c == ']' || c == '}':
			depth--
		case c == '"':
			end, fffd, err := scanString(b, i+1)
			if err != nil {
				return 0, false, err
			}
			replaced = replaced || fffd
			i = end
		case c == '-' || c >= '0' && c <= '9':
			end := i
			for end < len(b) && strings.IndexByte("0123456789+-.eE", b[end]) >= 0 {
				end++
			}
			n, err := numericTextLen(b[i:end])
			if err != nil {
				return 0, false, err
			}
			printed += n - (end - i)
			i = end - 1
		}
	}
	return printed, replaced, nil
}

var (
	jsonMarshalerType = reflect.TypeFor[json.Marshaler]()
	textMarshalerType = reflect.TypeFor[encoding.TextMarshaler]()
)

// errInvalidUTF8String is why a marshalled value is refused when one of its
// strings is not valid UTF-8.
var errInvalidUTF8String = errors.New("holds a string that is not valid UTF-8 (encoding/json would store it with U+FFFD replacements)")

// checkStrings reports a string in v, as encoding/json encodes it (map keys,
// exported and embedded struct fields, MarshalText results), that is not
// valid UTF-8. A json.Marshaler's output is its own: its invalid bytes are
// caught in the output, and a \ufffd escape it writes is taken as meant.
// It runs only on values that marshalled, so it meets no cycle.
func checkStrings(v reflect.Value, depth int) error {
	if !v.IsValid() || depth > 2*MaxJSONDepth+64 {
		return nil
	}
	t := v.Type()
	if t.Implements(jsonMarshalerType) || (t.Kind() != reflect.Pointer && v.CanAddr() && reflect.PointerTo(t).Implements(jsonMarshalerType)) {
		return nil
	}
	if t.Implements(textMarshalerType) || (t.Kind() != reflect.Pointer && v.CanAddr() && reflect.PointerTo(t).Implements(textMarshalerType)) {
		return checkText(v)
	}
	switch v.Kind() {
	case reflect.String:
		if !utf8.ValidString(v.String()) {
			return errInvalidUTF8String
		}
	case reflect.Pointer, reflect.Interface:
		if !v.IsNil() {
			return checkStrings(v.Elem(), depth+1)
		}
	case reflect.Slice, reflect.Array:
		if v.Kind() == reflect.Slice && t.Elem().Kind() == reflect.Uint8 && !reflect.PointerTo(t.Elem()).Implements(jsonMarshalerType) &&
			!reflect.PointerTo(t.Elem()).Implements(textMarshalerType) {
			return nil // []byte: base64
		}
		for i := range v.Len() {
			if err := checkStrings(v.Index(i), depth+1); err != nil {
				return err
			}
		}
	case reflect.Map:
		for it := v.MapRange(); it.Next(); {
			k := it.Key()
			if k.Kind() == reflect.String {
				if !utf8.ValidString(k.String()) {
					return errInvalidUTF8String
				}
			} else if k.Type().Implements(textMarshalerType) {
				if err := checkText(k); err != nil {
					return err
				}
			}
			if err := checkStrings(it.Value(), depth+1); err != nil {
				return err
			}
		}
	case reflect.Struct:
		for i := range t.NumField() {
			f := t.Field(i)
			if (!f.IsExported() && !f.Anonymous) || f.Tag.Get("json") == "-" {
				continue
			}
			if err := checkStrings(v.Field(i), depth+1); err != nil {
				return err
			}
		}
	}
	return nil
}

// checkText checks the MarshalText result of v, which encoding/json writes
// as a string.
func checkText(v reflect.Value) error {
	if v.Kind() == reflect.Pointer && v.IsNil() {
		return nil
	}
	if !v.CanInterface() {
		return nil // an unexported embedded field's value: encoding/json skips its methods too
	}
	var m encoding.TextMarshaler
	if tm, ok := v.Interface().(encoding.TextMarshaler); ok {
		m = tm
	} else if v.CanAddr() {
		m, _ = v.Addr().Interface().(encoding.TextMarshaler)
	}
	if m == nil {
		return nil
	}
	b, err := m.MarshalText()
	if err == nil && !utf8.Valid(b) {
		return errInvalidUTF8String
	}
	return nil
}

func leadingZeros(digits []byte) int {
	n := 0
	for n < len(digits) && digits[n] == '0' {
		n++
	}
	return n
}

// PostgreSQL numeric limits: digits before and after the decimal point.
const (
	numericMaxIntDigits = 131072
	numericMaxScale     = 16383
)

// numericTextLen returns the length of the valid JSON number tok as
// PostgreSQL's numeric prints it, or an error when numeric cannot hold it.
func numericTextLen(tok []byte) (int, error) {
	neg := tok[0] == '-'
	if neg {
		tok = tok[1:]
	}
	mant, exp := tok, 0
	if k := bytes.IndexAny(tok, "eE"); k >= 0 {
		mant = tok[:k]
		e := tok[k+1:]
		sign := 1
		if len(e) > 0 && (e[0] == '+' || e[0] == '-') {
			if e[0] == '-' {
				sign = -1
			}
			e = e[1:]
		}
		for _, d := range e {
			if exp < 1<<30 {
				exp = exp*10 + int(d-'0')
			}
		}
		if exp >= math.MaxInt32/2 {
			// numeric_in refuses such exponents even on a zero.
			return 0, fmt.Errorf("holds a number whose exponent is out of numeric's range")
		}
		exp *= sign
	}
	intPart, frac := mant, []byte(nil)
	if k := bytes.IndexByte(mant, '.'); k >= 0 {
		intPart, frac = mant[:k], mant[k+1:]
	}
	scale := max(len(frac)-exp, 0)
	if scale > numericMaxScale {
		return 0, fmt.Errorf("holds a number with more than %d digits after the decimal point", numericMaxScale)
	}
	zeros := leadingZeros(intPart) // leading zeros of the digit string intPart+frac
	if zeros == len(intPart) {
		zeros += leadingZeros(frac)
	}
	n := 1                              // the integer part: at least "0"
	if zeros < len(intPart)+len(frac) { // not zero
		if pos := len(intPart) + exp - zeros; pos > 1 {
			if pos > numericMaxIntDigits {
				return 0, fmt.Errorf("holds a number with more than %d digits before the decimal point", numericMaxIntDigits)
			}
			n = pos
		}
		if neg {
			n++
		}
	}
	if scale > 0 {
		n += 1 + scale
	}
	return n, nil
}

// scanString checks the escapes of the JSON string starting at b[i] (after
// its opening quote) and returns the index of its closing quote. b is
// already known to be valid JSON.
func scanString(b []byte, i int) (end int, fffd bool, err error) {
	pendingHigh := false
	for ; i < len(b); i++ {
		c := b[i]
		if c == '"' {
			if pendingHigh {
				return 0, false, fmt.Errorf("holds a lone UTF-16 surrogate escape")
			}
			return i, fffd, nil
		}
		if c != '\\' {
			if pendingHigh {
				return 0, false, fmt.Errorf("holds a lone UTF-16 surrogate escape")
			}
			continue
		}
		i++
		if b[i] != 'u' {
			if pendingHigh {
				return 0, false, fmt.Errorf("holds a lone UTF-16 surrogate escape")
			}
			continue
		}
		r := hex4(b[i+1 : i+5])
		i += 4
		switch {
		case r == 0xFFFD:
			fffd = true
			if pendingHigh {
				return 0, false, fmt.Errorf("holds a lone UTF-16 surrogate escape")
			}
		case r == 0:
			return 0, false, fmt.Errorf("holds a \\u0000 escape, which PostgreSQL's jsonb rejects")
		case r >= 0xD800 && r < 0xDC00:
			if pendingHigh {
				return 0, false, fmt.Errorf("holds a lone UTF-16 surrogate escape")
			}
			pendingHigh = true
		case r >= 0xDC00 && r < 0xE000:
			if !pendingHigh {
				return 0, false, fmt.Errorf("holds a lone UTF-16 surrogate escape")
			}
			pendingHigh = false
		default:
			if pendingHigh {
				return 0, false, fmt.Errorf("holds a lone UTF-16 surrogate escape")
			}
		}
	}
	return i, fffd, nil
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
