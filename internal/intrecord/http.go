package intrecord

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"time"

	"github.com/outboxkit/outbox/internal/httprecord"
	"github.com/outboxkit/outbox/internal/jsontext"
	"github.com/outboxkit/outbox/redact"
)

// HTTP is one HTTP exchange as the integration log records it: built once
// by whoever saw it (the HTTP recorders from what they captured, the
// webhook sender from what it sent and received), then turned into a
// record by FromHTTP.
type HTTP struct {
	Method string
	URL    string
	// RequestHeader and RequestBody are the request as sent; RequestBytes
	// is the body's full size (RequestBody may hold a prefix).
	RequestHeader http.Header
	RequestBody   []byte
	RequestBytes  int64
	// Status is the response status, 0 when no response arrived; then the
	// response fields are empty.
	Status         int
	ResponseHeader http.Header
	ResponseBody   []byte
	ResponseBytes  int64
	// Err is the call's error, nil if it got a response.
	Err error
	// Start is when the exchange began; Duration how long it took.
	Start    time.Time
	Duration time.Duration
}

// FromExchange is the HTTP value of an exchange the HTTP recorders
// captured. For a served request it rebuilds the URL the sender used.
func FromExchange(ex *httprecord.Exchange) *HTTP {
	h := &HTTP{RequestBody: ex.RequestBody, RequestBytes: ex.RequestBytes, Err: ex.Err, Start: ex.Start, Duration: ex.Duration}
	if req := ex.Request; req != nil {
		h.Method, h.RequestHeader = req.Method, req.Header
		if req.URL != nil {
			h.URL = req.URL.String()
			if req.URL.Host == "" && req.Host != "" {
				scheme := "http"
				if req.TLS != nil {
					scheme = "https"
				}
				h.URL = scheme + "://" + req.Host + req.URL.RequestURI()
			}
		}
	}
	if resp := ex.Response; resp != nil {
		h.Status, h.ResponseHeader = resp.StatusCode, resp.Header
		h.ResponseBody, h.ResponseBytes = ex.ResponseBody, ex.ResponseBytes
	}
	return h
}

// FromHTTP is the record of h, redacted by red: request_data holds
// method, url, headers (only those only names, when set) and body;
// response_data holds headers and body; success is a 2xx without error.
// The record needs no second redaction (Prepare with a nil redactor).
func FromHTTP(red *redact.Redactor, integration, op string, h *HTTP, only []string) Record {
	rec := Record{Integration: integration, Operation: op, Duration: max(h.Duration, 0), OccurredAt: h.Start}
	head := map[string]any{"method": h.Method, "url": red.URL(h.URL)}
	if hd := red.Headers(h.RequestHeader, only); hd != nil {
		head["headers"] = hd
	}
	putBody(red, head, h.RequestBody, h.RequestBytes, h.RequestHeader.Get("Content-Type"))
	rec.Request, _ = jsontext.Marshal(head)
	if h.Status != 0 {
		rec.HTTPStatus = h.Status
		head := map[string]any{}
		if hd := red.Headers(h.ResponseHeader, only); hd != nil {
			head["headers"] = hd
		}
		putBody(red, head, h.ResponseBody, h.ResponseBytes, h.ResponseHeader.Get("Content-Type"))
		if len(head) > 0 {
			rec.Response, _ = jsontext.Marshal(head)
		}
	}
	switch {
	case h.Err != nil:
		rec.Error = ErrorText(red, h.Err)
	case h.Status == 0:
		rec.Error = "no response"
	case h.Status < 200 || h.Status > 299:
		rec.Error = fmt.Sprintf("HTTP %d %s", h.Status, http.StatusText(h.Status))
	default:
		rec.Success = true
	}
	if rec.HTTPStatus < 100 || rec.HTTPStatus > 599 {
		rec.HTTPStatus = 0
	}
	return rec
}

// putBody stores a redacted body under "body"; total is its full size.
func putBody(red *redact.Redactor, head map[string]any, body []byte, total int64, contentType string) {
	if len(body) == 0 {
		return
	}
	total = max(total, int64(len(body)))
	v, truncated := red.Body(body, contentType)
	if total > int64(len(body)) {
		v, truncated = red.PartialBody(body, contentType)
	}
	head["body"] = v
	if truncated {
		head["body_truncated"] = true
		head["body_bytes"] = total
	}
}

// ErrorText renders a call error with the URL inside a *url.Error redacted.
func ErrorText(red *redact.Redactor, err error) string {
	var ue *url.Error
	if errors.As(err, &ue) {
		inner := "<nil>"
		if ue.Err != nil {
			inner = ue.Err.Error()
		}
		return fmt.Sprintf("%s %q: %s", ue.Op, red.URL(ue.URL), red.String(inner))
	}
	return red.String(err.Error())
}
