package outbox

import (
	"encoding"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"unicode/utf8"

	"github.com/outboxkit/outbox/internal/jsontext"
)

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
	printed, replaced, err := jsontext.Scan(b, !marshalled)
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
	if !v.IsValid() || depth > 2*jsontext.MaxDepth+64 {
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
