package webhooksend

import (
	"context"
	"errors"
	"net/netip"
	"testing"
	"time"
)

func TestSSRFGuardRanges(t *testing.T) {
	t.Parallel()
	g := newSSRFGuard(nil)
	blocked := []string{
		"127.0.0.1", "127.255.255.254", // loopback
		"10.0.0.1", "172.16.0.1", "172.31.255.255", "192.168.1.1", // private
		"169.254.169.254", "169.254.0.1", // link-local, cloud metadata
		"100.64.0.1", "100.127.255.254", // CGNAT (netip's IsPrivate misses it)
		"224.0.0.1", "239.255.255.250", // multicast
		"0.0.0.0", "0.1.2.3", // unspecified, "this network"
		"255.255.255.255", "240.0.0.1", // broadcast, reserved
		"192.0.2.1", "198.18.0.1", // documentation, benchmarking
		"::1", "::", // IPv6 loopback, unspecified
		"fc00::1", "fd12:3456::1", // unique local
		"fe80::1", "fe80::1%eth0", // link-local, with a zone
		"ff02::1", "ff05::2", // multicast
		"::ffff:127.0.0.1", "::ffff:169.254.169.254", "::ffff:10.0.0.1", "::ffff:100.64.0.1", "::ffff:0.0.0.0", // IPv4-mapped
		"64:ff9b::7f00:1",                           // NAT64 of 127.0.0.1
		"2001:db8::1", "2002:7f00:1::1", "::7f00:1", // documentation, 6to4, IPv4-compatible
		"fec0::1", // site-local (deprecated)
	}
	for _, s := range blocked {
		if err := g.checkAddr(netip.MustParseAddr(s)); !errors.Is(err, ErrBlocked) {
			t.Errorf("%s: err = %v, want ErrBlocked", s, err)
		}
	}
	allowed := []string{
		"8.8.8.8", "1.1.1.1", "93.184.216.34",
		"100.63.255.255", "100.128.0.1", // just outside CGNAT
		"172.15.255.255", "172.32.0.1", // just outside 172.16/12
		"169.253.255.255", "223.255.255.255",
		"::ffff:8.8.8.8", // IPv4-mapped form of a public address
		"2606:4700:4700::1111", "2a00:1450:4001:80b::200e",
	}
	for _, s := range allowed {
		if err := g.checkAddr(netip.MustParseAddr(s)); err != nil {
			t.Errorf("%s: %v, want allowed", s, err)
		}
	}
	if err := g.checkAddr(netip.Addr{}); !errors.Is(err, ErrBlocked) {
		t.Errorf("zero address: err = %v", err)
	}
}

func TestSSRFGuardAllowedNetworks(t *testing.T) {
	t.Parallel()
	g := newSSRFGuard([]netip.Prefix{
		netip.MustParsePrefix("127.0.0.0/8"),
		netip.MustParsePrefix("::ffff:10.1.0.0/112"), // mapped form of 10.1.0.0/16
		netip.MustParsePrefix("fd00:1::/32"),
	})
	for _, s := range []string{"127.0.0.1", "::ffff:127.0.0.2", "10.1.2.3", "::ffff:10.1.255.255", "fd00:1::5"} {
		if err := g.checkAddr(netip.MustParseAddr(s)); err != nil {
			t.Errorf("%s: %v, want allowed", s, err)
		}
	}
	for _, s := range []string{"10.2.0.1", "169.254.169.254", "::1", "fd00:2::1", "192.168.0.1"} {
		if err := g.checkAddr(netip.MustParseAddr(s)); !errors.Is(err, ErrBlocked) {
			t.Errorf("%s: err = %v, want ErrBlocked", s, err)
		}
	}
}

func TestSSRFGuardControl(t *testing.T) {
	t.Parallel()
	g := newSSRFGuard(nil)
	tests := []struct {
		network, address string
		ok               bool
	}{
		{"tcp4", "93.184.216.34:443", true},
		{"tcp4", "93.184.216.34:8080", true}, // any port
		{"tcp6", "[2606:4700:4700::1111]:443", true},
		{"tcp4", "127.0.0.1:80", false},
		{"tcp6", "[::ffff:169.254.169.254]:80", false},
		{"tcp6", "[fe80::1%eth0]:80", false},
		{"udp4", "93.184.216.34:53", false},
		{"tcp4", "not-an-address", false},
	}
	for _, tt := range tests {
		err := g.control(tt.network, tt.address, nil)
		if tt.ok != (err == nil) || (err != nil && !errors.Is(err, ErrBlocked)) {
			t.Errorf("control(%s, %s) = %v, want ok=%v", tt.network, tt.address, err, tt.ok)
		}
	}
}

func TestSSRFCheckWebhookTarget(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	refused := []string{
		"http://127.0.0.1:8080/hook",
		"http://localhost:8080/hook", // a name that resolves to loopback
		"http://[::1]/hook",
		"http://[::ffff:127.0.0.1]/hook",
		"http://[::ffff:169.254.169.254]/latest/meta-data/",
		"http://169.254.169.254/latest/meta-data/",
		"https://10.0.0.5/hook",
		"https://100.64.1.1/hook",
		"https://[fd00::1]/hook",
		"https://[fe80::1%25eth0]/hook",
		"http://0.0.0.0/",
		"http://224.0.0.1/",
	}
	for _, u := range refused {
		if err := CheckTarget(ctx, u, nil); err == nil {
			t.Errorf("%s: accepted", u)
		}
	}
	for _, u := range []string{"https://93.184.216.34/hook", "https://[2606:4700:4700::1111]:8443/hook"} {
		if err := CheckTarget(ctx, u, nil); err != nil {
			t.Errorf("%s: %v, want accepted", u, err)
		}
	}
	for _, u := range []string{"http://127.0.0.1:8080/hook", "http://localhost:8080/hook"} {
		if err := CheckTarget(ctx, u, loopbackNetworks); err != nil {
			t.Errorf("%s with loopback allowed: %v", u, err)
		}
	}
	if err := CheckTarget(ctx, "http://%zz/", nil); err == nil {
		t.Errorf("unparsable URL: err = %v", err)
	}
}
