package forwarded

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/krait-server/krait/internal/exchange"
)

// seen is what the wrapped handler observed.
type seen struct {
	addr    string
	port    int
	scheme  string
	host    string
	hostHdr []string // values of every Host field
	names   []string // header names, in order
}

type capture struct{ got seen }

func (c *capture) Serve(_ exchange.ResponseWriter, r *exchange.Request) {
	c.got = seen{addr: r.RemoteAddr, port: r.RemotePort, scheme: r.Scheme, host: string(r.Host)}
	for _, h := range r.Headers {
		c.got.names = append(c.got.names, string(h.Name))
		if strings.EqualFold(string(h.Name), "host") {
			c.got.hostHdr = append(c.got.hostHdr, string(h.Value))
		}
	}
}

// hdrs builds headers from "Name: value" strings.
func hdrs(lines ...string) []exchange.Header {
	var hs []exchange.Header
	for _, l := range lines {
		n, v, _ := strings.Cut(l, ":")
		hs = append(hs, exchange.Header{Name: []byte(n), Value: []byte(strings.TrimSpace(v))})
	}
	return hs
}

func mustPrefixes(t *testing.T, s string) []netip.Prefix {
	t.Helper()
	p, err := ParseTrusted(s)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestMiddleware(t *testing.T) {
	all := XForwardedFor | XForwardedProto | XForwardedHost | Forwarded
	xall := XForwardedFor | XForwardedProto | XForwardedHost
	tests := []struct {
		name    string
		trusted string // "" → nil (the default)
		headers Headers
		peer    string
		in      []string
		want    seen // names/hostHdr checked only when set
	}{
		// Defaults: 127.0.0.1 and ::1, X-Forwarded-For and -Proto.
		{name: "no headers", peer: "127.0.0.1", in: []string{"Host: a"},
			want: seen{addr: "127.0.0.1", port: 5000, scheme: "http", host: "a"}},
		{name: "issue: TLS proxy on loopback sends X-Forwarded-Proto https", peer: "127.0.0.1",
			in:   []string{"Host: example.com", "X-Forwarded-Proto: https", "X-Forwarded-For: 203.0.113.7"},
			want: seen{addr: "203.0.113.7", port: 0, scheme: "https", host: "example.com"}},
		{name: "ipv6 loopback peer trusted", peer: "::1",
			in:   []string{"X-Forwarded-For: 2001:db8::7", "X-Forwarded-Proto: HTTPS"},
			want: seen{addr: "2001:db8::7", scheme: "https"}},
		{name: "v4-mapped loopback peer trusted", peer: "::ffff:127.0.0.1",
			in:   []string{"X-Forwarded-For: 198.51.100.1"},
			want: seen{addr: "198.51.100.1", scheme: "http"}},
		{name: "spoof from untrusted peer ignored", peer: "198.51.100.9",
			in:   []string{"X-Forwarded-For: 1.2.3.4", "X-Forwarded-Proto: https", "X-Forwarded-Host: evil.example", "Forwarded: for=1.2.3.4;proto=https"},
			want: seen{addr: "198.51.100.9", port: 5000, scheme: "http"}},
		{name: "spoof untrusted, all headers enabled", peer: "198.51.100.9", headers: all,
			in:   []string{"Host: real", "X-Forwarded-For: 1.2.3.4", "X-Forwarded-Host: evil.example", "Forwarded: for=1.2.3.4;host=evil.example;proto=https"},
			want: seen{addr: "198.51.100.9", port: 5000, scheme: "http", host: "real", hostHdr: []string{"real"}}},
		{name: "client-supplied left part of chain skipped", peer: "127.0.0.1",
			in:   []string{"X-Forwarded-For: 6.6.6.6, 203.0.113.7"},
			want: seen{addr: "203.0.113.7", scheme: "http"}},
		{name: "chain of trusted proxies", trusted: "127.0.0.1,10.0.0.0/8", peer: "127.0.0.1",
			in:   []string{"X-Forwarded-For: 6.6.6.6, 203.0.113.7, 10.1.2.3, 10.0.0.1"},
			want: seen{addr: "203.0.113.7", scheme: "http"}},
		{name: "all trusted: left-most", trusted: "127.0.0.1,10.0.0.0/8", peer: "127.0.0.1",
			in:   []string{"X-Forwarded-For: 10.9.9.9, 10.0.0.1"},
			want: seen{addr: "10.9.9.9", scheme: "http"}},
		{name: "repeated lines combine in order", trusted: "127.0.0.1,10.0.0.0/8", peer: "127.0.0.1",
			in:   []string{"X-Forwarded-For: 6.6.6.6, 203.0.113.7", "X-Forwarded-For: 10.0.0.1"},
			want: seen{addr: "203.0.113.7", scheme: "http"}},
		{name: "garbage stops the walk at the last trusted hop", trusted: "127.0.0.1,10.0.0.0/8", peer: "127.0.0.1",
			in:   []string{"X-Forwarded-For: 203.0.113.7, garbage, 10.0.0.1"},
			want: seen{addr: "10.0.0.1", scheme: "http"}},
		{name: "garbage right-most: peer kept", peer: "127.0.0.1",
			in:   []string{"X-Forwarded-For: 203.0.113.7, not-an-ip"},
			want: seen{addr: "127.0.0.1", port: 5000, scheme: "http"}},
		{name: "empty XFF ignored", peer: "127.0.0.1",
			in:   []string{"X-Forwarded-For: "},
			want: seen{addr: "127.0.0.1", port: 5000, scheme: "http"}},
		{name: "garbage left of client irrelevant", peer: "127.0.0.1",
			in:   []string{"X-Forwarded-For: <script>, 203.0.113.7"},
			want: seen{addr: "203.0.113.7", scheme: "http"}},
		{name: "XFF with ports", peer: "127.0.0.1",
			in:   []string{"X-Forwarded-For: 203.0.113.7:4711"},
			want: seen{addr: "203.0.113.7", port: 4711, scheme: "http"}},
		{name: "XFF bracketed v6 with port", peer: "127.0.0.1",
			in:   []string{"X-Forwarded-For: [2001:db8::1]:8443"},
			want: seen{addr: "2001:db8::1", port: 8443, scheme: "http"}},
		{name: "XFF v6 zone refused", peer: "127.0.0.1",
			in:   []string{"X-Forwarded-For: fe80::1%eth0"},
			want: seen{addr: "127.0.0.1", port: 5000, scheme: "http"}},
		{name: "XFF port out of range refused", peer: "127.0.0.1",
			in:   []string{"X-Forwarded-For: 203.0.113.7:70000"},
			want: seen{addr: "127.0.0.1", port: 5000, scheme: "http"}},
		{name: "bad proto ignored", peer: "127.0.0.1",
			in:   []string{"X-Forwarded-Proto: javascript"},
			want: seen{addr: "127.0.0.1", port: 5000, scheme: "http"}},
		{name: "proto wss means https", peer: "127.0.0.1",
			in:   []string{"X-Forwarded-Proto: wss"},
			want: seen{addr: "127.0.0.1", port: 5000, scheme: "https"}},
		{name: "proto http downgrades an https listener", peer: "127.0.0.1",
			in:   []string{"X-Forwarded-Proto: http"},
			want: seen{addr: "127.0.0.1", port: 5000, scheme: "http"}},
		{name: "proto list matched by position", trusted: "127.0.0.1,10.0.0.0/8", peer: "127.0.0.1",
			in:   []string{"X-Forwarded-For: 203.0.113.7, 10.0.0.1", "X-Forwarded-Proto: https, http"},
			want: seen{addr: "203.0.113.7", scheme: "https"}},
		{name: "proto list of other length: right-most", peer: "127.0.0.1",
			in:   []string{"X-Forwarded-For: 6.6.6.6, 203.0.113.7, 203.0.113.8", "X-Forwarded-Proto: http, https"},
			want: seen{addr: "203.0.113.8", scheme: "https"}},
		{name: "gunicorn X-Forwarded-Ssl on", peer: "127.0.0.1",
			in:   []string{"X-Forwarded-Ssl: on"},
			want: seen{addr: "127.0.0.1", port: 5000, scheme: "https"}},
		{name: "gunicorn X-Forwarded-Protocol ssl", peer: "127.0.0.1",
			in:   []string{"X-Forwarded-Protocol: ssl"},
			want: seen{addr: "127.0.0.1", port: 5000, scheme: "https"}},
		{name: "X-Forwarded-Proto wins over X-Forwarded-Ssl", peer: "127.0.0.1",
			in:   []string{"X-Forwarded-Ssl: on", "X-Forwarded-Proto: http"},
			want: seen{addr: "127.0.0.1", port: 5000, scheme: "http"}},
		{name: "X-Forwarded-Host off by default", peer: "127.0.0.1",
			in:   []string{"Host: real", "X-Forwarded-Host: other.example"},
			want: seen{addr: "127.0.0.1", port: 5000, scheme: "http", host: "real", hostHdr: []string{"real"}}},
		{name: "X-Forwarded-Host replaces Host", peer: "127.0.0.1", headers: xall,
			in: []string{"Host: 127.0.0.1:8000", "X-Forwarded-Host: www.example.com:8443", "X-Forwarded-Proto: https"},
			want: seen{addr: "127.0.0.1", port: 5000, scheme: "https", host: "www.example.com:8443",
				hostHdr: []string{"www.example.com:8443"}, names: []string{"Host", "X-Forwarded-Host", "X-Forwarded-Proto"}}},
		{name: "X-Forwarded-Host added when Host absent", peer: "127.0.0.1", headers: xall,
			in:   []string{"X-Forwarded-Host: [2001:db8::1]:443"},
			want: seen{addr: "127.0.0.1", port: 5000, scheme: "http", host: "[2001:db8::1]:443", hostHdr: []string{"[2001:db8::1]:443"}}},
		{name: "X-Forwarded-Host with a path refused", peer: "127.0.0.1", headers: xall,
			in:   []string{"Host: real", "X-Forwarded-Host: evil.example/x"},
			want: seen{addr: "127.0.0.1", port: 5000, scheme: "http", host: "real", hostHdr: []string{"real"}}},
		{name: "X-Forwarded-Host with userinfo refused", peer: "127.0.0.1", headers: xall,
			in:   []string{"Host: real", "X-Forwarded-Host: a@evil.example"},
			want: seen{addr: "127.0.0.1", port: 5000, scheme: "http", host: "real", hostHdr: []string{"real"}}},
		{name: "Forwarded off by default", peer: "127.0.0.1",
			in:   []string{"Forwarded: for=203.0.113.7;proto=https"},
			want: seen{addr: "127.0.0.1", port: 5000, scheme: "http"}},
		{name: "Forwarded basic", peer: "127.0.0.1", headers: all,
			in:   []string{"Forwarded: for=203.0.113.7;proto=https;host=example.com"},
			want: seen{addr: "203.0.113.7", scheme: "https", host: "example.com", hostHdr: []string{"example.com"}}},
		{name: "Forwarded wins over X-Forwarded", peer: "127.0.0.1", headers: all,
			in:   []string{"X-Forwarded-For: 6.6.6.6", "X-Forwarded-Proto: http", "Forwarded: for=203.0.113.7;proto=https"},
			want: seen{addr: "203.0.113.7", scheme: "https"}},
		{name: "Forwarded quoted v6 with port, case-insensitive names", peer: "127.0.0.1", headers: Forwarded,
			in:   []string{`Forwarded: For="[2001:db8:cafe::17]:4711";PROTO=https`},
			want: seen{addr: "2001:db8:cafe::17", port: 4711, scheme: "https"}},
		{name: "Forwarded unquoted bracket (lenient)", peer: "127.0.0.1", headers: Forwarded,
			in:   []string{`Forwarded: for=[2001:db8::1]`},
			want: seen{addr: "2001:db8::1", scheme: "http"}},
		{name: "Forwarded chain right-most untrusted", trusted: "127.0.0.1,10.0.0.0/8", peer: "127.0.0.1", headers: Forwarded,
			in:   []string{`Forwarded: for=6.6.6.6;proto=http, for=203.0.113.7;proto=https;host=a.example, for=10.0.0.1;proto=http;host=internal`},
			want: seen{addr: "203.0.113.7", scheme: "https", host: "a.example"}},
		{name: "Forwarded over several lines", trusted: "127.0.0.1,10.0.0.0/8", peer: "127.0.0.1", headers: Forwarded,
			in:   []string{`Forwarded: for=203.0.113.7;proto=https`, `Forwarded: for=10.0.0.1;proto=http`},
			want: seen{addr: "203.0.113.7", scheme: "https"}},
		{name: "Forwarded unknown: client stays the trusted hop, proto applies", trusted: "127.0.0.1,10.0.0.0/8", peer: "127.0.0.1", headers: Forwarded,
			in:   []string{`Forwarded: for=unknown;proto=https, for=10.0.0.1`},
			want: seen{addr: "10.0.0.1", scheme: "https"}},
		{name: "Forwarded obfuscated node", peer: "127.0.0.1", headers: Forwarded,
			in:   []string{`Forwarded: for=_hidden;proto=https`},
			want: seen{addr: "127.0.0.1", port: 5000, scheme: "https"}},
		{name: "Forwarded obfuscated port", peer: "127.0.0.1", headers: Forwarded,
			in:   []string{`Forwarded: for="198.51.100.17:_port"`},
			want: seen{addr: "198.51.100.17", port: 0, scheme: "http"}},
		{name: "Forwarded empty elements and OWS", peer: "127.0.0.1", headers: Forwarded,
			in:   []string{`Forwarded: , for=203.0.113.7 ; proto=https ,`},
			want: seen{addr: "203.0.113.7", scheme: "https"}},
		{name: "Forwarded unterminated quote: line ignored", peer: "127.0.0.1", headers: Forwarded,
			in:   []string{`Forwarded: for="6.6.6.6, for=203.0.113.7;proto=https`},
			want: seen{addr: "127.0.0.1", port: 5000, scheme: "http"}},
		{name: "Forwarded bad later line stops the walk", trusted: "127.0.0.1,10.0.0.0/8", peer: "127.0.0.1", headers: Forwarded,
			in:   []string{`Forwarded: for=203.0.113.7;proto=https`, `Forwarded: for=10.0.0.1;;=x`},
			want: seen{addr: "127.0.0.1", port: 5000, scheme: "http"}},
		{name: "Forwarded malformed left line after good right line", trusted: "127.0.0.1,10.0.0.0/8", peer: "127.0.0.1", headers: Forwarded,
			in:   []string{`Forwarded: for="garbage`, `Forwarded: for=10.0.0.1;proto=https`},
			want: seen{addr: "10.0.0.1", scheme: "https"}},
		{name: "Forwarded duplicate parameter", peer: "127.0.0.1", headers: Forwarded,
			in:   []string{`Forwarded: for=203.0.113.7;for=6.6.6.6`},
			want: seen{addr: "127.0.0.1", port: 5000, scheme: "http"}},
		{name: "Forwarded escaped host ignored", peer: "127.0.0.1", headers: Forwarded,
			in:   []string{`Host: real`, `Forwarded: for=203.0.113.7;host="a\"b"`},
			want: seen{addr: "203.0.113.7", scheme: "http", host: "real", hostHdr: []string{"real"}}},
		{name: "Forwarded by= ignored, unknown params ignored", peer: "127.0.0.1", headers: Forwarded,
			in:   []string{`Forwarded: by=10.0.0.1;for=203.0.113.7;secret=x`},
			want: seen{addr: "203.0.113.7", scheme: "http"}},
		{name: "unix socket peer trusted", peer: "",
			in:   []string{"X-Forwarded-For: 203.0.113.7", "X-Forwarded-Proto: https"},
			want: seen{addr: "203.0.113.7", scheme: "https"}},
		{name: "star trusts all", trusted: "*", peer: "198.51.100.9",
			in:   []string{"X-Forwarded-For: 203.0.113.7, 198.51.100.10"},
			want: seen{addr: "203.0.113.7", scheme: "http"}},
		{name: "trusted v6 prefix", trusted: "2001:db8::/32", peer: "2001:db8::99",
			in:   []string{"X-Forwarded-For: 2001:db8::5, 2001:db9::1"},
			want: seen{addr: "2001:db9::1", scheme: "http"}},
		{name: "loopback not trusted when list overrides", trusted: "10.0.0.1", peer: "127.0.0.1",
			in:   []string{"X-Forwarded-For: 203.0.113.7"},
			want: seen{addr: "127.0.0.1", port: 5000, scheme: "http"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var cfg Config
			if tt.trusted != "" {
				cfg.Trusted = mustPrefixes(t, tt.trusted)
			}
			cfg.Headers = tt.headers
			c := &capture{}
			h := New(cfg).Wrap(c)
			in := hdrs(tt.in...)
			orig := hdrs(tt.in...)
			var host []byte
			for _, hd := range in {
				if strings.EqualFold(string(hd.Name), "host") {
					host = hd.Value
				}
			}
			port := 0
			if tt.peer != "" {
				port = 5000
			}
			r := &exchange.Request{Method: []byte("GET"), Headers: in, Host: host, Scheme: "http", RemoteAddr: tt.peer, RemotePort: port}
			h.Serve(nil, r)
			got := c.got
			want := tt.want
			if got.addr != want.addr || got.port != want.port || got.scheme != want.scheme || got.host != want.host {
				t.Errorf("got addr=%q port=%d scheme=%q host=%q; want addr=%q port=%d scheme=%q host=%q",
					got.addr, got.port, got.scheme, got.host, want.addr, want.port, want.scheme, want.host)
			}
			if want.hostHdr != nil && strings.Join(got.hostHdr, "|") != strings.Join(want.hostHdr, "|") {
				t.Errorf("Host fields %q, want %q", got.hostHdr, want.hostHdr)
			}
			if want.names != nil && strings.Join(got.names, "|") != strings.Join(want.names, "|") {
				t.Errorf("header names %q, want %q (forwarding headers are kept)", got.names, want.names)
			}
			// The request is restored for the next one on the connection
			// and the engine's header slices were not written.
			if r.RemoteAddr != tt.peer || r.RemotePort != port || r.Scheme != "http" || string(r.Host) != string(host) {
				t.Errorf("request not restored: %q %d %q %q", r.RemoteAddr, r.RemotePort, r.Scheme, r.Host)
			}
			if len(r.Headers) != len(orig) {
				t.Fatalf("headers not restored: %d fields, want %d", len(r.Headers), len(orig))
			}
			for i := range orig {
				if string(in[i].Name) != string(orig[i].Name) || string(in[i].Value) != string(orig[i].Value) {
					t.Errorf("engine header %d changed: %q: %q", i, in[i].Name, in[i].Value)
				}
			}
		})
	}
}

// A keep-alive connection: the first request's forwarded client must not
// leak into the second request, which carries no forwarding header.
func TestRestoredBetweenRequests(t *testing.T) {
	c := &capture{}
	h := New(Config{}).Wrap(c)
	r := &exchange.Request{RemoteAddr: "127.0.0.1", RemotePort: 1, Scheme: "http",
		Headers: hdrs("X-Forwarded-For: 203.0.113.7", "X-Forwarded-Proto: https")}
	h.Serve(nil, r)
	if c.got.addr != "203.0.113.7" || c.got.scheme != "https" {
		t.Fatalf("first request: %+v", c.got)
	}
	r.Headers = hdrs("Host: x")
	h.Serve(nil, r)
	if c.got.addr != "127.0.0.1" || c.got.port != 1 || c.got.scheme != "http" {
		t.Fatalf("second request saw %+v, want the peer", c.got)
	}
}

func TestNoAllocWithoutForwardingHeaders(t *testing.T) {
	h := New(Config{}).Wrap(exchangeNop{})
	r := &exchange.Request{RemoteAddr: "127.0.0.1", Headers: hdrs("Host: a", "User-Agent: b", "Accept: */*", "X-Request-Id: 1")}
	if n := testing.AllocsPerRun(100, func() { h.Serve(nil, r) }); n != 0 {
		t.Fatalf("%v allocations per request without forwarding headers, want 0", n)
	}
	// Also from an untrusted peer with forwarding headers.
	r = &exchange.Request{RemoteAddr: "198.51.100.1", Headers: hdrs("X-Forwarded-For: 1.2.3.4")}
	if n := testing.AllocsPerRun(100, func() { h.Serve(nil, r) }); n != 0 {
		t.Fatalf("%v allocations per request from an untrusted peer, want 0", n)
	}
}

type exchangeNop struct{}

func (exchangeNop) Serve(exchange.ResponseWriter, *exchange.Request) {}

func TestParseTrusted(t *testing.T) {
	tests := []struct {
		in      string
		want    string
		wantErr bool
	}{
		{in: "127.0.0.1,::1", want: "127.0.0.1/32 ::1/128"},
		{in: " 10.0.0.0/8 , 192.168.1.7/24 ", want: "10.0.0.0/8 192.168.1.0/24"},
		{in: "*", want: "0.0.0.0/0 ::/0"},
		{in: "::ffff:10.0.0.1", want: "10.0.0.1/32"},
		{in: "", want: ""},
		{in: "localhost", wantErr: true},
		{in: "10.0.0.0/33", wantErr: true},
		{in: "fe80::1%eth0", wantErr: true},
	}
	for _, tt := range tests {
		got, err := ParseTrusted(tt.in)
		if tt.wantErr {
			if err == nil {
				t.Errorf("ParseTrusted(%q) = %v, want an error", tt.in, got)
			}
			continue
		}
		if err != nil {
			t.Errorf("ParseTrusted(%q): %v", tt.in, err)
			continue
		}
		var s []string
		for _, p := range got {
			s = append(s, p.String())
		}
		if strings.Join(s, " ") != tt.want {
			t.Errorf("ParseTrusted(%q) = %q, want %q", tt.in, s, tt.want)
		}
	}
	if p, _ := ParseTrusted(""); p == nil || NewTrust(p).ContainsPeer("127.0.0.1") {
		t.Errorf("an empty list must trust no IP peer")
	}
	if !NewTrust(nil).ContainsPeer("::1") || !NewTrust(nil).ContainsPeer("127.0.0.1") || NewTrust(nil).ContainsPeer("127.0.0.2") {
		t.Errorf("nil must mean the default 127.0.0.1, ::1")
	}
}

func TestParseHeaders(t *testing.T) {
	h, err := ParseHeaders("X-Forwarded-For, forwarded")
	if err != nil || h != XForwardedFor|Forwarded {
		t.Fatalf("got %v, %v", h, err)
	}
	for _, bad := range []string{"", "x-real-ip", " , "} {
		if _, err := ParseHeaders(bad); err == nil {
			t.Errorf("ParseHeaders(%q): want an error", bad)
		}
	}
}

// FuzzMiddleware: no input panics, the client is always an IP address,
// the scheme http or https, and the request is restored.
func FuzzMiddleware(f *testing.F) {
	f.Add("for=1.2.3.4;proto=https", "1.2.3.4, 10.0.0.1", "https", "a.example")
	f.Add(`for="[::1]:80", for=unknown`, "[::1]:1,x", "http, https", "[::1]:1")
	f.Add(`for="`, ",,,", "", "")
	m := New(Config{Trusted: []netip.Prefix{netip.MustParsePrefix("0.0.0.0/0")}, Headers: XForwardedFor | XForwardedProto | XForwardedHost | Forwarded})
	f.Fuzz(func(t *testing.T, fwd, xff, xfp, xfh string) {
		c := &capture{}
		h := m.Wrap(c)
		for _, withFwd := range []bool{true, false} {
			var hs []exchange.Header
			if withFwd {
				hs = append(hs, exchange.Header{Name: []byte("Forwarded"), Value: []byte(fwd)})
			}
			hs = append(hs,
				exchange.Header{Name: []byte("X-Forwarded-For"), Value: []byte(xff)},
				exchange.Header{Name: []byte("X-Forwarded-Proto"), Value: []byte(xfp)},
				exchange.Header{Name: []byte("X-Forwarded-Host"), Value: []byte(xfh)})
			r := &exchange.Request{RemoteAddr: "10.0.0.1", RemotePort: 1, Headers: hs}
			h.Serve(nil, r)
			if _, err := netip.ParseAddr(c.got.addr); err != nil {
				t.Fatalf("client %q is not an address", c.got.addr)
			}
			if r.RemoteAddr != "10.0.0.1" || r.RemotePort != 1 || r.Scheme != "" || r.Host != nil {
				t.Fatalf("request not restored")
			}
			if c.got.scheme != "" && c.got.scheme != "http" && c.got.scheme != "https" {
				t.Fatalf("scheme %q", c.got.scheme)
			}
		}
	})
}

func BenchmarkServe(b *testing.B) {
	h := New(Config{}).Wrap(exchangeNop{})
	for _, bc := range []struct {
		name string
		hs   []exchange.Header
	}{
		{"no forwarding headers", hdrs("Host: a", "User-Agent: curl/8", "Accept: */*", "Accept-Encoding: gzip")},
		{"X-Forwarded-For and -Proto", hdrs("Host: a", "User-Agent: curl/8", "X-Forwarded-For: 6.6.6.6, 203.0.113.7", "X-Forwarded-Proto: https")},
	} {
		b.Run(bc.name, func(b *testing.B) {
			r := &exchange.Request{RemoteAddr: "127.0.0.1", RemotePort: 1, Scheme: "http", Headers: bc.hs}
			b.ReportAllocs()
			for b.Loop() {
				h.Serve(nil, r)
			}
		})
	}
}
