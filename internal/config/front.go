package config

import (
	"flag"
	"fmt"
	"net/netip"
	"strings"

	"github.com/krait-server/krait/internal/compress"
	"github.com/krait-server/krait/internal/forwarded"
)

// This file holds the flags of what krait does in front of the app:
// request head limits, forwarding headers and the PROXY protocol from
// trusted proxies, response compression. Their defaults are declared by
// Default (from the packages that implement them: internal/forwarded,
// internal/compress); the flags start from there.

// forwardedHeaderNames are the --forwarded-headers names, for printing a
// forwarded.Headers (ParseHeaders is the parser).
var forwardedHeaderNames = []string{"x-forwarded-for", "x-forwarded-proto", "x-forwarded-host", "forwarded"}

// formatForwardedHeaders spells h as a --forwarded-headers value.
func formatForwardedHeaders(h forwarded.Headers) string {
	var names []string
	for _, n := range forwardedHeaderNames {
		if p, err := forwarded.ParseHeaders(n); err == nil && h&p != 0 {
			names = append(names, n)
		}
	}
	return strings.Join(names, ",")
}

// formatPrefixes spells prefixes as a --forwarded-allow-ips value: single
// addresses without their /32 or /128.
func formatPrefixes(ps []netip.Prefix) string {
	s := make([]string, len(ps))
	for i, p := range ps {
		if p.IsSingleIP() {
			s[i] = p.Addr().String()
		} else {
			s[i] = p.String()
		}
	}
	return strings.Join(s, ",")
}

// splitList splits a comma-separated flag value, trimming blanks.
func splitList(v string) []string {
	var out []string
	for item := range strings.SplitSeq(v, ",") {
		if item = strings.TrimSpace(item); item != "" {
			out = append(out, item)
		}
	}
	return out
}

// frontFlags registers the front flags on fs with s's values as defaults
// ($FORWARDED_ALLOW_IPS, read with getenv, overrides the trusted
// proxies' default as in gunicorn and uvicorn); the returned function
// validates them after parsing (name spells a flag as the user wrote it).
// It must run after the request line and field limits are validated.
func frontFlags(fs *flag.FlagSet, s *Serve, getenv func(string) string) func(name func(string) string) error {
	fs.IntVar(&s.MaxHeaderBytes, "limit-request-head", s.MaxHeaderBytes, "maximum size of a whole request head (request line and header fields) in bytes (431 beyond)")
	fs.Int64Var(&s.MaxHeadMemory, "max-head-memory", s.MaxHeadMemory, "bytes all connections together may use for request heads over 4 KiB; beyond it requests get 503")

	allowIPs, allowFrom := formatPrefixes(s.ForwardedAllowIPs), "forwarded-allow-ips"
	if v := getenv("FORWARDED_ALLOW_IPS"); v != "" {
		allowIPs, allowFrom = v, "$FORWARDED_ALLOW_IPS"
	}
	headers := formatForwardedHeaders(s.ForwardedHeaders)
	fs.StringVar(&allowIPs, "forwarded-allow-ips", allowIPs, "comma-separated IPs and CIDRs of the proxies whose forwarding (and PROXY protocol) headers are trusted; '*' trusts all; $FORWARDED_ALLOW_IPS sets the default")
	fs.StringVar(&headers, "forwarded-headers", headers, "forwarding headers applied from trusted proxies: any of x-forwarded-for, x-forwarded-proto, x-forwarded-host, forwarded")
	fs.BoolVar(&s.ProxyProtocol, "proxy-protocol", s.ProxyProtocol, "require a PROXY protocol v1/v2 header on every connection (behind a TCP load balancer)")

	codings := strings.Join(s.Compress.Codings, ",")
	types := strings.Join(s.Compress.Types, ",")
	c := &s.Compress
	fs.StringVar(&codings, "compress", codings, "content codings for app responses, preferred first when the client's Accept-Encoding rates several equally (zstd, br, gzip), or off")
	fs.Int64Var(&c.MinSize, "compress-min-size", c.MinSize, "smallest app response in bytes that is compressed when its length is known (streamed ones always are)")
	fs.StringVar(&types, "compress-types", types, "comma-separated media types compressed: type/subtype, type/* or type/*+suffix")
	fs.IntVar(&c.GzipLevel, "compress-gzip-level", c.GzipLevel, "gzip level, 1 (fastest) to 9 (densest)")
	fs.IntVar(&c.BrotliLevel, "compress-brotli-level", c.BrotliLevel, "brotli quality, 0 (fastest) to 11 (densest)")
	fs.IntVar(&c.ZstdLevel, "compress-zstd-level", c.ZstdLevel, "zstd level, 1 (fastest) to 22 (densest)")

	return func(name func(string) string) error {
		given := map[string]bool{}
		fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
		if err := validateHeadLimits(s, given["limit-request-head"], name); err != nil {
			return err
		}
		if given["forwarded-allow-ips"] || allowFrom == "forwarded-allow-ips" {
			allowFrom = name("forwarded-allow-ips")
		}
		var err error
		if s.ForwardedAllowIPs, err = forwarded.ParseTrusted(allowIPs); err != nil {
			return &UsageError{Flag: allowFrom, Reason: err.Error()}
		}
		if s.ForwardedHeaders, err = forwarded.ParseHeaders(headers); err != nil {
			return &UsageError{Flag: name("forwarded-headers"), Reason: err.Error()}
		}
		return validateCompress(c, codings, types, name)
	}
}

