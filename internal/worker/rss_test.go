package worker

import (
	"os"
	"testing"
)

func TestParseStatm(t *testing.T) {
	if n, ok := parseStatm([]byte("2000 300 100 10 0 500 0\n")); !ok || n != 300*pageSize {
		t.Errorf("parseStatm = %d %v, want %d", n, ok, 300*pageSize)
	}
	for _, bad := range []string{"", "12", "1 x 3", "1 -4 3"} {
		if _, ok := parseStatm([]byte(bad)); ok {
			t.Errorf("parseStatm(%q) succeeded", bad)
		}
	}
	if n, ok := ReadRSS(os.Getpid()); !ok || n <= 0 {
		t.Errorf("ReadRSS(self) = %d %v, want > 0", n, ok)
	}
	if _, ok := ReadRSS(1 << 30); ok {
		t.Error("ReadRSS of a pid that does not exist succeeded")
	}
}
