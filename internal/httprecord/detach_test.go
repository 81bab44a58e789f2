package httprecord

import (
	"crypto/tls"
	"net/http"
	"net/url"
	"testing"
)

func TestDetachSharesNothingMutable(t *testing.T) {
	t.Parallel()
	u, _ := url.Parse("https://user:pw@api.example/v1/x?a=1")
	req := &http.Request{Method: "POST", URL: u, Host: "api.example", TLS: &tls.ConnectionState{Version: tls.VersionTLS13},
		Header: http.Header{"Authorization": {"Bearer t"}, "Content-Type": {"application/json"}, "X-Id": {"1"}}}
	resp := &http.Response{StatusCode: 201, Header: http.Header{"X-Res": {"a"}}}
	ex := &Exchange{Request: req, Response: resp, RequestBody: []byte("{}"), Panic: "boom"}
	d := ex.Detach(nil)
	req.Header.Set("X-Id", "2")
	req.URL.Path = "/changed"
	resp.Header.Set("X-Res", "b")
	if d.Request == req || d.Response == resp || d.Request.Header.Get("X-Id") != "1" || d.Request.URL.Path != "/v1/x" ||
		d.Response.Header.Get("X-Res") != "a" || d.Response.StatusCode != 201 || d.Panic != nil {
		t.Fatalf("detached exchange changed with the original: %+v %+v", d.Request, d.Response)
	}
	if d.Request.TLS == nil || d.Request.TLS.Version != 0 || d.Request.Host != "api.example" || d.Request.URL.User.String() != "user:pw" {
		t.Fatalf("detached request: %+v", d.Request)
	}
	if d.Size() < int64(len("{}")) {
		t.Fatalf("size %d", d.Size())
	}

	only := make([]string, 1, 4)
	only[0] = "x-id"
	d = ex.Detach(only)
	if len(d.Request.Header) != 2 || d.Request.Header.Get("X-Id") != "2" || d.Request.Header.Get("Content-Type") == "" {
		t.Fatalf("only: %v", d.Request.Header)
	}
	if len(only) != 1 || only[:2][1] != "" {
		t.Fatalf("Detach wrote into the caller's slice: %q", only[:2])
	}
}
