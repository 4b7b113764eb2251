package httpx

import (
	"math/rand/v2"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/krait-server/krait/internal/exchange"
)

// The oracles below are written from the RFC ABNF, not from the tables.

// RFC 5234 B.1: ALPHA = %x41-5A / %x61-7A, DIGIT = %x30-39, VCHAR = %x21-7E.
func isALPHA(c byte) bool { return 0x41 <= c && c <= 0x5A || 0x61 <= c && c <= 0x7A }
func isDIGIT(c byte) bool { return 0x30 <= c && c <= 0x39 }
func isVCHAR(c byte) bool { return 0x21 <= c && c <= 0x7E }

// RFC 9110 §5.6.2: tchar = "!" / "#" / "$" / "%" / "&" / "'" / "*" / "+" /
// "-" / "." / "^" / "_" / "`" / "|" / "~" / DIGIT / ALPHA.
func oracleTChar(c byte) bool {
	switch c {
	case '!', '#', '$', '%', '&', '\'', '*', '+', '-', '.', '^', '_', '`', '|', '~':
		return true
	}
	return isDIGIT(c) || isALPHA(c)
}

// RFC 9110 §5.5: field-value = *field-content; field-content is built of
// field-vchar = VCHAR / obs-text (obs-text = %x80-FF) and SP / HTAB.
func oracleValueChar(c byte) bool {
	return isVCHAR(c) || c >= 0x80 || c == ' ' || c == '\t'
}

func TestCharClassesMatchABNF(t *testing.T) {
	for i := 0; i < 256; i++ {
		c := byte(i)
		if got, want := IsTChar(c), oracleTChar(c); got != want {
			t.Errorf("IsTChar(%#x) = %v, the ABNF says %v", c, got, want)
		}
		if got, want := IsFieldValueChar(c), oracleValueChar(c); got != want {
			t.Errorf("IsFieldValueChar(%#x) = %v, the ABNF says %v", c, got, want)
		}
		// token = 1*tchar
		if got, want := ValidToken([]byte{'a', c}), oracleTChar(c); got != want {
			t.Errorf("ValidToken(a%q) = %v, want %v", c, got, want)
		}
		if got, want := SafeValue([]byte{'x', c, 'y'}), c != '\r' && c != '\n' && c != 0; got != want {
			t.Errorf("SafeValue(x%qy) = %v, want %v", c, got, want)
		}
	}
	if ValidToken(nil) {
		t.Error("the empty token is valid; token = 1*tchar")
	}
}

// asciiLower is the oracle for case folding: only A-Z map, by position in
// the alphabet.
func asciiLower(s string) string {
	const up, lo = "ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz"
	b := []byte(s)
	for i, c := range b {
		if j := strings.IndexByte(up, c); j >= 0 {
			b[i] = lo[j]
		}
	}
	return string(b)
}

func TestEqualFold(t *testing.T) {
	cases := [][2]string{
		{"Content-Length", "content-length"}, {"CONNECTION", "connection"}, {"Upgrade", "upgrade"},
		{"", ""}, {"a", ""}, {"te", "TE"}, {"[", "{"}, {"@", "`"}, {"\xc0", "\xe0"}, {"Z", "z"},
		{"k", "\u212a"}, {"\xff", "\xdf"}, {"x-a", "X_A"},
	}
	r := rand.New(rand.NewPCG(1, 2))
	alphabet := "aAzZ@[`{-_\x80\xc0\xe0\xff09 "
	for range 20000 {
		n := r.IntN(4)
		var a, b strings.Builder
		for range n {
			a.WriteByte(alphabet[r.IntN(len(alphabet))])
			b.WriteByte(alphabet[r.IntN(len(alphabet))])
		}
		cases = append(cases, [2]string{a.String(), b.String()}, [2]string{a.String(), strings.ToUpper(a.String())})
	}
	for _, c := range cases {
		want := asciiLower(c[0]) == asciiLower(c[1])
		if got := EqualFold([]byte(c[0]), c[1]); got != want {
			t.Fatalf("EqualFold(%q, %q) = %v, want %v", c[0], c[1], got, want)
		}
		if got := EqualFoldBytes([]byte(c[0]), []byte(c[1])); got != want {
			t.Fatalf("EqualFoldBytes(%q, %q) = %v, want %v", c[0], c[1], got, want)
		}
	}
	for i := 0; i < 256; i++ {
		if got, want := Lower(byte(i)), asciiLower(string([]byte{byte(i)}))[0]; got != want {
			t.Fatalf("Lower(%#x) = %#x, want %#x", i, got, want)
		}
	}
}

