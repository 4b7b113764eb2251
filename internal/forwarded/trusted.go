package forwarded

import (
	"fmt"
	"net/netip"
	"strings"
)

// DefaultTrusted returns the peers trusted when nothing is configured:
// 127.0.0.1 and ::1, gunicorn's and uvicorn's default.
func DefaultTrusted() []netip.Prefix {
	return []netip.Prefix{
		netip.PrefixFrom(netip.AddrFrom4([4]byte{127, 0, 0, 1}), 32),
		netip.PrefixFrom(netip.IPv6Loopback(), 128),
	}
}

// ParseTrusted parses a --forwarded-allow-ips value: a comma-separated
// list of IP addresses and CIDR prefixes ("127.0.0.1,10.0.0.0/8,::1").
// "*" trusts every peer, as in gunicorn and uvicorn. Blank items are
// skipped; an empty list trusts no IP peer. IPv4-mapped IPv6 forms are
// stored as IPv4 so that either spelling of a peer matches.
func ParseTrusted(s string) ([]netip.Prefix, error) {
	out := []netip.Prefix{}
	for item := range strings.SplitSeq(s, ",") {
		item = strings.TrimSpace(item)
		switch {
		case item == "":
			continue
		case item == "*":
			out = append(out, netip.PrefixFrom(netip.IPv4Unspecified(), 0), netip.PrefixFrom(netip.IPv6Unspecified(), 0))
		case strings.IndexByte(item, '/') >= 0:
			p, err := netip.ParsePrefix(item)
			if err != nil {
				return nil, fmt.Errorf("%q is not an IP address or CIDR prefix: %w", item, err)
			}
			if p.Addr().Zone() != "" {
				return nil, fmt.Errorf("%q: zones are not allowed", item)
			}
			if p.Addr().Is4In6() && p.Bits() >= 96 {
				p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
			}
			out = append(out, p.Masked())
		default:
			a, err := netip.ParseAddr(item)
			if err != nil {
				return nil, fmt.Errorf("%q is not an IP address or CIDR prefix: %w", item, err)
			}
			if a.Zone() != "" {
				return nil, fmt.Errorf("%q: zones are not allowed", item)
			}
			a = a.Unmap()
			out = append(out, netip.PrefixFrom(a, a.BitLen()))
		}
	}
	return out, nil
}

// Trust is a set of trusted peers. The zero value trusts only unix socket
// peers.
type Trust struct {
	prefixes []netip.Prefix
}

// NewTrust builds the set from prefixes (nil means DefaultTrusted; an
// empty non-nil slice trusts no IP peer).
func NewTrust(prefixes []netip.Prefix) Trust {
	if prefixes == nil {
		prefixes = DefaultTrusted()
	}
	return Trust{prefixes: prefixes}
}

// Contains reports whether a is trusted. IPv4-mapped IPv6 addresses match
// IPv4 prefixes; an invalid address is never trusted.
func (t Trust) Contains(a netip.Addr) bool {
	if !a.IsValid() {
		return false
	}
	a = a.Unmap()
	for _, p := range t.prefixes {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// ContainsPeer reports whether the peer of a connection, as the engine
// gives it in exchange.Request.RemoteAddr, is trusted. "" is a unix
// socket peer: trusted, as gunicorn does (only local processes with
// access to the socket file can connect; that is the front proxy).
func (t Trust) ContainsPeer(remoteAddr string) bool {
	if remoteAddr == "" {
		return true
	}
	a, err := netip.ParseAddr(remoteAddr)
	if err != nil {
		return false
	}
	return t.Contains(a)
}
