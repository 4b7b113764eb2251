package compress

import (
	"testing"

	"github.com/krait-server/krait/internal/exchange"
)

func aeHeaders(values ...string) []exchange.Header {
	hs := []exchange.Header{{Name: []byte("Host"), Value: []byte("x")}}
	for _, v := range values {
		hs = append(hs, exchange.Header{Name: []byte("Accept-Encoding"), Value: []byte(v)})
	}
	return hs
}

func TestNegotiate(t *testing.T) {
	def := []coding{zstdC, brotliC, gzipC}
	for _, tc := range []struct {
		name   string
		fields []string // Accept-Encoding fields; nil: none
		prefs  []coding
		want   coding
	}{
		{"absent", nil, def, none},
		{"empty value", []string{""}, def, none},
		{"gzip", []string{"gzip"}, def, gzipC},
		{"Chrome", []string{"gzip, deflate, br, zstd"}, def, zstdC},
		{"Safari", []string{"gzip, deflate, br"}, def, brotliC},
		// The examples of RFC 9110 §12.5.3.
		{"rfc compress, gzip", []string{"compress, gzip"}, def, gzipC},
		{"rfc star", []string{"*"}, def, zstdC},
		{"rfc weights", []string{"compress;q=0.5, gzip;q=1.0"}, def, gzipC},
		{"rfc identity half, star zero", []string{"gzip;q=1.0, identity; q=0.5, *;q=0"}, def, gzipC},
		{"higher weight beats preference", []string{"zstd;q=0.5, gzip"}, def, gzipC},
		{"case-insensitive", []string{"GZIP"}, def, gzipC},
		{"x-gzip is gzip", []string{"x-gzip"}, def, gzipC},
		{"q=0 excludes", []string{"gzip;q=0"}, def, none},
		{"q=0.000 excludes", []string{"zstd;q=0.000, br;q=0"}, def, none},
		{"star q=0", []string{"*;q=0"}, def, none},
		{"identity only", []string{"identity"}, def, none},
		{"identity preferred", []string{"gzip;q=0.5, identity"}, def, none},
		{"identity tie goes to coding", []string{"gzip;q=0.5, identity;q=0.5"}, def, gzipC},
		{"identity unlisted ranks last", []string{"gzip;q=0.001"}, def, gzipC},
		{"identity via star", []string{"*;q=0.9, gzip;q=0.5, zstd;q=0, br;q=0"}, def, none},
		{"star weighs the unlisted", []string{"*;q=0.8, gzip;q=0.9"}, def, gzipC},
		{"star minus one", []string{"*, zstd;q=0"}, def, brotliC},
		{"excluded then star", []string{"gzip;q=0, *"}, def, zstdC},
		{"malformed weight", []string{"gzip;q=abc"}, def, none},
		{"weight above one", []string{"gzip;q=1.5"}, def, none},
		// A malformed weight excludes the coding; "*" does not bring it back.
		{"malformed weight is q=0, not unlisted", []string{"*, gzip;q=abc"}, []coding{gzipC}, none},
		{"too many decimals", []string{"gzip;q=0.0001"}, def, none},
		{"one point zero zero zero", []string{"gzip;q=1.000"}, def, gzipC},
		{"whitespace and Q", []string{"  gzip ; Q=0.8 ,br;q=0.7"}, def, gzipC},
		{"two fields are one list", []string{"gzip", "br"}, def, brotliC},
		{"listed twice: lowest", []string{"gzip, gzip;q=0"}, def, none},
		{"unknown only", []string{"deflate, compress"}, def, none},
		{"empty elements", []string{",, gzip ,,"}, def, gzipC},
		{"other parameters ignored", []string{"br;level=5;q=0.1, gzip;q=0.05"}, def, brotliC},
		{"server order", []string{"br, gzip, zstd"}, []coding{gzipC, brotliC}, gzipC},
		{"disabled coding", []string{"br"}, []coding{gzipC}, none},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var hs []exchange.Header
			if tc.fields != nil {
				hs = aeHeaders(tc.fields...)
			}
			if got := negotiate(hs, tc.prefs); got != tc.want {
				t.Errorf("Accept-Encoding %q: got %v, want %v", tc.fields, got, tc.want)
			}
		})
	}
}

func TestNegotiateAllocs(t *testing.T) {
	hs := aeHeaders("gzip;q=0.8, deflate, br;q=0.9, zstd", "identity;q=0.1")
	prefs := []coding{zstdC, brotliC, gzipC}
	if n := testing.AllocsPerRun(100, func() { negotiate(hs, prefs) }); n != 0 {
		t.Errorf("negotiate allocates %v times", n)
	}
}
