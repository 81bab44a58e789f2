package httprecord

import (
	"crypto/tls"
	"net/http"
	"net/url"
)

// Detach returns a copy of ex that holds nothing the caller, the handler or
// the server may change or reuse once the exchange has ended, so that it
// can be kept and read later on another goroutine. The copy's Request and
// Response are new and minimal: the method, URL (copied), Host, a TLS
// marker (a zero ConnectionState when the exchange was over TLS) and the
// headers (cloned) of the request; the status and headers (cloned) of the
// response; no body, context nor connection. Panic is left out (Err keeps
// its text). The bodies are the capture's own copies and are shared.
//
// When only is non-empty, only the headers it names, and Content-Type
// (which says how to read a body), are copied.
func (ex *Exchange) Detach(only []string) *Exchange {
	d := *ex
	d.Panic = nil
	if r := ex.Request; r != nil {
		dr := &http.Request{Method: r.Method, Host: r.Host, Header: cloneHeader(r.Header, only)}
		if r.URL != nil {
			u := *r.URL // Userinfo is immutable: sharing it is safe
			dr.URL = &u
		} else {
			dr.URL = &url.URL{}
		}
		if r.TLS != nil {
			dr.TLS = &tls.ConnectionState{}
		}
		d.Request = dr
	}
	if r := ex.Response; r != nil {
		d.Response = &http.Response{Status: r.Status, StatusCode: r.StatusCode, Header: cloneHeader(r.Header, only)}
	}
	return &d
}

// Size estimates the bytes a detached exchange holds: its bodies, URL and
// header names and values.
func (ex *Exchange) Size() int64 {
	n := int64(len(ex.RequestBody) + len(ex.ResponseBody) + 256)
	if r := ex.Request; r != nil {
		n += int64(len(r.Method) + len(r.Host) + headerSize(r.Header))
		if r.URL != nil {
			n += int64(len(r.URL.Path) + len(r.URL.RawPath) + len(r.URL.RawQuery) + len(r.URL.Host) + len(r.URL.Fragment))
		}
	}
	if r := ex.Response; r != nil {
		n += int64(headerSize(r.Header))
	}
	return n
}

func cloneHeader(h http.Header, only []string) http.Header {
	if h == nil {
		return nil
	}
	if len(only) == 0 {
		return h.Clone()
	}
	out := make(http.Header, len(only)+1)
	keep := func(k string) {
		if vs := h.Values(k); vs != nil {
			out[http.CanonicalHeaderKey(k)] = append([]string(nil), vs...)
		}
	}
	for _, k := range only {
		keep(k)
	}
	keep("Content-Type")
	return out
}

func headerSize(h http.Header) int {
	n := 0
	for k, vs := range h {
		n += len(k)
		for _, v := range vs {
			n += len(v) + 8
		}
	}
	return n
}
