package integrationlog

import (
	"encoding/json"

	"github.com/outboxkit/outbox/internal/jsontext"
	"github.com/outboxkit/outbox/redact"
)

// envelope builds a request or response object from head plus a body.
func envelope(r *redact.Redactor, field string, head map[string]any, body any) (json.RawMessage, error) {
	return envelopeKey(r, field, head, "body", body)
}

// envelopeKey builds a record's JSON: head's values, redacted (strings
// through String; maps and other values are the caller's, redacted
// already), with body, redacted, under key. The result needs no second
// redaction pass.
func envelopeKey(r *redact.Redactor, field string, head map[string]any, key string, body any) (json.RawMessage, error) {
	for k, v := range head {
		if s, ok := v.(string); ok {
			head[k] = r.String(s)
		}
	}
	if body != nil {
		v, truncated, err := anyBody(r, body)
		if err != nil {
			return nil, invalidRecord(field, "%v", err)
		}
		if v != nil {
			head[key] = v
		}
		if truncated {
			head[key+"_truncated"] = true
		}
	}
	if len(head) == 0 {
		return nil, nil
	}
	return jsontext.Marshal(head)
}

// anyBody encodes a caller's request or response value: []byte and
// json.RawMessage as an HTTP body, anything else marshalled to JSON.
func anyBody(r *redact.Redactor, v any) (json.RawMessage, bool, error) {
	switch x := v.(type) {
	case []byte:
		b, t := r.Body(x, "")
		return b, t, nil
	case json.RawMessage:
		b, t := r.Body(x, "")
		return b, t, nil
	}
	b, err := r.Value(v)
	if err != nil {
		return nil, false, err
	}
	b, t := r.Limit(b)
	return b, t, nil
}
