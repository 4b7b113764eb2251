package wsbridge

import (
	"bytes"
	"testing"
	"unicode/utf8"
)

// TestUTF8CheckerAnySplit checks every way of cutting a message into two
// or three pieces against utf8.Valid of the whole.
func TestUTF8CheckerAnySplit(t *testing.T) {
	msgs := [][]byte{
		[]byte(""), []byte("ascii"), []byte("héllo €𝄞 wörld"), []byte("€€€"), []byte("𝄞𝄞"),
		[]byte("ab\x80"), []byte("abc\xe2\x82"), []byte("\xed\xa0\x80"), []byte("\xc0\xaf"),
		[]byte("a\xe2\x28\xa1"), []byte("\xf4\x90\x80\x80"), []byte("x\xff"), []byte("\xf0\x9f\x98"),
		[]byte("€\xe2"), []byte("\xe2\x82\xac\x82"),
	}
	for _, m := range msgs {
		want := utf8.Valid(m)
		for i := 0; i <= len(m); i++ {
			for j := i; j <= len(m); j++ {
				var u utf8Checker
				ok := u.check(m[:i], false) && u.check(m[i:j], false) && u.check(m[j:], true)
				if ok != want {
					t.Errorf("%q split at %d,%d: valid %v, want %v", m, i, j, ok, want)
				}
			}
		}
	}
}

// TestUTF8CheckerReset: a checker reused for the next message starts clean.
func TestUTF8CheckerReset(t *testing.T) {
	var u utf8Checker
	if !u.check([]byte("a\xe2"), false) {
		t.Fatal("a valid prefix was refused")
	}
	u.reset()
	if !u.check([]byte("plain"), true) {
		t.Fatal("a carried byte of an abandoned message leaked into the next")
	}
	big := bytes.Repeat([]byte("€"), 100000)
	for cut := 1; cut < 7; cut++ {
		u.reset()
		ok := true
		for p := big; len(p) > 0 && ok; {
			n := min(len(p), 65536+cut)
			ok = u.check(p[:n], n == len(p))
			p = p[n:]
		}
		if !ok {
			t.Errorf("valid text in pieces of 65536+%d refused", cut)
		}
	}
}
