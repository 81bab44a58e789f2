package webhooksend

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"syscall"
	"time"

	"code.dny.dev/ssrf"
)

// ErrBlocked reports a webhook target whose address the SSRF guard
// refuses: loopback, private, link-local (cloud metadata included), CGNAT,
// multicast, unspecified, reserved, IPv6 unique-local or link-local, or an
// IPv4-mapped form of one of them. A delivery refused this way fails at once
// (it is not retried). WebhookOptions.AllowedNetworks lets chosen networks
// through.
var ErrBlocked = errors.New("outbox: webhook target address blocked")

// targetLookupTimeout bounds the DNS lookup of checkWebhookTarget.
const targetLookupTimeout = 5 * time.Second

// ssrfGuard decides which addresses webhook deliveries may connect to. Its
// control method runs as net.Dialer.Control, on the address actually dialled
// after DNS resolution, so a name that resolves differently at delivery
// time (DNS rebinding) is still checked.
type ssrfGuard struct {
	allowed []netip.Prefix // normalised: IPv4 prefixes in IPv4 form
	g       *ssrf.Guardian
}

// newSSRFGuard returns a guard that denies the ranges of code.dny.dev/ssrf
// (the IANA special-purpose registries, multicast, and everything outside
// IPv6 global unicast) except the allowed prefixes. Only the address is
// judged (Guardian.SafeAddr): any port is allowed, and control checks the
// network itself.
func newSSRFGuard(allowed []netip.Prefix) *ssrfGuard {
	norm := make([]netip.Prefix, 0, len(allowed))
	for _, p := range allowed {
		norm = append(norm, unmapPrefix(p))
	}
	return &ssrfGuard{allowed: norm, g: ssrf.New()}
}

// checkAddr returns nil if ip may be dialled, else an error wrapping
// ErrBlocked. IPv4-mapped IPv6 addresses are judged as the IPv4
// address they carry, and zones are ignored.
func (g *ssrfGuard) checkAddr(ip netip.Addr) error {
	if !ip.IsValid() {
		return fmt.Errorf("%w: invalid address", ErrBlocked)
	}
	ip = ip.Unmap().WithZone("")
	for _, p := range g.allowed {
		if p.Contains(ip) {
			return nil
		}
	}
	if err := g.g.SafeAddr(ip); err != nil {
		return fmt.Errorf("%w: %w", ErrBlocked, err)
	}
	return nil
}

// control is a net.Dialer.Control function: it refuses to connect to a
// blocked address, or over a network other than TCP.
func (g *ssrfGuard) control(network, address string, _ syscall.RawConn) error {
	if network != "tcp4" && network != "tcp6" {
		return fmt.Errorf("%w: network %s is not TCP", ErrBlocked, network)
	}
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		return fmt.Errorf("%w: cannot parse %q: %w", ErrBlocked, address, err)
	}
	return g.checkAddr(ap.Addr())
}

// CheckTarget is the SSRF check made when a subscription is created: it
// resolves rawURL's host and refuses, with an error that says why, a host
// that is or resolves to a blocked address (any of its addresses). A host that does not resolve now
// is accepted: delivery checks the addresses it dials in any case, so this
// check only reports a mistake early.
func CheckTarget(ctx context.Context, rawURL string, allowed []netip.Prefix) error {
	f := fmt.Errorf
	u, err := url.Parse(rawURL)
	if err != nil {
		return f("does not parse: %v", err)
	}
	host := u.Hostname()
	if host == "" {
		return f("has no host")
	}
	g := newSSRFGuard(allowed)
	if ip, err := netip.ParseAddr(host); err == nil {
		if err := g.checkAddr(ip); err != nil {
			return f("%v", err)
		}
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, targetLookupTimeout)
	defer cancel()
	ips, err := net.DefaultResolver.LookupNetIP(ctx, "ip", host)
	if err != nil {
		return nil // see above: the dial-time check stays authoritative
	}
	for _, ip := range ips {
		if err := g.checkAddr(ip); err != nil {
			return f("host %s resolves to a blocked address: %v", host, err)
		}
	}
	return nil
}

// unmapPrefix writes an IPv4-mapped IPv6 prefix (::ffff:a.b.c.d/n, n ≥ 96)
// as the IPv4 prefix it covers, since addresses are unmapped before matching.
func unmapPrefix(p netip.Prefix) netip.Prefix {
	if a := p.Addr(); a.Is4In6() && p.Bits() >= 96 {
		return netip.PrefixFrom(a.Unmap(), p.Bits()-96).Masked()
	}
	return p.Masked()
}

// CheckLiteralAddr is the SSRF check Subscribe makes, without DNS:
// a URL whose host is a literal IP address that no webhook receiver can
// legitimately have (unspecified, multicast, broadcast, or link-local, which
// holds the cloud metadata service 169.254.169.254), in any form
// (IPv4-mapped included), is refused with a reason. Loopback, private, CGNAT
// and unique-local addresses, and every host name, are left to the
// dial-time guard of the dispatcher, since WebhookOptions.AllowedNetworks,
// which may let them through, belongs to the dispatcher that delivers; that
// check is the authoritative one.
func CheckLiteralAddr(host string) string {
	ip, err := netip.ParseAddr(host)
	if err != nil {
		return ""
	}
	ip = ip.Unmap().WithZone("")
	switch {
	case ip.IsUnspecified():
		return "is the unspecified address"
	case ip.IsMulticast():
		return "is a multicast address"
	case ip == netip.AddrFrom4([4]byte{255, 255, 255, 255}):
		return "is the broadcast address"
	case ip.IsLinkLocalUnicast():
		return "is a link-local address (cloud metadata services live there)"
	}
	return ""
}
