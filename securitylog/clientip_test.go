package securitylog_test

import (
	"errors"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"

	"github.com/outboxkit/outbox"
	"github.com/outboxkit/outbox/securitylog"
)

func TestClientIPParse(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"192.0.2.1": "192.0.2.1", "::ffff:192.0.2.1": "192.0.2.1", "2001:DB8:0:0:0:0:0:1": "2001:db8::1",
		"fe80::1%eth0": "fe80::1", "::1": "::1", "::ffff:c000:201": "192.0.2.1",
	} {
		if got, err := securitylog.ParseIP(in); err != nil || got != want {
			t.Errorf("ParseIP(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, in := range []string{"", " 1.2.3.4", "1.2.3.4:80", "[::1]", "01.2.3.4", "1.2.3", "host", "10.0.0.0/8", "1.2.3.4\n"} {
		if _, err := securitylog.ParseIP(in); !errors.Is(err, securitylog.ErrInvalidEvent) {
			t.Errorf("ParseIP(%q) accepted: %v", in, err)
		}
	}
}

func TestClientIPResolver(t *testing.T) {
	t.Parallel()
	r, err := securitylog.NewClientIPResolver(securitylog.ClientIPConfig{TrustedProxies: []string{"10.0.0.0/8", "2001:db8::1"}})
	if err != nil {
		t.Fatal(err)
	}
	none, err := securitylog.NewClientIPResolver(securitylog.ClientIPConfig{})
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		remote, xff   string
		want, noTrust string
	}{
		// Direct client: its forwarding header is ignored.
		{"203.0.113.9:5555", "1.1.1.1", "203.0.113.9", "203.0.113.9"},
		// Through a trusted proxy: the rightmost untrusted hop.
		{"10.1.2.3:443", "1.1.1.1, 198.51.100.4", "198.51.100.4", "10.1.2.3"},
		{"10.1.2.3:443", "1.1.1.1, 198.51.100.4, 10.9.9.9", "198.51.100.4", "10.1.2.3"},
		{"[2001:db8::1]:443", "::ffff:198.51.100.5", "198.51.100.5", "2001:db8::1"},
		// A trusted proxy without a usable header: the proxy itself.
		{"10.1.2.3:443", "garbage", "10.1.2.3", "10.1.2.3"},
		{"10.1.2.3:443", "", "10.1.2.3", "10.1.2.3"},
		// IPv4-mapped peers are normalised, and trusted as IPv4.
		{"[::ffff:10.0.0.1]:80", "192.0.2.44", "192.0.2.44", "10.0.0.1"},
		// Not an IP (a Unix socket).
		{"@", "1.1.1.1", "", ""},
	}
	for _, c := range cases {
		req := httptest.NewRequest("GET", "/", nil)
		req.RemoteAddr = c.remote
		if c.xff != "" {
			req.Header.Set("X-Forwarded-For", c.xff)
		}
		if got := r.ClientIP(req); got != c.want {
			t.Errorf("trusted: remote %s xff %q: %q, want %q", c.remote, c.xff, got, c.want)
		}
		if got := none.ClientIP(req); got != c.noTrust {
			t.Errorf("untrusted: remote %s xff %q: %q, want %q", c.remote, c.xff, got, c.noTrust)
		}
	}
	for _, bad := range []securitylog.ClientIPConfig{{TrustedProxies: []string{"10.0.0.0/33"}}, {TrustedProxies: []string{"host"}},
		{TrustedProxies: []string{"10.0.0.1"}, Header: "X-Real-IP"}} {
		if _, err := securitylog.NewClientIPResolver(bad); !errors.Is(err, outbox.ErrInvalidConfig) {
			t.Errorf("config %+v: %v", bad, err)
		}
	}
}

// FuzzParseIP checks ParseIP against net/netip: no panic, canonical output
// that parses to the same address, is a fixed point, and fits the column.
func FuzzParseIP(f *testing.F) {
	for _, s := range []string{"192.0.2.1", "::ffff:192.0.2.1", "2001:db8::1", "fe80::1%eth0", "::", "1.2.3.4:5", "",
		"0.0.0.0", "ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255", "::ffff:0:0", "1.2.3.04", "x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got, err := securitylog.ParseIP(s)
		a, perr := netip.ParseAddr(s)
		if (err == nil) != (perr == nil) {
			t.Fatalf("ParseIP(%q) error %v, netip error %v", s, err, perr)
		}
		if err != nil {
			var ve *outbox.ValidationError
			if !errors.As(err, &ve) || !errors.Is(err, securitylog.ErrInvalidEvent) || strings.ContainsAny(ve.Reason, "\n\r") {
				t.Fatalf("ParseIP(%q): bad error %v", s, err)
			}
			return
		}
		if len(got) > 45 || strings.Contains(got, "%") {
			t.Fatalf("ParseIP(%q) = %q does not fit", s, got)
		}
		b, err := netip.ParseAddr(got)
		if err != nil || b != a.Unmap().WithZone("") {
			t.Fatalf("ParseIP(%q) = %q, not the same address", s, got)
		}
		if again, err := securitylog.ParseIP(got); err != nil || again != got {
			t.Fatalf("ParseIP not idempotent: %q -> %q -> %q", s, got, again)
		}
		if b.Is4In6() {
			t.Fatalf("ParseIP(%q) = %q kept the IPv4 mapping", s, got)
		}
	})
}
