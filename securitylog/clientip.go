package securitylog

import (
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strings"

	"github.com/realclientip/realclientip-go"

	"github.com/outboxkit/outbox/internal/jsontext"
)

// ForwardedForHeader is the header ClientIPConfig.Header defaults to; a
// resolver may read "Forwarded" instead.
const ForwardedForHeader = "X-Forwarded-For"

// ParseIP parses an IPv4 or IPv6 address and returns its canonical text:
// IPv4 in dotted decimal, IPv6 in RFC 5952 form, an IPv4-mapped IPv6 address
// (::ffff:1.2.3.4) as the IPv4 address, and without an IPv6 zone. Anything
// else (a host name, a port, a CIDR prefix, surrounding spaces) is an
// ErrInvalidEvent *outbox.ValidationError on field ip_address. Every event
// stores its IP in this form, so the text compares equal for one address.
func ParseIP(s string) (string, error) {
	a, err := netip.ParseAddr(s)
	if err != nil {
		return "", invalidEvent("ip_address", fmt.Sprintf("is not an IP address: %q", jsontext.CutRunes(jsontext.CleanLine(s), 64)))
	}
	return canonicalAddr(a), nil
}

func canonicalAddr(a netip.Addr) string {
	return a.Unmap().WithZone("").String()
}

// ClientIPConfig configures a ClientIPResolver. The zero value trusts no
// proxy: the client IP is the connection's peer address.
type ClientIPConfig struct {
	// TrustedProxies lists the addresses and CIDR ranges of the reverse
	// proxies in front of the application, such as "10.0.0.0/8" or
	// "2001:db8::1". Forwarding headers are read only on connections from
	// one of them.
	TrustedProxies []string
	// Header is the forwarding header the trusted proxies append to:
	// X-Forwarded-For or Forwarded. Default ForwardedForHeader
	// (X-Forwarded-For).
	Header string
}

// ClientIPResolver finds the IP address of the client that sent a request.
// It never trusts a forwarding header blindly: on a connection from a peer
// outside TrustedProxies the peer's own address is the client; on one from
// a trusted proxy, it is the rightmost address in the header that is not a
// trusted proxy (the first hop a trusted proxy saw), as
// github.com/realclientip/realclientip-go's RightmostTrustedRange strategy
// computes it. It is safe for concurrent use.
type ClientIPResolver struct {
	trusted []netip.Prefix
	header  realclientip.Strategy
}

// NewClientIPResolver validates cfg and returns a resolver. An invalid cfg
// is an outbox.ErrInvalidConfig *outbox.ValidationError.
func NewClientIPResolver(cfg ClientIPConfig) (*ClientIPResolver, error) {
	if cfg.Header == "" {
		cfg.Header = ForwardedForHeader
	}
	r := &ClientIPResolver{}
	for _, p := range cfg.TrustedProxies {
		prefix, err := parsePrefix(p)
		if err != nil {
			return nil, invalidConfig("trusted_proxies", fmt.Sprintf("%q: %v", p, err))
		}
		r.trusted = append(r.trusted, prefix)
	}
	if len(r.trusted) > 0 {
		nets, err := realclientip.AddressesAndRangesToIPNets(cfg.TrustedProxies...)
		if err != nil {
			return nil, invalidConfig("trusted_proxies", err.Error())
		}
		s, err := realclientip.NewRightmostTrustedRangeStrategy(cfg.Header, nets)
		if err != nil {
			return nil, invalidConfig("header", err.Error())
		}
		r.header = s
	}
	return r, nil
}

func parsePrefix(s string) (netip.Prefix, error) {
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return netip.Prefix{}, err
		}
		if p.Addr().Is4In6() {
			return netip.PrefixFrom(p.Addr().Unmap(), max(p.Bits()-96, 0)), nil
		}
		return p.Masked(), nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, err
	}
	if a.Zone() != "" {
		return netip.Prefix{}, fmt.Errorf("zones are not allowed")
	}
	a = a.Unmap()
	return netip.PrefixFrom(a, a.BitLen()), nil
}

// ClientIP returns the canonical client IP of req (see ParseIP), or "" when
// none can be found (a RemoteAddr that is not an IP address, as behind a
// Unix socket).
func (r *ClientIPResolver) ClientIP(req *http.Request) string {
	peer := peerAddr(req.RemoteAddr)
	if !peer.IsValid() {
		return ""
	}
	if r.header != nil && r.isTrusted(peer) {
		if ip := r.header.ClientIP(req.Header, req.RemoteAddr); ip != "" {
			if a, err := netip.ParseAddr(ip); err == nil {
				return canonicalAddr(a)
			}
		}
	}
	return canonicalAddr(peer)
}

func (r *ClientIPResolver) isTrusted(a netip.Addr) bool {
	a = a.Unmap().WithZone("")
	for _, p := range r.trusted {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// peerAddr parses a RemoteAddr ("ip:port", or a bare IP).
func peerAddr(remote string) netip.Addr {
	if ap, err := netip.ParseAddrPort(remote); err == nil {
		return ap.Addr()
	}
	if host, _, err := net.SplitHostPort(remote); err == nil {
		remote = host
	}
	a, err := netip.ParseAddr(remote)
	if err != nil {
		return netip.Addr{}
	}
	return a
}
