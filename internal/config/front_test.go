package config

import (
	"errors"
	"net/netip"
	"reflect"
	"strings"
	"testing"

	"github.com/krait-server/krait/internal/compress"
	"github.com/krait-server/krait/internal/forwarded"
)

func TestFrontDefaults(t *testing.T) {
	s, err := parse([]string{"app"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(s.Compress, compress.Defaults()) {
		t.Errorf("Compress = %+v, want compress.Defaults()", s.Compress)
	}
	want := []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32"), netip.MustParsePrefix("::1/128")}
	if !reflect.DeepEqual(s.ForwardedAllowIPs, want) || s.ForwardedHeaders != forwarded.DefaultHeaders || s.ProxyProtocol {
		t.Errorf("forwarding: %v %v %v", s.ForwardedAllowIPs, s.ForwardedHeaders, s.ProxyProtocol)
	}
	if s.MaxHeaderBytes != 32768 || s.MaxHeadMemory != 64<<20 {
		t.Errorf("head limits %d %d", s.MaxHeaderBytes, s.MaxHeadMemory)
	}
	var out strings.Builder
	if _, err := ParseServe([]string{"--help"}, &out, nil, fakeLookPath); !errors.Is(err, ErrHelp) {
		t.Fatal(err)
	}
	for _, w := range []string{"(default 127.0.0.1,::1)", "(default x-forwarded-for,x-forwarded-proto)", "(default zstd,br,gzip)",
		"(default 1024)", "(default 32768)", "(default 67108864)", "--proxy-protocol", "(default text/*,application/json,"} {
		if !strings.Contains(out.String(), w) {
			t.Errorf("help lacks %q", w)
		}
	}
}

func TestFrontFlags(t *testing.T) {
	s, err := parse([]string{"app", "--compress", " GZIP, zstd ", "--compress-min-size", "0", "--compress-types", "application/json, text/*",
		"--compress-gzip-level", "9", "--compress-brotli-level", "0", "--compress-zstd-level", "22",
		"--forwarded-allow-ips", "10.0.0.0/8, ::ffff:192.0.2.1", "--forwarded-headers", "forwarded,x-forwarded-host", "--proxy-protocol",
		"--limit-request-head", "1024", "--limit-request-line", "256", "--limit-request-field_size", "512", "--max-head-memory", "2048"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	want := compress.Config{Codings: []string{"gzip", "zstd"}, MinSize: 0, Types: []string{"application/json", "text/*"}, GzipLevel: 9, BrotliLevel: 0, ZstdLevel: 22}
	if !reflect.DeepEqual(s.Compress, want) {
		t.Errorf("Compress = %+v, want %+v", s.Compress, want)
	}
	wantIPs := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("192.0.2.1/32")}
	if !reflect.DeepEqual(s.ForwardedAllowIPs, wantIPs) || s.ForwardedHeaders != forwarded.Forwarded|forwarded.XForwardedHost || !s.ProxyProtocol {
		t.Errorf("forwarding: %v %v %v", s.ForwardedAllowIPs, s.ForwardedHeaders, s.ProxyProtocol)
	}
	if s.MaxHeaderBytes != 1024 || s.MaxHeadMemory != 2048 {
		t.Errorf("head limits %d %d", s.MaxHeaderBytes, s.MaxHeadMemory)
	}

	s, err = parse([]string{"app", "--compress", "off"}, nil)
	if err != nil || len(s.Compress.Codings) != 0 {
		t.Errorf("--compress off: %v, %v", s.Compress.Codings, err)
	}
}

func TestFrontEnv(t *testing.T) {
	env := map[string]string{"FORWARDED_ALLOW_IPS": "*"}
	s, err := parse([]string{"app"}, env)
	if err != nil || len(s.ForwardedAllowIPs) != 2 || s.ForwardedAllowIPs[0].Bits() != 0 {
		t.Errorf("$FORWARDED_ALLOW_IPS=*: %v, %v", s.ForwardedAllowIPs, err)
	}
	s, err = parse([]string{"app", "--forwarded-allow-ips", "10.1.1.1"}, env)
	if err != nil || len(s.ForwardedAllowIPs) != 1 {
		t.Errorf("the flag wins over the environment: %v, %v", s.ForwardedAllowIPs, err)
	}
	_, err = parse([]string{"app"}, map[string]string{"FORWARDED_ALLOW_IPS": "localhost"})
	var ue *UsageError
	if !errors.As(err, &ue) || ue.Flag != "$FORWARDED_ALLOW_IPS" {
		t.Errorf("bad environment value: %v", err)
	}
	if _, err = parse([]string{"app", "--forwarded-allow-ips", "::1"}, map[string]string{"FORWARDED_ALLOW_IPS": "localhost"}); err != nil {
		t.Errorf("a bad environment value the flag replaces: %v", err)
	}
}

func TestFrontErrors(t *testing.T) {
	for _, tc := range []struct {
		args []string
		flag string
		in   string // in the reason
	}{
		{[]string{"--limit-request-head", "1024"}, "--limit-request-head", "need 12288"},
		{[]string{"-limit-request-head=x"}, "-limit-request-head", "not a whole number"},
		{[]string{"--limit-request-head", "8388608"}, "--limit-request-head", "at most"},
		{[]string{"--max-head-memory", "0"}, "--max-head-memory", "at least 65536"},
		{[]string{"--limit-request-head", "20000", "--max-head-memory", "39999"}, "--max-head-memory", "at least 40000"},
		{[]string{"--forwarded-allow-ips", "localhost"}, "--forwarded-allow-ips", "not an IP address"},
		{[]string{"--forwarded-headers", "x-real-ip"}, "--forwarded-headers", "x-real-ip"},
		{[]string{"--forwarded-headers", ""}, "--forwarded-headers", "no header"},
		{[]string{"--compress", "deflate"}, "--compress", `unknown coding "deflate"`},
		{[]string{"--compress", "gzip,gzip"}, "--compress", "twice"},
		{[]string{"--compress", " , "}, "--compress", "names no coding"},
		{[]string{"--compress-min-size", "-1"}, "--compress-min-size", "negative"},
		{[]string{"--compress-types", "text"}, "--compress-types", `"text"`},
		{[]string{"--compress-types", ""}, "--compress-types", "names no media type"},
		{[]string{"--compress-gzip-level", "10"}, "--compress-gzip-level", "1..9"},
		{[]string{"--compress-brotli-level", "12"}, "--compress-brotli-level", "0..11"},
		// A level is checked also when its coding is not used.
		{[]string{"--compress", "gzip", "--compress-zstd-level", "0"}, "--compress-zstd-level", "1..22"},
	} {
		_, err := parse(append([]string{"app"}, tc.args...), nil)
		var ue *UsageError
		if !errors.As(err, &ue) || ue.Flag != tc.flag || !strings.Contains(ue.Reason, tc.in) || strings.Contains(ue.Reason, "compress: ") {
			t.Errorf("%q: %v; want a usage error of %s containing %q", tc.args, err, tc.flag, tc.in)
		}
	}
}
