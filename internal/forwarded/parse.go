package forwarded

import (
	"bytes"
	"net/netip"

	"github.com/krait-server/krait/internal/httpx"
)

// Parameters of a Forwarded element, for duplicate detection.
const (
	seenFor = 1 << iota
	seenProto
	seenHost
	seenBy
)

// parseForwarded appends the elements of one Forwarded field line to
// elems (RFC 7239 §4: elements separated by commas, pairs by semicolons,
// values tokens or quoted strings). A line that does not parse becomes a
// single bad element: the walk stops there, since which of its parts a
// trusted proxy wrote cannot be told.
func parseForwarded(elems []element, v []byte) []element {
	first := len(elems)
	i := 0
	for {
		var e element
		pairs := 0
		for {
			i = skipOWS(v, i)
			if i == len(v) || v[i] == ',' {
				break
			}
			if v[i] == ';' {
				i++
				continue
			}
			start := i
			for i < len(v) && httpx.IsTChar(v[i]) {
				i++
			}
			name := v[start:i]
			if len(name) == 0 || i == len(v) || v[i] != '=' {
				return badLine(elems, first)
			}
			i++
			var val []byte
			escaped := false
			if i < len(v) && v[i] == '"' {
				i++
				start = i
				for i < len(v) && v[i] != '"' {
					if v[i] == '\\' {
						escaped = true
						i++
					}
					i++
				}
				if i >= len(v) {
					return badLine(elems, first)
				}
				val = v[start:i]
				i++ // closing quote
			} else {
				// Lenient: any run of visible characters but the
				// delimiters, so unquoted "for=[::1]:80" (which RFC 7239
				// wants quoted) still parses.
				start = i
				for i < len(v) && v[i] > ' ' && v[i] != 0x7f && v[i] != ';' && v[i] != ',' && v[i] != '"' {
					i++
				}
				val = v[start:i]
				if len(val) == 0 {
					return badLine(elems, first)
				}
			}
			pairs++
			var bit uint8
			switch {
			case httpx.EqualFold(name, "for"):
				bit = seenFor
				e.addr, e.port, e.hasAddr = parseNode(val, escaped)
			case httpx.EqualFold(name, "proto"):
				bit = seenProto
				if !escaped {
					e.proto = val
				}
			case httpx.EqualFold(name, "host"):
				bit = seenHost
				if !escaped {
					e.host = val
				}
			case httpx.EqualFold(name, "by"):
				bit = seenBy
			}
			if e.seen&bit != 0 {
				// RFC 7239 §4: a parameter must not occur twice in an element.
				return badLine(elems, first)
			}
			e.seen |= bit
			i = skipOWS(v, i)
			if i < len(v) && v[i] != ';' && v[i] != ',' {
				return badLine(elems, first)
			}
		}
		if pairs > 0 {
			elems = append(elems, e)
		}
		if i == len(v) {
			return elems
		}
		i++ // ','
	}
}

func badLine(elems []element, first int) []element {
	clear(elems[first:])
	return append(elems[:first], element{bad: true})
}

func skipOWS(v []byte, i int) int {
	for i < len(v) && (v[i] == ' ' || v[i] == '\t') {
		i++
	}
	return i
}

// parseNode parses a node: an IPv4 address with an optional ":port", an
// IPv6 address in brackets with an optional ":port", or a bare IPv6
// address. ok is false for anything else (RFC 7239's "unknown" and
// obfuscated "_names", garbage). An obfuscated port gives port 0.
func parseNode(b []byte, escaped bool) (a netip.Addr, port int, ok bool) {
	if escaped || len(b) == 0 || len(b) > 64 {
		return netip.Addr{}, 0, false
	}
	var host, portPart []byte
	hasPort := false
	switch {
	case b[0] == '[':
		j := bytes.IndexByte(b, ']')
		if j < 0 {
			return netip.Addr{}, 0, false
		}
		host = b[1:j]
		rest := b[j+1:]
		if len(rest) > 0 {
			if rest[0] != ':' {
				return netip.Addr{}, 0, false
			}
			hasPort, portPart = true, rest[1:]
		}
		a, ok = parseAddr(host)
		if !ok || !a.Is6() {
			return netip.Addr{}, 0, false
		}
	default:
		if c := bytes.Count(b, []byte{':'}); c == 1 {
			j := bytes.IndexByte(b, ':')
			host, hasPort, portPart = b[:j], true, b[j+1:]
			a, ok = parseAddr(host)
			if !ok || !a.Is4() {
				return netip.Addr{}, 0, false
			}
		} else {
			a, ok = parseAddr(b)
			if !ok {
				return netip.Addr{}, 0, false
			}
		}
	}
	if hasPort {
		p, pok := parsePort(portPart)
		if !pok {
			return netip.Addr{}, 0, false
		}
		port = p
	}
	return a.Unmap(), port, true
}

// parseAddr parses an IP address without a zone.
func parseAddr(b []byte) (netip.Addr, bool) {
	a, err := netip.ParseAddr(string(b))
	if err != nil || a.Zone() != "" {
		return netip.Addr{}, false
	}
	return a, true
}

// parsePort parses a decimal port 0..65535, or an obfuscated port
// ("_abc", RFC 7239 §6.3) as 0.
func parsePort(b []byte) (int, bool) {
	if len(b) > 1 && b[0] == '_' {
		for _, c := range b[1:] {
			if !isAlnum(c) && c != '.' && c != '_' && c != '-' {
				return 0, false
			}
		}
		return 0, true
	}
	if len(b) == 0 || len(b) > 5 {
		return 0, false
	}
	p := 0
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		p = p*10 + int(c-'0')
	}
	if p > 65535 {
		return 0, false
	}
	return p, true
}

func isAlnum(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9'
}

// validHost reports whether b is a usable Host value: a DNS-style name
// (letters, digits, '-', '.', '_') or an IPv4 address, or an IPv6 address
// in brackets, each with an optional ":port". Anything else (spaces,
// '/', '@', quotes) is refused so a forwarded host cannot smuggle a path
// or user info into URLs the app builds.
func validHost(b []byte) bool {
	if len(b) == 0 || len(b) > 255+6 {
		return false
	}
	name := b
	var port []byte
	hasPort := false
	if b[0] == '[' {
		j := bytes.IndexByte(b, ']')
		if j < 0 {
			return false
		}
		if a, ok := parseAddr(b[1:j]); !ok || !a.Is6() {
			return false
		}
		rest := b[j+1:]
		if len(rest) > 0 {
			if rest[0] != ':' {
				return false
			}
			hasPort, port = true, rest[1:]
		}
		name = nil
	} else if j := bytes.LastIndexByte(b, ':'); j >= 0 {
		name, hasPort, port = b[:j], true, b[j+1:]
	}
	if name != nil {
		if len(name) == 0 {
			return false
		}
		for _, c := range name {
			if !isAlnum(c) && c != '-' && c != '.' && c != '_' {
				return false
			}
		}
	}
	if hasPort {
		if len(port) == 0 || len(port) > 5 {
			return false
		}
		for _, c := range port {
			if c < '0' || c > '9' {
				return false
			}
		}
	}
	return true
}