// oracleElements is RFC 9110 §5.6.1's #element rule as a recipient reads
// it: split at every comma, OWS (SP / HTAB) trimmed, empty elements
// ignored.
func oracleElements(v string) []string {
	var out []string
	for _, e := range strings.Split(v, ",") {
		if e = strings.Trim(e, " \t"); e != "" {
			out = append(out, e)
		}
	}
	return out
}

func TestForEachElement(t *testing.T) {
	cases := []string{"", ",", ", ,", "a", " a ", "a,b", "a , b", "\ta\t,\t\tb", "keep-alive, Upgrade",
		"a,,b,", " , a", "gzip, chunked", "a b, c", "x\x00y, z"}
	r := rand.New(rand.NewPCG(3, 4))
	alphabet := "ab, \t\r"
	for range 20000 {
		var b strings.Builder
		for range r.IntN(8) {
			b.WriteByte(alphabet[r.IntN(len(alphabet))])
		}
		cases = append(cases, b.String())
	}
	for _, v := range cases {
		var got []string
		ForEachElement([]byte(v), func(e []byte) { got = append(got, string(e)) })
		want := oracleElements(v)
		if strings.Join(got, "|") != strings.Join(want, "|") || len(got) != len(want) {
			t.Fatalf("ForEachElement(%q) = %q, want %q", v, got, want)
		}
		if tr, want := string(TrimOWS([]byte(v))), strings.Trim(v, " \t"); tr != want {
			t.Fatalf("TrimOWS(%q) = %q, want %q", v, tr, want)
		}
	}
}

func TestHasToken(t *testing.T) {
	hs := []exchange.Header{
		{Name: []byte("Connection"), Value: []byte("keep-alive")},
		{Name: []byte("X-Other"), Value: []byte("upgrade")},
		{Name: []byte("CONNECTION"), Value: []byte(" foo ,Upgrade\t")},
		{Name: []byte("Expect"), Value: []byte("100-continue")},
	}
	for _, c := range []struct {
		name, token string
		want        bool
	}{
		{"Connection", "upgrade", true}, {"connection", "keep-alive", true}, {"Connection", "foo", true},
		{"Connection", "close", false}, {"Upgrade", "websocket", false}, {"X-Other", "UPGRADE", true},
		{"Expect", "100-continue", true}, {"Connection", "upgrad", false}, {"Connection", "foo ,Upgrade", false},
	} {
		if got := HasToken(hs, c.name, c.token); got != c.want {
			t.Errorf("HasToken(%q, %q) = %v, want %v", c.name, c.token, got, c.want)
		}
	}
}

func TestHopByHop(t *testing.T) {
	// RFC 9110 §7.6.1 (Connection, Proxy-Connection, Keep-Alive, TE,
	// Transfer-Encoding, Upgrade) and §6.6.2 (Trailer).
	hop := []string{"Connection", "Keep-Alive", "Proxy-Connection", "Transfer-Encoding", "Upgrade", "TE", "Trailer"}
	for _, n := range hop {
		for _, v := range []string{n, strings.ToLower(n), strings.ToUpper(n)} {
			if !HopByHop([]byte(v)) {
				t.Errorf("HopByHop(%q) = false", v)
			}
		}
	}
	for _, n := range []string{"", "T", "TEE", "Trailers", "Content-Length", "Connectio", "Connections", "Keep_Alive",
		"Proxy-Authenticate", "Transfer-Encodinh", "Upgrade-Insecure-Requests", "Date", "Server"} {
		if HopByHop([]byte(n)) {
			t.Errorf("HopByHop(%q) = true", n)
		}
	}
}

