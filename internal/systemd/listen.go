package systemd

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"strconv"

	"github.com/krait-server/krait/internal/config"
)

// MatchBinds pairs inherited listeners with --bind entries: byBind[i] is
// the listener for binds[i], nil when none was inherited for it (the
// caller binds that one itself). A TCP bind matches a listener on the same
// port and IP (a host name matches any of its addresses, an empty host
// the wildcard addresses); a unix bind one on the same path. Inherited
// listeners that match no bind are returned in unused. Port 0 never
// matches.
func MatchBinds(ctx context.Context, binds []config.Bind, ls []Listener) (byBind []net.Listener, unused []Listener) {
	byBind = make([]net.Listener, len(binds))
	taken := make([]bool, len(ls))
	for i, b := range binds {
		for j, l := range ls {
			if !taken[j] && matches(ctx, b, l.Addr()) {
				byBind[i] = l.Listener
				taken[j] = true
				break
			}
		}
	}
	for j, l := range ls {
		if !taken[j] {
			unused = append(unused, l)
		}
	}
	return byBind, unused
}

func matches(ctx context.Context, b config.Bind, a net.Addr) bool {
	switch a := a.(type) {
	case *net.UnixAddr:
		return b.Network == "unix" && a.Name == b.Address
	case *net.TCPAddr:
		if b.Network == "unix" {
			return false
		}
		host, port, err := net.SplitHostPort(b.Address)
		if err != nil || port == "0" || port != strconv.Itoa(a.Port) {
			return false
		}
		have, ok := netip.AddrFromSlice(a.IP)
		if !ok {
			return false
		}
		have = have.Unmap()
		if host == "" {
			return have.IsUnspecified()
		}
		if want, err := netip.ParseAddr(host); err == nil {
			return want.Unmap() == have
		}
		ips, err := net.DefaultResolver.LookupNetIP(ctx, "ip", host)
		if err != nil {
			return false
		}
		for _, ip := range ips {
			if ip.Unmap() == have {
				return true
			}
		}
	}
	return false
}

// BindOf describes an inherited listener as a config.Bind, for when krait
// serves every inherited socket because no --bind was given.
func BindOf(l net.Listener) (config.Bind, error) {
	switch a := l.Addr().(type) {
	case *net.UnixAddr:
		return config.Bind{Network: "unix", Address: a.Name}, nil
	case *net.TCPAddr:
		network := "tcp6"
		if a.IP.To4() != nil {
			network = "tcp4"
		} else if a.IP.IsUnspecified() {
			network = "tcp"
		}
		return config.Bind{Network: network, Address: a.AddrPort().String()}, nil
	}
	return config.Bind{}, fmt.Errorf("socket activation: unsupported address %s (%s)", l.Addr(), l.Addr().Network())
}