// validateHeadLimits checks --limit-request-head and --max-head-memory.
// A head limit the user gives must hold a request line and one field at
// their limits (the engine would silently raise a smaller one); the
// default is raised by the engine when --limit-request-line or
// --limit-request-field_size need it, as before the flag existed.
func validateHeadLimits(s *Serve, headGiven bool, name func(string) string) error {
	least := s.LimitRequestLine + 2 + s.LimitRequestFieldSize + 2
	if headGiven && s.MaxHeaderBytes < least {
		return &UsageError{Flag: name("limit-request-head"), Reason: fmt.Sprintf(
			"%d is too small: a request line of --limit-request-line %d and a field of --limit-request-field_size %d need %d (lower those, or raise this)",
			s.MaxHeaderBytes, s.LimitRequestLine, s.LimitRequestFieldSize, least)}
	}
	if s.MaxHeaderBytes > 4<<20 {
		return &UsageError{Flag: name("limit-request-head"), Reason: fmt.Sprintf("%d is out of range: must be at most %d (4 MiB)", s.MaxHeaderBytes, 4<<20)}
	}
	// The engine's read buffer doubles as a head grows, so one head at
	// the limit may reserve up to twice the limit: a smaller budget could
	// refuse (503) even a lone client's valid head.
	if floor := 2 * int64(max(s.MaxHeaderBytes, least)); s.MaxHeadMemory < floor {
		return &UsageError{Flag: name("max-head-memory"), Reason: fmt.Sprintf(
			"%d is too small: must be at least %d, twice --limit-request-head, so that one request head at the limit always fits", s.MaxHeadMemory, floor)}
	}
	return nil
}

// validateCompress fills c from the --compress and --compress-types
// values and checks every compression flag on its own, with the compress
// package's own rules (compress.New on a probe config that differs from
// the defaults in that one setting), so that an error names its flag.
// "--compress off" leaves no codings: nothing is compressed.
func validateCompress(c *compress.Config, codings, types string, name func(string) string) error {
	probe := func(flagName string, set func(*compress.Config)) error {
		p := compress.Defaults()
		set(&p)
		if _, err := compress.New(p); err != nil {
			return &UsageError{Flag: name(flagName), Reason: strings.ReplaceAll(err.Error(), "compress: ", "")}
		}
		return nil
	}
	c.Codings = nil
	if !strings.EqualFold(strings.TrimSpace(codings), "off") {
		for _, n := range splitList(codings) {
			c.Codings = append(c.Codings, strings.ToLower(n))
		}
		if len(c.Codings) == 0 {
			return &UsageError{Flag: name("compress"), Reason: "names no coding: list zstd, br, gzip, or say off"}
		}
	}
	c.Types = splitList(types)
	if len(c.Types) == 0 {
		return &UsageError{Flag: name("compress-types"), Reason: "names no media type (--compress off turns compression off)"}
	}
	checks := []struct {
		flag string
		set  func(*compress.Config)
	}{
		{"compress", func(p *compress.Config) { p.Codings = c.Codings }},
		{"compress-min-size", func(p *compress.Config) { p.MinSize = c.MinSize }},
		{"compress-types", func(p *compress.Config) { p.Codings, p.Types = nil, c.Types }},
		// Each level is checked with its coding on, also when --compress
		// leaves that coding out: a bad value is never silently ignored.
		{"compress-gzip-level", func(p *compress.Config) { p.Codings, p.GzipLevel = []string{compress.Gzip}, c.GzipLevel }},
		{"compress-brotli-level", func(p *compress.Config) { p.Codings, p.BrotliLevel = []string{compress.Brotli}, c.BrotliLevel }},
		{"compress-zstd-level", func(p *compress.Config) { p.Codings, p.ZstdLevel = []string{compress.Zstd}, c.ZstdLevel }},
	}
	for _, ch := range checks {
		if err := probe(ch.flag, ch.set); err != nil {
			return err
		}
	}
	if _, err := compress.New(*c); err != nil { // cannot fail after the checks above
		return &UsageError{Flag: name("compress"), Reason: strings.ReplaceAll(err.Error(), "compress: ", "")}
	}
	return nil
}