func TestParseContentLength(t *testing.T) {
	// Content-Length = 1*DIGIT (RFC 9110 §8.6), bounded to 18 digits.
	digits := regexp.MustCompile(`^[0-9]{1,18}$`)
	cases := []string{"", "0", "00", "12", "-1", "+1", " 1", "1 ", "1,1", "0x10", "999999999999999999",
		"1000000000000000000", "12a", "\xd9\xa1", "١"}
	r := rand.New(rand.NewPCG(5, 6))
	for range 20000 {
		var b strings.Builder
		for range r.IntN(21) {
			b.WriteByte("0123456789 -+a"[r.IntN(14)])
		}
		cases = append(cases, b.String())
	}
	for _, v := range cases {
		n, ok := ParseContentLength([]byte(v))
		wantOK := digits.MatchString(v)
		if ok != wantOK {
			t.Fatalf("ParseContentLength(%q) ok = %v, want %v", v, ok, wantOK)
		}
		if ok {
			want, err := strconv.ParseInt(v, 10, 64)
			if err != nil || n != want {
				t.Fatalf("ParseContentLength(%q) = %d, want %d (%v)", v, n, want, err)
			}
		}
	}
}

// TestParseQ checks ParseQ against RFC 9110 §12.4.2's grammar, written as
// a regular expression, on every string of up to six bytes over an
// alphabet that reaches each branch, and against strconv for the value.
func TestParseQ(t *testing.T) {
	// qvalue = ( "0" [ "." 0*3DIGIT ] ) / ( "1" [ "." 0*3("0") ] )
	grammar := regexp.MustCompile(`^(0(\.[0-9]{0,3})?|1(\.0{0,3})?)$`)
	const alphabet = "019. x-"
	var check func(string)
	seen := 0
	check = func(v string) {
		seen++
		q, ok := ParseQ([]byte(v))
		if want := grammar.MatchString(v); ok != want {
			t.Fatalf("ParseQ(%q) ok = %v, the grammar says %v", v, ok, want)
		}
		if ok {
			f, err := strconv.ParseFloat(v, 64)
			if want := int(f*1000 + 0.5); err != nil || q != want {
				t.Fatalf("ParseQ(%q) = %d, want %d (%v)", v, q, want, err)
			}
		} else if q != 0 {
			t.Fatalf("ParseQ(%q) = %d with ok false, want 0", v, q)
		}
		if len(v) < 6 {
			for i := range len(alphabet) {
				check(v + alphabet[i:i+1])
			}
		}
	}
	check("")
	if want := 1 + 7 + 49 + 343 + 2401 + 16807 + 117649; seen != want {
		t.Fatalf("checked %d strings, want %d", seen, want)
	}
	for _, c := range []struct {
		v  string
		q  int
		ok bool
	}{
		{"0", 0, true}, {"0.5", 500, true}, {"0.25", 250, true}, {"0.125", 125, true}, {"0.", 0, true},
		{"1", 1000, true}, {"1.", 1000, true}, {"1.000", 1000, true}, {"0.999", 999, true},
		{"1.5", 0, false}, {"1.001", 0, false}, {"0.1234", 0, false}, {".5", 0, false}, {"2", 0, false},
		{" 1", 0, false}, {"1 ", 0, false}, {"", 0, false}, {"0,5", 0, false}, {"0.\xd9", 0, false},
	} {
		if q, ok := ParseQ([]byte(c.v)); q != c.q || ok != c.ok {
			t.Errorf("ParseQ(%q) = %d, %v; want %d, %v", c.v, q, ok, c.q, c.ok)
		}
	}
}

func TestNoAllocs(t *testing.T) {
	hs := []exchange.Header{{Name: []byte("Connection"), Value: []byte("keep-alive, Upgrade")}}
	v := []byte("a, b, c")
	n := testing.AllocsPerRun(100, func() {
		_ = HasToken(hs, "connection", "upgrade")
		ForEachElement(v, func([]byte) {})
		_, _ = ParseContentLength([]byte("123"))
		_, _ = ParseQ([]byte("0.5"))
	})
	if n != 0 {
		t.Fatalf("%v allocations", n)
	}
}

func FuzzForEachElement(f *testing.F) {
	f.Add("keep-alive, Upgrade")
	f.Add(" ,\t, a ,")
	f.Fuzz(func(t *testing.T, v string) {
		var got []string
		ForEachElement([]byte(v), func(e []byte) { got = append(got, string(e)) })
		if want := oracleElements(v); strings.Join(got, "\x00") != strings.Join(want, "\x00") || len(got) != len(want) {
			t.Fatalf("ForEachElement(%q) = %q, want %q", v, got, want)
		}
	})
}
