package outbox

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"time"

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
			return nil, invalid(ErrInvalidRecord, field, "%v", err)
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

// httpRecord builds a redacted record of one HTTP exchange. reqTotal and
// respTotal are the bodies' full sizes (the slices may hold a prefix).
func httpRecord(r *redact.Redactor, integration string, op Operation, req *http.Request, reqBody []byte, reqTotal int64,
	resp *http.Response, respBody []byte, respTotal int64, callErr error, duration time.Duration, only []string) IntegrationRecord {
	rec := IntegrationRecord{Integration: integration, Operation: op, Duration: max(duration, 0)}
	if req != nil {
		u := ""
		if req.URL != nil {
			u = req.URL.String()
			if req.URL.Host == "" && req.Host != "" {
				// A server request: rebuild the URL the sender used.
				scheme := "http"
				if req.TLS != nil {
					scheme = "https"
				}
				u = scheme + "://" + req.Host + req.URL.RequestURI()
			}
		}
		head := map[string]any{"method": req.Method, "url": r.URL(u)}
		if h := r.Headers(req.Header, only); h != nil {
			head["headers"] = h
		}
		putBody(r, head, reqBody, reqTotal, req.Header.Get("Content-Type"))
		rec.Request, _ = jsontext.Marshal(head)
	}
	if resp != nil {
		rec.HTTPStatus = resp.StatusCode
		head := map[string]any{}
		if h := r.Headers(resp.Header, only); h != nil {
			head["headers"] = h
		}
		putBody(r, head, respBody, respTotal, resp.Header.Get("Content-Type"))
		if len(head) > 0 {
			rec.Response, _ = jsontext.Marshal(head)
		}
	}
	switch {
	case callErr != nil:
		rec.Error = errorText(r, callErr)
	case resp == nil:
		rec.Error = "no response"
	case resp.StatusCode < 200 || resp.StatusCode > 299:
		rec.Error = fmt.Sprintf("HTTP %d %s", resp.StatusCode, http.StatusText(resp.StatusCode))
	default:
		rec.Success = true
	}
	if rec.HTTPStatus < 100 || rec.HTTPStatus > 599 {
		rec.HTTPStatus = 0
	}
	return rec
}

func putBody(r *redact.Redactor, head map[string]any, body []byte, total int64, contentType string) {
	if len(body) == 0 {
		return
	}
	total = max(total, int64(len(body)))
	v, truncated := r.Body(body, contentType)
	if total > int64(len(body)) {
		v, truncated = r.PartialBody(body, contentType)
	}
	head["body"] = v
	if truncated {
		head["body_truncated"] = true
		head["body_bytes"] = total
	}
}

// errorText renders a call error with the URL inside a *url.Error redacted.
func errorText(r *redact.Redactor, err error) string {
	var ue *url.Error
	if errors.As(err, &ue) {
		return fmt.Sprintf("%s %q: %s", ue.Op, r.URL(ue.URL), r.String(errString(ue.Err)))
	}
	return r.String(err.Error())
}
